// src/engine/call_engine.cc

#include "engine/call_engine.h"

#include "semantic/shared_entry.h"
#include "store/envelope.h"

#include "base/format.h"

#include <algorithm>
#include <cstring>
#include <string>

#include <utf8proc.h>

#include "toolops/args.h"

namespace toolops {
namespace {

thread_local const CallContext* current_call = nullptr;

// Sets CurrentCall() for the duration of one attempt on this thread.
class ScopedCall {
 public:
  explicit ScopedCall(const CallContext* ctx) : previous_(current_call) { current_call = ctx; }
  ~ScopedCall() { current_call = previous_; }
  ScopedCall(const ScopedCall&) = delete;
  ScopedCall& operator=(const ScopedCall&) = delete;

 private:
  const CallContext* previous_;
};

// "name NUL version US k<format> [u<unicode>] NUL". The version field also
// carries the argument encoding's format version and, when strings are
// normalised, the Unicode version of utf8proc: a library upgrade that changes
// how keys are written then makes new keys (misses), never mixed ones.
std::string KeyPrefix(const ToolSpec& spec, const ToolPolicy& policy) {
  std::string prefix = spec.name;
  prefix.push_back('\0');
  prefix += spec.version;
  prefix += "\x1fk";
  prefix += std::to_string(kArgEncodingVersion);
  if (policy.cache.normalization != TextNormalization::kNone) {
    prefix += 'u';
    prefix += utf8proc_unicode_version();
  }
  prefix.push_back('\0');
  return prefix;
}

}  // namespace

const CallContext* CurrentCall() { return current_call; }

Result<Bytes> InvokeUpstream(const Upstream& upstream, const CallContext& ctx) {
  ScopedCall scoped(&ctx);
  try {
    return upstream(ctx);
  } catch (const ToolError& e) {
    return e.status();
  } catch (const std::exception& e) {
    return Status(StatusCode::kUnknown, std::string("tool threw: ") + e.what(), Guard::kUpstream);
  } catch (...) {
    return Status(StatusCode::kUnknown, "tool threw a non-standard exception", Guard::kUpstream);
  }
}

CallEngine::CallEngine(ToolSpec spec, ToolPolicy policy, Environment env,
                       std::shared_ptr<Store> store, std::shared_ptr<Store> shared_store)
    : spec_(std::move(spec)),
      policy_(std::move(policy)),
      env_(env),
      store_(std::move(store)),
      shared_store_(store_ != nullptr ? std::move(shared_store) : nullptr),
      coordinator_(shared_store_ != nullptr && policy_.kind == ToolKind::kReadonly &&
                           policy_.coalesce.enabled && policy_.coalesce.across_processes
                       ? shared_store_->coordinator()
                       : nullptr),
      caching_(store_ != nullptr),
      coalescing_(policy_.kind == ToolKind::kReadonly && policy_.coalesce.enabled),
      telemetry_(policy_.telemetry),
      key_prefix_(KeyPrefix(spec_, policy_)),
      stale_window_(std::max(policy_.cache.stale_while_revalidate, policy_.cache.stale_if_error)),
      flights_(std::max<size_t>(policy_.coalesce.max_flights, 1)),
      breaker_(spec_.name, policy_.breaker, env_.clock),
      limiter_(spec_.name, policy_.limit),
      budget_(policy_.retry, env_.clock) {}

CallEngine::~CallEngine() {
  if (breaker_store_ != nullptr) breaker_store_->breaker_bus()->Unsubscribe(breaker_subscription_);
  if (semantic_bus_ != nullptr) semantic_bus_->Unfollow(semantic_follower_);
}

namespace {

// One id per tool name and version, whatever the process.
std::string SharedToolId(const ToolSpec& spec) {
  return Sha256Hex(spec.name + std::string(1, '\0') + spec.version, 8);
}

// What the vector index keeps with an entry: the exact key's length (4
// bytes), the key, the question.
std::string IndexPayload(std::string_view key, std::string_view question) {
  std::string payload(4, '\0');
  uint32_t key_size = static_cast<uint32_t>(key.size());
  std::memcpy(payload.data(), &key_size, 4);
  payload.append(key);
  payload.append(question);
  return payload;
}

}  // namespace

void CallEngine::ShareBreaker(std::shared_ptr<Store> store) {
  BreakerBus* bus = store->breaker_bus();
  std::string tool_id = SharedToolId(spec_);
  Clock* clock = env_.clock;
  CircuitBreaker* breaker = &breaker_;
  breaker_.SetListener(
      [bus, tool_id, clock, breaker](BreakerState, BreakerState to, std::string_view reason) {
        if (to != BreakerState::kOpen || reason.starts_with(CircuitBreaker::kPeerReasonPrefix))
          return;
        int64_t until = SteadyToUnixNanos(breaker->open_until(), clock->Now(), UnixNowNanos());
        bus->AnnounceOpen(tool_id, until, reason);
      });
  breaker_subscription_ =
      bus->Subscribe(tool_id, [breaker, clock](int64_t until_unix_ns, std::string_view reason) {
        TimePoint until = UnixNanosToSteady(until_unix_ns, clock->Now(), UnixNowNanos());
        breaker->OpenFromPeer(until, reason);
      });
  breaker_store_ = std::move(store);
}

CallEngine::Lookup CallEngine::LookupKey(const KeyRef& key) {
  Lookup out;
  if (!caching_) return out;
  TimePoint now = env_.clock->NowCoarse();
  std::optional<StoredValue> entry = store_->Get(key, now);
  if (!entry) return out;
  if (now < entry->fresh_until) {
    stats_.Add(Counter::kFreshHit);
    out.kind = LookupKind::kFresh;
    out.value = std::move(entry->value);
  } else if (now < entry->fresh_until + policy_.cache.stale_while_revalidate) {
    stats_.Add(Counter::kStaleHit);
    out.kind = LookupKind::kRevalidate;
    out.value = std::move(entry->value);
  } else if (now < entry->fresh_until + policy_.cache.stale_if_error) {
    out.stale = std::move(entry);
  }
  return out;
}

bool CallEngine::TryLocalHit(const KeyRef& key, Bytes* out) {
  if (!caching_) return false;
  if (telemetry_ && internal::HitNeedsSlowPath()) [[unlikely]] {
    return SampledHit(key, out, true);
  }
  TimePoint now = env_.clock->NowCoarse();
  if (!store_->GetFresh(key, now, out)) {
    std::optional<StoredValue> entry = store_->Get(key, now);
    if (!entry || now >= entry->fresh_until) {
      NoteUntracedMiss();
      return false;
    }
    *out = std::move(entry->value);
  }
  stats_.Add(Counter::kFreshHit);
  if (telemetry_) latency_.AddUntimedHit();
  return true;
}

bool CallEngine::SampledHit(const KeyRef& key, Bytes* out, bool full_read) {
  internal::HitDecision decision = internal::DecideHit();
  internal::Span span;
  TimePoint start;
  if (decision.traced) {
    span.Start("execute_tool " + spec_.name, internal::current_parent);
  }
  if (decision.timed || decision.traced) start = env_.clock->Now();
  TimePoint now = env_.clock->NowCoarse();
  bool hit = store_->GetFresh(key, now, out);
  if (!hit && full_read) {
    std::optional<StoredValue> entry = store_->Get(key, now);
    if (entry && now < entry->fresh_until) {
      *out = std::move(entry->value);
      hit = true;
    }
  }
  if (!hit) {
    // The full call that follows honours this decision rather than drawing
    // again; its own span replaces this one.
    span.Discard();
    internal::call_sampling.decided_for = this;
    internal::call_sampling.decided_traced = decision.traced;
    return false;
  }
  stats_.Add(Counter::kFreshHit);
  if (decision.timed || decision.traced) {
    latency_.RecordHit(env_.clock->Now() - start);
  } else {
    latency_.AddUntimedHit();
  }
  if (span.active()) {
    if (internal::current_call_id != nullptr) {
      span.Set("gen_ai.tool.call.id", *internal::current_call_id);
    }
    if (internal::RecordArguments() && internal::current_args != nullptr) {
      span.Set("gen_ai.tool.call.arguments", (*internal::current_args)());
    }
    AnnotateCallSpan(span, Counter::kFreshHit, false, 0, Result<Bytes>(*out));
  }
  return true;
}

CallEngine::CallRecord CallEngine::BeginCall() {
  CallRecord record;
  if (telemetry_) record.start = env_.clock->Now();
  if (telemetry_ && internal::DecideTraced(this)) {
    record.span.Start("execute_tool " + spec_.name, internal::current_parent);
    if (internal::RecordArguments() && internal::current_args != nullptr) {
      record.span.Set("gen_ai.tool.call.arguments", (*internal::current_args)());
    }
    record.attempts.parent = record.span.context();
  }
  // Consumed: a tool this call calls in turn is not given them.
  internal::current_args = nullptr;
  if (internal::current_call_id != nullptr) {
    record.attempts.call_id = *internal::current_call_id;
    internal::current_call_id = nullptr;
    record.span.Set("gen_ai.tool.call.id", record.attempts.call_id);
  }
  return record;
}

Result<Bytes> CallEngine::EndCall(CallRecord& record, Result<Bytes> result, Counter outcome) {
  if (!telemetry_) return result;
  Duration latency = env_.clock->Now() - record.start;
  if (outcome == Counter::kFreshHit) {
    latency_.RecordHit(latency);
  } else {
    latency_.Record(latency);
  }
  if (record.span.active()) {
    AnnotateCallSpan(record.span, outcome, record.followed || outcome == Counter::kCoalesced,
                     record.attempts.attempts, result);
  }
  return result;
}

void CallEngine::AnnotateCallSpan(internal::Span& span, Counter outcome, bool coalesced,
                                  int attempts, const Result<Bytes>& result) const {
  span.Set("gen_ai.operation.name", "execute_tool");
  span.Set("gen_ai.tool.name", spec_.name);
  std::string_view cache = "miss";
  if (!caching_) {
    cache = "disabled";
  } else if (outcome == Counter::kFreshHit) {
    cache = "fresh";
  } else if (outcome == Counter::kSemanticHit) {
    cache = "semantic";
  } else if (outcome == Counter::kStaleHit) {
    cache = "stale";
  } else if (outcome == Counter::kStaleIfError) {
    cache = "stale_if_error";
  }
  span.Set("toolops.cache.result", std::string(cache));
  span.Set("toolops.coalesced", coalesced);
  span.Set("toolops.attempts", static_cast<int64_t>(attempts));
  span.Set("toolops.breaker.state", std::string(BreakerStateName(breaker_.state())));
  span.Set("toolops.outcome", std::string(CounterName(outcome)));
  if (!result.ok()) {
    span.SetError(StatusCodeName(result.status().code()), result.status().ToString());
    span.Set("toolops.error.guard", std::string(GuardName(result.status().guard())));
  } else if (internal::RecordArguments()) {
    span.Set("gen_ai.tool.call.result", internal::DescribeResult(result.value()));
  }
  span.End();
}

internal::Span CallEngine::BeginAttemptSpan(AttemptTrace* trace, int attempt) const {
  internal::Span span;
  if (trace == nullptr) return span;
  ++trace->attempts;
  if (!trace->parent) return span;
  span.Start("upstream_attempt " + spec_.name, &*trace->parent);
  span.Set("gen_ai.tool.name", spec_.name);
  span.Set("toolops.attempt", static_cast<int64_t>(attempt));
  return span;
}

void CallEngine::EndAttemptSpan(internal::Span& span, const Result<Bytes>& result) {
  if (!span.active()) return;
  if (!result.ok()) {
    span.SetError(StatusCodeName(result.status().code()), result.status().ToString());
  }
  span.End();
}

std::optional<Bytes> CallEngine::Recheck(const KeyRef& key) {
  if (!caching_) return std::nullopt;
  TimePoint now = env_.clock->Now();
  std::optional<StoredValue> entry = store_->Get(key, now);
  if (entry && now < entry->fresh_until) return std::move(entry->value);
  return std::nullopt;
}

TimePoint CallEngine::DeadlineFromNow() const {
  return policy_.timeout.deadline > Duration::zero() ? env_.clock->Now() + policy_.timeout.deadline
                                                     : TimePoint::max();
}

Duration CallEngine::LimiterWait(TimePoint deadline) const {
  Duration wait = policy_.limit.max_wait;
  if (deadline != TimePoint::max()) {
    wait = std::min(wait, std::max(Duration::zero(), deadline - env_.clock->Now()));
  }
  return wait;
}

void CallEngine::BeginAttempt(int attempt) {
  if (attempt == 1) {
    budget_.RecordAttempt();
  } else {
    stats_.Add(Counter::kRetries);
  }
  stats_.Add(Counter::kAttempts);
}

void CallEngine::EndAttempt(const BreakerPermit& permit, const Result<Bytes>& result,
                            Duration latency) {
  if (result.ok()) {
    breaker_.OnSuccess(permit.generation, latency);
    return;
  }
  const Status& error = result.status();
  if (error.guard() == Guard::kAttemptTimeout) stats_.Add(Counter::kAttemptTimeouts);
  if (error.code() == StatusCode::kCancelled) {
    breaker_.OnIgnored(permit.generation);
  } else if (CountsAsFailure(error.code())) {
    breaker_.OnFailure(permit.generation, latency);
  } else {
    // A definitive answer (NotFound, InvalidArgument, ...) means the tool works.
    breaker_.OnSuccess(permit.generation, latency);
  }
}

RetryDecision CallEngine::NextStep(const Status& error, int attempt, TimePoint deadline) {
  return DecideRetry(spec_.name, policy_.retry, error, attempt, env_.clock->Now(), deadline,
                     &budget_, *env_.random);
}

Duration CallEngine::AttemptLimit(TimePoint deadline, bool* deadline_bound) const {
  Duration limit = policy_.timeout.attempt_timeout > Duration::zero()
                       ? policy_.timeout.attempt_timeout
                       : Duration::max();
  *deadline_bound = false;
  if (deadline != TimePoint::max()) {
    Duration remaining = deadline - env_.clock->Now();
    if (remaining < limit) {
      limit = remaining;
      *deadline_bound = true;
    }
  }
  return limit;
}

Status CallEngine::AttemptTimedOut(int attempt, Duration limit, bool deadline_bound) const {
  if (deadline_bound) {
    return Status(StatusCode::kDeadlineExceeded,
                  "tool '" + spec_.name + "': attempt " + std::to_string(attempt) +
                      " was still running when the deadline of " +
                      FormatDuration(policy_.timeout.deadline) + " passed",
                  Guard::kDeadline);
  }
  return Status(StatusCode::kDeadlineExceeded,
                "tool '" + spec_.name + "': attempt " + std::to_string(attempt) +
                    " took longer than the attempt timeout of " + FormatDuration(limit),
                Guard::kAttemptTimeout);
}

Status CallEngine::DeadlinePassedBeforeAttempt(int attempt) const {
  return Status(StatusCode::kDeadlineExceeded,
                "tool '" + spec_.name + "': the deadline of " +
                    FormatDuration(policy_.timeout.deadline) + " passed before attempt " +
                    std::to_string(attempt) + " could start",
                Guard::kDeadline);
}

Status CallEngine::DeadlinePassedWhileWaiting() const {
  return Status(StatusCode::kDeadlineExceeded,
                "tool '" + spec_.name + "': the deadline of " +
                    FormatDuration(policy_.timeout.deadline) +
                    " passed while waiting for an identical call in flight",
                Guard::kDeadline);
}

StoredValue CallEngine::EntryFor(const Bytes& value) const {
  TimePoint now = env_.clock->Now();
  return StoredValue{value, now + policy_.cache.ttl, now + policy_.cache.ttl + stale_window_};
}

void CallEngine::StoreLocal(const KeyRef& key, const StoredValue& entry) {
  if (!caching_) return;
  if (!Storable(entry.value)) {
    stats_.Add(Counter::kNotCached);
    return;
  }
  Status status = store_->Put(key, entry, env_.clock->Now());
  if (!status.ok()) {
    stats_.Add(status.code() == StatusCode::kResourceExhausted ? Counter::kNotCached
                                                               : Counter::kStoreErrors);
  }
}

void CallEngine::StoreResult(const KeyRef& key, const Bytes& value) {
  if (!caching_) return;
  StoredValue entry = EntryFor(value);
  StoreLocal(key, entry);
  if (shared_store_ != nullptr && Storable(value)) {
    Status status = shared_store_->Put(key, entry, env_.clock->Now());
    if (!status.ok()) stats_.Add(Counter::kStoreErrors);
  }
}

CallEngine::SharedStart CallEngine::BeginShared(const KeyRef& key, TimePoint deadline) {
  SharedStart start;
  auto settle = [&](Result<Bytes> result, Counter outcome) {
    start.settled.emplace(std::move(result));
    start.outcome = outcome;
    start.lease = FlightCoordinator::Lease{};
    return start;
  };
  if (std::optional<Bytes> hit = SharedLookup(key))
    return settle(std::move(*hit), Counter::kFreshHit);
  FlightCoordinator* coordinator = coordinator_;
  while (coordinator != nullptr) {
    start.lease = coordinator->Acquire(key);
    if (start.lease.role == FlightCoordinator::Role::kLeader) {
      // A second look: a leader that completed between our lookup and our
      // lease wrote its value before releasing the lease.
      if (std::optional<Bytes> hit = SharedLookup(key)) {
        coordinator->Release(key, start.lease.token);
        return settle(std::move(*hit), Counter::kFreshHit);
      }
      return start;
    }
    if (start.lease.role == FlightCoordinator::Role::kUnavailable) return start;
    FlightCoordinator::WaitResult waited = coordinator->Wait(key, start.lease, deadline);
    switch (waited.kind) {
      case FlightCoordinator::WaitResult::kValue:
        StoreLocal(key, *waited.value);
        stats_.Add(Counter::kRemoteCoalesced);
        return settle(std::move(waited.value->value), Counter::kCoalesced);
      case FlightCoordinator::WaitResult::kError:
        // A shared failure saved nothing: it counts as the error it is.
        return settle(std::move(waited.error), Counter::kUpstreamError);
      case FlightCoordinator::WaitResult::kTimedOut:
        return settle(DeadlinePassedWhileWaiting(), Counter::kUpstreamError);
      case FlightCoordinator::WaitResult::kLeaseGone:
        // The leader ended without a result (it died): take over, unless a
        // value has appeared meanwhile.
        if (std::optional<Bytes> hit = SharedLookup(key)) {
          return settle(std::move(*hit), Counter::kFreshHit);
        }
        continue;
      case FlightCoordinator::WaitResult::kUnavailable:
        start.lease = FlightCoordinator::Lease{};
        return start;
    }
  }
  return start;
}

void CallEngine::EndShared(const KeyRef& key, const FlightCoordinator::Lease& lease,
                           const Result<Bytes>& result) {
  if (lease.role != FlightCoordinator::Role::kLeader) {
    if (result.ok()) StoreResult(key, result.value());
    return;
  }
  // The leader writes the shared entry through the coordinator (fenced) and
  // wakes the followers with the value or the error.
  TimePoint now = env_.clock->Now();
  if (!result.ok()) {
    coordinator_->Complete(key, lease.token, result.status(), now);
    return;
  }
  StoredValue entry = EntryFor(result.value());
  StoreLocal(key, entry);
  if (Storable(entry.value)) {
    coordinator_->Complete(key, lease.token, entry, now);
  } else {
    coordinator_->Release(key, lease.token);  // Too large to share.
  }
}

void CallEngine::EnableSemantic(const Embedder* embedder) {
  embedder_ = embedder;
  VectorIndexOptions options;
  options.dims = embedder->dims();
  options.max_per_partition = policy_.cache.semantic.max_per_partition;
  index_ = std::make_unique<VectorIndex>(options);
  if (shared_store_ == nullptr || shared_store_->semantic_bus() == nullptr) return;
  // Entries other processes learn join this process's index (and the ones
  // already shared, at once): their answers are read from the shared store.
  semantic_bus_ = shared_store_->semantic_bus();
  semantic_tool_id_ = SharedToolId(spec_);
  semantic_follower_ = semantic_bus_->Follow(
      semantic_tool_id_, [this](std::string_view bytes, int64_t expires_unix_ns) {
        std::optional<SemanticEntry> entry = DecodeSemanticEntry(bytes, embedder_->dims());
        if (!entry) return;
        TimePoint now = env_.clock->Now();
        TimePoint expires = UnixNanosToSteady(expires_unix_ns, now, UnixNowNanos());
        if (expires <= now) return;
        index_->Insert(entry->partition, HashBytes(entry->key), entry->vector, expires,
                       IndexPayload(entry->key, entry->question));
      });
}

std::optional<Bytes> CallEngine::SemanticLookup(const SemanticQuery& query,
                                                std::vector<float>* vector) {
  if (index_ == nullptr) return std::nullopt;
  Result<std::vector<float>> embedded = embedder_->Embed(query.text);
  if (!embedded.ok()) return std::nullopt;
  *vector = std::move(embedded).value();
  bool any = false;
  for (float v : *vector) any = any || v != 0.0f;
  if (!any) {  // No known word: nothing to match, and nothing to remember.
    vector->clear();
    return std::nullopt;
  }
  const SemanticPolicy& semantic = policy_.cache.semantic;
  TimePoint now = env_.clock->Now();
  std::vector<VectorIndex::Match> matches = index_->Search(
      query.partition, *vector, semantic.candidates, static_cast<float>(semantic.threshold), now);
  for (const VectorIndex::Match& match : matches) {
    // The payload: the exact key's length (4 bytes), the key, the question.
    std::string_view payload = match.payload;
    if (payload.size() < 4) continue;
    uint32_t key_size;
    std::memcpy(&key_size, payload.data(), 4);
    if (payload.size() < 4 + size_t{key_size}) continue;
    std::string_view key = payload.substr(4, key_size);
    std::string_view question = payload.substr(4 + key_size);
    if (semantic.guard && !guard_.Check(query.text, question).accept) {
      stats_.Add(Counter::kGuardRefusals);
      continue;
    }
    KeyRef ref = KeyRef::Of(key);
    std::optional<StoredValue> entry = store_->Get(ref, now);
    if (entry && now < entry->fresh_until) return std::move(entry->value);
    // An entry another process learned: its answer is in the shared store.
    if (std::optional<Bytes> shared = SharedLookup(ref)) return shared;
  }
  return std::nullopt;
}

void CallEngine::SemanticRemember(const SemanticQuery& query, const KeyRef& key,
                                  const std::vector<float>& vector) {
  if (index_ == nullptr || vector.empty()) return;
  TimePoint now = env_.clock->Now();
  TimePoint expires = now + policy_.cache.ttl;
  index_->Insert(query.partition, key.hash, vector, expires, IndexPayload(key.bytes, query.text));
  if (semantic_bus_ != nullptr) {
    SemanticEntry entry{std::string(query.partition), std::string(key.bytes),
                        std::string(query.text), vector};
    semantic_bus_->Share(semantic_tool_id_, EncodeSemanticEntry(entry),
                         SteadyToUnixNanos(expires, now, UnixNowNanos()));
  }
}

std::optional<Bytes> CallEngine::SharedLookup(const KeyRef& key) {
  if (shared_store_ == nullptr) return std::nullopt;
  TimePoint now = env_.clock->Now();
  std::optional<StoredValue> entry = shared_store_->Get(key, now);
  if (!entry || now >= entry->fresh_until) return std::nullopt;
  stats_.Add(Counter::kSharedHits);
  StoreLocal(key, *entry);
  return std::move(entry->value);
}

std::optional<StoredValue> CallEngine::StaleEntry(const KeyRef& key) {
  if (shared_store_ == nullptr || policy_.cache.stale_if_error <= Duration::zero()) {
    return std::nullopt;
  }
  TimePoint now = env_.clock->Now();
  std::optional<StoredValue> entry = shared_store_->Get(key, now);
  if (!entry || now < entry->fresh_until ||
      now >= entry->fresh_until + policy_.cache.stale_if_error) {
    return std::nullopt;
  }
  return entry;
}

Result<Bytes> CallEngine::Finish(Result<Bytes> result, Counter outcome,
                                 std::optional<StoredValue> stale, Counter* final_outcome) {
  Counter ignored;
  if (final_outcome == nullptr) final_outcome = &ignored;
  *final_outcome = outcome;
  if (result.ok()) {
    stats_.Add(outcome);
    return result;
  }
  if (stale && env_.clock->Now() < stale->fresh_until + policy_.cache.stale_if_error) {
    stats_.Add(Counter::kStaleIfError);
    *final_outcome = Counter::kStaleIfError;
    return std::move(stale->value);
  }
  std::shared_ptr<const BytesFallback> fallback;
  {
    std::lock_guard<std::mutex> lock(fallback_mu_);
    fallback = fallback_;
  }
  if (fallback) {
    Result<Bytes> answer = (*fallback)(result.status());
    if (answer.ok()) {
      stats_.Add(Counter::kFallback);
      *final_outcome = Counter::kFallback;
      return answer;
    }
  }
  stats_.Add(outcome);
  return result;
}

void CallEngine::SetFallback(BytesFallback fallback) {
  auto shared = fallback ? std::make_shared<const BytesFallback>(std::move(fallback)) : nullptr;
  std::lock_guard<std::mutex> lock(fallback_mu_);
  fallback_ = std::move(shared);
}

bool CallEngine::CountsAsFailure(StatusCode code) const {
  const auto& codes = policy_.breaker.failure_codes;
  return std::find(codes.begin(), codes.end(), code) != codes.end();
}

}  // namespace toolops
