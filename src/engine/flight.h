// src/engine/flight.h
//
// Request coalescing within a process. A Flight is one upstream call in
// progress for one key; a FlightTable maps keys to their flights. The first
// caller of a key leads (makes the call); callers arriving while it runs wait
// on the flight and receive the same result or error.
//
// Waiters leave on their own timeout or cancellation without disturbing the
// leader or the other waiters. The table is bounded: when it is full, callers
// are told to go upstream uncoalesced. A finished flight is removed from the
// table before its waiters are woken.
//
// Both classes are safe for concurrent use.

#ifndef TOOLOPS_ENGINE_FLIGHT_H_
#define TOOLOPS_ENGINE_FLIGHT_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/mutex.h"
#include "toolops/bytes.h"
#include "toolops/clock.h"
#include "toolops/status.h"
#include "toolops/store.h"

namespace toolops {

class Flight {
 public:
  using Callback = std::function<void(const Result<Bytes>&)>;

  // Blocks until the flight completes or `timeout` of real time passes.
  // Duration::max() waits without limit. Returns nullopt on timeout.
  std::optional<Result<Bytes>> WaitFor(Duration timeout) TOOLOPS_EXCLUDES(mu_);

  // Registers `callback` to run (on the completing thread, with no lock held)
  // when the flight completes. Returns 0 if the flight is already complete: the
  // callback is then not kept and the caller reads result(). Otherwise returns
  // an id for Unsubscribe.
  uint64_t Subscribe(Callback callback) TOOLOPS_EXCLUDES(mu_);

  // Removes a callback; true if it had not run and never will.
  bool Unsubscribe(uint64_t id) TOOLOPS_EXCLUDES(mu_);

  // Publishes the result to every waiter. REQUIRES: called once.
  void Complete(Result<Bytes> result) TOOLOPS_EXCLUDES(mu_);

  bool done() const { return done_.load(std::memory_order_acquire); }
  // REQUIRES: done().
  const Result<Bytes>& result() const { return *result_; }

 private:
  Mutex mu_;
  std::condition_variable_any cv_;
  std::atomic<bool> done_{false};
  // Written once under mu_ before done_ is set; read-only afterwards.
  std::optional<Result<Bytes>> result_;
  std::vector<std::pair<uint64_t, Callback>> callbacks_ TOOLOPS_GUARDED_BY(mu_);
  uint64_t next_id_ TOOLOPS_GUARDED_BY(mu_) = 1;
};

class FlightTable {
 public:
  // At most `max_flights` keys in flight at once.
  explicit FlightTable(size_t max_flights);

  struct Joined {
    // Null when the table is full: the caller should call upstream alone.
    std::shared_ptr<Flight> flight;
    // True when the caller created the flight and must Finish it.
    bool leader = false;
  };

  // Joins the flight for `key`, or creates it and makes the caller its leader.
  Joined JoinOrLead(const KeyRef& key);

  // Removes `flight` from the table (if it is still the one registered for
  // `key`), then completes it with `result`. REQUIRES: the caller leads it.
  void Finish(const KeyRef& key, const std::shared_ptr<Flight>& flight, Result<Bytes> result);

  size_t size() const { return size_.load(std::memory_order_relaxed); }

  // Callers waiting on a flight of this table right now (not counting leaders).
  size_t waiting() const { return waiting_.load(std::memory_order_relaxed); }
  // Callers of this table use these around a wait, so that waiting() is right.
  void AddWaiter() { waiting_.fetch_add(1, std::memory_order_relaxed); }
  void RemoveWaiter() { waiting_.fetch_sub(1, std::memory_order_relaxed); }

 private:
  static constexpr size_t kShards = 64;
  struct Shard {
    Mutex mu;
    std::unordered_map<std::string, std::shared_ptr<Flight>> flights TOOLOPS_GUARDED_BY(mu);
  };
  Shard& ShardFor(const KeyRef& key) { return shards_[(key.hash >> 32) % kShards]; }

  const size_t max_flights_;
  std::atomic<size_t> size_{0};
  std::atomic<size_t> waiting_{0};
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace toolops

#endif  // TOOLOPS_ENGINE_FLIGHT_H_
