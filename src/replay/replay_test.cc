// src/replay/replay_test.cc

#include "replay/replay.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "postgres_server.h"
#include "redis_server.h"
#include "toolops/embedder.h"

namespace toolops {
namespace {

constexpr int64_t kSecond = 1'000'000'000;
constexpr int64_t kT0 = 1'750'000'000 * kSecond;

TraceCall Call(int64_t at_ms, std::string tool, std::string query, std::string intent,
               int64_t latency_ms = 500, StatusCode outcome = StatusCode::kOk) {
  TraceCall call;
  call.time_ns = kT0 + at_ms * 1'000'000;
  call.tool = std::move(tool);
  call.args = Value(Value::Map{{"query", Value(std::move(query))}});
  call.intent = std::move(intent);
  call.latency = std::chrono::milliseconds(latency_ms);
  call.outcome = outcome;
  call.cost = 0.01;
  return call;
}

ReplayPolicy Policy(const std::string& spec, Duration ttl = std::chrono::minutes(5)) {
  Result<ReplayPolicy> p = ParsePolicySpec(spec, ttl);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return *p;
}

ReplayReport Replay(std::vector<TraceCall> calls, const ReplayPolicy& policy,
                    const Embedder* embedder = nullptr, double speed = 0) {
  VectorCallSource source(std::move(calls));
  Simulation simulation;
  ReplayOptions options;
  options.embedder = embedder;
  options.speed = speed;
  Result<ReplayReport> r = RunReplay(source, policy, simulation, options);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : ReplayReport();
}

TEST(ReplayTest, RepeatedIntentsGoUpstreamOncePerIntent) {
  std::vector<TraceCall> calls;
  // Three intents, ten asks each, one every 10 s (each answer is back long
  // before the next ask), all inside one TTL.
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < 3; ++i) {
      calls.push_back(Call((round * 3 + i) * 10'000, "search", "question " + std::to_string(i),
                           "intent-" + std::to_string(i)));
    }
  }
  ReplayReport r = Replay(calls, Policy("exact"));
  EXPECT_EQ(r.requested, 30u);
  EXPECT_EQ(r.upstream, 3u);
  EXPECT_EQ(r.saved.exact, 27u);
  EXPECT_EQ(r.saved.total(), 27u);
  EXPECT_EQ(r.served, 27u);
  EXPECT_EQ(r.wrong, 0u);
  EXPECT_EQ(r.ttl_windows, 3u);
  EXPECT_EQ(r.attainable(), 27u);
  EXPECT_DOUBLE_EQ(r.bound_ratio(), 1.0);
  EXPECT_NEAR(r.cost_without, 0.30, 1e-9);
  EXPECT_NEAR(r.cost_with, 0.03, 1e-9);
  // Hits take no trace time; direct calls take their 500 ms.
  EXPECT_EQ(r.latency_with.Quantile(0.5), Duration::zero());
  EXPECT_NEAR(std::chrono::duration<double>(r.latency_without.Quantile(0.5)).count(), 0.5, 0.02);
}

TEST(ReplayTest, BurstOfIdenticalCallsIsCoalesced) {
  std::vector<TraceCall> calls;
  // Five agents ask the same thing within 100 ms; the answer takes 2 s.
  for (int i = 0; i < 5; ++i) calls.push_back(Call(i * 20, "search", "same question", "q", 2000));
  ReplayReport r = Replay(calls, Policy("exact"));
  EXPECT_EQ(r.requested, 5u);
  EXPECT_EQ(r.upstream, 1u);
  EXPECT_EQ(r.saved.coalesced, 4u);
  EXPECT_EQ(r.saved.exact, 0u);
  // The followers waited for the leader's answer: 2 s minus their delay.
  EXPECT_NEAR(std::chrono::duration<double>(r.latency_with.max()).count(), 2.0, 0.05);
  EXPECT_GT(r.latency_with.Quantile(0.2), std::chrono::milliseconds(1800));
}

TEST(ReplayTest, TraceThatStartsWithABurstIsCoalesced) {
  // The first calls of the trace: the clock's keeper has had nothing to do
  // yet when the followers block.
  for (int round = 0; round < 20; ++round) {
    std::vector<TraceCall> calls;
    for (int i = 0; i < 3; ++i) calls.push_back(Call(0, "search", "q", "q", 1000));
    ReplayReport r = Replay(calls, Policy("exact"));
    EXPECT_EQ(r.upstream, 1u);
    EXPECT_EQ(r.saved.coalesced, 2u);
  }
}

