// src/engine/tool_core_test.cc
//
// Behaviour of a wrapped blocking tool through the public API, layer by
// layer. Timing rules use a FakeClock (sleeps advance it at once); the stress
// and timeout tests use real time and assert counts, never durations.

#include <atomic>
#include <barrier>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "toolops/tool.h"

namespace toolops {
namespace {

// A user type whose encoder writes a map with a duplicate key: its bytes can
// never be a key.
struct Filters {
  std::string field;
};
void ToolopsEncode(ArgWriter& writer, const Filters& f) {
  writer.BeginMap(2);
  writer.Key(f.field);
  writer.Int(1);
  writer.Key(f.field);
  writer.Int(2);
  writer.EndMap();
}

}  // namespace
}  // namespace toolops

namespace toolops {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// A store that remembers every key it was asked about, to prove what keys
// contain, and otherwise behaves as the memory store.
class RecordingStore final : public Store {
 public:
  RecordingStore() : inner_(NewMemoryStore(MemoryStoreOptions{}).value().release()) {}
  std::optional<StoredValue> Get(const KeyRef& key, TimePoint now) override {
    Record(key);
    return inner_->Get(key, now);
  }
  Status Put(const KeyRef& key, const StoredValue& value, TimePoint now) override {
    Record(key);
    return inner_->Put(key, value, now);
  }
  bool Erase(const KeyRef& key) override { return inner_->Erase(key); }
  size_t EraseByPrefix(std::string_view prefix) override { return inner_->EraseByPrefix(prefix); }
  StoreStats Stats() const override { return inner_->Stats(); }
  std::string_view name() const override { return "recording"; }

  std::vector<std::string> keys() {
    std::lock_guard<std::mutex> lock(mu_);
    return keys_;
  }

 private:
  void Record(const KeyRef& key) {
    std::lock_guard<std::mutex> lock(mu_);
    keys_.emplace_back(key.bytes);
  }
  std::unique_ptr<Store> inner_;
  std::mutex mu_;
  std::vector<std::string> keys_;
};

class ToolTest : public ::testing::Test {
 protected:
  ToolTest() : random_(7), pool_(NewThreadPool(64)) {
    registry_.Register("memory", std::shared_ptr<Store>(NewMemoryStore({}).value().release()));
    registry_.Register("recording", recording_);
    env_.clock = &clock_;
    env_.random = &random_;
    env_.stores = &registry_;
    env_.executor = pool_.get();
  }

  // Environment with real time, for tests that need threads to really wait.
  Environment RealTimeEnv() {
    Environment env = env_;
    env.clock = RealClock();
    return env;
  }

