// src/engine/call_engine.h
//
// CallEngine: the decisions of one tool's calls, as steps that a runner
// drives. The blocking runner (tool_core.cc) and the Asio coroutine runner
// (runner/asio_runner.cc) call the same steps in the same order and differ
// only in how they wait: a thread that sleeps or blocks versus a coroutine
// that suspends on a timer or a channel.
//
//   Lookup        -> fresh hit | stale-while-revalidate | miss (+ stale kept)
//   Recheck       -> a leader's second look before it pays
//   Admit         -> breaker permit (the runner then takes a limiter slot)
//   BeginAttempt / EndAttempt -> counters, budget, breaker outcome
//   NextStep      -> retry after a delay, or stop with the final status
//   StoreResult   -> cache a success
//   Finish        -> stale-if-error, fallback, the one outcome counter
//
// Safe for concurrent use; every member is either constant after
// construction or itself thread-safe.

#ifndef TOOLOPS_ENGINE_CALL_ENGINE_H_
#define TOOLOPS_ENGINE_CALL_ENGINE_H_

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "engine/breaker.h"
#include "engine/flight.h"
#include "engine/limiter.h"
#include "engine/retry.h"
#include "engine/retry_budget.h"
#include "observe/trace.h"
#include "semantic/guard.h"
#include "semantic/vector_index.h"
#include "toolops/embedder.h"
#include "toolops/tool_core.h"

namespace toolops {

// What the upstream attempts of one call need of its telemetry: the parent
// of their spans (set when the call is traced), the caller's call id, and
// the count of attempts made.
struct AttemptTrace {
  std::optional<SpanContext> parent;
  std::string call_id;
  int attempts = 0;
};

class CallEngine {
 public:
  CallEngine(ToolSpec spec, ToolPolicy policy, Environment env, std::shared_ptr<Store> store,
             std::shared_ptr<Store> shared_store = nullptr);

  enum class LookupKind { kFresh, kRevalidate, kMiss };
  struct Lookup {
    LookupKind kind = LookupKind::kMiss;
    // The value served for kFresh and kRevalidate.
    Bytes value;
    // On a miss: an entry still inside its stale-if-error window.
    std::optional<StoredValue> stale;
  };

  // Looks the key up. Counts fresh and stale hits (each is the call's outcome).
  Lookup LookupKey(const KeyRef& key);

  // A fresh hit, counted; nullopt (nothing counted) otherwise. One hit in
  // LatencyHistogram::kHitTimingPeriod per thread is timed, and a hit whose
  // call is sampled for tracing records its span; both leave the lock-free
  // lane for SampledHit.
  bool TryFreshHit(const KeyRef& key, Bytes* out) {
    if (!caching_) return false;
    if (telemetry_ && internal::HitNeedsSlowPath()) [[unlikely]] {
      return SampledHit(key, out, false);
    }
    if (!store_->GetFresh(key, env_.clock->NowCoarse(), out)) {
      NoteUntracedMiss();
      return false;
    }
    stats_.Add(Counter::kFreshHit);
    if (telemetry_) latency_.AddUntimedHit();
    return true;
  }
  // TryFreshHit, then a full read of the local store: a fresh entry there is
  // a hit too (counted). Anything else counts nothing.
  bool TryLocalHit(const KeyRef& key, Bytes* out);

  // A leader's second look: a call that finished between the first lookup and
  // the taking of the lead has stored its result.
  std::optional<Bytes> Recheck(const KeyRef& key);

  // The overall deadline of a call starting now, or TimePoint::max().
  TimePoint DeadlineFromNow() const;

  // Breaker admission for one attempt.
  BreakerPermit Admit() { return breaker_.TryAcquire(); }
  // Longest wait for a limiter slot given the deadline.
  Duration LimiterWait(TimePoint deadline) const;

  // An attempt is starting (after admission and a limiter slot).
  void BeginAttempt(int attempt);
  // An attempt ended: records the breaker outcome and attempt counters.
  void EndAttempt(const BreakerPermit& permit, const Result<Bytes>& result, Duration latency);

