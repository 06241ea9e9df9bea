// src/replay/histogram.h
//
// Bounded summaries of a replay, whatever the trace's length.
//
// ReplayHistogram: durations in log-spaced buckets (32 per power of two,
// about 2% wide), from 1 us to about 12 days; zero has its own bucket.
// Quantiles are read back within a bucket's width. Memory is fixed.
//
// TimeSeries: counts per interval of trace time. It starts with 1-second
// intervals and doubles their width (merging neighbours) whenever more than
// max_points would be needed, so it never holds more than max_points.
//
// Neither is safe for concurrent use (the replay guards them with a mutex).

#ifndef TOOLOPS_REPLAY_HISTOGRAM_H_
#define TOOLOPS_REPLAY_HISTOGRAM_H_

#include <array>
#include <cstdint>
#include <vector>

#include "toolops/clock.h"

namespace toolops {

class ReplayHistogram {
 public:
  static constexpr int kSubBuckets = 32;
  static constexpr int kPowers = 41;  // 2^40 us is about 12.7 days.
  static constexpr int kBuckets = 1 + kSubBuckets * kPowers;

  void Add(Duration d);
  void Merge(const ReplayHistogram& other);
  uint64_t count() const { return count_; }
  Duration max() const { return Duration(max_ns_); }
  Duration mean() const;
  // The q-quantile (0 <= q <= 1): the midpoint of the bucket holding it.
  // Zero when empty.
  Duration Quantile(double q) const;
  // Non-empty buckets as (lower bound, upper bound, count), for charts.
  struct Bucket {
    Duration low;
    Duration high;
    uint64_t count;
  };
  std::vector<Bucket> Buckets() const;

 private:
  static int IndexOf(int64_t micros);
  static int64_t LowerMicros(int index);

  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  int64_t max_ns_ = 0;
  long double sum_ns_ = 0;
};

class TimeSeries {
 public:
  // What is counted per interval.
  enum Field { kRequested, kUpstream, kSaved, kFailed, kFields };

  explicit TimeSeries(int64_t start_ns, size_t max_points = 240)
      : start_ns_(start_ns), max_points_(max_points) {}
  void Add(int64_t time_ns, Field field, uint64_t n = 1);
  int64_t start_ns() const { return start_ns_; }
  int64_t interval_ns() const { return interval_ns_; }
  // One row per interval from start_ns (trailing empty ones left out).
  const std::vector<std::array<uint64_t, kFields>>& points() const { return points_; }

 private:
  int64_t start_ns_;
  size_t max_points_;
  int64_t interval_ns_ = 1'000'000'000;
  std::vector<std::array<uint64_t, kFields>> points_;
};

}  // namespace toolops

#endif  // TOOLOPS_REPLAY_HISTOGRAM_H_