  FakeClock clock_;
  SeededRandom random_;
  StoreRegistry registry_;
  std::shared_ptr<RecordingStore> recording_ = std::make_shared<RecordingStore>();
  std::unique_ptr<Executor> pool_;
  Environment env_;
};

TEST_F(ToolTest, FreshHitIsServedWithoutCallingUpstream) {
  std::atomic<int> calls{0};
  auto search = Readonly(
      {"search", "1", {"query"}}, ToolPolicy{},
      [&](const std::string& q) {
        ++calls;
        return "result for " + q;
      },
      env_);
  EXPECT_EQ(search("paris"), "result for paris");
  EXPECT_EQ(search("paris"), "result for paris");
  EXPECT_EQ(search("lyon"), "result for lyon");
  EXPECT_EQ(calls.load(), 2);
  StatsSnapshot s = search.stats();
  EXPECT_EQ(s[Counter::kCalls], 3u);
  EXPECT_EQ(s[Counter::kFreshHit], 1u);
  EXPECT_EQ(s[Counter::kUpstreamSuccess], 2u);
}

TEST_F(ToolTest, ResultsTheStorablePredicateRefusesAreReturnedButNeverCached) {
  std::atomic<int> calls{0};
  auto tool = Readonly(
      {"t", "1", {"q"}}, ToolPolicy{},
      [&](const std::string& q) {
        ++calls;
        return q == "keep" ? std::string("kept") : std::string("!opaque");
      },
      env_);
  tool.core().SetStorable([](const Bytes& b) { return b.view().substr(0, 1) != "!"; });
  EXPECT_EQ(tool("drop"), "!opaque");
  EXPECT_EQ(tool("drop"), "!opaque");
  EXPECT_EQ(tool("keep"), "kept");
  EXPECT_EQ(tool("keep"), "kept");
  EXPECT_EQ(calls.load(), 3);
  StatsSnapshot s = tool.stats();
  EXPECT_EQ(s[Counter::kNotCached], 2u);
  EXPECT_EQ(s[Counter::kFreshHit], 1u);
}

TEST_F(ToolTest, EntryExpiresAfterTtl) {
  int calls = 0;
  ToolPolicy policy;
  policy.cache.ttl = seconds(10);
  auto tool = Readonly(
      {"t"}, policy, [&](int x) { return x + (++calls) * 100; }, env_);
  EXPECT_EQ(tool(1), 101);
  clock_.Advance(seconds(9));
  EXPECT_EQ(tool(1), 101);
  clock_.Advance(seconds(2));
  EXPECT_EQ(tool(1), 201);
  EXPECT_EQ(calls, 2);
}

TEST_F(ToolTest, ToolVersionSeparatesEntries) {
  int calls = 0;
  auto v1 = Readonly(
      {"t", "1"}, {}, [&](int x) { return ++calls; }, env_);
  auto v2 = Readonly(
      {"t", "2"}, {}, [&](int x) { return ++calls; }, env_);
  EXPECT_EQ(v1(5), 1);
  EXPECT_EQ(v2(5), 2);
  EXPECT_EQ(v1(5), 1);
}

TEST_F(ToolTest, StaleWhileRevalidateServesStaleAndRefreshesOnce) {
  std::atomic<int> calls{0};
  ToolPolicy policy;
  policy.cache.ttl = seconds(10);
  policy.cache.stale_while_revalidate = seconds(60);
  std::mutex gate;
  auto tool = Readonly(
      {"t"}, policy,
      [&](int x) {
        std::lock_guard<std::mutex> lock(gate);  // Holds refreshes back.
        return "v" + std::to_string(++calls);
      },
      env_);
  EXPECT_EQ(tool(1), "v1");
  clock_.Advance(seconds(11));
  {
    std::lock_guard<std::mutex> hold(gate);
    // While the refresh is held back, every call gets the stale value at once
    // and no second refresh starts.
    for (int i = 0; i < 20; ++i) EXPECT_EQ(tool(1), "v1");
  }
  // Wait (real time) for the single refresh to land.
  for (int i = 0; i < 500 && tool.core().flights() > 0; ++i)
    std::this_thread::sleep_for(milliseconds(2));
  EXPECT_EQ(tool(1), "v2");
  EXPECT_EQ(calls.load(), 2);
  StatsSnapshot s = tool.stats();
  EXPECT_EQ(s[Counter::kBackgroundRefresh], 1u);
  EXPECT_EQ(s[Counter::kStaleHit], 20u);
}

TEST_F(ToolTest, StaleIfErrorServesStaleValueWhenUpstreamFails) {
  bool fail = false;
  ToolPolicy policy;
  policy.cache.ttl = seconds(10);
  policy.cache.stale_if_error = seconds(100);
  auto tool = Readonly(
      {"t"}, policy,
      [&](int x) -> Result<std::string> {
        if (fail) return UnavailableError("down");
        return std::string("fresh");
      },
      env_);
  EXPECT_EQ(tool(1), "fresh");
  fail = true;
  clock_.Advance(seconds(50));
  EXPECT_EQ(tool(1), "fresh");  // Stale, served because the tool failed.
  EXPECT_EQ(tool.stats()[Counter::kStaleIfError], 1u);
  clock_.Advance(seconds(61));  // Past ttl + stale_if_error.
  Result<std::string> r = tool.Call(1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
}

TEST_F(ToolTest, ConcurrentMissesCallUpstreamOncePerKey) {
  std::atomic<int> calls{0};
  auto tool = Readonly(
      {"slow"}, {},
      [&](int key) {
        ++calls;
        std::this_thread::sleep_for(milliseconds(5));
        return key * 2;
      },
      RealTimeEnv());
  constexpr int kThreads = 64;
  constexpr int kCallsPerThread = 1563;  // About 100,000 calls in all.
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCallsPerThread; ++i) {
        int key = (t + i) % 10;
        if (tool(key) != key * 2) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(calls.load(), 10);
  StatsSnapshot s = tool.stats();
  EXPECT_EQ(s[Counter::kCalls], uint64_t{kThreads * kCallsPerThread});
  EXPECT_EQ(s[Counter::kUpstreamSuccess], 10u);
  EXPECT_EQ(s.saved(), uint64_t{kThreads * kCallsPerThread - 10});
  EXPECT_EQ(tool.core().flights(), 0u);
}

TEST_F(ToolTest, LeaderErrorReachesEveryWaiter) {
  std::atomic<int> calls{0};
  std::atomic<bool> release{false};
  auto tool = Readonly(
      {"t"}, {},
      [&](int) -> Result<int> {
        ++calls;
        while (!release) std::this_thread::sleep_for(milliseconds(1));
        return Status(StatusCode::kNotFound, "no such thing");
      },
      RealTimeEnv());
  constexpr int kWaiters = 16;
  std::vector<std::thread> threads;
  std::atomic<int> not_found{0};
  for (int i = 0; i < kWaiters; ++i) {
    threads.emplace_back([&] {
      if (tool.Call(1).status().code() == StatusCode::kNotFound) ++not_found;
    });
  }
  while (tool.core().waiting() < kWaiters - 1) std::this_thread::sleep_for(milliseconds(1));
  release = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(not_found.load(), kWaiters);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(tool.core().flights(), 0u);
}

TEST_F(ToolTest, LeaderThatThrowsReachesEveryWaiterAsAnError) {
  std::atomic<int> calls{0};
  std::atomic<bool> release{false};
  auto tool = Readonly(
      {"t"}, {},
      [&](int) -> std::string {
        ++calls;
        while (!release) std::this_thread::sleep_for(milliseconds(1));
        throw std::runtime_error("socket closed");
      },
      RealTimeEnv());
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      try {
        tool(1);
      } catch (const ToolError& e) {
        if (e.status().code() == StatusCode::kUnknown &&
            e.status().message().find("socket closed") != std::string_view::npos) {
          ++errors;
        }
      }
    });
  }
  while (tool.core().waiting() < 7) std::this_thread::sleep_for(milliseconds(1));
  release = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 8);
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(ToolTest, WaiterThatTimesOutLeavesWithoutDisturbingOthers) {
  std::atomic<bool> release{false};
  std::atomic<int> calls{0};
  ToolPolicy policy;
  policy.timeout.deadline = milliseconds(100);
  auto impatient = Readonly(
      {"shared"}, policy,
      [&](int) {
        ++calls;
        while (!release) std::this_thread::sleep_for(milliseconds(1));
        return 42;
      },
      RealTimeEnv());
  // The leader's attempt is bound by the deadline too, so it times out; what
  // matters is that the waiters each get their own deadline error and the
  // flight is cleaned up.
  std::vector<std::thread> threads;
  std::atomic<int> deadline_errors{0};
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&] {
      Result<int> r = impatient.Call(1);
      if (!r.ok() && r.status().code() == StatusCode::kDeadlineExceeded) ++deadline_errors;
    });
  }
  for (auto& t : threads) t.join();
  release = true;
  EXPECT_EQ(deadline_errors.load(), 6);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(impatient.core().flights(), 0u);
}