  // After a failed attempt: retry (with the wait before it) or stop.
  RetryDecision NextStep(const Status& error, int attempt, TimePoint deadline);
  // The outcome counter of a call whose retries stopped with `decision`.
  static Counter StoppedOutcome(const RetryDecision& decision) {
    return decision.final_status.guard() == Guard::kRetryBudget ? Counter::kRejectedByBudget
                                                                : Counter::kUpstreamError;
  }
  // The status of a call the breaker refused at `attempt`; after the first
  // attempt it also names the error that led to the retry.
  static Status BreakerRejection(const BreakerPermit& permit, int attempt,
                                 const Status& last_error) {
    if (attempt == 1) return permit.rejection;
    return permit.rejection.WithContext("retry stopped (last error: " + last_error.ToString() +
                                        ")");
  }

  // The per-attempt time limit: min(attempt timeout, time to the deadline).
  // Duration::max() when neither applies; zero or less when the deadline has
  // already passed. `deadline_bound` tells which of the two set it.
  Duration AttemptLimit(TimePoint deadline, bool* deadline_bound) const;
  Status AttemptTimedOut(int attempt, Duration limit, bool deadline_bound) const;
  Status DeadlinePassedBeforeAttempt(int attempt) const;
  Status DeadlinePassedWhileWaiting() const;

  // Caches a success in the local store and, when there is one, the shared
  // store.
  void StoreResult(const KeyRef& key, const Bytes& value);

  // The shared tier (cache.shared_store), used by a leader after its local
  // Recheck missed. SharedLookup returns a fresh entry of the shared store
  // (copied into the local store, counted as kSharedHits). EntryFor is the
  // entry a success becomes now; StoreLocal puts one in the local store only
  // (a coordinator's Complete writes the shared one). Null coordinator: no
  // coalescing across processes.
  // StaleEntry is for a failed call that had no stale value of its own: the
  // shared store's entry for the key when it is past its freshness but
  // within stale_if_error (another process's answer that stale-if-error may
  // serve), or nothing. It blocks on the shared store like SharedLookup.
  std::optional<Bytes> SharedLookup(const KeyRef& key);
  std::optional<StoredValue> StaleEntry(const KeyRef& key);
  StoredValue EntryFor(const Bytes& value) const;
  void StoreLocal(const KeyRef& key, const StoredValue& entry);
  Store* shared_store() const { return shared_store_.get(); }

  // The semantic cache (cache.semantic), used by a leader after its Recheck
  // missed. SemanticLookup embeds the query's text (into *vector, for
  // SemanticRemember), searches its partition, passes the candidates above
  // the threshold through the guard, and returns the first whose exact entry
  // is still fresh in the store. SemanticRemember indexes a new answer.
  bool semantic() const { return index_ != nullptr; }
  void EnableSemantic(const Embedder* embedder);
  std::optional<Bytes> SemanticLookup(const SemanticQuery& query, std::vector<float>* vector);
  void SemanticRemember(const SemanticQuery& query, const KeyRef& key,
                        const std::vector<float>& vector);

  // The shared tier of a leader, before and after its upstream call. These
  // block on the shared store (each operation bounded by its timeouts): the
  // coroutine runner calls them off its event loop.
  struct SharedStart {
    // Set when the call is settled without going upstream: a shared hit, the
    // value or error of another process's leader, or the deadline passed
    // while following. `outcome` is then its outcome counter.
    std::optional<Result<Bytes>> settled;
    Counter outcome = Counter::kUpstreamError;
    // Otherwise go upstream; with role kLeader, as the leader for all
    // processes (pass the lease to EndShared).
    FlightCoordinator::Lease lease;
  };
  SharedStart BeginShared(const KeyRef& key, TimePoint deadline);
  // Stores the upstream result in both tiers (through the coordinator when
  // leading: fenced, and waking the followers), or shares the error.
  void EndShared(const KeyRef& key, const FlightCoordinator::Lease& lease,
                 const Result<Bytes>& result);
  FlightCoordinator* coordinator() const { return coordinator_; }

  // Ends a call: applies stale-if-error and the fallback to a failure, and
  // adds the call's one outcome counter (also stored in *final_outcome).
  Result<Bytes> Finish(Result<Bytes> result, Counter outcome, std::optional<StoredValue> stale,
                       Counter* final_outcome = nullptr);

