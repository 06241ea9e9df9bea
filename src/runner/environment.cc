// src/runner/environment.cc

#include "toolops/environment.h"

#include <condition_variable>
#include <deque>
#include <thread>

#include "base/mutex.h"

namespace toolops {

void StoreRegistry::Register(const std::string& name, std::shared_ptr<Store> store) {
  std::lock_guard<std::mutex> lock(mu_);
  stores_[name] = std::move(store);
}

Result<std::shared_ptr<Store>> StoreRegistry::Get(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = stores_.find(name);
  if (it != stores_.end()) return it->second;
  std::string known;
  for (const auto& [n, store] : stores_) known += (known.empty() ? "" : ", ") + n;
  return Status(StatusCode::kNotFound,
                "no store named '" + name + "' is registered (known: " +
                    (known.empty() ? "none" : known) + "); register it before wrapping the tool",
                Guard::kPolicy);
}

std::vector<std::string> StoreRegistry::Names() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> names;
  for (const auto& [name, store] : stores_) names.push_back(name);
  return names;
}

StoreRegistry* StoreRegistry::Default() {
  static StoreRegistry* registry = [] {
    auto* r = new StoreRegistry();  // Never destroyed: tools may live until exit.
    auto store = NewMemoryStore(MemoryStoreOptions{});
    if (store.ok()) r->Register("memory", std::shared_ptr<Store>(std::move(store).value()));
    return r;
  }();
  return registry;
}

namespace {

class ThreadPool final : public Executor {
 public:
  explicit ThreadPool(size_t max_threads) : max_threads_(max_threads < 1 ? 1 : max_threads) {}

  ~ThreadPool() override {
    {
      MutexLock lock(&mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

  void Submit(std::function<void()> task) override {
    MutexLock lock(&mu_);
    queue_.push_back(std::move(task));
    // Every queued task should have a thread ready for it, so that a timed
    // attempt never waits behind a slow one while the pool may still grow.
    if (queue_.size() > idle_ && threads_.size() < max_threads_) {
      threads_.emplace_back([this] { Work(); });
    } else {
      cv_.notify_one();
    }
  }

 private:
  void Work() {
    std::unique_lock<Mutex> lock(mu_);
    while (true) {
      ++idle_;
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      --idle_;
      if (queue_.empty()) return;  // Stopping and drained.
      std::function<void()> task = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  }

  const size_t max_threads_;
  Mutex mu_;
  std::condition_variable_any cv_;
  std::deque<std::function<void()>> queue_ TOOLOPS_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ TOOLOPS_GUARDED_BY(mu_);
  size_t idle_ TOOLOPS_GUARDED_BY(mu_) = 0;
  bool stopping_ TOOLOPS_GUARDED_BY(mu_) = false;
};

}  // namespace

std::unique_ptr<Executor> NewThreadPool(size_t max_threads) {
  return std::make_unique<ThreadPool>(max_threads);
}

Executor* DefaultExecutor() {
  // Never destroyed: background refreshes may still be running at exit.
  static Executor* executor = NewThreadPool(256).release();
  return executor;
}

}  // namespace toolops
