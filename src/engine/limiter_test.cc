// src/engine/limiter_test.cc

#include "engine/limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "toolops/clock.h"

namespace toolops {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

LimitPolicy Limit(int max_concurrent) {
  LimitPolicy policy;
  policy.max_concurrent = max_concurrent;
  return policy;
}

// Spins (yielding) until `done` holds or `limit` of real time passes; returns
// whether it held. Used only to wait for another thread to reach a point.
template <typename Predicate>
bool WaitUntil(Predicate done, Duration limit = seconds(20)) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST(ConcurrencyLimiterTest, GrantsUpToTheLimit) {
  struct Case {
    std::string name;
    int max_concurrent;
    int acquires;
    int want_granted;
  };
  const std::vector<Case> cases = {
      {"one slot", 1, 3, 1},
      {"eight slots", 8, 20, 8},
      {"zero means unlimited", 0, 1000, 1000},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ConcurrencyLimiter limiter("search", Limit(c.max_concurrent));
    int granted = 0;
    for (int i = 0; i < c.acquires; ++i) granted += limiter.TryAcquire();
    EXPECT_EQ(granted, c.want_granted);
    EXPECT_EQ(limiter.in_use(), c.want_granted);
    for (int i = 0; i < granted; ++i) limiter.Release();
    EXPECT_EQ(limiter.in_use(), 0);
    EXPECT_TRUE(limiter.TryAcquire());
  }
}

TEST(ConcurrencyLimiterTest, UnlimitedEnqueueGrantsAtOnce) {
  ConcurrencyLimiter limiter("search", Limit(0));
  bool called = false;
  for (int i = 0; i < 100; ++i) EXPECT_EQ(limiter.Enqueue([&] { called = true; }), 0u);
  EXPECT_FALSE(called);
  EXPECT_EQ(limiter.in_use(), 100);
  EXPECT_EQ(limiter.waiting(), 0);
}

TEST(ConcurrencyLimiterTest, WaitersAreGrantedInArrivalOrder) {
  ConcurrencyLimiter limiter("search", Limit(1));
  ASSERT_TRUE(limiter.TryAcquire());
  std::vector<int> order;
  for (int i = 0; i < 5; ++i) {
    EXPECT_NE(limiter.Enqueue([&order, i] { order.push_back(i); }), 0u);
  }
  EXPECT_EQ(limiter.waiting(), 5);
  for (int i = 0; i < 5; ++i) {
    limiter.Release();
    EXPECT_EQ(order.size(), static_cast<size_t>(i + 1));
    // The slot went straight to the waiter: still one in use, none free.
    EXPECT_EQ(limiter.in_use(), 1);
    EXPECT_FALSE(limiter.TryAcquire());
  }
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
  limiter.Release();
  EXPECT_EQ(limiter.in_use(), 0);
  EXPECT_EQ(limiter.waiting(), 0);
}

TEST(ConcurrencyLimiterTest, CancelRemovesAWaiterBeforeItsGrant) {
  ConcurrencyLimiter limiter("search", Limit(1));
  ASSERT_TRUE(limiter.TryAcquire());
  std::vector<int> order;
  std::vector<ConcurrencyLimiter::Ticket> tickets;
  for (int i = 0; i < 3; ++i)
    tickets.push_back(limiter.Enqueue([&order, i] { order.push_back(i); }));
  EXPECT_TRUE(limiter.Cancel(tickets[1]));
  EXPECT_FALSE(limiter.Cancel(tickets[1]));  // Only once.
  EXPECT_EQ(limiter.waiting(), 2);

  limiter.Release();                         // To waiter 0.
  EXPECT_FALSE(limiter.Cancel(tickets[0]));  // Already granted: the slot is the caller's.
  limiter.Release();                         // To waiter 2.
  limiter.Release();
  EXPECT_EQ(order, (std::vector<int>{0, 2}));
  EXPECT_EQ(limiter.in_use(), 0);
}

TEST(ConcurrencyLimiterTest, CancelOfUnknownTicketIsFalse) {
  ConcurrencyLimiter limiter("search", Limit(1));
  EXPECT_FALSE(limiter.Cancel(0));
  EXPECT_FALSE(limiter.Cancel(12345));
}

TEST(ConcurrencyLimiterTest, GrantCallbackRunsWithoutTheLock) {
  ConcurrencyLimiter limiter("search", Limit(1));
  ASSERT_TRUE(limiter.TryAcquire());
  int second_granted = 0;
  limiter.Enqueue([&] {
    // Would deadlock if the lock were held: read the limiter and pass the
    // slot on to the next waiter at once.
    EXPECT_EQ(limiter.in_use(), 1);
    EXPECT_EQ(limiter.waiting(), 1);
    limiter.Release();
  });
  limiter.Enqueue([&] { ++second_granted; });
  limiter.Release();
  EXPECT_EQ(second_granted, 1);
  EXPECT_EQ(limiter.in_use(), 1);
  limiter.Release();
  EXPECT_EQ(limiter.in_use(), 0);
}

TEST(ConcurrencyLimiterTest, RejectionStatusNamesToolLimitAndWait) {
  struct Case {
    std::string name;
    int max_concurrent;
    Duration waited;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"waited", 8, milliseconds(50),
       "tool 'search' has 8 of 8 upstream calls running; waited 50ms"},
      {"long wait in seconds", 8, seconds(12),
       "tool 'search' has 8 of 8 upstream calls running; "
       "waited 12s"},
      {"no wait", 8, Duration::zero(),
       "tool 'search' has 8 of 8 upstream calls running; rejected without waiting"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ConcurrencyLimiter limiter("search", Limit(c.max_concurrent));
    for (int i = 0; i < c.max_concurrent; ++i) ASSERT_TRUE(limiter.TryAcquire());
    const Status status = limiter.RejectionStatus(c.waited);
    EXPECT_EQ(status.code(), StatusCode::kResourceExhausted);
    EXPECT_EQ(status.guard(), Guard::kLimiter);
    EXPECT_EQ(status.message(), c.want);
  }
}

TEST(ConcurrencyLimiterTest, AcquireBlockingTimesOutWithLimiterStatus) {
  ConcurrencyLimiter limiter("search", Limit(1));
  ASSERT_TRUE(limiter.TryAcquire());
  const auto start = std::chrono::steady_clock::now();
  const Status status = limiter.AcquireBlocking(milliseconds(20));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(20));
  EXPECT_EQ(status.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(status.guard(), Guard::kLimiter);
  EXPECT_EQ(status.message().rfind("tool 'search' has 1 of 1 upstream calls running; waited ", 0),
            0u)
      << status.message();
  EXPECT_EQ(limiter.waiting(), 0);
  EXPECT_EQ(limiter.in_use(), 1);
}

TEST(ConcurrencyLimiterTest, AcquireBlockingWithoutWaitRejectsAtOnce) {
  ConcurrencyLimiter limiter("search", Limit(1));
  EXPECT_TRUE(limiter.AcquireBlocking(Duration::zero()).ok());
  const Status status = limiter.AcquireBlocking(Duration::zero());
  EXPECT_EQ(status.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(),
            "tool 'search' has 1 of 1 upstream calls running; rejected without waiting");
  EXPECT_EQ(limiter.waiting(), 0);
}

TEST(ConcurrencyLimiterTest, AcquireBlockingWakesWhenASlotIsReleased) {
  ConcurrencyLimiter limiter("search", Limit(1));
  ASSERT_TRUE(limiter.TryAcquire());
  Status result = InternalError("not set");
  std::thread waiter([&] { result = limiter.AcquireBlocking(Duration::max()); });
  ASSERT_TRUE(WaitUntil([&] { return limiter.waiting() == 1; }));
  limiter.Release();
  waiter.join();
  EXPECT_TRUE(result.ok()) << result.ToString();
  EXPECT_EQ(limiter.in_use(), 1);  // Held by the waiter now.
  limiter.Release();
  EXPECT_EQ(limiter.in_use(), 0);
}

// Threads enqueue, cancel at random, wait for grants and release, against a
// small limit. No more than max_concurrent slots are ever held, every grant
// reaches its waiter exactly once (no lost wakeup), a cancelled waiter is
// never called, and every slot comes back.
TEST(ConcurrencyLimiterTest, EnqueueCancelReleaseRacesKeepInvariants) {
  constexpr int kThreads = 8;
  constexpr int kIterations = 1500;
  constexpr int kMax = 3;
  ConcurrencyLimiter limiter("search", Limit(kMax));

  std::atomic<int> holders{0};
  std::atomic<bool> over_limit{false};
  std::atomic<bool> lost_wakeup{false};
  std::atomic<int64_t> cancelled{0};
  std::atomic<int64_t> granted_while_waiting{0};

  struct Grant {
    std::atomic<int> calls{0};
  };
  // Per thread: every ticket's grant record, checked once all threads end.
  std::vector<std::vector<std::shared_ptr<Grant>>> cancelled_grants(kThreads);
  std::vector<std::vector<std::shared_ptr<Grant>>> waited_grants(kThreads);

  auto hold_and_release = [&] {
    const int now_holding = holders.fetch_add(1) + 1;
    if (now_holding > kMax || limiter.in_use() > kMax) over_limit = true;
    std::this_thread::yield();
    holders.fetch_sub(1);
    limiter.Release();
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      SeededRandom random(t + 100);
      for (int i = 0; i < kIterations; ++i) {
        auto grant = std::make_shared<Grant>();
        const ConcurrencyLimiter::Ticket ticket =
            limiter.Enqueue([grant] { grant->calls.fetch_add(1); });
        if (ticket == 0) {
          hold_and_release();
          continue;
        }
        if (random.Next() % 2 == 0 && limiter.Cancel(ticket)) {
          cancelled.fetch_add(1);
          cancelled_grants[t].push_back(grant);
          continue;
        }
        // Not cancelled, or Cancel lost the race to a grant: the slot is
        // (or will be) ours, and the callback must arrive.
        if (!WaitUntil([&] { return grant->calls.load() > 0; })) {
          lost_wakeup = true;
          return;
        }
        granted_while_waiting.fetch_add(1);
        waited_grants[t].push_back(grant);
        hold_and_release();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_FALSE(lost_wakeup.load());
  EXPECT_FALSE(over_limit.load());
  EXPECT_EQ(limiter.in_use(), 0);
  EXPECT_EQ(limiter.waiting(), 0);
  EXPECT_GT(granted_while_waiting.load(), 0);
  for (int t = 0; t < kThreads; ++t) {
    for (const auto& grant : cancelled_grants[t]) EXPECT_EQ(grant->calls.load(), 0);
    for (const auto& grant : waited_grants[t]) EXPECT_EQ(grant->calls.load(), 1);
  }
}

// AcquireBlocking with waits short enough to time out often, racing grants:
// a grant that lands just as the wait ends is kept, never leaked.
TEST(ConcurrencyLimiterTest, AcquireBlockingTimeoutsRacingGrantsLeakNoSlot) {
  constexpr int kThreads = 6;
  constexpr int kIterations = 2000;
  constexpr int kMax = 1;
  ConcurrencyLimiter limiter("search", Limit(kMax));
  std::atomic<int> holders{0};
  std::atomic<bool> over_limit{false};
  std::atomic<int64_t> ok{0};
  std::atomic<int64_t> rejected{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      SeededRandom random(t + 7);
      for (int i = 0; i < kIterations; ++i) {
        // A few microseconds: most waits time out, some just as a grant lands.
        const Duration wait = std::chrono::microseconds(1 + random.Next() % 5);
        const Status status = limiter.AcquireBlocking(wait);
        if (!status.ok()) {
          EXPECT_EQ(status.guard(), Guard::kLimiter);
          rejected.fetch_add(1);
          continue;
        }
        ok.fetch_add(1);
        if (holders.fetch_add(1) + 1 > kMax) over_limit = true;
        std::this_thread::yield();
        holders.fetch_sub(1);
        limiter.Release();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_FALSE(over_limit.load());
  EXPECT_EQ(ok.load() + rejected.load(), kThreads * kIterations);
  EXPECT_GT(ok.load(), 0);
  EXPECT_EQ(limiter.in_use(), 0);
  EXPECT_EQ(limiter.waiting(), 0);
}

}  // namespace
}  // namespace toolops