  // The telemetry of one call on the full path: its start (for the latency
  // histogram), its span when sampled, and what its attempts need.
  struct CallRecord {
    TimePoint start;
    internal::Span span;
    AttemptTrace attempts;
    // The call waited for a flight (in this process or another).
    bool followed = false;
  };
  // Starts the record of a call beginning now on this thread: takes the
  // sampling decision (the hit path's, if it took one for this call) and the
  // caller's call id.
  CallRecord BeginCall();
  // Records the latency and ends the span of a call whose final outcome is
  // `outcome`; returns `result`.
  Result<Bytes> EndCall(CallRecord& record, Result<Bytes> result, Counter outcome);
  // Starts the span of one upstream attempt of a traced call (inactive
  // otherwise) and counts the attempt.
  internal::Span BeginAttemptSpan(AttemptTrace* trace, int attempt) const;
  static void EndAttemptSpan(internal::Span& span, const Result<Bytes>& result);

  LatencyHistogram& latency() { return latency_; }

  const ToolSpec& spec() const { return spec_; }
  const ToolPolicy& policy() const { return policy_; }
  const Environment& env() const { return env_; }
  bool caching() const { return caching_; }
  bool coalescing() const { return coalescing_; }
  bool keyed() const { return caching_ || coalescing_; }
  const std::string& key_prefix() const { return key_prefix_; }
  Store* store() const { return store_.get(); }

  FlightTable& flights() { return flights_; }
  CircuitBreaker& breaker() { return breaker_; }
  ConcurrencyLimiter& limiter() { return limiter_; }
  ToolStats& stats() { return stats_; }

  void SetFallback(BytesFallback fallback);
  // See ToolCore::SetStorable. REQUIRES: before the first call.
  void SetStorable(std::function<bool(const Bytes&)> storable) { storable_ = std::move(storable); }
  // Whether a result may be cached: within cache.max_value_bytes and
  // accepted by the storable predicate.
  bool Storable(const Bytes& value) const {
    return value.size() <= policy_.cache.max_value_bytes && (!storable_ || storable_(value));
  }

  // Shares this tool's breaker openings through `store`'s BreakerBus
  // (REQUIRES: it has one): announces local openings, and opens on the
  // announcements of other processes. Once, before the first call.
  void ShareBreaker(std::shared_ptr<Store> store);
  ~CallEngine();

 private:
  bool CountsAsFailure(StatusCode code) const;
  // The hit path after HitNeedsSlowPath: timing, tracing, then the lookup.
  bool SampledHit(const KeyRef& key, Bytes* out, bool full_read);
  // Sets the attributes every call span carries at its end.
  void AnnotateCallSpan(internal::Span& span, Counter outcome, bool coalesced, int attempts,
                        const Result<Bytes>& result) const;
  void NoteUntracedMiss() const {
    if (!telemetry_) return;
    internal::call_sampling.decided_for = this;
    internal::call_sampling.decided_traced = false;
  }

  const ToolSpec spec_;
  const ToolPolicy policy_;
  const Environment env_;
  const std::shared_ptr<Store> store_;
  const std::shared_ptr<Store> shared_store_;
  FlightCoordinator* const coordinator_;
  const bool caching_;
  const bool coalescing_;
  const bool telemetry_;  // policy_.telemetry
  const std::string key_prefix_;
  const Duration stale_window_;

  FlightTable flights_;
  CircuitBreaker breaker_;
  ConcurrencyLimiter limiter_;
  RetryBudget budget_;
  ToolStats stats_;
  LatencyHistogram latency_;

  const Embedder* embedder_ = nullptr;
  std::unique_ptr<VectorIndex> index_;
  MatchGuard guard_;
  // Semantic entries shared through the shared store (when it can carry
  // them): the bus, this tool's id on it, and the follower to remove.
  SemanticBus* semantic_bus_ = nullptr;
  std::string semantic_tool_id_;
  uint64_t semantic_follower_ = 0;

  std::shared_ptr<Store> breaker_store_;  // Keeps the bus alive.
  uint64_t breaker_subscription_ = 0;

  std::function<bool(const Bytes&)> storable_;  // Set before the first call.

  std::mutex fallback_mu_;
  std::shared_ptr<const BytesFallback> fallback_;  // Guarded by fallback_mu_.
};

// Runs one upstream attempt on this thread with CurrentCall() set, turning
// exceptions into statuses.
Result<Bytes> InvokeUpstream(const Upstream& upstream, const CallContext& ctx);

// For runners: the engine behind a ToolCore.
CallEngine& EngineOf(ToolCore& core);

}  // namespace toolops

#endif  // TOOLOPS_ENGINE_CALL_ENGINE_H_
