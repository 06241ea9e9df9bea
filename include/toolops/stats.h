// include/toolops/stats.h
//
// ToolStats: the outcome counters of one wrapped tool. Each thread that
// records holds a slot of its own for as long as it lives (slots return to a
// pool when threads exit), so recording is a plain relaxed load and store on
// a cache line no other thread writes: no lock and no locked instruction on
// the hit path. Threads beyond the pool share one overflow slot and use an
// atomic add there. Reading sums the slots; a snapshot taken while calls run
// may miss the last few counts.
//
// Safe for concurrent use.

#ifndef TOOLOPS_STATS_H_
#define TOOLOPS_STATS_H_

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace toolops {

// Every counter a tool keeps. Each call ends in exactly one of the "outcome"
// counters (kFreshHit .. kSemanticHit); the others count events.
enum class Counter : uint8_t {
  kCalls,              // Calls finished: the sum of the outcomes (never added directly).
  kFreshHit,           // Served from a fresh cache entry.
  kStaleHit,           // Served stale while one background refresh runs.
  kStaleIfError,       // Upstream failed; a stale entry was served instead.
  kCoalesced,          // Waited for an identical call in flight and shared its result.
  kUpstreamSuccess,    // Led an upstream call that succeeded.
  kUpstreamError,      // Led an upstream call that failed (after its retries).
  kRejectedByBreaker,  // Failed fast: the circuit breaker was open.
  kRejectedByLimiter,  // Failed fast: the concurrency limit was reached.
  kRejectedByBudget,   // A retry was needed but the retry budget was spent.
  kFallback,           // Everything failed; the fallback answered.
  kSemanticHit,        // Served the answer of a question that means the same (semantic cache).
  kAttempts,           // Upstream attempts started (first tries and retries).
  kRetries,            // Attempts after the first.
  kAttemptTimeouts,    // Attempts abandoned at the per-attempt timeout.
  kBackgroundRefresh,  // Refreshes started by stale-while-revalidate.
  kNotCached,          // Results not cached (too large or not encodable).
  kFlightOverflow,     // Calls that skipped coalescing because the flight table was full.
  kStoreErrors,        // Store operations that failed (never fail the call).
  kSharedHits,         // Fresh hits served by the shared store (also counted as kFreshHit).
  kRemoteCoalesced,    // Shared the result of another process's call (also kCoalesced).
  kGuardRefusals,      // Semantic candidates above the threshold that the match guard refused.
  kCount_,             // Number of counters; not a counter.
};

std::string_view CounterName(Counter counter);

namespace internal {

// Per-thread stripes for counters written on hot paths. A thread leases one
// stripe index for its lifetime (returned when it exits): indices below
// kStripes - 1 have one writer at a time, so a relaxed load and store update
// them; the last index is shared by threads beyond the pool and needs an
// atomic add.
inline constexpr size_t kStripes = 32;
struct StripeLease {
  size_t index;
  bool exclusive;
};
inline constexpr size_t kNoStripe = ~size_t{0};
// The calling thread's lease; index kNoStripe until its first counter write.
// Constant-initialised, so that reading it is a plain thread-local load.
extern constinit thread_local StripeLease current_stripe;
// Takes a lease for the calling thread (first call only).
const StripeLease& LeaseStripe();
// This thread's lease, the same for every counter. Never blocks after the
// thread's first call.
inline const StripeLease& CurrentStripe() {
  if (current_stripe.index != kNoStripe) [[likely]] {
    return current_stripe;
  }
  return LeaseStripe();
}

// Adds `n` to `value`, the stripe of the calling thread.
inline void AddToStripe(std::atomic<uint64_t>& value, const StripeLease& lease, uint64_t n) {
  if (lease.exclusive) {
    value.store(value.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  } else {
    value.fetch_add(n, std::memory_order_relaxed);
  }
}

}  // namespace internal

constexpr size_t kNumCounters = static_cast<size_t>(Counter::kCount_);

struct StatsSnapshot {
  std::array<uint64_t, kNumCounters> values{};

  uint64_t operator[](Counter c) const { return values[static_cast<size_t>(c)]; }
  // Calls answered without a new upstream call of their own.
  uint64_t saved() const {
    return (*this)[Counter::kFreshHit] + (*this)[Counter::kStaleHit] +
           (*this)[Counter::kStaleIfError] + (*this)[Counter::kCoalesced] +
           (*this)[Counter::kSemanticHit];
  }
  // Hit ratio over all calls, 0 when there were none.
  double saved_ratio() const {
    uint64_t calls = (*this)[Counter::kCalls];
    return calls == 0 ? 0.0 : static_cast<double>(saved()) / static_cast<double>(calls);
  }
  // "calls=10 fresh_hit=7 ..." with zero counters left out.
  std::string ToString() const;
};

class ToolStats {
 public:
  ToolStats() = default;
  ToolStats(const ToolStats&) = delete;
  ToolStats& operator=(const ToolStats&) = delete;

  // REQUIRES: counter != kCalls (it is derived).
  void Add(Counter counter, uint64_t n = 1) {
    const internal::StripeLease& lease = internal::CurrentStripe();
    internal::AddToStripe(slots_[lease.index].values[static_cast<size_t>(counter)], lease, n);
  }

  StatsSnapshot Snapshot() const;

 private:
  struct alignas(64) Slot {
    std::array<std::atomic<uint64_t>, kNumCounters> values{};
  };

  std::array<Slot, internal::kStripes> slots_;
};

// The upper bounds of the call latency buckets, in seconds: from 50 us (a
// cache hit) to 60 s (a slow upstream call). A last bucket (+Inf) holds
// everything above.
inline constexpr std::array<double, 19> kLatencyBucketBounds = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,     0.25,   0.5,     1.0,    2.5,   5.0,    10.0,  30.0, 60.0};
inline constexpr size_t kLatencyBuckets = kLatencyBucketBounds.size() + 1;

struct HistogramSnapshot {
  // Observations per bucket (not cumulative); the last is +Inf.
  std::array<uint64_t, kLatencyBuckets> counts{};
  uint64_t count = 0;
  double sum_seconds = 0;
  // Lock-free fresh hits not yet in the histogram: each timed hit stands for
  // the untimed hits of the same tool on the same thread before it.
  uint64_t pending_hits = 0;

  HistogramSnapshot& operator+=(const HistogramSnapshot& other);
};

// LatencyHistogram: call latencies of one tool, striped per thread like
// ToolStats (no lock, no locked instruction for threads with a stripe of
// their own).
//
// The lock-free hit path does not read a clock for every hit: it counts the
// hit with AddUntimedHit(), and one hit in kHitTimingPeriod per thread is
// timed and recorded with RecordHit(), which adds it with the weight of the
// untimed hits counted before it on that stripe. Counts are then exact
// except for at most kHitTimingPeriod - 1 recent hits per thread
// (pending_hits), and every hit lands in the bucket of a measured hit of the
// same tool.
//
// Safe for concurrent use.
class LatencyHistogram {
 public:
  static constexpr uint32_t kHitTimingPeriod = 64;

  LatencyHistogram() = default;
  LatencyHistogram(const LatencyHistogram&) = delete;
  LatencyHistogram& operator=(const LatencyHistogram&) = delete;

  // One observation of `latency`.
  void Record(std::chrono::nanoseconds latency) { Add(latency, 1); }
  // A fresh hit that was not timed.
  void AddUntimedHit() {
    const internal::StripeLease& lease = internal::CurrentStripe();
    internal::AddToStripe(slots_[lease.index].untimed, lease, 1);
  }
  // A timed fresh hit: recorded with the untimed hits of this stripe.
  void RecordHit(std::chrono::nanoseconds latency);

  HistogramSnapshot Snapshot() const;

  // The bucket of `latency` (kLatencyBuckets - 1 for +Inf).
  static size_t BucketOf(std::chrono::nanoseconds latency);

 private:
  void Add(std::chrono::nanoseconds latency, uint64_t weight);

  struct alignas(64) Slot {
    std::array<std::atomic<uint64_t>, kLatencyBuckets> counts{};
    std::atomic<uint64_t> sum_ns{0};
    std::atomic<uint64_t> untimed{0};
  };
  std::array<Slot, internal::kStripes> slots_;
};

}  // namespace toolops

#endif  // TOOLOPS_STATS_H_
