// src/replay/replay_clock.h
//
// Trace time for a replay. ReplayClock is a Clock whose time moves only when
// every participant of the replay is waiting for time to pass: each call of
// the trace (and each background refresh) is a participant from the moment
// it is dispatched until it returns, and so is the dispatcher. A participant
// waits for time by sleeping on the clock (a simulated upstream's latency, a
// retry's backoff, the dispatcher waiting for the next call's timestamp) or
// by waiting for a flight that another participant leads (counted by the
// `blocked` probe). When all of them wait, the clock jumps to the earliest
// wake-up and wakes those sleepers. So the middleware sees exactly the
// concurrency of the trace (who is in flight when) whatever the speed: speed
// only paces the jumps against the real clock (a jump to trace time t waits
// until (t - start) / speed of real time has passed; speed 0 never waits).
//
// CPU work takes no trace time: a cache hit is served in zero trace time.
//
// The blocked probe counts followers of in-process flights
// (ToolCore::waiting()). A follower is counted from just before it waits
// until just after it wakes, so in that short window after a flight
// completes the clock may move on before the follower returns; its result is
// not affected (it already has it), only when its worker reads the clock
// (replay.cc takes a coalesced call's end from the answer instead).
//
// A wait for an event with a time limit (Clock::WaitFor: a timed attempt
// waiting for its upstream, a call queued on the concurrency limiter) is a
// sleeper until its limit, woken early by its event. The keeper does not move
// time while such a waiter's event has come but the waiter has not yet woken,
// so the hand-over from the thread that signals the event is exact. Other
// waits outside the clock that are not counted would stop time (until they
// end in real time); the replay wraps the shared store's cross-process waits
// so that they are counted (replay.cc).
//
// Safe for concurrent use.

#ifndef TOOLOPS_REPLAY_REPLAY_CLOCK_H_
#define TOOLOPS_REPLAY_REPLAY_CLOCK_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "toolops/clock.h"
#include "toolops/environment.h"

namespace toolops {

class ReplayClock final : public Clock {
 public:
  // Starts at `start`. `speed`: trace seconds per real second; 0 or less: as
  // fast as possible. `blocked` returns how many participants wait for a
  // flight (may be empty); it is called with the clock's lock held.
  ReplayClock(TimePoint start, double speed, std::function<size_t()> blocked = {});
  // REQUIRES: no participant left.
  ~ReplayClock() override;

  TimePoint Now() const override {
    return TimePoint(Duration(now_ns_.load(std::memory_order_acquire)));
  }
  // Sleeps `d` of trace time. REQUIRES: the caller is a participant.
  void SleepFor(Duration d) override;
  // Sleeps until `t` (returns at once when it has passed).
  void SleepUntil(TimePoint t);
  // Waits in trace time for `ready()` (see Clock::WaitFor). REQUIRES: the
  // caller is a participant.
  bool WaitFor(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, Duration d,
               FunctionRef<bool()> ready) override;

  // A new participant (counted as running). Called by a running participant
  // (or before the first one starts), so time cannot move in between.
  void Enter();
  // The calling participant is done.
  void Leave();

  // Time jumps made so far, and participants now.
  uint64_t jumps() const { return jumps_.load(std::memory_order_relaxed); }
  size_t participants() const;

 private:
  struct Sleeper {
    std::condition_variable cv;
    // Set under mu_ by the keeper; read without it by event waiters.
    std::atomic<bool> woken{false};
    // For WaitFor: the waiter's lock, condition variable and condition.
    std::mutex* event_mu = nullptr;
    std::condition_variable* event_cv = nullptr;
    const FunctionRef<bool()>* ready = nullptr;
  };
  void KeeperLoop();
  // True when every participant waits. REQUIRES: mu_ held.
  bool QuiescentLocked();
  // True when a WaitFor waiter's event has come (or may have: its lock is
  // held) and it has not yet left the sleepers. REQUIRES: mu_ held.
  bool EventPendingLocked();

  const double speed_;
  const std::function<size_t()> blocked_;
  const TimePoint start_;
  const std::chrono::steady_clock::time_point real_start_;

  std::atomic<int64_t> now_ns_;
  std::atomic<uint64_t> jumps_{0};

  mutable std::mutex mu_;
  std::condition_variable keeper_cv_;
  size_t active_ = 0;
  size_t sleeping_ = 0;
  bool stop_ = false;
  std::multimap<TimePoint, Sleeper*> sleepers_;
  std::set<Sleeper*> event_waiters_;  // The WaitFor sleepers.
  std::thread keeper_;
};

// Threads for the calls of a replay: a call waiting in the trace's time holds
// its thread, so the pool grows whenever every thread is busy (up to
// max_threads; beyond, tasks queue). Idle threads are kept for reuse. The
// destructor waits for every task.
class ElasticPool {
 public:
  explicit ElasticPool(size_t max_threads);
  ~ElasticPool();
  void Submit(std::function<void()> task);
  size_t threads() const;

 private:
  void Work();

  const size_t max_threads_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool stop_ = false;
};

// The executor of a replay's environment (background refreshes and timed
// attempts): each task is a participant of the clock while it runs.
// `on_submit` runs before a task is queued, `on_done` as the very last step
// of its thread's work (after it the executor and the clock may be
// destroyed).
class ReplayExecutor final : public Executor {
 public:
  ReplayExecutor(ReplayClock* clock, ElasticPool* pool, std::function<void()> on_submit,
                 std::function<void()> on_done)
      : clock_(clock),
        pool_(pool),
        on_submit_(std::move(on_submit)),
        on_done_(std::move(on_done)) {}
  void Submit(std::function<void()> task) override;

 private:
  ReplayClock* clock_;
  ElasticPool* pool_;
  std::function<void()> on_submit_;
  std::function<void()> on_done_;
};

}  // namespace toolops

#endif  // TOOLOPS_REPLAY_REPLAY_CLOCK_H_