TEST_F(ToolTest, FullFlightTableSendsCallsUpstreamAloneAndDrains) {
  std::atomic<bool> release{false};
  std::atomic<int> calls{0};
  ToolPolicy policy;
  policy.coalesce.max_flights = 1;
  auto tool = Readonly(
      {"t"}, policy,
      [&](int key) {
        ++calls;
        while (!release) std::this_thread::sleep_for(milliseconds(1));
        return key;
      },
      RealTimeEnv());
  std::thread leader([&] { EXPECT_EQ(tool(1), 1); });
  while (tool.core().flights() < 1) std::this_thread::sleep_for(milliseconds(1));
  // The table is full: a call for another key cannot lead a flight.
  std::thread overflow([&] { EXPECT_EQ(tool(2), 2); });
  while (calls < 2) std::this_thread::sleep_for(milliseconds(1));
  EXPECT_EQ(tool.core().flights(), 1u);
  release = true;
  leader.join();
  overflow.join();
  EXPECT_EQ(tool.stats()[Counter::kFlightOverflow], 1u);
  EXPECT_EQ(tool.core().flights(), 0u);
  EXPECT_EQ(tool(2), 2);  // The overflow call's result was cached all the same.
  EXPECT_EQ(calls.load(), 2);
}

TEST_F(ToolTest, RetriesTransientErrorsWithBackoffThenSucceeds) {
  int calls = 0;
  ToolPolicy policy;
  policy.retry.max_attempts = 4;
  policy.retry.initial_backoff = milliseconds(100);
  policy.retry.budget_min_retries_per_second = 100;
  auto tool = Readonly(
      {"t"}, policy,
      [&](int) -> Result<int> {
        if (++calls < 3) return UnavailableError("flaky");
        return 7;
      },
      env_);
  EXPECT_EQ(tool(1), 7);
  EXPECT_EQ(calls, 3);
  StatsSnapshot s = tool.stats();
  EXPECT_EQ(s[Counter::kAttempts], 3u);
  EXPECT_EQ(s[Counter::kRetries], 2u);
  // Full jitter: each wait is at most the capped exponential step.
  EXPECT_LE(clock_.slept(), milliseconds(100 + 200));
}

