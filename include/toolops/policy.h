// include/toolops/policy.h
//
// Policies: what ToolOps does around one tool. A ToolPolicy is plain data,
// filled in by the user, checked once by Validate() when the tool is wrapped
// (a bad policy never reaches the first call) and then read-only.
//
// Durations of zero mean "off" where the comment says so.

#ifndef TOOLOPS_POLICY_H_
#define TOOLOPS_POLICY_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "toolops/clock.h"
#include "toolops/status.h"

namespace toolops {

using namespace std::chrono_literals;

// How string arguments are normalised before keying. Equal text written with
// different Unicode sequences (composed or decomposed accents, full-width
// forms) then shares one cache entry.
enum class TextNormalization : uint8_t {
  kNone,          // Bytes as given.
  kNfc,           // Canonical composition.
  kNfkc,          // Compatibility composition (full-width digits become ASCII, ...).
  kNfkcCasefold,  // NFKC and case folding: "Paris" and "PARIS" share a key.
};

// UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED: the codes that
// say trying again may succeed (IsTransient).
std::vector<StatusCode> DefaultRetryCodes();
// The transient codes plus INTERNAL, UNKNOWN and DATA_LOSS: what says the
// tool itself is unwell. NOT_FOUND or INVALID_ARGUMENT mean it works.
std::vector<StatusCode> DefaultBreakerFailureCodes();

// The semantic cache: a call whose free text means the same as an earlier
// call's (and whose other key arguments are equal) gets that call's answer.
struct SemanticPolicy {
  // Free-text (string) parameters matched by meaning; their texts are joined
  // and embedded. Empty: exact caching only. Each must be a key parameter
  // (not sensitive, not the scope, inside key_params when that is set);
  // every other key parameter must match exactly.
  std::vector<std::string> params;
  // Lowest cosine similarity at which an earlier answer may be reused, in
  // (0, 1]. Tune it with the calibration on your own pairs.
  double threshold = 0.90;
  // Check numbers, units, negation and names before reusing (MatchGuard).
  bool guard = true;
  // Candidates examined per lookup, best first.
  size_t candidates = 4;
  // Entries kept per partition (tool, scope and exact arguments).
  size_t max_per_partition = 100'000;
};

struct CachePolicy {
  bool enabled = true;
  // How long an entry is fresh. Must be positive when caching is enabled.
  Duration ttl = 5min;
  // After ttl, how long the stale value is returned at once while one
  // background refresh runs. Zero: off.
  Duration stale_while_revalidate = Duration::zero();
  // After ttl, how long the stale value may be served when the tool fails.
  // Zero: off.
  Duration stale_if_error = Duration::zero();
  // Names of the parameters that form the key. Empty: every parameter that is
  // not sensitive. Each name must be a declared parameter.
  std::vector<std::string> key_params;
  TextNormalization normalization = TextNormalization::kNone;
  // Name of the store that holds this tool's entries.
  std::string store = "memory";
  // Name of a store shared with other processes (Redis, PostgreSQL, SQLite),
  // or empty. It is read after `store` misses, by the one caller per key that
  // leads in this process, and a result is written to both. When it offers
  // coordination (Redis) and coalescing is on, that leader also takes the
  // key's lease, so that one process among all calls upstream.
  std::string shared_store;
  // Results larger than this are returned but not cached (and counted).
  size_t max_value_bytes = 1 << 20;
  SemanticPolicy semantic;
};

struct RetryPolicy {
  // Attempts in all, the first included. 1 means no retries.
  int max_attempts = 1;
  // Full jitter: the wait before retry n is uniform in
  // [0, min(max_backoff, initial_backoff * multiplier^(n-1))].
  Duration initial_backoff = 100ms;
  double multiplier = 2.0;
  Duration max_backoff = 10s;
  // Codes worth retrying. Others fail at once.
  std::vector<StatusCode> retry_on = DefaultRetryCodes();
  // Wait at least the tool's Retry-After hint before the next attempt. A hint
  // longer than max_retry_after ends the retries (the call fails with it).
  bool honor_retry_after = true;
  Duration max_retry_after = 60s;

