// src/engine/retry_test.cc

#include "engine/retry.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <memory>
#include <string>
#include <vector>

#include "engine/retry_budget.h"
#include "toolops/clock.h"

namespace toolops {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;

// A Random that always returns one value: 0 makes every jittered delay 0,
// kTop makes it the full cap.
class FixedRandom final : public Random {
 public:
  explicit FixedRandom(uint64_t value) : value_(value) {}
  uint64_t Next() override { return value_; }

 private:
  uint64_t value_;
};

constexpr uint64_t kTop = ~uint64_t{0};

RetryPolicy TestPolicy() {
  RetryPolicy policy;
  policy.max_attempts = 3;
  policy.initial_backoff = milliseconds(100);
  policy.multiplier = 2.0;
  policy.max_backoff = seconds(1);
  policy.max_retry_after = seconds(60);
  return policy;
}

// ---------------------------------------------------------------------------
// BackoffDelay

TEST(BackoffDelayTest, CapGrowsExponentiallyUpToMaxBackoff) {
  struct Case {
    int retry_number;
    Duration want_cap;
  };
  const std::vector<Case> cases = {
      {1, milliseconds(100)},  {2, milliseconds(200)}, {3, milliseconds(400)},
      {4, milliseconds(800)},  {5, seconds(1)},        {60, seconds(1)},
      {0, milliseconds(100)},  // Below 1 counts as the first retry.
      {-5, milliseconds(100)},
  };
  FixedRandom top(kTop);
  FixedRandom bottom(0);
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "retry " << c.retry_number);
    EXPECT_EQ(BackoffDelay(TestPolicy(), c.retry_number, top), c.want_cap);
    EXPECT_EQ(BackoffDelay(TestPolicy(), c.retry_number, bottom), Duration::zero());
  }
}

