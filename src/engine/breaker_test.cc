// src/engine/breaker_test.cc

#include "engine/breaker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <deque>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/mutex.h"
#include "toolops/clock.h"

namespace toolops {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// A small count-based breaker: a window of 10 calls, decisions from 5 calls,
// 50% thresholds, calls over 1s are slow, 30s open, 2 probes.
BreakerPolicy CountPolicy() {
  BreakerPolicy policy;
  policy.window = BreakerWindow::kCountBased;
  policy.window_size = 10;
  policy.minimum_calls = 5;
  policy.failure_rate_threshold = 0.5;
  policy.slow_call_rate_threshold = 0.5;
  policy.slow_call_duration = seconds(1);
  policy.open_wait = seconds(30);
  policy.half_open_probes = 2;
  return policy;
}

// The same with a time-based window of 10s (ten 1s buckets).
BreakerPolicy TimePolicy() {
  BreakerPolicy policy = CountPolicy();
  policy.window = BreakerWindow::kTimeBased;
  policy.window_duration = seconds(10);
  return policy;
}

// "500ms" or "30s".
Duration ParseDuration(const std::string& text) {
  if (text.size() > 2 && text.compare(text.size() - 2, 2, "ms") == 0) {
    return milliseconds(std::stoll(text.substr(0, text.size() - 2)));
  }
  if (text.size() > 1 && text.back() == 's') {
    return seconds(std::stoll(text.substr(0, text.size() - 1)));
  }
  ADD_FAILURE() << "bad duration '" << text << "'";
  return Duration::zero();
}

// Runs a script of space-separated steps against a breaker:
//   S F s f I    a permitted call (the permit must be granted) that succeeds,
//                fails, succeeds slowly, fails slowly, or ends ignored; a
//                count in front repeats it ("5F")
//   A            a permitted call held open (its outcome is reported later)
//   .S .F .s .f .I  report the outcome of the oldest held call
//   R            TryAcquire must be rejected by the breaker
//   +30s +500ms  advance the clock
//   =open =closed =half-open  the state must be this
void RunScript(const std::string& script, const BreakerPolicy& policy, CircuitBreaker& breaker,
               FakeClock& clock) {
  const Duration fast = milliseconds(5);
  const Duration slow = policy.slow_call_duration + milliseconds(1);
  auto report = [&](char outcome, uint64_t generation) {
    switch (outcome) {
      case 'S':
        breaker.OnSuccess(generation, fast);
        break;
      case 's':
        breaker.OnSuccess(generation, slow);
        break;
      case 'F':
        breaker.OnFailure(generation, fast);
        break;
      case 'f':
        breaker.OnFailure(generation, slow);
        break;
      case 'I':
        breaker.OnIgnored(generation);
        break;
      default:
        ADD_FAILURE() << "unknown outcome '" << outcome << "'";
    }
  };

  std::deque<uint64_t> held;
  std::istringstream steps(script);
  std::string step;
  int index = 0;
  while (steps >> step) {
    SCOPED_TRACE(testing::Message() << "step " << index++ << " '" << step << "'");
    if (step[0] == '+') {
      clock.Advance(ParseDuration(step.substr(1)));
    } else if (step[0] == '=') {
      EXPECT_EQ(BreakerStateName(breaker.state()), step.substr(1));
    } else if (step[0] == '.') {
      if (held.empty()) {
        ADD_FAILURE() << "no held call to report";
        return;
      }
      report(step[1], held.front());
      held.pop_front();
    } else {
      size_t digits = 0;
      while (digits < step.size() && std::isdigit(static_cast<unsigned char>(step[digits]))) {
        ++digits;
      }
      const int count = digits == 0 ? 1 : std::stoi(step.substr(0, digits));
      const char op = step[digits];
      for (int i = 0; i < count; ++i) {
        const BreakerPermit permit = breaker.TryAcquire();
        if (op == 'R') {
          EXPECT_FALSE(permit.allowed);
          EXPECT_EQ(permit.rejection.code(), StatusCode::kUnavailable);
          EXPECT_EQ(permit.rejection.guard(), Guard::kBreaker);
          continue;
        }
        if (!permit.allowed) {
          ADD_FAILURE() << "call " << i << " rejected: " << permit.rejection.ToString();
          return;
        }
        if (op == 'A') {
          held.push_back(permit.generation);
        } else {
          report(op, permit.generation);
        }
      }
    }
  }
}

struct ScriptCase {
  std::string name;
  BreakerPolicy policy;
  std::string script;
  BreakerState want_state;
  uint64_t want_transitions;
};

TEST(CircuitBreakerTest, FollowsScriptedOutcomes) {
  BreakerPolicy four_probes = CountPolicy();
  four_probes.half_open_probes = 4;
  BreakerPolicy one_probe = CountPolicy();
  one_probe.half_open_probes = 1;
  BreakerPolicy min_above_window = CountPolicy();
  min_above_window.window_size = 5;
  min_above_window.minimum_calls = 20;
  BreakerPolicy slow_only = CountPolicy();
  slow_only.failure_rate_threshold = 1.0;
  slow_only.slow_call_rate_threshold = 0.6;
  BreakerPolicy min_ten = CountPolicy();
  min_ten.minimum_calls = 10;

  const std::vector<ScriptCase> cases = {
      // Closed, count-based.
      {"stays closed below minimum calls", CountPolicy(), "4F =closed", BreakerState::kClosed, 0},
      {"opens once minimum calls are reached", CountPolicy(), "4F =closed F =open R",
       BreakerState::kOpen, 1},
      {"stays closed below the failure threshold", CountPolicy(), "3S 2F =closed 5S =closed",
       BreakerState::kClosed, 0},
      {"opens exactly at the failure threshold", CountPolicy(), "3S 2F =closed F =open",
       BreakerState::kOpen, 1},
      {"count window counts only the last calls", CountPolicy(), "20S 4F =closed F =open",
       BreakerState::kOpen, 1},
      {"old failures leave the count window", min_ten, "4F 6S =closed 4S 4F =closed F =open",
       BreakerState::kOpen, 1},
      {"minimum above window size waits for a full window", min_above_window, "4F =closed F =open",
       BreakerState::kOpen, 1},
      {"ignored calls are not counted", CountPolicy(), "5I 4F =closed F =open", BreakerState::kOpen,
       1},
      {"slow successes open at the slow-call rate", CountPolicy(), "2S 2s =closed s =open",
       BreakerState::kOpen, 1},
      {"slow failure counts as slow", slow_only, "2S 3f =open", BreakerState::kOpen, 1},
      {"slow calls below the slow rate stay closed", slow_only, "3S 2s 3F =closed",
       BreakerState::kClosed, 0},

      // Open and half-open.
      {"open rejects until the open wait has passed", CountPolicy(),
       "5F R +29s R =open +1s =open A =half-open", BreakerState::kHalfOpen, 2},
      {"half-open closes when every probe succeeds", CountPolicy(),
       "5F +30s S =half-open S =closed", BreakerState::kClosed, 3},
      {"half-open admits only the probe count", CountPolicy(),
       "5F +30s A A R R =half-open .S .S =closed S S", BreakerState::kClosed, 3},
      {"closes with an empty window", CountPolicy(), "5F +30s 2S =closed 4F =closed F =open",
       BreakerState::kOpen, 4},
      {"failed probe reaching the threshold reopens at once", CountPolicy(),
       "5F +30s A F =open R .S =open", BreakerState::kOpen, 3},
      {"failure below the threshold waits for the other probes", four_probes,
       "5F +30s F =half-open S S =half-open S =closed", BreakerState::kClosed, 3},
      {"second failure of four probes reopens", four_probes, "5F +30s S F =half-open F =open",
       BreakerState::kOpen, 3},
      {"slow probes reopen", CountPolicy(), "5F +30s s =open", BreakerState::kOpen, 3},
      {"reopened breaker waits a fresh open wait", CountPolicy(),
       "5F +30s F =open +29s R +1s S S =closed", BreakerState::kClosed, 5},
      {"ignored probe frees its slot", one_probe, "5F +30s A R .I A R .S =closed",
       BreakerState::kClosed, 3},

      // Generations.
      {"call admitted before opening cannot count as a probe", CountPolicy(),
       "A 5F +30s A .S =half-open S =half-open .S =closed", BreakerState::kClosed, 3},
      {"call admitted before opening cannot reopen it", CountPolicy(),
       "A 5F +30s 2S =closed .F 4F =closed F =open", BreakerState::kOpen, 4},
      {"probe of an earlier half-open cannot reopen the next", four_probes,
       "5F +30s A 2F =open +30s A F =half-open .F =half-open S .S =half-open S =closed",
       BreakerState::kClosed, 5},

      // Time-based.
      {"time window opens on recent failures", TimePolicy(), "5F =open", BreakerState::kOpen, 1},
      {"time window decides on the rate", TimePolicy(), "3S 2F =closed F =open",
       BreakerState::kOpen, 1},
      {"time window keeps calls within its duration", TimePolicy(), "4F +9s F =open",
       BreakerState::kOpen, 1},
      {"time window forgets calls older than its duration", TimePolicy(),
       "4F +10s 4F =closed F =open", BreakerState::kOpen, 1},
      {"time window slides bucket by bucket", TimePolicy(), "2F +5s 2F +4999ms =closed F =open",
       BreakerState::kOpen, 1},
      {"time window forgets the expired bucket only", TimePolicy(),
       "2F +5s 2F +5s =closed F =closed S =closed F =open", BreakerState::kOpen, 1},
      {"time window half-open cycle", TimePolicy(), "5F +30s S S =closed 4F +3600s 4F =closed",
       BreakerState::kClosed, 3},
  };
  for (const ScriptCase& c : cases) {
    SCOPED_TRACE(c.name);
    FakeClock clock;
    CircuitBreaker breaker("search", c.policy, &clock);
    RunScript(c.script, c.policy, breaker, clock);
    EXPECT_EQ(breaker.state(), c.want_state);
    EXPECT_EQ(breaker.transitions(), c.want_transitions);
  }
}

TEST(CircuitBreakerTest, RejectionNamesToolStateReasonAndProbeTime) {
  BreakerPolicy policy = CountPolicy();
  policy.minimum_calls = 8;
  FakeClock clock;
  CircuitBreaker breaker("search", policy, &clock);
  RunScript("3S 5F =open", policy, breaker, clock);

  BreakerPermit permit = breaker.TryAcquire();
  ASSERT_FALSE(permit.allowed);
  EXPECT_EQ(permit.state, BreakerState::kOpen);
  EXPECT_EQ(permit.rejection.code(), StatusCode::kUnavailable);
  EXPECT_EQ(permit.rejection.guard(), Guard::kBreaker);
  EXPECT_EQ(permit.rejection.message(),
            "tool 'search' circuit breaker is open: failure rate 62.5% >= 50% over the last 8 "
            "calls; it lets a probe call through in 30s");
  EXPECT_EQ(permit.rejection.retry_after(), seconds(30));

  clock.Advance(milliseconds(12'500));
  permit = breaker.TryAcquire();
  EXPECT_EQ(permit.rejection.retry_after(), milliseconds(17'500));
  EXPECT_NE(permit.rejection.message().find("through in 17.5s"), std::string_view::npos)
      << permit.rejection.message();
}

TEST(CircuitBreakerTest, RejectionExplainsSlowCallsAndTimeWindow) {
  FakeClock clock;
  CircuitBreaker breaker("search", TimePolicy(), &clock);
  RunScript("2S 3s =open", TimePolicy(), breaker, clock);
  const BreakerPermit permit = breaker.TryAcquire();
  ASSERT_FALSE(permit.allowed);
  EXPECT_EQ(permit.rejection.message(),
            "tool 'search' circuit breaker is open: slow-call rate 60% >= 50% (calls slower "
            "than 1s) over the last 10s (5 calls); it lets a probe call through in 30s");
}

TEST(CircuitBreakerTest, HalfOpenRejectionSaysProbesAreOut) {
  FakeClock clock;
  CircuitBreaker breaker("search", CountPolicy(), &clock);
  RunScript("5F +30s A A", CountPolicy(), breaker, clock);
  const BreakerPermit permit = breaker.TryAcquire();
  ASSERT_FALSE(permit.allowed);
  EXPECT_EQ(permit.state, BreakerState::kHalfOpen);
  EXPECT_EQ(permit.rejection.message(),
            "tool 'search' circuit breaker is half-open (it opened because failure rate 100% >= "
            "50% over the last 5 calls): all 2 probe calls are taken; it decides once they "
            "finish");
  EXPECT_EQ(permit.rejection.retry_after(), Duration::zero());
}

TEST(CircuitBreakerTest, ForcedOpenStaysOpenUntilReset) {
  FakeClock clock;
  CircuitBreaker breaker("search", CountPolicy(), &clock);
  std::vector<std::string> changes;
  breaker.SetListener([&](BreakerState from, BreakerState to, std::string_view reason) {
    changes.push_back(std::string(BreakerStateName(from)) + "->" +
                      std::string(BreakerStateName(to)) + ": " + std::string(reason));
  });
  breaker.ForceOpen();
  EXPECT_EQ(breaker.state(), BreakerState::kOpen);
  clock.Advance(std::chrono::hours(1));
  BreakerPermit permit = breaker.TryAcquire();
  ASSERT_FALSE(permit.allowed);
  EXPECT_EQ(permit.rejection.message(),
            "tool 'search' circuit breaker is open: forced open by an operator; it stays open "
            "until reset");
  EXPECT_EQ(permit.rejection.retry_after(), Duration::zero());

  breaker.Reset();
  EXPECT_EQ(breaker.state(), BreakerState::kClosed);
  EXPECT_TRUE(breaker.TryAcquire().allowed);
  EXPECT_EQ(changes, (std::vector<std::string>{"closed->open: forced open by an operator",
                                               "open->closed: reset by an operator"}));
}

TEST(CircuitBreakerTest, ResetForgetsTheWindow) {
  FakeClock clock;
  CircuitBreaker breaker("search", CountPolicy(), &clock);
  RunScript("4F", CountPolicy(), breaker, clock);
  breaker.Reset();
  RunScript("4F =closed F =open", CountPolicy(), breaker, clock);
}

TEST(CircuitBreakerTest, DisabledBreakerNeverOpens) {
  BreakerPolicy policy = CountPolicy();
  policy.enabled = false;
  FakeClock clock;
  CircuitBreaker breaker("search", policy, &clock);
  RunScript("100F 100f =closed", policy, breaker, clock);
  EXPECT_EQ(breaker.transitions(), 0u);
}

TEST(CircuitBreakerTest, ListenerHearsEveryChangeWithItsReason) {
  FakeClock clock;
  CircuitBreaker breaker("search", CountPolicy(), &clock);
  std::vector<std::string> changes;
  breaker.SetListener([&](BreakerState from, BreakerState to, std::string_view reason) {
    // Calling back into the breaker from the listener must not deadlock.
    EXPECT_EQ(breaker.state(), to);
    changes.push_back(std::string(BreakerStateName(from)) + "->" +
                      std::string(BreakerStateName(to)) + ": " + std::string(reason));
  });
  RunScript("5F +30s F +30s S S =closed", CountPolicy(), breaker, clock);
  EXPECT_EQ(changes, (std::vector<std::string>{
                         "closed->open: failure rate 100% >= 50% over the last 5 calls",
                         "open->half-open: open wait of 30s passed; letting 2 probe calls through",
                         "half-open->open: 1 of 2 half-open probes failed (50% >= 50%)",
                         "open->half-open: open wait of 30s passed; letting 2 probe calls through",
                         "half-open->closed: 2 half-open probes finished: 0 failed, 0 slow",
                     }));
  EXPECT_EQ(breaker.transitions(), 5u);

  breaker.SetListener(nullptr);
  RunScript("5F =open", CountPolicy(), breaker, clock);
  EXPECT_EQ(changes.size(), 5u);
}

TEST(CircuitBreakerTest, ClosedPermitsCarryTheCurrentGeneration) {
  FakeClock clock;
  CircuitBreaker breaker("search", CountPolicy(), &clock);
  const BreakerPermit before = breaker.TryAcquire();
  RunScript("5F +30s 2S =closed", CountPolicy(), breaker, clock);
  const BreakerPermit after = breaker.TryAcquire();
  EXPECT_TRUE(before.allowed);
  EXPECT_TRUE(after.allowed);
  EXPECT_EQ(after.state, BreakerState::kClosed);
  EXPECT_TRUE(after.rejection.ok());
  EXPECT_EQ(after.generation, before.generation + 3);
}

// Many threads call through a flaky tool while the clock moves. Half-open
// never has more than half_open_probes calls out, and the listener sees a
// consistent chain of changes, in order.
TEST(CircuitBreakerTest, ConcurrentCallsKeepProbeLimitAndOrderedChanges) {
  constexpr int kThreads = 8;
  constexpr int kCallsPerThread = 4000;
  BreakerPolicy policy = CountPolicy();
  policy.half_open_probes = 3;
  policy.open_wait = milliseconds(50);
  FakeClock clock;
  CircuitBreaker breaker("search", policy, &clock);

  Mutex changes_mu;
  std::vector<std::pair<BreakerState, BreakerState>> changes;
  breaker.SetListener([&](BreakerState from, BreakerState to, std::string_view) {
    MutexLock lock(&changes_mu);
    changes.emplace_back(from, to);
  });

  // Probes out per half-open generation, and the most ever seen.
  Mutex probes_mu;
  std::map<uint64_t, int> probes_out;
  int most_probes_out = 0;
  std::atomic<int64_t> allowed{0};
  std::atomic<int64_t> rejected{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      SeededRandom random(t + 1);
      for (int i = 0; i < kCallsPerThread; ++i) {
        if (t == 0) clock.Advance(milliseconds(1));
        const BreakerPermit permit = breaker.TryAcquire();
        if (!permit.allowed) {
          rejected.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        allowed.fetch_add(1, std::memory_order_relaxed);
        const bool probe = permit.state == BreakerState::kHalfOpen;
        if (probe) {
          MutexLock lock(&probes_mu);
          most_probes_out = std::max(most_probes_out, ++probes_out[permit.generation]);
        }
        const uint64_t roll = random.Next() % 10;
        // Count the probe out before reporting: once reported, its slot may be reused.
        if (probe) {
          MutexLock lock(&probes_mu);
          --probes_out[permit.generation];
        }
        if (roll < 6) {
          breaker.OnFailure(permit.generation, milliseconds(1));
        } else if (roll < 9) {
          breaker.OnSuccess(permit.generation, milliseconds(1));
        } else {
          breaker.OnIgnored(permit.generation);
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  {
    MutexLock lock(&probes_mu);
    EXPECT_LE(most_probes_out, policy.half_open_probes);
    EXPECT_GT(most_probes_out, 0);
  }
  EXPECT_GT(allowed.load(), 0);
  EXPECT_GT(rejected.load(), 0);
  MutexLock lock(&changes_mu);
  ASSERT_FALSE(changes.empty());
  EXPECT_EQ(changes.size(), breaker.transitions());
  EXPECT_EQ(changes.front().first, BreakerState::kClosed);
  for (size_t i = 1; i < changes.size(); ++i) {
    ASSERT_EQ(changes[i].first, changes[i - 1].second) << "change " << i;
  }
  EXPECT_EQ(changes.back().second, breaker.state());
}

}  // namespace
}  // namespace toolops