  // Retry budget per tool: over a sliding window, retries may add at most
  // budget_ratio extra attempts per upstream call, plus a floor of
  // budget_min_retries_per_second so that a quiet tool can still retry.
  double budget_ratio = 0.2;
  double budget_min_retries_per_second = 1.0;
  Duration budget_window = 10s;
};

struct TimeoutPolicy {
  // Longest one attempt may take. Zero: no per-attempt timeout.
  Duration attempt_timeout = Duration::zero();
  // Longest one call may take over all its attempts and waits. Zero: none.
  Duration deadline = Duration::zero();
};

enum class BreakerWindow : uint8_t {
  kCountBased,  // The last `window_size` calls.
  kTimeBased,   // The calls of the last `window_duration`.
};

struct BreakerPolicy {
  bool enabled = true;
  BreakerWindow window = BreakerWindow::kCountBased;
  int window_size = 100;
  Duration window_duration = 60s;
  // No decision is taken before this many calls are in the window.
  int minimum_calls = 20;
  // Open when the failure rate (0..1] reaches this.
  double failure_rate_threshold = 0.5;
  // Open when the share of calls slower than slow_call_duration reaches this.
  // 1.0 with the default duration effectively disables it.
  double slow_call_rate_threshold = 1.0;
  Duration slow_call_duration = 60s;
  // How long the breaker stays open before letting probes through.
  Duration open_wait = 30s;
  // Probes allowed in the half-open state; all must finish before it decides.
  int half_open_probes = 3;
  // Codes that count as failures. Others (a NotFound, an InvalidArgument)
  // mean the tool is healthy and count as successes.
  std::vector<StatusCode> failure_codes = DefaultBreakerFailureCodes();
  // Name of a store that shares breaker openings between processes (Redis),
  // or empty. When this tool's breaker opens in one process, the others open
  // theirs until the same instant; each still decides alone when to probe
  // and close. Admission never waits on the store.
  std::string shared_store;
};

struct LimitPolicy {
  // Upstream calls of this tool running at once. Zero: unlimited.
  int max_concurrent = 0;
  // How long a call may wait for a slot before it is rejected. Zero: reject
  // at once when full.
  Duration max_wait = Duration::zero();
};

struct CoalescePolicy {
  // Concurrent identical calls share one upstream call. Read-only tools only.
  bool enabled = true;
  // Most keys in flight at once for this tool; past it, calls go upstream
  // without coalescing (and are counted).
  size_t max_flights = 100'000;
  // With a coordinating cache.shared_store: coalesce with other processes
  // too (a lease per key in the shared store).
  bool across_processes = true;
};

enum class ToolKind : uint8_t {
  kReadonly,    // Reads the outside world: cached, coalesced, retried.
  kSideEffect,  // Writes: never cached or coalesced; retried only if idempotent.
};

struct ToolPolicy {
  ToolKind kind = ToolKind::kReadonly;
  // For side effects: retrying cannot do the effect twice.
  bool idempotent = false;
  // Name of the parameter whose value scopes results (a tenant or user id):
  // calls with different scopes never share an entry or a flight. Empty: the
  // tool's results are public.
  std::string scope_param;
  // Parameters whose values never appear in a key or a log line.
  std::vector<std::string> sensitive_params;
  // What one upstream call costs, in the user's currency, for savings figures.
  double cost_per_call = 0.0;
  // Call latency histogram and trace spans for this tool (metrics.h,
  // tracing.h). The outcome counters are kept either way. Off: the hit path
  // does not even count down to its next timed or traced hit.
  bool telemetry = true;

  CachePolicy cache;
  RetryPolicy retry;
  TimeoutPolicy timeout;
  BreakerPolicy breaker;
  LimitPolicy limit;
  CoalescePolicy coalesce;
};

// Identity of a tool: its name, its version (bump it when results change
// meaning, so old entries are never served) and its parameter names, in call
// order. Parameter names are needed only when the policy names parameters
// (key_params, sensitive_params, scope_param).
struct ToolSpec {
  ToolSpec() = default;
  ToolSpec(std::string name, std::string version = "1", std::vector<std::string> params = {})
      : name(std::move(name)), version(std::move(version)), params(std::move(params)) {}
  ToolSpec(const char* name) : ToolSpec(std::string(name)) {}  // NOLINT: {"name"} reads well

  std::string name;
  std::string version = "1";
  std::vector<std::string> params;
};

// Checks a spec and policy before a tool is wrapped. Returns InvalidArgument
// (guard kPolicy) naming the first bad field, its value and the allowed range,
// for example "retry.multiplier is 0.5; it must be at least 1".
Status Validate(const ToolSpec& spec, const ToolPolicy& policy);

}  // namespace toolops

#endif  // TOOLOPS_POLICY_H_
