// src/engine/retry_budget_test.cc

#include "engine/retry_budget.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "engine/retry.h"
#include "toolops/clock.h"

namespace toolops {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

RetryPolicy BudgetPolicy(double ratio, double per_second, Duration window) {
  RetryPolicy policy;
  policy.max_attempts = 5;
  policy.budget_ratio = ratio;
  policy.budget_min_retries_per_second = per_second;
  policy.budget_window = window;
  return policy;
}

// Budget windows (of kBuckets buckets) touched between the budget's creation
// and `elapsed` later: the W of the guarantee in retry_budget.h.
int64_t WindowsTouched(Duration window, Duration elapsed) {
  const Duration bucket = window / RetryBudget::kBuckets;
  const int64_t last_bucket = elapsed / bucket;
  return (last_bucket + RetryBudget::kBuckets) / RetryBudget::kBuckets;
}

// Grants TryAcquireRetry until it refuses; returns the number granted.
int64_t DrainRetries(RetryBudget& budget) {
  int64_t granted = 0;
  while (budget.TryAcquireRetry()) {
    if (++granted > 1'000'000) break;  // A runaway budget fails the test, not the machine.
  }
  return granted;
}

TEST(RetryBudgetTest, AllowsRatioTimesCallsPlusFloor) {
  struct Case {
    std::string name;
    double ratio;
    double per_second;
    Duration window;
    int calls;
    int64_t want_granted;
  };
  const std::vector<Case> cases = {
      {"ratio alone", 0.2, 0.0, seconds(10), 50, 10},
      {"floor alone lets a quiet tool retry", 0.2, 1.0, seconds(10), 0, 10},
      {"ratio and floor add up", 0.2, 1.0, seconds(10), 50, 20},
      {"zero budget refuses every retry", 0.0, 0.0, seconds(10), 1000, 0},
      {"fractions round down", 0.5, 0.25, seconds(4), 3, 2},  // 1.5 + 1 = 2.5
      {"ratio above one", 10.0, 0.0, seconds(10), 1, 10},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    FakeClock clock;
    RetryBudget budget(BudgetPolicy(c.ratio, c.per_second, c.window), &clock);
    for (int i = 0; i < c.calls; ++i) budget.RecordAttempt();
    EXPECT_EQ(DrainRetries(budget), c.want_granted);
    EXPECT_EQ(budget.calls_in_window(), c.calls);
    EXPECT_EQ(budget.retries_in_window(), c.want_granted);
  }
}

TEST(RetryBudgetTest, RefusalReportsTheWindow) {
  FakeClock clock;
  RetryBudget budget(BudgetPolicy(0.2, 0.0, seconds(10)), &clock);
  for (int i = 0; i < 10; ++i) budget.RecordAttempt();
  RetryBudget::Usage usage;
  ASSERT_TRUE(budget.TryAcquireRetry(&usage));
  EXPECT_EQ(usage.calls, 10);
  EXPECT_EQ(usage.retries, 1);
  ASSERT_TRUE(budget.TryAcquireRetry(&usage));
  ASSERT_FALSE(budget.TryAcquireRetry(&usage));
  EXPECT_EQ(usage.calls, 10);
  EXPECT_EQ(usage.retries, 2);
  EXPECT_DOUBLE_EQ(usage.allowed, 2.0);
}

TEST(RetryBudgetTest, WindowSlidesOneBucketAtATime) {
  FakeClock clock;
  RetryBudget budget(BudgetPolicy(0.5, 0.0, seconds(10)), &clock);  // 1s buckets.
  for (int i = 0; i < 10; ++i) budget.RecordAttempt();              // Bucket 0.
  EXPECT_EQ(DrainRetries(budget), 5);
  clock.Advance(seconds(5));
  for (int i = 0; i < 4; ++i) budget.RecordAttempt();  // Bucket 5.
  // 14 calls allow 7 retries; 5 are spent.
  EXPECT_EQ(DrainRetries(budget), 2);

  clock.Advance(milliseconds(4999));  // Bucket 9: bucket 0 is still in.
  EXPECT_EQ(budget.calls_in_window(), 14);
  EXPECT_EQ(budget.retries_in_window(), 7);

  clock.Advance(milliseconds(1));  // Bucket 10: bucket 0 leaves.
  EXPECT_EQ(budget.calls_in_window(), 4);
  EXPECT_EQ(budget.retries_in_window(), 2);
  EXPECT_EQ(DrainRetries(budget), 0);  // 4 calls allow 2, both spent in bucket 5.

  clock.Advance(seconds(5));  // Bucket 15: bucket 5 leaves too.
  EXPECT_EQ(budget.calls_in_window(), 0);
  EXPECT_EQ(budget.retries_in_window(), 0);

  clock.Advance(std::chrono::hours(24));  // Long silences reuse stale buckets.
  budget.RecordAttempt();
  budget.RecordAttempt();
  EXPECT_EQ(budget.calls_in_window(), 2);
  EXPECT_EQ(DrainRetries(budget), 1);
}

// The guarantee asked of the budget: with every upstream attempt failing and
// every call allowed 5 attempts, attempts <= (1 + ratio) * calls + floor per
// window touched; and it does let retries through up to about that figure.
TEST(RetryBudgetTest, FailingToolStaysWithinRatioPlusFloor) {
  struct Case {
    std::string name;
    double ratio;
    double per_second;
    int bursts;
    int calls_per_burst;
    Duration gap_between_calls;
    Duration pause_after_burst;
  };
  const std::vector<Case> cases = {
      {"busy tool: the ratio dominates", 0.2, 1.0, 1, 15000, milliseconds(20), Duration::zero()},
      {"quiet tool: the floor dominates", 0.2, 1.0, 1, 300, seconds(2), Duration::zero()},
      {"bursts of calls", 0.2, 1.0, 10, 1000, Duration::zero(), seconds(25)},
      {"bursts with a tenth of a second between calls", 0.2, 1.0, 10, 200, milliseconds(100),
       seconds(7)},
      {"no floor", 0.2, 0.0, 1, 5000, milliseconds(3), Duration::zero()},
      {"no budget at all", 0.0, 0.0, 1, 1000, milliseconds(10), Duration::zero()},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const Duration window = seconds(10);
    const RetryPolicy policy = BudgetPolicy(c.ratio, c.per_second, window);
    FakeClock clock;
    const TimePoint start = clock.Now();
    SeededRandom random(1);
    RetryBudget budget(policy, &clock);

    int64_t calls = 0;
    int64_t attempts = 0;
    int64_t wanted_retries = 0;
    for (int burst = 0; burst < c.bursts; ++burst) {
      for (int i = 0; i < c.calls_per_burst; ++i) {
        budget.RecordAttempt();
        ++calls;
        int made = 1;
        while (true) {
          if (made < policy.max_attempts) ++wanted_retries;
          const RetryDecision d = DecideRetry("search", policy, UnavailableError("down"), made,
                                              clock.Now(), TimePoint::max(), &budget, random);
          if (!d.retry) break;
          ++made;
        }
        attempts += made;
        clock.Advance(c.gap_between_calls);
      }
      clock.Advance(c.pause_after_burst);
    }

    const double floor = c.per_second * 10.0;
    const int64_t windows = WindowsTouched(window, clock.Now() - start);
    const double bound = (1.0 + c.ratio) * static_cast<double>(calls) + floor * windows;
    EXPECT_LE(static_cast<double>(attempts), bound) << "calls " << calls << " windows " << windows;
    // Not stingier than it must be: most of what the figure allows is granted.
    const double allowed_retries =
        std::min(bound - static_cast<double>(calls), static_cast<double>(wanted_retries));
    EXPECT_GE(static_cast<double>(attempts - calls), std::floor(0.8 * allowed_retries))
        << "calls " << calls << " windows " << windows;
  }
}

// Many threads asking at once cannot overshoot: the check and the count are
// one step.
TEST(RetryBudgetTest, ConcurrentRetriesNeverOvershootTheBudget) {
  constexpr int kThreads = 8;
  constexpr int kCallsPerThread = 1000;
  FakeClock clock;
  RetryBudget budget(BudgetPolicy(0.2, 1.0, seconds(10)), &clock);
  std::atomic<int64_t> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kCallsPerThread; ++i) {
        budget.RecordAttempt();
        for (int retry = 0; retry < 4; ++retry) {
          if (budget.TryAcquireRetry()) granted.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  const int64_t calls = kThreads * kCallsPerThread;
  EXPECT_EQ(budget.calls_in_window(), calls);
  EXPECT_EQ(budget.retries_in_window(), granted.load());
  EXPECT_LE(granted.load(), static_cast<int64_t>(0.2 * calls + 10));
  // What is left is exactly the rest of the figure.
  EXPECT_EQ(DrainRetries(budget) + granted.load(), static_cast<int64_t>(0.2 * calls + 10));
}

TEST(RetryBudgetTest, ConcurrentUseWithMovingClockStaysWithinBound) {
  constexpr int kThreads = 6;
  constexpr int kCallsPerThread = 3000;
  const Duration window = seconds(10);
  FakeClock clock;
  const TimePoint start = clock.Now();
  RetryBudget budget(BudgetPolicy(0.2, 1.0, window), &clock);
  std::atomic<int64_t> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCallsPerThread; ++i) {
        budget.RecordAttempt();
        for (int retry = 0; retry < 4; ++retry) {
          if (budget.TryAcquireRetry()) granted.fetch_add(1, std::memory_order_relaxed);
        }
        if (t == 0) clock.Advance(milliseconds(20));
        if (i % 64 == 0) {
          (void)budget.calls_in_window();  // Readers race with writers too.
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  const int64_t calls = kThreads * kCallsPerThread;
  const int64_t windows = WindowsTouched(window, clock.Now() - start);
  EXPECT_LE(static_cast<double>(granted.load()), 0.2 * calls + 10.0 * windows)
      << "windows " << windows;
  EXPECT_GT(granted.load(), 0);
}

}  // namespace
}  // namespace toolops
