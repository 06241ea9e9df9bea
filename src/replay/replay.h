// src/replay/replay.h
//
// Replays a trace of tool calls through the real middleware (ToolCore: the
// engine, the memory store, the semantic cache with its embedder, and, when
// asked, a shared Redis or PostgreSQL store) against simulated upstream
// tools, in trace time (replay_clock.h), and reports what the middleware
// saved.
//
// The policy's attempt timeout, deadline and concurrency limit act in trace
// time against the simulated latency. With several workers, each is a
// middleware instance of its own (memory store, flights, breakers, limiters:
// what a process has) replaying the calls of a share of the agents; with a
// shared store they share what processes share (the exact cache, leases for
// coalescing across processes, semantic entries on Redis).
//
// Each call of the trace is made, at its timestamp, on a thread of its own
// (a growing pool); its tool's upstream is simulated: latency, cost and
// outcome from the trace when it has them, otherwise from the tool's model
// (latency distribution, failure rate, bursts of errors, rate limit, cost).
// The simulated answer names the call that produced it and its intent label,
// so a served answer is checked: an answer whose source had another label is
// a wrong answer.
//
// Memory is bounded whatever the trace's length: the trace is streamed,
// per-call figures go into fixed histograms and a bounded time series, and
// the attainable-savings bound keeps one entry per (tool, intent) whose TTL
// window is open.
//
// RunReplay blocks; one replay at a time per ReplayOptions::embedder is fine
// (embedders are safe for concurrent use).

#ifndef TOOLOPS_REPLAY_REPLAY_H_
#define TOOLOPS_REPLAY_REPLAY_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "replay/histogram.h"
#include "replay/trace.h"
#include "toolops/clock.h"
#include "toolops/embedder.h"
#include "toolops/policy.h"
#include "toolops/status.h"
#include "toolops/store.h"

namespace toolops {

// The simulated upstream of one tool.
struct ToolModel {
  // Cost of one upstream attempt, when the trace gives none.
  double cost = 0.0;
  // Latency: log-normal with this median and 95th percentile, when the trace
  // gives none.
  Duration latency_median = std::chrono::milliseconds(200);
  Duration latency_p95 = std::chrono::milliseconds(1000);
  // Each attempt fails with this probability and code.
  double failure_rate = 0.0;
  StatusCode failure_code = StatusCode::kUnavailable;
  // Stretches of trace time (from the first call) when attempts fail with
  // probability `rate`.
  struct ErrorBurst {
    Duration from{};
    Duration to{};
    double rate = 1.0;
    StatusCode code = StatusCode::kUnavailable;
  };
  std::vector<ErrorBurst> bursts;
  // Upstream attempts per second of trace time (a bucket of one second's
  // worth); beyond, RESOURCE_EXHAUSTED with a Retry-After. 0: no limit.
  double rate_limit_per_second = 0.0;
  // Arguments matched by meaning when the policy is semantic. Empty: any
  // text argument named query, question, q, prompt, text, search or input.
  std::vector<std::string> semantic_params;
};

struct Simulation {
  std::map<std::string, ToolModel> tools;
  ToolModel defaults;  // For tools not named.
  // Take each call's observed latency, cost and outcome from the trace when
  // it has them (a retry then fails while the tool's latest observed call
  // failed). False: the models only.
  bool use_trace = true;
  uint64_t seed = 1;