TEST_F(ToolTest, NonRetryableErrorsFailAtOnce) {
  int calls = 0;
  ToolPolicy policy;
  policy.retry.max_attempts = 5;
  auto tool = Readonly(
      {"t"}, policy,
      [&](int) -> Result<int> {
        ++calls;
        return InvalidArgumentError("bad city");
      },
      env_);
  Result<int> r = tool.Call(1);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().guard(), Guard::kUpstream);
  EXPECT_EQ(calls, 1);
}

TEST_F(ToolTest, RetryAfterHintIsHonoured) {
  int calls = 0;
  ToolPolicy policy;
  policy.retry.max_attempts = 2;
  policy.retry.initial_backoff = milliseconds(10);
  policy.retry.budget_min_retries_per_second = 100;
  auto tool = Readonly(
      {"t"}, policy,
      [&](int) -> Result<int> {
        if (++calls == 1) return ResourceExhaustedError("429", seconds(3));
        return 1;
      },
      env_);
  EXPECT_EQ(tool(1), 1);
  EXPECT_GE(clock_.slept(), seconds(3));
}

TEST_F(ToolTest, BreakerOpensThenFailsFastThenFallbackAnswers) {
  std::atomic<int> calls{0};
  ToolPolicy policy;
  policy.cache.enabled = false;
  policy.breaker.window_size = 10;
  policy.breaker.minimum_calls = 5;
  policy.breaker.failure_rate_threshold = 0.5;
  policy.breaker.open_wait = seconds(30);
  auto tool = Readonly(
      {"t"}, policy,
      [&](int) -> Result<int> {
        ++calls;
        return UnavailableError("down");
      },
      env_);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(tool.Call(i).ok());
  EXPECT_EQ(tool.core().breaker_state(), "open");
  Result<int> rejected = tool.Call(99);
  ASSERT_FALSE(rejected.ok());
  EXPECT_EQ(rejected.status().guard(), Guard::kBreaker);
  EXPECT_EQ(calls.load(), 5);
  tool.SetFallback(-1);
  EXPECT_EQ(tool(100), -1);
  EXPECT_EQ(tool.stats()[Counter::kFallback], 1u);
  EXPECT_EQ(tool.stats()[Counter::kRejectedByBreaker], 1u);
  // After the open wait, a probe reaches the tool again (it still fails, so
  // the fallback answers).
  clock_.Advance(seconds(31));
  EXPECT_EQ(tool(101), -1);
  EXPECT_EQ(calls.load(), 6);
}

