// include/toolops/environment.h
//
// The world a wrapped tool runs in: its clock, its randomness, the stores it
// may cache in and the executor that runs timed attempts and background
// refreshes. Environment::Default() is the process-wide set-up (real clock,
// random seed, a "memory" store, a shared thread pool); tests pass a
// FakeClock, a SeededRandom and their own registry.
//
// StoreRegistry and Executor are safe for concurrent use. The objects an
// Environment points to must outlive every tool wrapped with it.

#ifndef TOOLOPS_ENVIRONMENT_H_
#define TOOLOPS_ENVIRONMENT_H_

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "toolops/clock.h"
#include "toolops/status.h"
#include "toolops/store.h"

namespace toolops {

// Named stores. Tools refer to stores by name in CachePolicy::store.
class StoreRegistry {
 public:
  StoreRegistry() = default;
  // Adds or replaces a store.
  void Register(const std::string& name, std::shared_ptr<Store> store);
  // The store of that name, or NotFound naming the known stores.
  Result<std::shared_ptr<Store>> Get(const std::string& name) const;
  std::vector<std::string> Names() const;

  // The process-wide registry. It starts with a "memory" store (100,000
  // entries, 256 MiB). Never null.
  static StoreRegistry* Default();

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Store>> stores_;
};

// Runs tasks off the calling thread.
class Executor {
 public:
  virtual ~Executor() = default;
  // Runs `task` soon on some thread. Never blocks on the task.
  virtual void Submit(std::function<void()> task) = 0;
};

// A pool that starts threads as work arrives (up to `max_threads`) and keeps
// idle ones for reuse. Tasks beyond max_threads queue. The destructor waits
// for queued and running tasks.
std::unique_ptr<Executor> NewThreadPool(size_t max_threads);

// The process-wide pool (up to 256 threads, so that a few hung upstream calls
// cannot starve the rest). Never null.
Executor* DefaultExecutor();

class Embedder;

struct Environment {
  Clock* clock = RealClock();
  Random* random = DefaultRandom();
  StoreRegistry* stores = StoreRegistry::Default();
  Executor* executor = DefaultExecutor();
  // For tools with a semantic cache; null: the bundled model
  // (DefaultModelDirectory()), loaded once, when the first such tool is
  // wrapped. Not owned; must outlive the tools.
  const Embedder* embedder = nullptr;
};

}  // namespace toolops

#endif  // TOOLOPS_ENVIRONMENT_H_