  const ToolModel& For(const std::string& tool) const;
};

// Reads a simulation file (docs/TRACE_FORMAT.md, "Simulated tools").
// InvalidArgument naming the bad field.
Result<Simulation> LoadSimulation(const std::string& path);
Result<Simulation> ParseSimulation(std::string_view json, const std::string& name);

// The middleware's configuration for one replay: a policy for every tool,
// with overrides per tool.
struct ReplayPolicy {
  std::string name;
  ToolPolicy base;
  std::map<std::string, ToolPolicy> tools;
  const ToolPolicy& For(const std::string& tool) const;
};

// The policy the presets start from: the library's defaults, plus 3 attempts
// (retries with backoff), stale-if-error for 30 minutes; no attempt timeout,
// deadline or concurrency limit (a policy file may set them).
ToolPolicy ReplayBasePolicy();

// A preset or a policy file:
//   none                 no cache, no coalescing (the middleware's guards only)
//   exact                exact cache and coalescing
//   semantic             exact + semantic cache at the default threshold (0.90)
//   semantic:T           the same at threshold T
//   semantic-noguard:T   threshold T without the match guard
//   PATH                 a JSON policy file (docs/TRACE_FORMAT.md)
// `ttl`, when positive, replaces the TTL of presets (not of files).
// InvalidArgument saying what was expected.
Result<ReplayPolicy> ParsePolicySpec(const std::string& spec, Duration ttl = Duration::zero());

struct ReplayProgress {
  uint64_t dispatched = 0;
  uint64_t completed = 0;
  uint64_t saved = 0;
  Duration trace_elapsed{};  // Trace time since the first call.
};

// Opens one connection to the store the workers share, on the replay's clock
// and a wall clock that follows trace time (so that entries age in trace
// time).
using SharedStoreOpener = std::function<Result<std::unique_ptr<Store>>(Clock*, UnixClock)>;

// An opener for "redis://...", "rediss://..." (RedisStore) or
// "postgres://...", "postgresql://..." (PostgresStore), with keys under
// `key_namespace`. InvalidArgument for any other scheme. Connects only when
// called.
Result<SharedStoreOpener> SharedStoreFromUrl(const std::string& url,
                                             const std::string& key_namespace);

// The URL without its password, for reports and messages.
std::string RedactUrl(const std::string& url);

struct ReplayOptions {
  // Trace seconds per real second; 0: as fast as possible.
  double speed = 0;
  // Embedder for semantic policies; null: the bundled model.
  const Embedder* embedder = nullptr;
  // Most threads for calls in flight at once.
  size_t max_threads = 4096;
  MemoryStoreOptions store;
  // Called about every 100 ms of real time from another thread, and once at
  // the end.
  std::function<void(const ReplayProgress&)> on_progress;
  // Wrong answers kept as examples in the report (the first distinct ones).
  size_t keep_wrong = 10;
  // Middleware instances, as if processes; a call goes to the worker of its
  // agent (its conversation when it has no agent).
  size_t workers = 1;
  // The store the workers share (cache.shared_store, coalescing across
  // workers and processes); null: none. Opened once per worker.
  SharedStoreOpener open_shared_store;
  // Names it in the report (never with a password).
  std::string shared_store_label;
};

// A served answer whose source had another intent label.
struct WrongAnswer {
  std::string tool;
  std::string asked;  // The call's arguments (JSON) and label.
  std::string asked_intent;
  std::string source;  // The arguments and label of the call whose answer it got.
  std::string source_intent;
};

struct SavedByKind {
  uint64_t exact = 0;      // Fresh hits on the call's own key.
  uint64_t semantic = 0;   // Answers of a question that means the same.
  uint64_t coalesced = 0;  // Shared an identical call in flight.
  uint64_t stale = 0;      // Stale while revalidating, or stale because upstream failed.
  uint64_t total() const { return exact + semantic + coalesced + stale; }
};

struct ToolReport {
  std::string tool;
  uint64_t requested = 0;
  uint64_t upstream = 0;  // Upstream attempts (retries and refreshes included).
  SavedByKind saved;
  double cost_without = 0;
  double cost_with = 0;
  uint64_t wrong = 0;
  uint64_t retries = 0;
  uint64_t breaker_openings = 0;
  uint64_t rejected_by_breaker = 0;
  uint64_t rate_limited = 0;
  uint64_t failed_with = 0;
  uint64_t failed_without = 0;
  uint64_t attempt_timeouts = 0;
  uint64_t deadline_exceeded = 0;
  uint64_t rejected_by_limiter = 0;
  uint64_t shared_hits = 0;
  uint64_t remote_coalesced = 0;
};

struct ReplayReport {
  std::string policy;
  // The trace.
  uint64_t requested = 0;
  int64_t first_ns = 0;
  int64_t last_ns = 0;
  uint64_t trace_lines = 0;  // 0 for generated traces.
  uint64_t malformed = 0;
  std::vector<TraceLineError> errors;
  // What the middleware did.
  uint64_t upstream = 0;  // Upstream attempts.
  SavedByKind saved;
  uint64_t served = 0;           // Calls answered by another call's upstream result.
  uint64_t labelled_served = 0;  // ... where both calls have intent labels.
  uint64_t wrong = 0;            // ... whose source had another label.
  // Distinct (tool, question, source call) among the wrong answers. A wrong
  // semantic hit is stored under the asker's key, so the asker's wording
  // asked again within the TTL gets the same wrong answer as an exact hit:
  // `wrong` counts every one, this each mistake once. (Past a million
  // distinct pairs, each further wrong answer counts as distinct.)
  uint64_t wrong_distinct = 0;
  std::vector<WrongAnswer> wrong_examples;
  uint64_t retries = 0;
  uint64_t breaker_openings = 0;
  uint64_t rejected_by_breaker = 0;
  uint64_t guard_refusals = 0;
  uint64_t rate_limited = 0;
  // Timeouts and the concurrency limit (counted whatever the policy; shown
  // when a policy sets them or they happened).
  bool timeouts_set = false;         // Some tool's policy has an attempt timeout or deadline.
  bool limit_set = false;            // Some tool's policy has a concurrency limit.
  uint64_t attempt_timeouts = 0;     // Attempts abandoned at the attempt timeout.
  uint64_t deadline_exceeded = 0;    // Calls that failed with DEADLINE_EXCEEDED.
  uint64_t rejected_by_limiter = 0;  // Calls refused by the concurrency limit.
  // The shared tier: empty label when there was none.
  size_t workers = 1;
  std::string shared_store;
  uint64_t shared_hits = 0;       // Fresh hits from the shared store (in saved.exact).
  uint64_t remote_coalesced = 0;  // Shared another worker's call (in saved.coalesced).
  uint64_t failed_with = 0;       // Calls that returned an error through the middleware.
  uint64_t failed_without = 0;    // Calls whose one direct attempt would have failed.
  double cost_without = 0;
  double cost_with = 0;
  // Savings bound: requested calls minus distinct (tool, intent) per TTL
  // window (a call without a label is its own intent: tool and arguments).
  uint64_t ttl_windows = 0;
  uint64_t attainable() const { return requested - ttl_windows; }
  // Latency in trace time: through the middleware, and of the direct call.
  ReplayHistogram latency_with;
  ReplayHistogram latency_without;
  TimeSeries series{0};
  std::vector<ToolReport> tools;
  // The run.
  double speed = 0;
  double wall_seconds = 0;
  size_t peak_threads = 0;
  uint64_t clock_jumps = 0;