TEST_F(ToolTest, ConcurrencyLimitRejectsWhenFull) {
  std::atomic<bool> release{false};
  std::atomic<int> running{0};
  ToolPolicy policy;
  policy.cache.enabled = false;
  policy.coalesce.enabled = false;
  policy.limit.max_concurrent = 2;
  auto tool = Readonly(
      {"t"}, policy,
      [&](int) {
        ++running;
        while (!release) std::this_thread::sleep_for(milliseconds(1));
        return 1;
      },
      RealTimeEnv());
  std::thread a([&] { EXPECT_EQ(tool(1), 1); });
  std::thread b([&] { EXPECT_EQ(tool(2), 1); });
  while (running < 2) std::this_thread::sleep_for(milliseconds(1));
  Result<int> r = tool.Call(3);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().guard(), Guard::kLimiter);
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  release = true;
  a.join();
  b.join();
  EXPECT_EQ(tool.stats()[Counter::kRejectedByLimiter], 1u);
}

TEST_F(ToolTest, AttemptTimeoutAbandonsSlowAttemptAndRetries) {
  std::atomic<int> calls{0};
  ToolPolicy policy;
  policy.timeout.attempt_timeout = milliseconds(50);
  policy.retry.max_attempts = 2;
  policy.retry.initial_backoff = milliseconds(1);
  policy.retry.budget_min_retries_per_second = 100;
  auto tool = Readonly(
      {"t"}, policy,
      [&](int) {
        if (++calls == 1) {
          // Slow first attempt that notices it was abandoned.
          const CallContext* ctx = CurrentCall();
          while (!ctx->abandoned->load()) std::this_thread::sleep_for(milliseconds(1));
          return -1;
        }
        return 5;
      },
      RealTimeEnv());
  EXPECT_EQ(tool(1), 5);
  EXPECT_EQ(calls.load(), 2);
  EXPECT_EQ(tool.stats()[Counter::kAttemptTimeouts], 1u);
}

TEST_F(ToolTest, SideEffectsAreNeverCachedNorCoalesced) {
  int calls = 0;
  auto pay = SideEffect(
      {"pay", "1", {"amount"}}, {}, [&](int amount) { return ++calls; }, env_);
  EXPECT_EQ(pay(10), 1);
  EXPECT_EQ(pay(10), 2);
  EXPECT_FALSE(pay.core().caching());
  EXPECT_FALSE(pay.core().keyed());
}

TEST_F(ToolTest, NonIdempotentSideEffectWithRetriesIsRefusedAtWrap) {
  ToolPolicy policy;
  policy.retry.max_attempts = 3;
  try {
    SideEffect(
        {"pay"}, policy, [](int) { return 1; }, env_);
    FAIL() << "expected a policy error";
  } catch (const ToolError& e) {
    EXPECT_EQ(e.status().guard(), Guard::kPolicy);
    EXPECT_NE(e.status().message().find("idempotent"), std::string_view::npos);
  }
  policy.idempotent = true;
  int calls = 0;
  policy.retry.budget_min_retries_per_second = 100;
  auto pay = SideEffect(
      {"pay"}, policy,
      [&](int) -> Result<int> {
        if (++calls < 3) return UnavailableError("try again");
        return 1;
      },
      env_);
  EXPECT_EQ(pay(1), 1);
  EXPECT_EQ(calls, 3);
}

