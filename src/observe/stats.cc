// src/observe/stats.cc

#include "toolops/stats.h"

#include <mutex>
#include <vector>

namespace toolops {

std::string_view CounterName(Counter counter) {
  switch (counter) {
    case Counter::kCalls:
      return "calls";
    case Counter::kFreshHit:
      return "fresh_hit";
    case Counter::kStaleHit:
      return "stale_hit";
    case Counter::kStaleIfError:
      return "stale_if_error";
    case Counter::kCoalesced:
      return "coalesced";
    case Counter::kUpstreamSuccess:
      return "upstream_success";
    case Counter::kUpstreamError:
      return "upstream_error";
    case Counter::kRejectedByBreaker:
      return "rejected_by_breaker";
    case Counter::kRejectedByLimiter:
      return "rejected_by_limiter";
    case Counter::kRejectedByBudget:
      return "rejected_by_budget";
    case Counter::kFallback:
      return "fallback";
    case Counter::kAttempts:
      return "attempts";
    case Counter::kRetries:
      return "retries";
    case Counter::kAttemptTimeouts:
      return "attempt_timeouts";
    case Counter::kBackgroundRefresh:
      return "background_refresh";
    case Counter::kNotCached:
      return "not_cached";
    case Counter::kFlightOverflow:
      return "flight_overflow";
    case Counter::kStoreErrors:
      return "store_errors";
    case Counter::kSemanticHit:
      return "semantic_hit";
    case Counter::kGuardRefusals:
      return "guard_refusals";
    case Counter::kSharedHits:
      return "shared_hits";
    case Counter::kRemoteCoalesced:
      return "remote_coalesced";
    case Counter::kCount_:
      break;
  }
  return "unknown";
}

std::string StatsSnapshot::ToString() const {
  std::string out;
  for (size_t i = 0; i < kNumCounters; ++i) {
    if (values[i] == 0) continue;
    if (!out.empty()) out += ' ';
    out += CounterName(static_cast<Counter>(i));
    out += '=';
    out += std::to_string(values[i]);
  }
  return out.empty() ? "calls=0" : out;
}

namespace {

// Hands out slot indices to threads and takes them back when threads exit.
class SlotPool {
 public:
  static SlotPool& Get() {
    static SlotPool* pool = new SlotPool();  // Never destroyed: threads may exit late.
    return *pool;
  }
  // An exclusive index, or the shared one when every index is leased.
  size_t Lease(size_t exclusive_slots, size_t shared_slot) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_.empty()) {
      size_t index = free_.back();
      free_.pop_back();
      return index;
    }
    if (next_ < exclusive_slots) return next_++;
    return shared_slot;
  }
  void Return(size_t index) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(index);
  }

 private:
  std::mutex mu_;
  std::vector<size_t> free_;
  size_t next_ = 0;
};

}  // namespace

namespace internal {

constinit thread_local StripeLease current_stripe{kNoStripe, false};

const StripeLease& LeaseStripe() {
  // The lease lives as long as the thread. The pool's mutex orders the last
  // writes of a thread that exits before the first writes of the next thread
  // that takes its index, so a stripe never has two writers at once. Counter
  // writes from thread-exit code that runs after the return go to the shared
  // stripe, with atomic adds.
  struct Holder {
    Holder() {
      size_t index = SlotPool::Get().Lease(kStripes - 1, kStripes - 1);
      current_stripe = StripeLease{index, index != kStripes - 1};
    }
    ~Holder() {
      if (current_stripe.exclusive) SlotPool::Get().Return(current_stripe.index);
      current_stripe = StripeLease{kStripes - 1, false};
    }
  };
  thread_local Holder holder;
  return current_stripe;
}

}  // namespace internal

StatsSnapshot ToolStats::Snapshot() const {
  StatsSnapshot out;
  for (const Slot& slot : slots_) {
    for (size_t i = 0; i < kNumCounters; ++i) {
      out.values[i] += slot.values[i].load(std::memory_order_relaxed);
    }
  }
  // Every finished call added exactly one outcome; their sum is the calls.
  constexpr Counter kOutcomes[] = {
      Counter::kFreshHit,          Counter::kStaleHit,          Counter::kStaleIfError,
      Counter::kCoalesced,         Counter::kUpstreamSuccess,   Counter::kUpstreamError,
      Counter::kRejectedByBreaker, Counter::kRejectedByLimiter, Counter::kRejectedByBudget,
      Counter::kFallback,          Counter::kSemanticHit};
  uint64_t calls = 0;
  for (Counter c : kOutcomes) calls += out[c];
  out.values[static_cast<size_t>(Counter::kCalls)] = calls;
  return out;
}

HistogramSnapshot& HistogramSnapshot::operator+=(const HistogramSnapshot& other) {
  for (size_t i = 0; i < kLatencyBuckets; ++i) counts[i] += other.counts[i];
  count += other.count;
  sum_seconds += other.sum_seconds;
  pending_hits += other.pending_hits;
  return *this;
}

size_t LatencyHistogram::BucketOf(std::chrono::nanoseconds latency) {
  double seconds = std::chrono::duration<double>(latency).count();
  size_t i = 0;
  while (i < kLatencyBucketBounds.size() && seconds > kLatencyBucketBounds[i]) ++i;
  return i;
}

void LatencyHistogram::Add(std::chrono::nanoseconds latency, uint64_t weight) {
  if (latency.count() < 0) latency = std::chrono::nanoseconds::zero();
  const internal::StripeLease& lease = internal::CurrentStripe();
  Slot& slot = slots_[lease.index];
  internal::AddToStripe(slot.counts[BucketOf(latency)], lease, weight);
  internal::AddToStripe(slot.sum_ns, lease, static_cast<uint64_t>(latency.count()) * weight);
}

void LatencyHistogram::RecordHit(std::chrono::nanoseconds latency) {
  const internal::StripeLease& lease = internal::CurrentStripe();
  Slot& slot = slots_[lease.index];
  uint64_t untimed = lease.exclusive ? slot.untimed.load(std::memory_order_relaxed)
                                     : slot.untimed.exchange(0, std::memory_order_relaxed);
  if (lease.exclusive) slot.untimed.store(0, std::memory_order_relaxed);
  Add(latency, untimed + 1);
}

HistogramSnapshot LatencyHistogram::Snapshot() const {
  HistogramSnapshot out;
  uint64_t sum_ns = 0;
  for (const Slot& slot : slots_) {
    for (size_t i = 0; i < kLatencyBuckets; ++i) {
      out.counts[i] += slot.counts[i].load(std::memory_order_relaxed);
    }
    sum_ns += slot.sum_ns.load(std::memory_order_relaxed);
    out.pending_hits += slot.untimed.load(std::memory_order_relaxed);
  }
  for (uint64_t c : out.counts) out.count += c;
  out.sum_seconds = static_cast<double>(sum_ns) * 1e-9;
  return out;
}

}  // namespace toolops