  double money_saved() const { return cost_without - cost_with; }
  double saved_ratio() const {
    return requested == 0 ? 0 : static_cast<double>(saved.total()) / requested;
  }
  // Saved calls over the attainable bound (1 when nothing was attainable).
  double bound_ratio() const {
    return attainable() == 0 ? 1.0 : static_cast<double>(saved.total()) / attainable();
  }
  double wrong_ratio() const {
    return labelled_served == 0 ? 0 : static_cast<double>(wrong) / labelled_served;
  }
};

// Replays every call of `source` under `policy`. Returns the source's error
// (a malformed line with OnError::kFail) or the policy's (a tool it cannot
// wrap), or the report. Blocks until every call has finished.
Result<ReplayReport> RunReplay(CallSource& source, const ReplayPolicy& policy,
                               const Simulation& simulation, const ReplayOptions& options);

// The answer a simulated tool returns, decoded (exposed for tests).
struct SimulatedAnswer {
  uint64_t source = 0;  // Sequence number of the call whose upstream made it.
  int64_t done_ns = 0;  // Trace time (clock nanoseconds) when it was made.
  bool labelled = false;
  std::string label;  // Intent label, or the call's identity.
  std::string args;   // The source call's arguments (JSON).
  uint64_t run = 0;   // The replay that made it (a shared store outlives a replay).
};
std::string EncodeAnswer(const SimulatedAnswer& answer);
bool DecodeAnswer(std::string_view bytes, SimulatedAnswer* out);

}  // namespace toolops

#endif  // TOOLOPS_REPLAY_REPLAY_H_
