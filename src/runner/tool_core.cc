// src/runner/tool_core.cc
//
// ToolCore and its blocking runner. The caller's thread drives the engine's
// steps; it sleeps between retries on the injected clock, blocks on the
// flight of a key another thread leads, and blocks on the limiter (in the
// clock's time). Attempts with a time limit run on the executor so that the
// caller can stop waiting (in the clock's time too);
// a background refresh runs on the executor too.

#include "toolops/tool_core.h"

#include <condition_variable>
#include <mutex>
#include <string>

#include "engine/call_engine.h"
#include "observe/registry.h"

namespace toolops {
namespace {

// The bundled model, loaded once for the whole process (about 8 MB).
Result<const Embedder*> BundledEmbedder() {
  static Result<std::unique_ptr<Embedder>>* loaded =
      new Result<std::unique_ptr<Embedder>>(LoadStaticEmbedder(DefaultModelDirectory()));
  if (!loaded->ok()) return loaded->status();
  return static_cast<const Embedder*>(loaded->value().get());
}

// Where a timed attempt running on the executor meets the caller waiting for
// it. Shared by both; whoever finishes last frees it.
struct TimedAttempt {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Result<Bytes>> result;
  std::atomic<bool> abandoned{false};
};

// `span` (null when not traced) becomes the parent of the calls the tool
// makes to other wrapped tools while the attempt runs.
Result<Bytes> RunOneAttempt(CallEngine& engine, const std::shared_ptr<const Upstream>& upstream,
                            int attempt, TimePoint deadline, std::string_view call_id,
                            const SpanContext* span) {
  bool deadline_bound = false;
  Duration limit = engine.AttemptLimit(deadline, &deadline_bound);
  if (limit <= Duration::zero()) return engine.DeadlinePassedBeforeAttempt(attempt);

  // No time limit: the attempt runs on the caller's thread.
  if (limit == Duration::max()) {
    std::atomic<bool> abandoned{false};
    CallContext ctx{engine.spec().name, attempt, deadline, &abandoned, call_id};
    internal::ScopedCurrentSpan current(span);
    return InvokeUpstream(*upstream, ctx);
  }

  // Timed: run on the executor and wait at most `limit` of the environment's
  // clock. An abandoned attempt finishes in the background and its result is
  // dropped.
  auto timed = std::make_shared<TimedAttempt>();
  std::optional<SpanContext> parent;
  if (span != nullptr) parent = *span;
  engine.env().executor->Submit([timed, upstream, tool = engine.spec().name, attempt, deadline,
                                 id = std::string(call_id), parent] {
    CallContext ctx{tool, attempt, deadline, &timed->abandoned, id};
    internal::ScopedCurrentSpan current(parent ? &*parent : nullptr);
    Result<Bytes> r = InvokeUpstream(*upstream, ctx);
    std::lock_guard<std::mutex> lock(timed->mu);
    timed->result.emplace(std::move(r));
    timed->cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(timed->mu);
  if (engine.env().clock->WaitFor(lock, timed->cv, limit,
                                  [&] { return timed->result.has_value(); })) {
    return std::move(*timed->result);
  }
  timed->abandoned.store(true, std::memory_order_relaxed);
  return engine.AttemptTimedOut(attempt, limit, deadline_bound);
}

// All attempts of one upstream call: admission, attempt, retry decision.
// `trace` (null for a background refresh) counts the attempts and parents
// their spans.
Result<Bytes> RunAttempts(CallEngine& engine, const Upstream& upstream, TimePoint deadline,
                          Counter* outcome, AttemptTrace* trace) {
  auto shared_upstream = std::make_shared<const Upstream>(upstream);
  Status last_error;
  for (int attempt = 1;; ++attempt) {
    // Admission: the breaker, then a concurrency slot. Every attempt, retries
    // included, passes both.
    BreakerPermit permit = engine.Admit();
    if (!permit.allowed) {
      *outcome = Counter::kRejectedByBreaker;
      return CallEngine::BreakerRejection(permit, attempt, last_error);
    }
    if (Status slot =
            engine.limiter().AcquireBlocking(engine.LimiterWait(deadline), engine.env().clock);
        !slot.ok()) {
      engine.breaker().OnIgnored(permit.generation);
      *outcome = Counter::kRejectedByLimiter;
      return slot;
    }
    engine.BeginAttempt(attempt);
    internal::Span span = engine.BeginAttemptSpan(trace, attempt);
    SpanContext span_context = span.context();
    TimePoint started = engine.env().clock->Now();
    Result<Bytes> result =
        RunOneAttempt(engine, shared_upstream, attempt, deadline,
                      trace != nullptr ? std::string_view(trace->call_id) : std::string_view(),
                      span.active() ? &span_context : nullptr);
    engine.limiter().Release();
    engine.EndAttempt(permit, result, engine.env().clock->Now() - started);
    CallEngine::EndAttemptSpan(span, result);
    if (result.ok()) {
      *outcome = Counter::kUpstreamSuccess;
      return result;
    }

    last_error = result.status();
    RetryDecision decision = engine.NextStep(last_error, attempt, deadline);
    if (!decision.retry) {
      *outcome = CallEngine::StoppedOutcome(decision);
      return decision.final_status;
    }
    engine.env().clock->SleepFor(decision.delay);
  }
}

// The shared tier of a leader: the shared store, then (when it coordinates)
// the key's lease across processes: follow another process's leader, or
// lead for all of them.
Result<Bytes> LeadShared(CallEngine& engine, const KeyRef& key, const Upstream& upstream,
                         TimePoint deadline, Counter* outcome, CallEngine::CallRecord& record) {
  CallEngine::SharedStart start = engine.BeginShared(key, deadline);
  if (start.settled) {
    *outcome = start.outcome;
    if (start.outcome == Counter::kCoalesced) record.followed = true;
    return std::move(*start.settled);
  }
  Result<Bytes> result = RunAttempts(engine, upstream, deadline, outcome, &record.attempts);
  engine.EndShared(key, start.lease, result);
  return result;
}

// Leads one upstream call for `key`: a second look at the store, the
// semantic cache if any, then the shared tier if any, then the attempts,
// then the result stored.
Result<Bytes> Lead(CallEngine& engine, const KeyRef& key, const SemanticQuery* semantic,
                   const Upstream& upstream, TimePoint deadline, Counter* outcome,
                   CallEngine::CallRecord& record) {
  if (std::optional<Bytes> stored = engine.Recheck(key)) {
    *outcome = Counter::kFreshHit;
    return std::move(*stored);
  }
  std::vector<float> vector;
  if (semantic != nullptr && engine.semantic()) {
    if (std::optional<Bytes> similar = engine.SemanticLookup(*semantic, &vector)) {
      // Kept under this call's own key too: the same question again is an
      // exact hit.
      engine.StoreLocal(key, engine.EntryFor(*similar));
      *outcome = Counter::kSemanticHit;
      return std::move(*similar);
    }
  }
  Result<Bytes> result = Status();
  if (engine.shared_store() != nullptr) {
    result = LeadShared(engine, key, upstream, deadline, outcome, record);
  } else {
    result = RunAttempts(engine, upstream, deadline, outcome, &record.attempts);
    if (result.ok()) engine.StoreResult(key, result.value());
  }
  if (result.ok() && semantic != nullptr && *outcome == Counter::kUpstreamSuccess) {
    engine.SemanticRemember(*semantic, key, vector);
  }
  return result;
}

// Starts the one background refresh of `key`, unless a call for it is already
// in flight (that call will store a fresh value).
void StartRefresh(ToolCore& core, const KeyRef& key, Upstream upstream) {
  CallEngine& engine = EngineOf(core);
  FlightTable::Joined joined = engine.flights().JoinOrLead(key);
  if (joined.flight == nullptr || !joined.leader) return;
  engine.stats().Add(Counter::kBackgroundRefresh);
  // The task keeps the core alive until the refresh has finished.
  engine.env().executor->Submit([core = core.shared_from_this(), owned_key = std::string(key.bytes),
                                 hash = key.hash, upstream = std::move(upstream),
                                 flight = std::move(joined.flight)] {
    CallEngine& engine = EngineOf(*core);
    KeyRef key{owned_key, hash};
    Counter ignored;
    Result<Bytes> result =
        RunAttempts(engine, upstream, engine.DeadlineFromNow(), &ignored, nullptr);
    if (result.ok()) engine.StoreResult(key, result.value());
    engine.flights().Finish(key, flight, std::move(result));
  });
}

}  // namespace

CallEngine& EngineOf(ToolCore& core) { return *core.engine_; }

Result<Bytes> ToolCore::Call(const KeyRef& key, FunctionRef<Upstream()> make_upstream) {
  return Call(key, nullptr, make_upstream);
}

bool ToolCore::semantic() const { return engine_->semantic(); }

Result<Bytes> ToolCore::Call(const KeyRef& key, const SemanticQuery* semantic,
                             FunctionRef<Upstream()> make_upstream) {
  CallEngine& engine = *engine_;
  CallEngine::CallRecord record = engine.BeginCall();

  // Lookup: a fresh hit ends here.
  CallEngine::Lookup found = engine.LookupKey(key);
  if (found.kind == CallEngine::LookupKind::kFresh) {
    return engine.EndCall(record, std::move(found.value), Counter::kFreshHit);
  }
  if (found.kind == CallEngine::LookupKind::kRevalidate) {
    StartRefresh(*this, key, make_upstream());
    return engine.EndCall(record, std::move(found.value), Counter::kStaleHit);
  }

  // Miss: lead the key's flight or wait for it.
  Upstream upstream = make_upstream();
  TimePoint deadline = engine.DeadlineFromNow();
  Counter outcome = Counter::kUpstreamError;
  Result<Bytes> result = Status();
  FlightTable::Joined joined;
  if (engine.coalescing()) {
    joined = engine.flights().JoinOrLead(key);
    if (joined.flight == nullptr) engine.stats().Add(Counter::kFlightOverflow);
  }
  if (joined.flight != nullptr && !joined.leader) {
    record.followed = true;
    Duration wait =
        deadline == TimePoint::max() ? Duration::max() : deadline - engine.env().clock->Now();
    std::optional<Result<Bytes>> shared;
    if (wait > Duration::zero()) {
      engine.flights().AddWaiter();
      shared = joined.flight->WaitFor(wait);
      engine.flights().RemoveWaiter();
    }
    if (shared) {
      result = std::move(*shared);
      // A shared failure saved nothing: it counts as the error it is.
      outcome = result.ok() ? Counter::kCoalesced : Counter::kUpstreamError;
    } else {
      result = engine.DeadlinePassedWhileWaiting();
    }
  } else {
    result = Lead(engine, key, semantic, upstream, deadline, &outcome, record);
    if (joined.flight != nullptr) engine.flights().Finish(key, joined.flight, result);
  }
  if (!result.ok() && !found.stale && engine.shared_store() != nullptr) {
    // Another process's answer, past its freshness, that the shared store
    // has for this key: stale-if-error may serve it.
    found.stale = engine.StaleEntry(key);
  }
  Counter final_outcome;
  result = engine.Finish(std::move(result), outcome, std::move(found.stale), &final_outcome);
  return engine.EndCall(record, std::move(result), final_outcome);
}

Result<Bytes> ToolCore::CallWithoutKey(FunctionRef<Upstream()> make_upstream) {
  CallEngine& engine = *engine_;
  CallEngine::CallRecord record = engine.BeginCall();
  if (engine.keyed()) engine.stats().Add(Counter::kNotCached);
  Counter outcome = Counter::kUpstreamError;
  Result<Bytes> result =
      RunAttempts(engine, make_upstream(), engine.DeadlineFromNow(), &outcome, &record.attempts);
  Counter final_outcome;
  result = engine.Finish(std::move(result), outcome, std::nullopt, &final_outcome);
  return engine.EndCall(record, std::move(result), final_outcome);
}

Result<std::shared_ptr<ToolCore>> ToolCore::Create(ToolSpec spec, ToolPolicy policy,
                                                   Environment env) {
  if (Status s = Validate(spec, policy); !s.ok()) return s;
  if (env.clock == nullptr || env.random == nullptr || env.stores == nullptr ||
      env.executor == nullptr) {
    return Status(StatusCode::kInvalidArgument,
                  "tool '" + spec.name +
                      "': the environment has a null clock, random source, store registry or "
                      "executor",
                  Guard::kPolicy);
  }
  std::shared_ptr<Store> store;
  std::shared_ptr<Store> shared_store;
  if (policy.kind == ToolKind::kReadonly && policy.cache.enabled) {
    Result<std::shared_ptr<Store>> found = env.stores->Get(policy.cache.store);
    if (!found.ok()) return found.status().WithContext("tool '" + spec.name + "'");
    store = std::move(found).value();
    if (!policy.cache.shared_store.empty()) {
      Result<std::shared_ptr<Store>> shared = env.stores->Get(policy.cache.shared_store);
      if (!shared.ok()) {
        return shared.status().WithContext("tool '" + spec.name + "' (cache.shared_store)");
      }
      shared_store = std::move(shared).value();
    }
  }
  std::shared_ptr<Store> breaker_store;
  if (!policy.breaker.shared_store.empty()) {
    Result<std::shared_ptr<Store>> found = env.stores->Get(policy.breaker.shared_store);
    if (!found.ok()) {
      return found.status().WithContext("tool '" + spec.name + "' (breaker.shared_store)");
    }
    breaker_store = std::move(found).value();
    if (breaker_store->breaker_bus() == nullptr) {
      return Status(StatusCode::kInvalidArgument,
                    "tool '" + spec.name + "': breaker.shared_store names store '" +
                        policy.breaker.shared_store +
                        "', which cannot share breaker state; name a Redis store",
                    Guard::kPolicy);
    }
  }
  auto engine = std::make_unique<CallEngine>(std::move(spec), std::move(policy), env,
                                             std::move(store), std::move(shared_store));
  if (breaker_store != nullptr) engine->ShareBreaker(std::move(breaker_store));
  if (engine->caching() && !engine->policy().cache.semantic.params.empty()) {
    const Embedder* embedder = env.embedder;
    if (embedder == nullptr) {
      Result<const Embedder*> bundled = BundledEmbedder();
      if (!bundled.ok()) {
        return bundled.status().WithContext("tool '" + engine->spec().name +
                                            "' (cache.semantic needs an embedder)");
      }
      embedder = *bundled;
    }
    engine->EnableSemantic(embedder);
  }
  internal::EnsureTracingFromEnv();
  auto core = std::shared_ptr<ToolCore>(new ToolCore(std::move(engine)));
  internal::RegisterTool(core);
  return core;
}

namespace {
std::atomic<uint64_t> next_core_id{1};
}  // namespace

ToolCore::ToolCore(std::unique_ptr<CallEngine> engine)
    : engine_(std::move(engine)), id_(next_core_id.fetch_add(1, std::memory_order_relaxed)) {}
ToolCore::~ToolCore() { internal::UnregisterTool(this); }

bool ToolCore::TryFreshHit(const KeyRef& key, Bytes* out) { return engine_->TryFreshHit(key, out); }
HistogramSnapshot ToolCore::latency() const { return engine_->latency().Snapshot(); }

const ToolSpec& ToolCore::spec() const { return engine_->spec(); }
const ToolPolicy& ToolCore::policy() const { return engine_->policy(); }
bool ToolCore::caching() const { return engine_->caching(); }
bool ToolCore::keyed() const { return engine_->keyed(); }
const std::string& ToolCore::key_prefix() const { return engine_->key_prefix(); }
void ToolCore::SetFallback(BytesFallback fallback) { engine_->SetFallback(std::move(fallback)); }

void ToolCore::SetStorable(std::function<bool(const Bytes&)> storable) {
  engine_->SetStorable(std::move(storable));
}

bool ToolCore::TryLocalHit(const KeyRef& key, Bytes* out) { return engine_->TryLocalHit(key, out); }
StatsSnapshot ToolCore::stats() const { return engine_->stats().Snapshot(); }
std::string_view ToolCore::breaker_state() const {
  return BreakerStateName(engine_->breaker().state());
}
uint64_t ToolCore::breaker_transitions() const { return engine_->breaker().transitions(); }
size_t ToolCore::flights() const { return engine_->flights().size(); }
size_t ToolCore::waiting() const { return engine_->flights().waiting(); }

size_t ToolCore::ClearCache() {
  if (!engine_->caching()) return 0;
  size_t erased = engine_->store()->EraseByPrefix(engine_->key_prefix());
  if (Store* shared = engine_->shared_store()) {
    erased += shared->EraseByPrefix(engine_->key_prefix());
  }
  return erased;
}

}  // namespace toolops
