// src/observe/stats.cc

#include "toolops/stats.h"

namespace toolops {

std::string_view CounterName(Counter counter) {
  switch (counter) {
    case Counter::kCalls: return "calls";
    case Counter::kFreshHit: return "fresh_hit";
    case Counter::kStaleHit: return "stale_hit";
    case Counter::kStaleIfError: return "stale_if_error";
    case Counter::kCoalesced: return "coalesced";
    case Counter::kUpstreamSuccess: return "upstream_success";
    case Counter::kUpstreamError: return "upstream_error";
    case Counter::kRejectedByBreaker: return "rejected_by_breaker";
    case Counter::kRejectedByLimiter: return "rejected_by_limiter";
    case Counter::kRejectedByBudget: return "rejected_by_budget";
    case Counter::kFallback: return "fallback";
    case Counter::kAttempts: return "attempts";
    case Counter::kRetries: return "retries";
    case Counter::kAttemptTimeouts: return "attempt_timeouts";
    case Counter::kBackgroundRefresh: return "background_refresh";
    case Counter::kNotCached: return "not_cached";
    case Counter::kFlightOverflow: return "flight_overflow";
    case Counter::kStoreErrors: return "store_errors";
    case Counter::kCount_: break;
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

size_t ToolStats::ThreadSlot() {
  // Threads take slots round-robin on first use, so up to kSlots threads never
  // share a cache line; beyond that, sharing is spread evenly.
  static std::atomic<size_t> next{0};
  thread_local size_t slot = next.fetch_add(1, std::memory_order_relaxed) % kSlots;
  return slot;
}

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
      Counter::kFallback};
  uint64_t calls = 0;
  for (Counter c : kOutcomes) calls += out[c];
  out.values[static_cast<size_t>(Counter::kCalls)] = calls;
  return out;
}

}  // namespace toolops
