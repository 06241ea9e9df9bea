// src/replay/histogram.cc

#include "replay/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace toolops {

int ReplayHistogram::IndexOf(int64_t micros) {
  if (micros <= 0) return 0;
  uint64_t v = static_cast<uint64_t>(micros);
  int power = 63 - std::countl_zero(v);  // floor(log2 v)
  if (power >= kPowers) return kBuckets - 1;
  // The 5 bits below the leading one pick the sub-bucket.
  int sub = power >= 5 ? static_cast<int>((v >> (power - 5)) & 31)
                       : static_cast<int>((v << (5 - power)) & 31);
  return 1 + power * kSubBuckets + sub;
}

int64_t ReplayHistogram::LowerMicros(int index) {
  if (index == 0) return 0;
  int power = (index - 1) / kSubBuckets;
  int sub = (index - 1) % kSubBuckets;
  // (32 + sub) * 2^power / 32
  return static_cast<int64_t>(std::ldexp(32.0 + sub, power - 5));
}

void ReplayHistogram::Add(Duration d) {
  int64_t ns = std::max<int64_t>(0, d.count());
  ++counts_[IndexOf(ns / 1000)];
  ++count_;
  max_ns_ = std::max(max_ns_, ns);
  sum_ns_ += ns;
}

void ReplayHistogram::Merge(const ReplayHistogram& other) {
  for (int i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  max_ns_ = std::max(max_ns_, other.max_ns_);
  sum_ns_ += other.sum_ns_;
}

Duration ReplayHistogram::mean() const {
  return count_ == 0 ? Duration::zero() : Duration(static_cast<int64_t>(sum_ns_ / count_));
}

Duration ReplayHistogram::Quantile(double q) const {
  if (count_ == 0) return Duration::zero();
  q = std::clamp(q, 0.0, 1.0);
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      if (i == 0) return Duration::zero();
      double low = static_cast<double>(LowerMicros(i));
      double high = i + 1 < kBuckets ? static_cast<double>(LowerMicros(i + 1)) : low;
      int64_t mid_ns = static_cast<int64_t>((low + high) / 2 * 1000);
      return Duration(std::min(mid_ns, max_ns_));
    }
  }
  return Duration(max_ns_);
}

std::vector<ReplayHistogram::Bucket> ReplayHistogram::Buckets() const {
  std::vector<Bucket> out;
  for (int i = 0; i < kBuckets; ++i) {
    if (counts_[i] == 0) continue;
    int64_t low = LowerMicros(i);
    int64_t high = i + 1 < kBuckets ? LowerMicros(i + 1) : low;
    out.push_back({Duration(low * 1000), Duration(high * 1000), counts_[i]});
  }
  return out;
}

void TimeSeries::Add(int64_t time_ns, Field field, uint64_t n) {
  if (time_ns < start_ns_) time_ns = start_ns_;
  size_t index = static_cast<size_t>((time_ns - start_ns_) / interval_ns_);
  while (index >= max_points_) {
    // Double the interval: merge neighbours.
    std::vector<std::array<uint64_t, kFields>> merged((points_.size() + 1) / 2);
    for (size_t i = 0; i < points_.size(); ++i) {
      for (int f = 0; f < kFields; ++f) merged[i / 2][f] += points_[i][f];
    }
    points_ = std::move(merged);
    interval_ns_ *= 2;
    index = static_cast<size_t>((time_ns - start_ns_) / interval_ns_);
  }
  if (index >= points_.size()) points_.resize(index + 1);
  points_[index][field] += n;
}

}  // namespace toolops