TEST_F(ToolTest, BadPoliciesAreRefusedAtWrapNamingTheField) {
  struct Case {
    const char* trace;
    std::function<void(ToolPolicy&)> mutate;
    const char* field;
  };
  std::vector<Case> cases = {
      {"negative ttl", [](ToolPolicy& p) { p.cache.ttl = -seconds(1); }, "cache.ttl"},
      {"zero attempts", [](ToolPolicy& p) { p.retry.max_attempts = 0; }, "retry.max_attempts"},
      {"threshold above 1", [](ToolPolicy& p) { p.breaker.failure_rate_threshold = 1.5; },
       "breaker.failure_rate_threshold"},
      {"multiplier below 1", [](ToolPolicy& p) { p.retry.multiplier = 0.5; }, "retry.multiplier"},
      {"unknown key param", [](ToolPolicy& p) { p.cache.key_params = {"nope"}; },
       "cache.key_params"},
      {"unknown store", [](ToolPolicy& p) { p.cache.store = "redis"; }, "redis"},
      {"negative limit", [](ToolPolicy& p) { p.limit.max_concurrent = -1; },
       "limit.max_concurrent"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.trace);
    ToolPolicy policy;
    c.mutate(policy);
    auto wrapped = MakeTool(
        {"t", "1", {"q"}}, policy, [](std::string q) { return q; }, env_);
    ASSERT_FALSE(wrapped.ok());
    EXPECT_NE(wrapped.status().message().find(c.field), std::string_view::npos)
        << wrapped.status().message();
  }
}

TEST_F(ToolTest, ParamCountMismatchIsRefusedAtWrap) {
  auto wrapped = MakeTool(
      {"t", "1", {"a", "b"}}, {}, [](int a) { return a; }, env_);
  ASSERT_FALSE(wrapped.ok());
  EXPECT_NE(wrapped.status().message().find("takes 1"), std::string_view::npos);
}

TEST_F(ToolTest, SensitiveArgumentsNeverReachAKey) {
  ToolPolicy policy;
  policy.cache.store = "recording";
  policy.sensitive_params = {"api_key"};
  int calls = 0;
  auto tool = Readonly(
      {"search", "1", {"query", "api_key"}}, policy,
      [&](const std::string& q, const std::string& key) { return ++calls; }, env_);
  EXPECT_EQ(tool("paris", "sk-SECRET-1"), 1);
  EXPECT_EQ(tool("paris", "sk-SECRET-2"), 1);  // The key does not depend on it.
  EXPECT_EQ(calls, 1);
  for (const std::string& key : recording_->keys()) {
    EXPECT_EQ(key.find("SECRET"), std::string::npos);
    EXPECT_NE(key.find("paris"), std::string::npos);
  }
}

TEST_F(ToolTest, KeyParamsSelectWhichArgumentsCount) {
  ToolPolicy policy;
  policy.cache.key_params = {"query"};
  int calls = 0;
  auto tool = Readonly(
      {"search", "1", {"query", "request_id"}}, policy,
      [&](const std::string& q, int request_id) { return ++calls; }, env_);
  EXPECT_EQ(tool("paris", 1), 1);
  EXPECT_EQ(tool("paris", 2), 1);
  EXPECT_EQ(tool("lyon", 3), 2);
}

TEST_F(ToolTest, ScopeKeepsPrivateResultsApart) {
  ToolPolicy policy;
  policy.scope_param = "user";
  int calls = 0;
  auto inbox = Readonly(
      {"inbox", "1", {"user", "folder"}}, policy,
      [&](const std::string& user, const std::string& folder) {
        ++calls;
        return user + "/" + folder;
      },
      env_);
  EXPECT_EQ(inbox("alice", "in"), "alice/in");
  EXPECT_EQ(inbox("bob", "in"), "bob/in");
  EXPECT_EQ(inbox("alice", "in"), "alice/in");
  EXPECT_EQ(calls, 2);
}

TEST_F(ToolTest, UnicodeNormalisationSharesAnEntry) {
  ToolPolicy policy;
  policy.cache.normalization = TextNormalization::kNfc;
  int calls = 0;
  auto tool = Readonly(
      {"t"}, policy, [&](const std::string& s) { return ++calls; }, env_);
  EXPECT_EQ(tool("caf\xC3\xA9"), 1);   // Composed é.
  EXPECT_EQ(tool("cafe\xCC\x81"), 1);  // e + combining acute.
  EXPECT_EQ(calls, 1);
}