TEST(ReplayTest, CoalescingFollowsTraceTimeAtAnySpeed) {
  // A call 1.5 s after the first of the same key joins its flight only when
  // the first takes longer than 1.5 s; the speed does not matter.
  for (double speed : {0.0, 1000.0}) {
    for (int64_t latency : {1000, 2000}) {
      std::vector<TraceCall> calls = {Call(0, "search", "q", "q", latency),
                                      Call(1500, "search", "q", "q", latency)};
      ReplayReport r = Replay(calls, Policy("exact"), nullptr, speed);
      EXPECT_EQ(r.upstream, 1u);
      if (latency == 2000) {
        EXPECT_EQ(r.saved.coalesced, 1u) << "speed " << speed;
      } else {
        EXPECT_EQ(r.saved.exact, 1u) << "speed " << speed;
      }
    }
  }
}

TEST(ReplayTest, TtlExpiresInTraceTime) {
  // TTL 60 s: asks at 0, 30 s, 61 s, 90 s, 200 s: upstream at 0, 61 (the
  // entry stored at 0.5 s is fresh until 60.5 s), 200.
  std::vector<TraceCall> calls;
  for (int64_t s : {0, 30, 61, 90, 200}) calls.push_back(Call(s * 1000, "search", "q", "q"));
  for (double speed : {0.0, 500.0}) {
    ReplayReport r = Replay(calls, Policy("exact", std::chrono::seconds(60)), nullptr, speed);
    EXPECT_EQ(r.upstream, 3u) << "speed " << speed;
    EXPECT_EQ(r.saved.exact, 2u) << "speed " << speed;
    EXPECT_EQ(r.ttl_windows, 3u);
  }
}

