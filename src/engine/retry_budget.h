// src/engine/retry_budget.h
//
// RetryBudget: how many retries one tool may make, shared by all its calls.
// Without a budget, a tool that fails every call is hit max_attempts times per
// call, which turns an outage into a storm. The budget allows, over a sliding
// window, retries up to
//
//   budget_ratio * (upstream calls in the window)
//     + budget_min_retries_per_second * (window length in seconds)
//
// The first term scales with traffic (0.2 allows 20% extra attempts); the
// second, the floor, lets a quiet tool retry at all.
//
// The window is a ring of kBuckets buckets of budget_window / kBuckets each:
// the current bucket and the ones before it. A bucket leaves the window as a
// whole, so the window spans between (kBuckets - 1) / kBuckets and all of
// budget_window.
//
// Guarantee: over any run, retries granted <= budget_ratio * calls recorded +
// floor * W, where floor is the second term above and W = ceil(buckets
// elapsed since construction / kBuckets). Why: the window of the last granted
// retry holds every retry granted in its buckets, so at most ratio * its calls
// + floor; set those buckets aside and repeat on the earlier ones.
//
// Safe for concurrent use: each operation takes one mutex for a few dozen
// instructions and never blocks otherwise.

#ifndef TOOLOPS_ENGINE_RETRY_BUDGET_H_
#define TOOLOPS_ENGINE_RETRY_BUDGET_H_

#include <array>
#include <cstdint>

#include "base/mutex.h"
#include "toolops/clock.h"
#include "toolops/policy.h"

namespace toolops {

class RetryBudget {
 public:
  // Buckets in the sliding window.
  static constexpr int kBuckets = 10;

  // What the window held when a retry was asked for.
  struct Usage {
    int64_t calls = 0;    // Upstream calls (first attempts) in the window.
    int64_t retries = 0;  // Retries granted in the window, the asked one included if granted.
    double allowed = 0;   // Retries the window allows: ratio * calls + floor.
  };

  // Reads budget_ratio, budget_min_retries_per_second and budget_window from
  // `policy` (REQUIRES: validated; the window is at least 1s). `clock` is not
  // owned and must outlive the budget.
  RetryBudget(const RetryPolicy& policy, Clock* clock);

  RetryBudget(const RetryBudget&) = delete;
  RetryBudget& operator=(const RetryBudget&) = delete;

  // Counts one original upstream call. Call it once per call, on its first
  // attempt only; retries are counted by TryAcquireRetry.
  void RecordAttempt() TOOLOPS_EXCLUDES(mu_);

  // Returns true, and counts the retry, if retries_in_window + 1 <= ratio *
  // calls_in_window + floor; false (counting nothing) otherwise. The overload
  // also reports the window as the decision saw it, for error messages.
  bool TryAcquireRetry() TOOLOPS_EXCLUDES(mu_);
  bool TryAcquireRetry(Usage* usage) TOOLOPS_EXCLUDES(mu_);

  // The window now, for stats and tests. Not const: reading moves the window
  // to the current time.
  Usage usage() TOOLOPS_EXCLUDES(mu_);
  int64_t calls_in_window() { return usage().calls; }
  int64_t retries_in_window() { return usage().retries; }

  // The configuration, for messages.
  double ratio() const { return ratio_; }
  // budget_min_retries_per_second * window seconds: retries always allowed per window.
  double floor() const { return floor_; }
  Duration window() const { return window_; }

 private:
  struct Bucket {
    int64_t epoch = -1;  // Bucket number since origin_; -1 when never used.
    int64_t calls = 0;
    int64_t retries = 0;
  };

  // The current bucket number, never below one already used (so that a thread
  // that read the clock a little late counts into the current bucket).
  int64_t CurrentEpochLocked(TimePoint now) TOOLOPS_REQUIRES(mu_);
  // The bucket for `epoch`, emptied first if it still holds an older one.
  Bucket& BucketLocked(int64_t epoch) TOOLOPS_REQUIRES(mu_);
  Usage UsageLocked(int64_t epoch) const TOOLOPS_REQUIRES(mu_);

  // Constant after construction.
  const double ratio_;
  const double floor_;
  const Duration window_;
  const Duration bucket_width_;
  Clock* const clock_;
  const TimePoint origin_;

  mutable Mutex mu_;
  std::array<Bucket, kBuckets> buckets_ TOOLOPS_GUARDED_BY(mu_);
  int64_t newest_epoch_ TOOLOPS_GUARDED_BY(mu_) = 0;
};

}  // namespace toolops

#endif  // TOOLOPS_ENGINE_RETRY_BUDGET_H_
