// src/engine/retry_budget.cc
//
// Buckets are found lazily: bucket number e lives in slot e % kBuckets and
// remembers e, so a slot that still holds an older number is stale and is
// emptied when reused. Nothing has to run on a timer, and a read sums
// kBuckets slots.

#include "engine/retry_budget.h"

#include <algorithm>
#include <chrono>

namespace toolops {

RetryBudget::RetryBudget(const RetryPolicy& policy, Clock* clock)
    : ratio_(policy.budget_ratio),
      floor_(policy.budget_min_retries_per_second *
             std::chrono::duration<double>(policy.budget_window).count()),
      window_(policy.budget_window),
      // At least 1ns so that a window shorter than kBuckets ns (refused by
      // Validate) still cannot divide by zero.
      bucket_width_(std::max(Duration(1), policy.budget_window / kBuckets)),
      clock_(clock),
      origin_(clock->Now()) {}

int64_t RetryBudget::CurrentEpochLocked(TimePoint now) {
  int64_t epoch = now <= origin_ ? 0 : (now - origin_) / bucket_width_;
  newest_epoch_ = std::max(newest_epoch_, epoch);
  return newest_epoch_;
}

RetryBudget::Bucket& RetryBudget::BucketLocked(int64_t epoch) {
  Bucket& bucket = buckets_[static_cast<size_t>(epoch % kBuckets)];
  if (bucket.epoch != epoch) bucket = Bucket{epoch, 0, 0};
  return bucket;
}

RetryBudget::Usage RetryBudget::UsageLocked(int64_t epoch) const {
  Usage usage;
  for (const Bucket& bucket : buckets_) {
    if (bucket.epoch > epoch - kBuckets && bucket.epoch <= epoch) {
      usage.calls += bucket.calls;
      usage.retries += bucket.retries;
    }
  }
  usage.allowed = ratio_ * static_cast<double>(usage.calls) + floor_;
  return usage;
}

void RetryBudget::RecordAttempt() {
  TimePoint now = clock_->Now();
  MutexLock lock(&mu_);
  ++BucketLocked(CurrentEpochLocked(now)).calls;
}

bool RetryBudget::TryAcquireRetry() { return TryAcquireRetry(nullptr); }

bool RetryBudget::TryAcquireRetry(Usage* usage) {
  TimePoint now = clock_->Now();
  MutexLock lock(&mu_);
  int64_t epoch = CurrentEpochLocked(now);
  Usage current = UsageLocked(epoch);
  bool granted = static_cast<double>(current.retries + 1) <= current.allowed;
  if (granted) {
    ++BucketLocked(epoch).retries;
    ++current.retries;
  }
  if (usage != nullptr) *usage = current;
  return granted;
}

RetryBudget::Usage RetryBudget::usage() {
  TimePoint now = clock_->Now();
  MutexLock lock(&mu_);
  return UsageLocked(CurrentEpochLocked(now));
}

}  // namespace toolops
