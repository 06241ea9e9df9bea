// src/replay/replay_clock.cc

#include "replay/replay_clock.h"

namespace toolops {

ReplayClock::ReplayClock(TimePoint start, double speed, std::function<size_t()> blocked)
    : speed_(speed),
      blocked_(std::move(blocked)),
      start_(start),
      real_start_(std::chrono::steady_clock::now()),
      now_ns_(start.time_since_epoch().count()) {
  keeper_ = std::thread([this] { KeeperLoop(); });
}

ReplayClock::~ReplayClock() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  keeper_cv_.notify_all();
  keeper_.join();
}

size_t ReplayClock::participants() const {
  std::lock_guard<std::mutex> lock(mu_);
  return active_;
}

void ReplayClock::SleepFor(Duration d) {
  if (d <= Duration::zero()) return;
  SleepUntil(Now() + d);
}

void ReplayClock::SleepUntil(TimePoint t) {
  std::unique_lock<std::mutex> lock(mu_);
  if (t <= Now()) return;
  Sleeper sleeper;
  auto it = sleepers_.emplace(t, &sleeper);
  ++sleeping_;
  if (QuiescentLocked()) keeper_cv_.notify_one();
  sleeper.cv.wait(lock, [&] { return sleeper.woken.load(); });
  (void)it;  // Removed by the keeper when it woke us.
}

bool ReplayClock::WaitFor(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                          Duration d, FunctionRef<bool()> ready) {
  if (ready()) return true;
  if (d <= Duration::zero()) return false;
  // A century of trace time stands for "no limit" (and keeps Now() + d finite).
  d = std::min<Duration>(d, std::chrono::hours(24 * 365 * 100));
  Sleeper sleeper;
  sleeper.event_mu = lock.mutex();
  sleeper.event_cv = &cv;
  sleeper.ready = &ready;
  std::multimap<TimePoint, Sleeper*>::iterator it;
  {
    std::lock_guard<std::mutex> clock_lock(mu_);
    it = sleepers_.emplace(Now() + d, &sleeper);
    event_waiters_.insert(&sleeper);
    ++sleeping_;
    if (QuiescentLocked()) keeper_cv_.notify_one();
  }
  // The keeper notifies under our lock when it can take it; when it cannot, a
  // wake-up may be lost, so look again now and then.
  while (!ready() && !sleeper.woken.load(std::memory_order_acquire)) {
    cv.wait_for(lock, std::chrono::milliseconds(5));
  }
  bool result = ready();
  {
    std::lock_guard<std::mutex> clock_lock(mu_);
    event_waiters_.erase(&sleeper);
    if (!sleeper.woken.load(std::memory_order_relaxed)) {
      // Woken by the event: running again before anyone can move time.
      sleepers_.erase(it);
      --sleeping_;
    }
  }
  return result;
}

bool ReplayClock::EventPendingLocked() {
  for (Sleeper* s : event_waiters_) {
    if (s->woken.load(std::memory_order_relaxed)) continue;
    // Only try: the waiter holds its lock while it takes mu_.
    if (!s->event_mu->try_lock()) return true;
    bool ready = (*s->ready)();
    s->event_mu->unlock();
    if (ready) return true;
  }
  return false;
}

void ReplayClock::Enter() {
  std::lock_guard<std::mutex> lock(mu_);
  // With no participant the keeper waits without a time limit; from now on
  // it must poll for participants that start following a flight.
  if (active_++ == 0) keeper_cv_.notify_one();
}

void ReplayClock::Leave() {
  std::lock_guard<std::mutex> lock(mu_);
  --active_;
  if (QuiescentLocked()) keeper_cv_.notify_one();
}

bool ReplayClock::QuiescentLocked() {
  if (sleepers_.empty()) return false;
  size_t waiting = sleeping_;
  if (waiting < active_ && blocked_) waiting += blocked_();
  return waiting >= active_;
}

void ReplayClock::KeeperLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (!QuiescentLocked()) {
      // Sleepers and leavers notify; a participant that starts following a
      // flight does not, so poll while some run. With none (active_ is 0:
      // nothing can wait), sleep until Enter() notifies.
      if (active_ > sleeping_) {
        keeper_cv_.wait_for(lock, std::chrono::microseconds(200));
      } else {
        keeper_cv_.wait(lock);
      }
      continue;
    }
    if (EventPendingLocked()) {
      // A waiter is about to run again: let it.
      keeper_cv_.wait_for(lock, std::chrono::microseconds(200));
      continue;
    }
    TimePoint next = sleepers_.begin()->first;
    if (speed_ > 0) {
      // Pace: trace time t is reached at real time (t - start) / speed.
      auto due =
          real_start_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(
                                std::chrono::duration<double>(next - start_).count() / speed_));
      if (std::chrono::steady_clock::now() < due) {
        keeper_cv_.wait_until(lock, due, [&] { return stop_; });
        continue;  // Check again: nothing may have changed, but be sure.
      }
    }
    if (next > Now()) now_ns_.store(next.time_since_epoch().count(), std::memory_order_release);
    jumps_.fetch_add(1, std::memory_order_relaxed);
    while (!sleepers_.empty() && sleepers_.begin()->first <= next) {
      Sleeper* sleeper = sleepers_.begin()->second;
      sleepers_.erase(sleepers_.begin());
      --sleeping_;
      sleeper->woken.store(true, std::memory_order_release);
      if (sleeper->event_cv == nullptr) {
        sleeper->cv.notify_one();
      } else if (sleeper->event_mu->try_lock()) {
        // Under the waiter's lock, the wake-up cannot fall between its check
        // and its wait. The waiter takes mu_ before it returns, so its
        // condition variable is still alive here.
        sleeper->event_cv->notify_all();
        sleeper->event_mu->unlock();
      } else {
        sleeper->event_cv->notify_all();
      }
    }
  }
}

ElasticPool::ElasticPool(size_t max_threads) : max_threads_(max_threads == 0 ? 1 : max_threads) {}

ElasticPool::~ElasticPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

size_t ElasticPool::threads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return threads_.size();
}

void ElasticPool::Submit(std::function<void()> task) {
  std::lock_guard<std::mutex> lock(mu_);
  tasks_.push_back(std::move(task));
  if (tasks_.size() > idle_ && threads_.size() < max_threads_) {
    threads_.emplace_back([this] { Work(); });
  } else {
    cv_.notify_one();
  }
}

void ElasticPool::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (tasks_.empty()) {
      if (stop_) return;
      ++idle_;
      cv_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
      --idle_;
      continue;
    }
    std::function<void()> task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    task();
    lock.lock();
  }
}

void ReplayExecutor::Submit(std::function<void()> task) {
  // The submitter is a running participant: time cannot move before the
  // task counts as one.
  clock_->Enter();
  on_submit_();
  pool_->Submit([clock = clock_, on_done = &on_done_, task = std::move(task)] {
    task();
    clock->Leave();
    (*on_done)();
  });
}

}  // namespace toolops