TEST(ReplayTest, FailureStretchIsServedStaleAndRetried) {
  std::vector<TraceCall> calls;
  // TTL 60 s. Learned at 0; asked again at 100 s and 110 s while the tool
  // fails (observed outcome UNAVAILABLE): served stale (stale-if-error is
  // 30 min). At 300 s the tool is back.
  calls.push_back(Call(0, "search", "q", "q"));
  calls.push_back(Call(100'000, "search", "q", "q", 500, StatusCode::kUnavailable));
  calls.push_back(Call(110'000, "search", "q", "q", 500, StatusCode::kUnavailable));
  calls.push_back(Call(300'000, "search", "q", "q"));
  // A question never asked before, during the outage: fails after retries.
  calls.push_back(Call(105'000, "search", "other", "other", 500, StatusCode::kUnavailable));
  ReplayReport r = Replay(calls, Policy("exact", std::chrono::seconds(60)));
  EXPECT_EQ(r.requested, 5u);
  EXPECT_EQ(r.saved.stale, 2u);
  EXPECT_EQ(r.failed_with, 1u);
  EXPECT_EQ(r.failed_without, 3u);
  // The stale calls' 3 attempts each, the new question's 3, and 2 successes.
  EXPECT_EQ(r.retries, 6u);
  EXPECT_EQ(r.upstream, 3u + 3u + 3u + 2u);
}

TEST(ReplayTest, StaleWhileRevalidateRefreshesInTheBackground) {
  // TTL 60 s, stale-while-revalidate 60 s. At 90 s the entry is stale: served
  // at once while one refresh runs (on the replay's executor, in trace time);
  // at 100 s the refreshed entry is fresh.
  ReplayPolicy policy = Policy("exact", std::chrono::seconds(60));
  policy.base.cache.stale_while_revalidate = std::chrono::seconds(60);
  std::vector<TraceCall> calls = {Call(0, "search", "q", "q"), Call(90'000, "search", "q", "q"),
                                  Call(100'000, "search", "q", "q")};
  ReplayReport r = Replay(calls, policy);
  EXPECT_EQ(r.upstream, 2u);
  EXPECT_EQ(r.saved.stale, 1u);
  EXPECT_EQ(r.saved.exact, 1u);
  EXPECT_EQ(r.latency_with.max(), std::chrono::milliseconds(500));
}

TEST(ReplayTest, NoPolicyCallsUpstreamEveryTime) {
  std::vector<TraceCall> calls;
  for (int i = 0; i < 10; ++i) calls.push_back(Call(i * 1000, "search", "q", "q"));
  ReplayReport r = Replay(calls, Policy("none"));
  EXPECT_EQ(r.upstream, 10u);
  EXPECT_EQ(r.saved.total(), 0u);
  EXPECT_EQ(r.attainable(), 0u);
}

const Embedder* BundledEmbedder() {
  static Result<std::unique_ptr<Embedder>>* loaded =
      new Result<std::unique_ptr<Embedder>>(LoadStaticEmbedder(DefaultModelDirectory()));
  return loaded->ok() ? loaded->value().get() : nullptr;
}

TEST(ReplayTest, LooseThresholdServesWrongAnswersAndTheReportCountsThem) {
  const Embedder* embedder = BundledEmbedder();
  ASSERT_NE(embedder, nullptr);
  std::vector<TraceCall> calls = {
      Call(0, "search", "How do I reset my password?", "reset-password"),
      // Another intent: a loose threshold without the guard serves the first
      // answer.
      Call(10'000, "search", "How do I delete my account?", "delete-account"),
      // The same intent in other words: a right semantic hit.
      Call(20'000, "search", "How can I reset my password?", "reset-password"),
      // The wrong answer is now stored under this wording too: an exact hit,
      // still wrong.
      Call(30'000, "search", "How do I delete my account?", "delete-account"),
  };
  ReplayReport loose = Replay(calls, Policy("semantic-noguard:0.30"), embedder);
  EXPECT_EQ(loose.upstream, 1u);
  EXPECT_EQ(loose.saved.semantic, 2u);
  EXPECT_EQ(loose.saved.exact, 1u);
  EXPECT_EQ(loose.labelled_served, 3u);
  EXPECT_EQ(loose.wrong, 2u);
  // One mistake, served twice: the repeat is an exact hit of the same pair,
  // and is not listed again.
  EXPECT_EQ(loose.wrong_distinct, 1u);
  EXPECT_NEAR(loose.wrong_ratio(), 2.0 / 3.0, 1e-9);
  ASSERT_EQ(loose.wrong_examples.size(), 1u);
  EXPECT_EQ(loose.wrong_examples[0].asked_intent, "delete-account");
  EXPECT_EQ(loose.wrong_examples[0].source_intent, "reset-password");
  EXPECT_NE(loose.wrong_examples[0].source.find("reset my password"), std::string::npos);

  // A strict threshold keeps the two intents apart and still matches the
  // paraphrase.
  ReplayReport strict = Replay(calls, Policy("semantic:0.90"), embedder);
  EXPECT_EQ(strict.wrong, 0u);
  EXPECT_EQ(strict.upstream, 2u);
  EXPECT_EQ(strict.saved.semantic, 1u);
  EXPECT_EQ(strict.saved.exact, 1u);
}

TEST(ReplayTest, UnlabelledCallsAreNeverCountedWrong) {
  const Embedder* embedder = BundledEmbedder();
  ASSERT_NE(embedder, nullptr);
  std::vector<TraceCall> calls = {Call(0, "search", "How do I reset my password?", ""),
                                  Call(10'000, "search", "How do I delete my account?", "")};
  ReplayReport r = Replay(calls, Policy("semantic-noguard:0.30"), embedder);
  EXPECT_EQ(r.served, 1u);
  EXPECT_EQ(r.labelled_served, 0u);
  EXPECT_EQ(r.wrong, 0u);
  // Without labels each call is its own intent: two windows, nothing
  // attainable, yet one call was saved.
  EXPECT_EQ(r.attainable(), 0u);
}

TEST(ReplayTest, ModelFailuresRateLimitsAndBreakerOpenings) {
  // No observations in the trace: the model decides. The tool fails every
  // attempt between 100 s and 200 s; the breaker (10 calls, 50%) opens.
  std::vector<TraceCall> calls;
  for (int i = 0; i < 300; ++i) {
    TraceCall call = Call(i * 1000, "search", "q" + std::to_string(i), "i" + std::to_string(i));
    call.latency.reset();
    call.outcome.reset();
    call.cost.reset();
    calls.push_back(std::move(call));
  }
  Simulation simulation;
  ToolModel model;
  model.cost = 0.5;
  model.latency_median = model.latency_p95 = std::chrono::milliseconds(100);
  model.bursts.push_back(
      {std::chrono::seconds(100), std::chrono::seconds(200), 1.0, StatusCode::kUnavailable});
  simulation.tools["search"] = model;
  ReplayPolicy policy = Policy("exact");
  policy.base.breaker.window_size = 10;
  policy.base.breaker.minimum_calls = 10;
  policy.base.breaker.open_wait = std::chrono::seconds(20);
  VectorCallSource source(calls);
  Result<ReplayReport> r = RunReplay(source, policy, simulation, ReplayOptions());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->requested, 300u);
  EXPECT_EQ(r->failed_without, 100u);
  EXPECT_GE(r->breaker_openings, 2u);
  EXPECT_GT(r->rejected_by_breaker, 0u);
  // New questions: nothing stale to serve. A breaker still open just after
  // the stretch fails a few more.
  EXPECT_GE(r->failed_with, 100u);
  EXPECT_LT(r->failed_with, 130u);
  EXPECT_NEAR(r->cost_without, 150.0, 1e-6);

  // A rate limit of 2 attempts per second against 5 calls a second.
  std::vector<TraceCall> fast;
  for (int i = 0; i < 50; ++i) {
    TraceCall call = Call(i * 200, "search", "q" + std::to_string(i), "i" + std::to_string(i));
    call.outcome.reset();
    fast.push_back(std::move(call));
  }
  ToolModel limited;
  limited.rate_limit_per_second = 2;
  simulation.tools["search"] = limited;
  VectorCallSource fast_source(fast);
  Result<ReplayReport> limited_report =
      RunReplay(fast_source, Policy("exact"), simulation, ReplayOptions());
  ASSERT_TRUE(limited_report.ok());
  EXPECT_GT(limited_report->rate_limited, 0u);
  EXPECT_GT(limited_report->retries, 0u);
}

TEST(ReplayTest, MoreCallsInFlightThanThreadsIsAClearError) {
  std::vector<TraceCall> calls;
  for (int i = 0; i < 5; ++i) calls.push_back(Call(i, "search", "q" + std::to_string(i), "i"));
  VectorCallSource source(calls);
  ReplayOptions options;
  options.max_threads = 3;
  Result<ReplayReport> r = RunReplay(source, Policy("exact"), Simulation(), options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("more than 3 calls in flight"), std::string::npos);
}

TEST(ReplayTest, PolicyFilesAndPresets) {
  std::string path = (std::filesystem::temp_directory_path() /
                      ("replay_policy_" + std::to_string(::getpid()) + ".json"))
                         .string();
  {
    std::ofstream out(path);
    out << R"({"name":"mine","ttl_s":60,"semantic":{"threshold":0.93},
               "retry":{"max_attempts":2},"tools":{"quotes":{"ttl_s":15,"semantic":false}}})";
  }
  Result<ReplayPolicy> p = ParsePolicySpec(path);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->name, "mine");
  EXPECT_EQ(p->base.cache.ttl, std::chrono::seconds(60));
  EXPECT_DOUBLE_EQ(p->base.cache.semantic.threshold, 0.93);
  EXPECT_FALSE(p->base.cache.semantic.params.empty());
  EXPECT_EQ(p->base.retry.max_attempts, 2);
  EXPECT_EQ(p->For("quotes").cache.ttl, std::chrono::seconds(15));
  EXPECT_TRUE(p->For("quotes").cache.semantic.params.empty());
  EXPECT_EQ(p->For("other").cache.ttl, std::chrono::seconds(60));
  {
    std::ofstream out(path);
    out << R"({"retry":{"max_attempts":2,"backoff":1}})";
  }
  Result<ReplayPolicy> bad = ParsePolicySpec(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unknown field 'backoff'"), std::string::npos)
      << bad.status().message();
  std::filesystem::remove(path);

  EXPECT_FALSE(ParsePolicySpec("semantic:1.5").ok());
  EXPECT_FALSE(ParsePolicySpec("no-such-preset").ok());
  Result<ReplayPolicy> noguard = ParsePolicySpec("semantic-noguard:0.8");
  ASSERT_TRUE(noguard.ok());
  EXPECT_FALSE(noguard->base.cache.semantic.guard);
  EXPECT_DOUBLE_EQ(noguard->base.cache.semantic.threshold, 0.8);
  EXPECT_FALSE(ParsePolicySpec("none")->base.cache.enabled);

  Result<Simulation> sim =
      ParseSimulation(R"({"tools":{"s":{"cost":0.5,"latency_ms":{"median":100,"p95":400},)"
                      R"("error_bursts":[{"from_s":10,"to_s":20}],"rate_limit_per_s":3}}})",
                      "sim.json");
  ASSERT_TRUE(sim.ok()) << sim.status().ToString();
  EXPECT_DOUBLE_EQ(sim->For("s").cost, 0.5);
  EXPECT_EQ(sim->For("s").latency_p95, std::chrono::milliseconds(400));
  EXPECT_EQ(sim->For("s").bursts.size(), 1u);
  EXPECT_EQ(sim->For("unknown").cost, 0.0);
  Result<Simulation> bad_sim = ParseSimulation(R"({"tools":{"s":{"failure_rate":2}}})", "sim.json");
  ASSERT_FALSE(bad_sim.ok());
  EXPECT_NE(bad_sim.status().message().find("tools.s.failure_rate"), std::string::npos);
}

TEST(ReplayTest, AnswersRoundTrip) {
  SimulatedAnswer a{42, 123456789, true, "intent|with|bars", R"({"q":"x|y"})", 7};
  SimulatedAnswer b;
  ASSERT_TRUE(DecodeAnswer(EncodeAnswer(a), &b));
  EXPECT_EQ(b.run, 7u);
  EXPECT_EQ(b.source, 42u);
  EXPECT_EQ(b.done_ns, 123456789);
  EXPECT_TRUE(b.labelled);
  EXPECT_EQ(b.label, "intent|with|bars");
  EXPECT_EQ(b.args, R"({"q":"x|y"})");
  EXPECT_FALSE(DecodeAnswer("garbage", &b));
}

// --- Timeouts, deadlines and the concurrency limit, in trace time ---

double Seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

TEST(ReplayTimeoutTest, AttemptTimeoutCutsSlowAttemptsInTraceTime) {
  // One attempt each, a 1 s attempt timeout: the 500 ms call succeeds, the
  // 3 s call is abandoned at exactly 1 s of trace time, whatever the speed.
  for (double speed : {0.0, 1000.0}) {
    ReplayPolicy policy = Policy("exact");
    policy.base.retry.max_attempts = 1;
    policy.base.timeout.attempt_timeout = std::chrono::seconds(1);
    std::vector<TraceCall> calls = {Call(0, "search", "fast", "fast", 500),
                                    Call(10'000, "search", "slow", "slow", 3000)};
    ReplayReport r = Replay(calls, policy, nullptr, speed);
    EXPECT_TRUE(r.timeouts_set);
    EXPECT_EQ(r.attempt_timeouts, 1u) << "speed " << speed;
    EXPECT_EQ(r.deadline_exceeded, 1u);
    EXPECT_EQ(r.failed_with, 1u);
    // The abandoned attempt was still made (and paid for).
    EXPECT_EQ(r.upstream, 2u);
    EXPECT_EQ(r.latency_with.max(), std::chrono::seconds(1)) << Seconds(r.latency_with.max());
    EXPECT_EQ(r.latency_without.max(), std::chrono::seconds(3));
  }
}

TEST(ReplayTimeoutTest, DeadlineEndsRetriesInTraceTime) {
  // Every attempt takes 1.5 s and fails; a 2 s deadline over all attempts:
  // the first fails at 1.5 s, the retry is cut at 2 s and no third starts.
  ReplayPolicy policy = Policy("exact");
  policy.base.retry.max_attempts = 5;
  policy.base.retry.initial_backoff = std::chrono::milliseconds(100);
  policy.base.timeout.deadline = std::chrono::seconds(2);
  Simulation simulation;
  simulation.defaults.latency_median = simulation.defaults.latency_p95 =
      std::chrono::milliseconds(1500);
  std::vector<TraceCall> calls = {Call(0, "search", "q", "q", 1500, StatusCode::kUnavailable)};
  VectorCallSource source(calls);
  Result<ReplayReport> r = RunReplay(source, policy, simulation, ReplayOptions());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->failed_with, 1u);
  EXPECT_EQ(r->deadline_exceeded, 1u);
  EXPECT_EQ(r->attempt_timeouts, 0u);  // Cut by the deadline, not the attempt timeout.
  EXPECT_EQ(r->upstream, 2u);
  EXPECT_EQ(r->retries, 1u);
  EXPECT_EQ(r->latency_with.max(), std::chrono::seconds(2)) << Seconds(r->latency_with.max());
}

TEST(ReplayTimeoutTest, ConcurrencyLimitQueuesAndRejectsInTraceTime) {
  // One upstream call at a time; three different questions at 0, 100 and
  // 200 ms, each taking 1 s.
  std::vector<TraceCall> calls = {Call(0, "search", "a", "a", 1000),
                                  Call(100, "search", "b", "b", 1000),
                                  Call(200, "search", "c", "c", 1000)};
  ReplayPolicy policy = Policy("exact");
  policy.base.limit.max_concurrent = 1;

  // No waiting: the two later calls are refused at once.
  ReplayReport at_once = Replay(calls, policy);
  EXPECT_TRUE(at_once.limit_set);
  EXPECT_EQ(at_once.rejected_by_limiter, 2u);
  EXPECT_EQ(at_once.failed_with, 2u);
  EXPECT_EQ(at_once.upstream, 1u);

  // Waiting up to 5 s: they queue and run one after the other, ending at
  // 2 s and 3 s (waits of 0.9 s and 1.8 s, in trace time).
  policy.base.limit.max_wait = std::chrono::seconds(5);
  for (double speed : {0.0, 1000.0}) {
    ReplayReport queued = Replay(calls, policy, nullptr, speed);
    EXPECT_EQ(queued.rejected_by_limiter, 0u) << "speed " << speed;
    EXPECT_EQ(queued.upstream, 3u);
    EXPECT_EQ(queued.latency_with.max(), std::chrono::milliseconds(2800))
        << Seconds(queued.latency_with.max());
  }

  // Waiting up to 1.5 s: the third would wait 1.8 s; it is refused at 1.7 s.
  policy.base.limit.max_wait = std::chrono::milliseconds(1500);
  ReplayReport bounded = Replay(calls, policy);
  EXPECT_EQ(bounded.rejected_by_limiter, 1u);
  EXPECT_EQ(bounded.upstream, 2u);
  EXPECT_EQ(bounded.latency_with.max(), std::chrono::milliseconds(1900));
}

TEST(ReplayTimeoutTest, PolicyFilesSetTimeoutsAndLimits) {
  std::string path = (std::filesystem::temp_directory_path() /
                      ("replay_limits_" + std::to_string(::getpid()) + ".json"))
                         .string();
  {
    std::ofstream out(path);
    out << R"({"timeout":{"attempt_ms":800,"deadline_ms":3000},)"
           R"("limit":{"max_concurrent":4,"max_wait_ms":250}})";
  }
  Result<ReplayPolicy> p = ParsePolicySpec(path);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->base.timeout.attempt_timeout, std::chrono::milliseconds(800));
  EXPECT_EQ(p->base.timeout.deadline, std::chrono::seconds(3));
  EXPECT_EQ(p->base.limit.max_concurrent, 4);
  EXPECT_EQ(p->base.limit.max_wait, std::chrono::milliseconds(250));
  {
    std::ofstream out(path);
    out << R"({"limit":{"max_inflight":4}})";
  }
  Result<ReplayPolicy> bad = ParsePolicySpec(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unknown field 'max_inflight'"), std::string::npos)
      << bad.status().message();
  std::filesystem::remove(path);
}

// --- A shared store (a real redis-server) and several workers ---

// Four agents ask three questions each, in waves 20 s apart (only the first
// agent in the first wave); within a wave the agents ask 300 ms apart and the
// answer takes 1 s, so most asks of a wave meet the first one in flight.
std::vector<TraceCall> AgentsTrace() {
  std::vector<TraceCall> calls;
  for (int wave = 0; wave < 4; ++wave) {
    for (int q = 0; q < 3; ++q) {
      for (int agent = 0; agent < (wave == 0 ? 1 : 4); ++agent) {
        int64_t at = wave * 20'000 + q * 5'000 + agent * 300;
        int question = (wave + q) % 5;
        TraceCall call = Call(at, "search", "question " + std::to_string(question),
                              "intent-" + std::to_string(question), 1000);
        call.agent = "agent-" + std::to_string(agent);
        calls.push_back(std::move(call));
      }
    }
  }
  return calls;
}

ReplayReport ReplayWith(const std::vector<TraceCall>& calls, size_t workers,
                        const SharedStoreOpener& shared) {
  VectorCallSource source(calls);
  ReplayOptions options;
  options.workers = workers;
  options.open_shared_store = shared;
  options.shared_store_label = shared ? "redis" : "";
  Result<ReplayReport> r = RunReplay(source, Policy("exact"), Simulation(), options);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : ReplayReport();
}

// Replays AgentsTrace alone, in four isolated workers, in four workers
// sharing the store at `url`, and again against the warm store.
void CheckWorkersSharingAStore(const std::string& url) {
  Result<SharedStoreOpener> shared =
      SharedStoreFromUrl(url, "replay-test-" + std::to_string(::getpid()));
  ASSERT_TRUE(shared.ok()) << shared.status().ToString();
  const std::vector<TraceCall> calls = AgentsTrace();

  ReplayReport one = ReplayWith(calls, 1, nullptr);
  ReplayReport isolated = ReplayWith(calls, 4, nullptr);
  ReplayReport together = ReplayWith(calls, 4, *shared);

  // Alone, each worker pays for what the others already learned.
  EXPECT_GT(isolated.upstream, one.upstream);
  // Sharing the store, the workers pay what one process pays: results
  // other workers stored, and leases other workers hold, save the rest.
  EXPECT_EQ(together.upstream, one.upstream);
  EXPECT_EQ(together.saved.total(), one.saved.total());
  EXPECT_GT(together.shared_hits, 0u);
  EXPECT_GT(together.remote_coalesced, 0u);
  EXPECT_EQ(together.wrong, 0u);
  EXPECT_EQ(together.failed_with, 0u);
  EXPECT_EQ(together.workers, 4u);

  // A second replay against the warm store calls upstream not once, and
  // every answer comes from the first replay's calls.
  ReplayReport warm = ReplayWith(calls, 4, *shared);
  EXPECT_EQ(warm.upstream, 0u);
  EXPECT_EQ(warm.saved.total(), warm.requested);
  EXPECT_EQ(warm.served, warm.requested);
  EXPECT_EQ(warm.wrong, 0u);
  EXPECT_GT(warm.shared_hits, 0u);
}

TEST(ReplaySharedStoreTest, WorkersSharingRedisCallUpstreamAsOneProcessDoes) {
  testing::RedisServer server;
  ASSERT_TRUE(server.ok()) << server.error();
  CheckWorkersSharingAStore("redis://127.0.0.1:" + std::to_string(server.port()));
}

TEST(ReplaySharedStoreTest, WorkersSharingPostgresCallUpstreamAsOneProcessDoes) {
  testing::PostgresServer server;
  Status started = server.Start();
  ASSERT_TRUE(started.ok()) << started.ToString();
  CheckWorkersSharingAStore("postgresql://postgres@127.0.0.1:" + std::to_string(server.port()) +
                            "/postgres?sslmode=disable");
}

TEST(ReplaySharedStoreTest, BadStoreUrlsAreRefusedEarly) {
  Result<SharedStoreOpener> bad = SharedStoreFromUrl("memcached://host", "ns");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("redis://"), std::string::npos);
  EXPECT_EQ(RedactUrl("redis://user:secret@host:6379/0"), "redis://user:***@host:6379/0");
  EXPECT_EQ(RedactUrl("redis://host:6379"), "redis://host:6379");

  // A server that does not answer: the replay fails before the first call,
  // naming the store.
  Result<SharedStoreOpener> down = SharedStoreFromUrl("redis://127.0.0.1:1", "ns");
  ASSERT_TRUE(down.ok());
  VectorCallSource source({Call(0, "search", "q", "q")});
  ReplayOptions options;
  options.open_shared_store = *down;
  options.shared_store_label = "redis://127.0.0.1:1";
  Result<ReplayReport> r = RunReplay(source, Policy("exact"), Simulation(), options);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("redis://127.0.0.1:1"), std::string::npos)
      << r.status().message();
}

}  // namespace
}  // namespace toolops