TEST(BackoffDelayTest, HugeRetryNumbersAndCapsDoNotOverflow) {
  struct Case {
    std::string name;
    Duration initial;
    double multiplier;
    Duration max;
    int retry_number;
    Duration want_top;
  };
  const std::vector<Case> cases = {
      {"largest multiplier, INT_MAX retries", milliseconds(100), 100.0, seconds(10), INT_MAX,
       seconds(10)},
      {"unbounded cap reaches Duration::max", Duration(1), 100.0, Duration::max(), 1000,
       Duration::max()},
      {"zero initial backoff never waits", Duration::zero(), 100.0, seconds(10), INT_MAX,
       Duration::zero()},
      {"multiplier 1 keeps the initial wait", milliseconds(250), 1.0, seconds(10), 50,
       milliseconds(250)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    RetryPolicy policy = TestPolicy();
    policy.initial_backoff = c.initial;
    policy.multiplier = c.multiplier;
    policy.max_backoff = c.max;
    FixedRandom top(kTop);
    FixedRandom bottom(0);
    // The largest draw lands on the cap; past 2^53ns the steps of a double
    // make it land just below.
    const Duration top_delay = BackoffDelay(policy, c.retry_number, top);
    EXPECT_LE(top_delay, c.want_top);
    EXPECT_GE(top_delay, c.want_top - c.want_top / (int64_t{1} << 50));
    EXPECT_EQ(BackoffDelay(policy, c.retry_number, bottom), Duration::zero());
    SeededRandom random(7);
    for (int i = 0; i < 1000; ++i) {
      Duration d = BackoffDelay(policy, c.retry_number, random);
      ASSERT_GE(d, Duration::zero());
      ASSERT_LE(d, c.want_top);
    }
  }
}

TEST(BackoffDelayTest, FullJitterIsUniformOverZeroToCap) {
  constexpr int kSamples = 20000;
  SeededRandom random(42);
  for (int retry = 1; retry <= 6; ++retry) {
    const RetryPolicy policy = TestPolicy();
    FixedRandom top(kTop);
    const Duration cap = BackoffDelay(policy, retry, top);
    SCOPED_TRACE(testing::Message() << "retry " << retry << " cap " << cap.count() << "ns");
    double sum = 0;
    Duration lowest = Duration::max();
    Duration highest = Duration::zero();
    int below_quarter = 0;
    for (int i = 0; i < kSamples; ++i) {
      const Duration d = BackoffDelay(policy, retry, random);
      ASSERT_GE(d, Duration::zero());
      ASSERT_LE(d, cap);
      sum += static_cast<double>(d.count());
      lowest = std::min(lowest, d);
      highest = std::max(highest, d);
      if (d < cap / 4) ++below_quarter;
    }
    // The mean of U[0, cap] is cap / 2 with a standard error of about
    // 0.29 * cap / sqrt(kSamples) = 0.002 * cap; 2% is ten of those.
    const double mean = sum / kSamples;
    EXPECT_NEAR(mean / static_cast<double>(cap.count()), 0.5, 0.02);
    // The whole range is used, not only the middle.
    EXPECT_LT(lowest, cap / 100);
    EXPECT_GT(highest, cap * 99 / 100);
    EXPECT_NEAR(static_cast<double>(below_quarter) / kSamples, 0.25, 0.02);
  }
}

// ---------------------------------------------------------------------------
// DecideRetry

enum class BudgetSetup { kNone, kRoomForOne, kExhausted };

struct DecideCase {
  std::string name;
  Status error;
  int attempts_made = 1;
  // Time from now to the deadline; Duration::max() means no deadline.
  Duration time_left = Duration::max();
  BudgetSetup budget = BudgetSetup::kNone;
  // Changes to TestPolicy().
  void (*configure)(RetryPolicy&) = nullptr;
  uint64_t random = kTop;

  bool want_retry = false;
  Duration want_delay{};
  // When !want_retry: either the error exactly, or a code, guard and text.
  bool want_error_unchanged = false;
  StatusCode want_code = StatusCode::kOk;
  Guard want_guard = Guard::kNone;
  std::vector<std::string> want_in_message{};
  // Retries the budget holds afterwards (when there is a budget).
  int64_t want_budget_retries = 0;
};

Status Refused() { return UnavailableError("connection refused"); }

std::vector<DecideCase> DecideCases() {
  std::vector<DecideCase> cases;
  auto add = [&cases](DecideCase c) { cases.push_back(std::move(c)); };

  // Rule 1: classification.
  add({.name = "not retryable code fails with the error unchanged",
       .error = InvalidArgumentError("bad query"),
       .want_error_unchanged = true});
  add({.name = "ok status is not retried", .error = Status(), .want_error_unchanged = true});
  add({.name = "code left out of retry_on is not retried",
       .error = Refused(),
       .configure = [](RetryPolicy& p) { p.retry_on = {StatusCode::kInternal}; },
       .want_error_unchanged = true});
  add({.name = "code added to retry_on is retried",
       .error = InternalError("boom"),
       .configure = [](RetryPolicy& p) { p.retry_on = {StatusCode::kInternal}; },
       .want_retry = true,
       .want_delay = milliseconds(100)});
  add({.name = "not retryable code spends no budget",
       .error = NotFoundError("no such page"),
       .budget = BudgetSetup::kRoomForOne,
       .want_error_unchanged = true,
       .want_budget_retries = 0});

  // Rule 2: attempts.
  add({.name = "last attempt ends the retries and says how many there were",
       .error = Refused(),
       .attempts_made = 3,
       .want_code = StatusCode::kUnavailable,
       .want_guard = Guard::kUpstream,
       .want_in_message = {"tool 'search' failed after 3 attempts: connection refused"}});
  add({.name = "single-attempt policy fails with the error unchanged",
       .error = Refused(),
       .configure = [](RetryPolicy& p) { p.max_attempts = 1; },
       .want_error_unchanged = true});

  // Rule 3: backoff and Retry-After.
  add({.name = "first retry waits up to the initial backoff",
       .error = Refused(),
       .want_retry = true,
       .want_delay = milliseconds(100)});
  add({.name = "second retry doubles the cap",
       .error = Refused(),
       .attempts_made = 2,
       .want_retry = true,
       .want_delay = milliseconds(200)});
  add({.name = "cap stops at max_backoff",
       .error = Refused(),
       .attempts_made = 10,
       .configure = [](RetryPolicy& p) { p.max_attempts = 20; },
       .want_retry = true,
       .want_delay = seconds(1)});
  add({.name = "jitter can pick no wait at all",
       .error = Refused(),
       .random = 0,
       .want_retry = true,
       .want_delay = Duration::zero()});
  add({.name = "retry-after longer than the backoff is waited",
       .error = UnavailableError("overloaded", seconds(5)),
       .want_retry = true,
       .want_delay = seconds(5)});
  add({.name = "retry-after shorter than the backoff keeps the backoff",
       .error = UnavailableError("overloaded", milliseconds(10)),
       .want_retry = true,
       .want_delay = milliseconds(100)});
  add({.name = "retry-after is ignored when not honoured",
       .error = UnavailableError("overloaded", seconds(120)),
       .configure = [](RetryPolicy& p) { p.honor_retry_after = false; },
       .want_retry = true,
       .want_delay = milliseconds(100)});
  add({.name = "retry-after equal to max_retry_after is waited",
       .error = ResourceExhaustedError("rate limited", seconds(60)),
       .want_retry = true,
       .want_delay = seconds(60)});
  add({.name = "retry-after above max_retry_after ends the retries",
       .error = ResourceExhaustedError("rate limited", seconds(120)),
       .budget = BudgetSetup::kRoomForOne,
       .want_code = StatusCode::kResourceExhausted,
       .want_guard = Guard::kUpstream,
       .want_in_message = {"tool 'search' asked to retry after 120s", "retry.max_retry_after (60s)",
                           "rate limited"},
       .want_budget_retries = 0});

  // Rule 4: deadline.
  add({.name = "next attempt after the deadline fails with the deadline guard",
       .error = Refused(),
       .time_left = milliseconds(50),
       .budget = BudgetSetup::kRoomForOne,
       .want_code = StatusCode::kDeadlineExceeded,
       .want_guard = Guard::kDeadline,
       .want_in_message = {"tool 'search': attempt 2 could not start before the deadline",
                           "wait 100ms, 50ms left",
                           "last error: UNAVAILABLE [upstream]: connection refused"},
       .want_budget_retries = 0});
  add({.name = "next attempt exactly at the deadline fails",
       .error = Refused(),
       .time_left = milliseconds(100),
       .want_code = StatusCode::kDeadlineExceeded,
       .want_guard = Guard::kDeadline,
       .want_in_message = {"could not start before the deadline"}});
  add({.name = "next attempt just before the deadline is retried",
       .error = Refused(),
       .time_left = milliseconds(100) + Duration(1),
       .want_retry = true,
       .want_delay = milliseconds(100)});
  add({.name = "retry-after that runs past the deadline fails with the deadline guard",
       .error = UnavailableError("overloaded", seconds(5)),
       .time_left = seconds(1),
       .want_code = StatusCode::kDeadlineExceeded,
       .want_guard = Guard::kDeadline,
       .want_in_message = {"wait 5s, 1s left", "overloaded"}});
  add({.name = "deadline already passed fails even without a wait",
       .error = Refused(),
       .time_left = -seconds(1),
       .random = 0,
       .want_code = StatusCode::kDeadlineExceeded,
       .want_guard = Guard::kDeadline,
       .want_in_message = {"0ms left"}});

  // Rule 5: budget.
  add({.name = "exhausted budget fails with the retry budget guard",
       .error = Refused(),
       .budget = BudgetSetup::kExhausted,
       .want_code = StatusCode::kResourceExhausted,
       .want_guard = Guard::kRetryBudget,
       .want_in_message = {"retry budget exhausted for tool 'search': 0 retries for 1 calls "
                           "in the last 10s (allowed 0 per call + 0 = 0)",
                           "(last error: UNAVAILABLE [upstream]: connection refused)"},
       .want_budget_retries = 0});
  add({.name = "budget with room allows the retry and counts it",
       .error = Refused(),
       .budget = BudgetSetup::kRoomForOne,
       .want_retry = true,
       .want_delay = milliseconds(100),
       .want_budget_retries = 1});
  return cases;
}

TEST(DecideRetryTest, FollowsTheRulesInOrder) {
  for (const DecideCase& c : DecideCases()) {
    SCOPED_TRACE(c.name);
    RetryPolicy policy = TestPolicy();
    if (c.configure != nullptr) c.configure(policy);
    FakeClock clock;
    const TimePoint now = clock.Now();
    const TimePoint deadline =
        c.time_left == Duration::max() ? TimePoint::max() : now + c.time_left;

    std::unique_ptr<RetryBudget> budget;
    if (c.budget != BudgetSetup::kNone) {
      RetryPolicy budget_policy = policy;
      budget_policy.budget_window = seconds(10);
      budget_policy.budget_min_retries_per_second = 0;
      budget_policy.budget_ratio = c.budget == BudgetSetup::kRoomForOne ? 1.0 : 0.0;
      budget = std::make_unique<RetryBudget>(budget_policy, &clock);
      budget->RecordAttempt();
    }
    FixedRandom random(c.random);

    const RetryDecision d = DecideRetry("search", policy, c.error, c.attempts_made, now, deadline,
                                        budget.get(), random);
    EXPECT_EQ(d.retry, c.want_retry) << d.final_status.ToString();
    if (c.want_retry) {
      EXPECT_EQ(d.delay, c.want_delay);
      EXPECT_TRUE(d.final_status.ok());
    } else if (c.want_error_unchanged) {
      EXPECT_EQ(d.final_status, c.error) << d.final_status.ToString();
      EXPECT_EQ(d.final_status.retry_after(), c.error.retry_after());
    } else {
      EXPECT_EQ(d.final_status.code(), c.want_code) << d.final_status.ToString();
      EXPECT_EQ(d.final_status.guard(), c.want_guard) << d.final_status.ToString();
      for (const std::string& text : c.want_in_message) {
        EXPECT_NE(d.final_status.message().find(text), std::string_view::npos)
            << "want '" << text << "' in: " << d.final_status.message();
      }
    }
    if (budget != nullptr) {
      EXPECT_EQ(budget->retries_in_window(), c.want_budget_retries);
    }
  }
}

TEST(DecideRetryTest, ContextKeepsTheToolsRetryAfterHint) {
  FakeClock clock;
  FixedRandom random(kTop);
  const Status error = ResourceExhaustedError("rate limited", seconds(120));
  const RetryDecision d =
      DecideRetry("search", TestPolicy(), error, 1, clock.Now(), TimePoint::max(), nullptr, random);
  ASSERT_FALSE(d.retry);
  EXPECT_EQ(d.final_status.retry_after(), seconds(120));
}

// A whole call under a failing tool: the attempts follow the schedule and stop
// at max_attempts.
TEST(DecideRetryTest, FailingCallMakesMaxAttemptsWithGrowingWaits) {
  FakeClock clock;
  FixedRandom random(kTop);
  RetryPolicy policy = TestPolicy();
  policy.max_attempts = 5;
  std::vector<Duration> waits;
  int attempts = 1;
  while (true) {
    RetryDecision d = DecideRetry("search", policy, Refused(), attempts, clock.Now(),
                                  TimePoint::max(), nullptr, random);
    if (!d.retry) {
      EXPECT_EQ(d.final_status.message(),
                "tool 'search' failed after 5 attempts: connection refused");
      break;
    }
    waits.push_back(d.delay);
    clock.SleepFor(d.delay);
    ++attempts;
  }
  EXPECT_EQ(attempts, 5);
  EXPECT_EQ(waits, (std::vector<Duration>{milliseconds(100), milliseconds(200), milliseconds(400),
                                          milliseconds(800)}));
  EXPECT_EQ(clock.slept(), milliseconds(1500));
}

}  // namespace
}  // namespace toolops
