// src/store/store_health.h
//
// StoreHealth: how a store outside the process lives through an outage.
// After a failure the store is "down": operations are not tried (Allow()
// returns false, so a call loses no time on a store it knows is gone) until a
// backoff has passed; then one probe operation at a time is let through. The
// backoff doubles from `initial` to `max` with jitter (half to all of it). A
// success ends the episode. An episode is logged twice: once when it starts
// (warning, "store.down") and once when it ends (info, "store.up", with how
// many operations failed or were skipped and how long it lasted).
//
// Safe for concurrent use. While up, Allow() and Succeeded() are one relaxed
// atomic load each.

#ifndef TOOLOPS_STORE_STORE_HEALTH_H_
#define TOOLOPS_STORE_STORE_HEALTH_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "base/mutex.h"
#include "toolops/clock.h"
#include "toolops/status.h"

namespace toolops {

class StoreHealth {
 public:
  StoreHealth(std::string store_name, Duration initial_backoff, Duration max_backoff, Clock* clock);

  // May an operation use the store now? True while up; while down, true only
  // for one probe once the backoff has passed. A caller told true must report
  // Succeeded() or Failed().
  bool Allow() {
    if (!down_.load(std::memory_order_relaxed)) return true;
    return AllowWhileDown();
  }
  void Succeeded() {
    if (down_.load(std::memory_order_relaxed)) EndEpisode();
  }
  void Failed(const Status& error);

  bool down() const { return down_.load(std::memory_order_relaxed); }
  // Episodes begun so far, and operations skipped because the store was down.
  uint64_t episodes() const { return episodes_.load(std::memory_order_relaxed); }
  uint64_t skipped() const { return skipped_.load(std::memory_order_relaxed); }

 private:
  bool AllowWhileDown();
  void EndEpisode();

  const std::string name_;
  const Duration initial_;
  const Duration max_;
  Clock* const clock_;

  std::atomic<bool> down_{false};
  std::atomic<uint64_t> episodes_{0};
  std::atomic<uint64_t> skipped_{0};

  Mutex mu_;
  TimePoint episode_start_ TOOLOPS_GUARDED_BY(mu_);
  TimePoint next_probe_ TOOLOPS_GUARDED_BY(mu_);
  Duration backoff_ TOOLOPS_GUARDED_BY(mu_);
  bool probing_ TOOLOPS_GUARDED_BY(mu_) = false;
  uint64_t failures_ TOOLOPS_GUARDED_BY(mu_) = 0;
  uint64_t skipped_at_start_ TOOLOPS_GUARDED_BY(mu_) = 0;
  uint64_t jitter_state_ TOOLOPS_GUARDED_BY(mu_);
};

}  // namespace toolops

#endif  // TOOLOPS_STORE_STORE_HEALTH_H_
