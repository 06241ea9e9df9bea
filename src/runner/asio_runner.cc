// src/runner/asio_runner.cc
//
// The coroutine runner: the engine's steps driven by an Asio coroutine.
// Every wait suspends on a steady_timer or a channel instead of blocking a
// thread. Work shared with other callers (a flight's upstream call, an
// attempt with a time limit, a background refresh) runs in its own detached
// coroutine, so that a caller who leaves never cancels it.

#include <asio/detached.hpp>
#include <asio/version.hpp>
#if ASIO_VERSION >= 102400
#include <asio/as_tuple.hpp>
#else
#include <asio/experimental/as_tuple.hpp>
#endif
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/experimental/concurrent_channel.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include <functional>
#include <memory>
#include <optional>

#include "engine/call_engine.h"
#include "toolops/asio.h"

namespace toolops {
namespace {

using namespace asio::experimental::awaitable_operators;
// The bool carries nothing: Asio 1.22 cannot instantiate a channel whose
// signature is void(error_code) alone.
using Signal = asio::experimental::concurrent_channel<void(asio::error_code, bool)>;
// as_tuple left the experimental namespace in Asio 1.24 (Debian 13 has 1.30,
// Debian 12 has 1.22).
#if ASIO_VERSION >= 102400
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
#else
constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
#endif

// Waits until `signal` receives a message or `timeout` passes (Duration::max:
// no limit). Returns true when the message came first.
asio::awaitable<bool> ReceiveWithin(Signal& signal, Duration timeout) {
  if (timeout == Duration::max()) {
    auto [ec, unused] = co_await signal.async_receive(kNoThrow);
    co_return !ec;
  }
  if (timeout <= Duration::zero()) co_return signal.ready();
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  auto first = co_await (signal.async_receive(kNoThrow) || timer.async_wait(kNoThrow));
  co_return first.index() == 0 && !std::get<0>(std::get<0>(first));
}

asio::awaitable<void> Sleep(Duration d) {
  if (d <= Duration::zero()) co_return;
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(kNoThrow);
}

// Waits for `flight` to complete, at most `timeout`. Leaves cleanly (the
// callback removed) on timeout or when this coroutine is cancelled.
asio::awaitable<std::optional<Result<Bytes>>> AwaitFlight(std::shared_ptr<Flight> flight,
                                                          Duration timeout) {
  auto signal = std::make_shared<Signal>(co_await asio::this_coro::executor, 1);
  uint64_t id = flight->Subscribe(
      [signal](const Result<Bytes>&) { signal->try_send(asio::error_code(), true); });
  if (id == 0) co_return flight->result();
  struct Unsubscribe {
    Flight* flight;
    uint64_t id;
    ~Unsubscribe() { flight->Unsubscribe(id); }
  } unsubscribe{flight.get(), id};
  bool done = co_await ReceiveWithin(*signal, timeout);
  if (!done && !flight->done()) co_return std::nullopt;
  co_return flight->result();
}

// Takes a limiter slot, waiting up to `max_wait`.
asio::awaitable<Status> AcquireSlot(CallEngine& engine, Duration max_wait) {
  ConcurrencyLimiter& limiter = engine.limiter();
  if (max_wait <= Duration::zero()) {
    co_return limiter.TryAcquire() ? Status() : limiter.RejectionStatus(Duration::zero());
  }
  auto signal = std::make_shared<Signal>(co_await asio::this_coro::executor, 1);
  ConcurrencyLimiter::Ticket ticket =
      limiter.Enqueue([signal] { signal->try_send(asio::error_code(), true); });
  if (ticket == 0) co_return Status();
  if (co_await ReceiveWithin(*signal, max_wait)) co_return Status();
  // Timed out, unless the slot was handed over just now: then it is ours.
  if (!limiter.Cancel(ticket)) co_return Status();
  co_return limiter.RejectionStatus(max_wait);
}

// One attempt, with its time limit. The attempt runs in a detached coroutine
// that reports through a flight-like box, so that a timeout abandons it at
// once even when the tool ignores cancellation.
struct AttemptBox {
  explicit AttemptBox(asio::any_io_executor executor) : signal(executor, 1) {}
  Signal signal;
  std::optional<Result<Bytes>> result;  // Written before the signal is sent.
  std::atomic<bool> abandoned{false};
};

asio::awaitable<void> RunDetachedAttempt(std::shared_ptr<const AsyncUpstream> upstream,
                                         std::string tool, int attempt, TimePoint deadline,
                                         std::shared_ptr<AttemptBox> box, std::string call_id) {
  CallContext ctx{tool, attempt, deadline, &box->abandoned, call_id};
  Result<Bytes> result = Status();
  try {
    result = co_await (*upstream)(ctx);
  } catch (const ToolError& e) {
    result = e.status();
  } catch (const std::exception& e) {
    result = Status(StatusCode::kUnknown, std::string("tool threw: ") + e.what(), Guard::kUpstream);
  }
  box->result.emplace(std::move(result));
  box->signal.try_send(asio::error_code(), true);
}

asio::awaitable<Result<Bytes>> RunOneAttempt(CallEngine& engine,
                                             std::shared_ptr<const AsyncUpstream> upstream,
                                             int attempt, TimePoint deadline, std::string call_id) {
  bool deadline_bound = false;
  Duration limit = engine.AttemptLimit(deadline, &deadline_bound);
  if (limit <= Duration::zero()) co_return engine.DeadlinePassedBeforeAttempt(attempt);
  auto executor = co_await asio::this_coro::executor;
  auto box = std::make_shared<AttemptBox>(executor);
  asio::co_spawn(
      executor,
      RunDetachedAttempt(upstream, engine.spec().name, attempt, deadline, box, std::move(call_id)),
      asio::detached);
  if (co_await ReceiveWithin(box->signal, limit)) co_return std::move(*box->result);
  box->abandoned.store(true, std::memory_order_relaxed);
  co_return engine.AttemptTimedOut(attempt, limit, deadline_bound);
}

// `trace` (null for a background refresh) counts the attempts and parents
// their spans; it must outlive the coroutine.
asio::awaitable<Result<Bytes>> RunAttempts(CallEngine& engine,
                                           std::shared_ptr<const AsyncUpstream> upstream,
                                           TimePoint deadline, Counter* outcome,
                                           AttemptTrace* trace) {
  Status last_error;
  for (int attempt = 1;; ++attempt) {
    BreakerPermit permit = engine.Admit();
    if (!permit.allowed) {
      *outcome = Counter::kRejectedByBreaker;
      co_return CallEngine::BreakerRejection(permit, attempt, last_error);
    }
    if (Status slot = co_await AcquireSlot(engine, engine.LimiterWait(deadline)); !slot.ok()) {
      engine.breaker().OnIgnored(permit.generation);
      *outcome = Counter::kRejectedByLimiter;
      co_return slot;
    }
    engine.BeginAttempt(attempt);
    internal::Span span = engine.BeginAttemptSpan(trace, attempt);
    TimePoint started = engine.env().clock->Now();
    // A named local: GCC 12 destroys temporaries of a co_await expression twice.
    std::string call_id = trace != nullptr ? trace->call_id : std::string();
    Result<Bytes> result =
        co_await RunOneAttempt(engine, upstream, attempt, deadline, std::move(call_id));
    engine.limiter().Release();
    engine.EndAttempt(permit, result, engine.env().clock->Now() - started);
    CallEngine::EndAttemptSpan(span, result);
    if (result.ok()) {
      *outcome = Counter::kUpstreamSuccess;
      co_return result;
    }
    last_error = result.status();
    RetryDecision decision = engine.NextStep(last_error, attempt, deadline);
    if (!decision.retry) {
      *outcome = CallEngine::StoppedOutcome(decision);
      co_return decision.final_status;
    }
    co_await Sleep(decision.delay);
  }
}

// Runs `work` (blocking store I/O) on the environment's executor and resumes
// on this coroutine's executor with its result, so the event loop never
// blocks on a store.
template <typename T>
asio::awaitable<T> OffLoop(CallEngine& engine, std::function<T()> work) {
  struct Box {
    explicit Box(asio::any_io_executor executor) : signal(executor, 1) {}
    Signal signal;
    std::optional<T> value;  // Written before the signal is sent.
  };
  auto executor = co_await asio::this_coro::executor;
  auto box = std::make_shared<Box>(executor);
  // Counts as outstanding work of the event loop until the result is sent:
  // a loop whose other work is done must not return (and be destroyed)
  // while this waits for a thread that is not its own.
  auto busy = asio::prefer(executor, asio::execution::outstanding_work.tracked);
  engine.env().executor->Submit([box, work = std::move(work), busy = std::move(busy)]() mutable {
    box->value.emplace(work());
    box->signal.try_send(asio::error_code(), true);
    busy = asio::any_io_executor();  // Released only after the send.
  });
  co_await box->signal.async_receive(kNoThrow);
  co_return std::move(*box->value);
}

// Leads one upstream call for a key: the second look, the shared tier (off
// the loop), the attempts, the store, then the flight's waiters. Runs
// detached; owns what it uses.
struct LeadState {
  std::atomic<Counter> outcome{Counter::kUpstreamError};
  // The leading caller's attempt trace; read by it after the flight ends.
  AttemptTrace trace;
  bool followed = false;  // Settled by another process's leader.
};

// The semantic cache's answer for a leader's question, and the question's
// vector (kept to remember the question if the call goes upstream).
struct SemanticFound {
  std::optional<Bytes> value;
  std::vector<float> vector;
};

asio::awaitable<void> Lead(std::shared_ptr<ToolCore> core, std::string key_bytes, uint64_t hash,
                           std::shared_ptr<const AsyncUpstream> upstream, TimePoint deadline,
                           std::shared_ptr<Flight> flight, std::shared_ptr<LeadState> state,
                           std::shared_ptr<const AsyncSemanticQuery> semantic) {
  CallEngine& engine = EngineOf(*core);
  KeyRef key{key_bytes, hash};
  Counter outcome = Counter::kUpstreamError;
  Result<Bytes> result = Status();
  SemanticFound similar;
  std::optional<Bytes> stored = engine.Recheck(key);
  if (!stored && semantic != nullptr && engine.semantic()) {
    // Embedding and search are CPU work; a candidate's answer may come from
    // the shared store, so with one the lookup runs off the loop.
    std::function<SemanticFound()> look = [core, semantic] {
      SemanticFound found;
      found.value = EngineOf(*core).SemanticLookup(
          SemanticQuery{semantic->partition, semantic->text}, &found.vector);
      return found;
    };
    if (engine.shared_store() != nullptr) {
      similar = co_await OffLoop(engine, std::move(look));
    } else {
      similar = look();
    }
  }
  if (stored) {
    outcome = Counter::kFreshHit;
    result = std::move(*stored);
  } else if (similar.value) {
    // Kept under this call's own key too: the same question again is an
    // exact hit.
    engine.StoreLocal(key, engine.EntryFor(*similar.value));
    outcome = Counter::kSemanticHit;
    result = std::move(*similar.value);
  } else if (engine.shared_store() != nullptr) {
    // The tasks own copies of what they use: they may outlive this frame
    // if the event loop is torn down while they run. They are named locals,
    // not temporaries of the co_await expression: GCC 12 destroys lambda
    // temporaries there twice.
    std::function<CallEngine::SharedStart()> begin = [core, key_bytes, hash, deadline] {
      return EngineOf(*core).BeginShared(KeyRef{key_bytes, hash}, deadline);
    };
    CallEngine::SharedStart start = co_await OffLoop(engine, std::move(begin));
    if (start.settled) {
      outcome = start.outcome;
      if (state && outcome == Counter::kCoalesced) state->followed = true;
      result = std::move(*start.settled);
    } else {
      result = co_await RunAttempts(engine, upstream, deadline, &outcome,
                                    state ? &state->trace : nullptr);
      std::function<bool()> end = [core, key_bytes, hash, lease = start.lease, result] {
        EngineOf(*core).EndShared(KeyRef{key_bytes, hash}, lease, result);
        return true;
      };
      co_await OffLoop(engine, std::move(end));
    }
  } else {
    result =
        co_await RunAttempts(engine, upstream, deadline, &outcome, state ? &state->trace : nullptr);
    if (result.ok()) engine.StoreLocal(key, engine.EntryFor(result.value()));
  }
  if (result.ok() && semantic != nullptr && outcome == Counter::kUpstreamSuccess) {
    engine.SemanticRemember(SemanticQuery{semantic->partition, semantic->text}, key,
                            similar.vector);
  }
  if (state) state->outcome.store(outcome, std::memory_order_release);
  engine.flights().Finish(key, flight, std::move(result));
}

}  // namespace

asio::awaitable<Result<Bytes>> CallAsync(std::shared_ptr<ToolCore> core, std::string key_bytes,
                                         std::shared_ptr<const AsyncUpstream> upstream,
                                         std::shared_ptr<const AsyncSemanticQuery> semantic) {
  CallEngine& engine = EngineOf(*core);
  // Taken before the first suspension, on the caller's thread (where the hit
  // path left its sampling decision and the caller its call id).
  CallEngine::CallRecord record = engine.BeginCall();
  auto executor = co_await asio::this_coro::executor;
  KeyRef key = KeyRef::Of(key_bytes);
  Counter final_outcome = Counter::kUpstreamError;

  if (key_bytes.empty()) {
    // No usable key: straight upstream, no cache and no coalescing.
    if (engine.keyed()) engine.stats().Add(Counter::kNotCached);
    Counter outcome = Counter::kUpstreamError;
    Result<Bytes> result = co_await RunAttempts(engine, upstream, engine.DeadlineFromNow(),
                                                &outcome, &record.attempts);
    result = engine.Finish(std::move(result), outcome, std::nullopt, &final_outcome);
    co_return engine.EndCall(record, std::move(result), final_outcome);
  }

  CallEngine::Lookup found = engine.LookupKey(key);
  if (found.kind == CallEngine::LookupKind::kFresh) {
    co_return engine.EndCall(record, std::move(found.value), Counter::kFreshHit);
  }
  if (found.kind == CallEngine::LookupKind::kRevalidate) {
    FlightTable::Joined joined = engine.flights().JoinOrLead(key);
    if (joined.flight != nullptr && joined.leader) {
      engine.stats().Add(Counter::kBackgroundRefresh);
      asio::co_spawn(executor,
                     Lead(core, key_bytes, key.hash, upstream, engine.DeadlineFromNow(),
                          joined.flight, nullptr, nullptr),
                     asio::detached);
    }
    co_return engine.EndCall(record, std::move(found.value), Counter::kStaleHit);
  }

  TimePoint deadline = engine.DeadlineFromNow();
  Counter outcome = Counter::kUpstreamError;
  Result<Bytes> result = Status();
  FlightTable::Joined joined;
  if (engine.coalescing()) {
    joined = engine.flights().JoinOrLead(key);
    if (joined.flight == nullptr) engine.stats().Add(Counter::kFlightOverflow);
  }
  if (joined.flight == nullptr) {
    // Not coalesced: this caller does the work itself.
    result = co_await RunAttempts(engine, upstream, deadline, &outcome, &record.attempts);
    if (result.ok()) engine.StoreLocal(key, engine.EntryFor(result.value()));
    result = engine.Finish(std::move(result), outcome, std::move(found.stale), &final_outcome);
    co_return engine.EndCall(record, std::move(result), final_outcome);
  }

  std::shared_ptr<LeadState> lead;
  if (joined.leader) {
    lead = std::make_shared<LeadState>();
    lead->trace.parent = record.attempts.parent;
    lead->trace.call_id = record.attempts.call_id;
    asio::co_spawn(executor,
                   Lead(core, key_bytes, key.hash, upstream, deadline, joined.flight, lead,
                        std::move(semantic)),
                   asio::detached);
  }
  Duration wait =
      deadline == TimePoint::max() ? Duration::max() : deadline - engine.env().clock->Now();
  engine.flights().AddWaiter();
  std::optional<Result<Bytes>> shared = co_await AwaitFlight(joined.flight, wait);
  engine.flights().RemoveWaiter();
  if (!lead) record.followed = true;
  if (!shared) {
    result = engine.DeadlinePassedWhileWaiting();
  } else {
    result = std::move(*shared);
    if (lead) {
      outcome = lead->outcome.load(std::memory_order_acquire);
      // Written by the leader before it finished the flight.
      record.attempts.attempts = lead->trace.attempts;
      record.followed = lead->followed;
    } else {
      outcome = result.ok() ? Counter::kCoalesced : Counter::kUpstreamError;
    }
  }
  if (!result.ok() && !found.stale && engine.shared_store() != nullptr) {
    // Another process's answer, past its freshness, that the shared store
    // has for this key: stale-if-error may serve it. A named local, as above.
    std::function<std::optional<StoredValue>()> look = [core, key_bytes] {
      return EngineOf(*core).StaleEntry(KeyRef::Of(key_bytes));
    };
    found.stale = co_await OffLoop(engine, std::move(look));
  }
  result = engine.Finish(std::move(result), outcome, std::move(found.stale), &final_outcome);
  co_return engine.EndCall(record, std::move(result), final_outcome);
}

}  // namespace toolops