TEST_F(ToolTest, RetryBudgetBoundsAttemptsUnderTotalFailure) {
  ToolPolicy policy;
  policy.cache.enabled = false;
  policy.coalesce.enabled = false;
  policy.breaker.enabled = false;
  policy.retry.max_attempts = 5;
  policy.retry.initial_backoff = milliseconds(1);
  policy.retry.max_backoff = milliseconds(1);
  policy.retry.budget_ratio = 0.2;
  policy.retry.budget_min_retries_per_second = 1;
  policy.retry.budget_window = seconds(10);
  auto tool = Readonly(
      {"down"}, policy, [](int) -> Result<int> { return UnavailableError("always down"); }, env_);
  constexpr int kCalls = 2000;
  for (int i = 0; i < kCalls; ++i) {
    EXPECT_FALSE(tool.Call(i).ok());
    clock_.Advance(milliseconds(5));
  }
  StatsSnapshot s = tool.stats();
  // Elapsed time of fake clock gives the floor: 1 retry/s.
  double elapsed_s =
      std::chrono::duration<double>(milliseconds(5) * kCalls + clock_.slept()).count();
  double bound = 1.2 * kCalls + 1.0 * (elapsed_s + 10);
  EXPECT_LE(static_cast<double>(s[Counter::kAttempts]), bound);
  EXPECT_GT(s[Counter::kRejectedByBudget], 0u);
}

TEST_F(ToolTest, ArgumentsThatCannotBeKeyedGoUpstreamUncached) {
  int calls = 0;
  auto tool = Readonly(
      {"t"}, {}, [&](const Filters& f) { return ++calls; }, env_);
  EXPECT_EQ(tool(Filters{"city"}), 1);
  EXPECT_EQ(tool(Filters{"city"}), 2);  // Never served from a bad key.
  StatsSnapshot s = tool.stats();
  EXPECT_EQ(s[Counter::kNotCached], 2u);
  EXPECT_EQ(s[Counter::kUpstreamSuccess], 2u);
  EXPECT_EQ(s[Counter::kFreshHit], 0u);
}

TEST_F(ToolTest, NestedToolCallsOnOneThreadKeepTheirKeys) {
  int inner_calls = 0, outer_calls = 0;
  auto inner = Readonly(
      {"inner"}, {},
      [&](const std::string& s) {
        ++inner_calls;
        return s + "!";
      },
      env_);
  auto outer = Readonly(
      {"outer"}, {},
      [&](const std::string& s) {
        ++outer_calls;
        return inner(s + s) + inner("x");
      },
      env_);
  EXPECT_EQ(outer("ab"), "abab!x!");
  EXPECT_EQ(outer("ab"), "abab!x!");
  EXPECT_EQ(outer_calls, 1);
  EXPECT_EQ(inner_calls, 2);
}

// Calls of different tools take turns with one key buffer per thread, and a
// tool wrapped after another was destroyed may get the same memory: every
// key must still start with its own tool's prefix.
TEST_F(ToolTest, ToolsTakingTurnsOnOneThreadKeepTheirOwnKeyPrefixes) {
  ToolPolicy policy;
  policy.cache.store = "recording";
  auto wrap = [&](std::string name, std::string answer) {
    return Readonly(
        {name, "1", {"q"}}, policy, [answer](const std::string& q) { return answer + ":" + q; },
        env_);
  };
  auto a = wrap("alpha", "a");
  auto b = wrap("beta_with_a_longer_name", "b");
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(a("x"), "a:x");
    EXPECT_EQ(b("x"), "b:x");
    EXPECT_EQ(a("y"), "a:y");
  }
  for (int i = 0; i < 3; ++i) {
    // Each new tool's first call misses, then hits its own entry.
    auto c = wrap("gamma" + std::to_string(i), "c" + std::to_string(i));
    EXPECT_EQ(c("x"), "c" + std::to_string(i) + ":x");
    EXPECT_EQ(c("x"), "c" + std::to_string(i) + ":x");
  }
  for (const std::string& key : recording_->keys()) {
    EXPECT_TRUE(key.starts_with(a.core().key_prefix()) || key.starts_with(b.core().key_prefix()) ||
                key.starts_with("gamma"))
        << key;
  }
}

}  // namespace
}  // namespace toolops
