// src/replay/replay_clock_test.cc

#include "replay/replay_clock.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace toolops {
namespace {

const TimePoint kStart = TimePoint(std::chrono::hours(1000));

TEST(ReplayClockTest, TimeMovesOnlyWhenEveryParticipantWaits) {
  ReplayClock clock(kStart, 0);
  std::vector<int64_t> woke_at(3);
  std::atomic<bool> release{false};
  clock.Enter();  // A participant that keeps running until released.
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    clock.Enter();
    threads.emplace_back([&, i] {
      clock.SleepFor(std::chrono::seconds(10 * (i + 1)));
      woke_at[i] = (clock.Now() - kStart) / std::chrono::seconds(1);
      clock.Leave();
    });
  }
  // While the first participant runs, time stands still however long that is.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(clock.Now(), kStart);
  clock.Leave();
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(woke_at, (std::vector<int64_t>{10, 20, 30}));
  EXPECT_EQ(clock.jumps(), 3u);
}

TEST(ReplayClockTest, BlockedParticipantsLetTimeMove) {
  // One participant sleeps; another is counted as blocked (waiting for the
  // first, as a coalesced caller would): time moves.
  std::atomic<size_t> blocked{0};
  ReplayClock clock(kStart, 0, [&] { return blocked.load(); });
  clock.Enter();
  clock.Enter();
  std::atomic<bool> done{false};
  std::thread follower([&] {
    blocked = 1;
    while (!done.load()) std::this_thread::yield();
    blocked = 0;
    clock.Leave();
  });
  clock.SleepFor(std::chrono::minutes(5));
  EXPECT_EQ(clock.Now() - kStart, std::chrono::minutes(5));
  done = true;
  follower.join();
  clock.Leave();
}

TEST(ReplayClockTest, WaitForEndsAtItsEventOrItsLimitInTraceTime) {
  // A waiter with a 1 s limit; another participant signals its event after
  // `signal_after`. Each round, the waiter returns at the earlier of the two,
  // exactly, in trace time, and the signaller's later wake-up is unaffected.
  for (auto signal_after : {std::chrono::milliseconds(300), std::chrono::milliseconds(2500)}) {
    ReplayClock clock(kStart, 0);
    std::mutex mu;
    std::condition_variable cv;
    bool signalled = false;
    clock.Enter();  // The waiter (this thread).
    clock.Enter();  // The signaller.
    std::thread signaller([&] {
      clock.SleepFor(signal_after);
      {
        std::lock_guard<std::mutex> lock(mu);
        signalled = true;
      }
      cv.notify_all();
      clock.Leave();
    });
    bool ready = false;
    {
      std::unique_lock<std::mutex> lock(mu);
      ready = clock.WaitFor(lock, cv, std::chrono::seconds(1), [&] { return signalled; });
    }
    const Duration waited = clock.Now() - kStart;
    const bool early = signal_after < std::chrono::seconds(1);
    EXPECT_EQ(ready, early);
    EXPECT_EQ(waited, early ? Duration(signal_after) : Duration(std::chrono::seconds(1)));
    clock.Leave();
    signaller.join();
    EXPECT_EQ(clock.Now() - kStart, Duration(signal_after));
  }
}

TEST(ReplayClockTest, PacedClockKeepsTheSameOrder) {
  // At 1000x the same sleeps wake in the same order at the same trace times.
  ReplayClock clock(kStart, 1000);
  std::vector<int64_t> order;
  std::mutex mu;
  std::vector<std::thread> threads;
  clock.Enter();  // This thread, until every sleeper has started.
  for (int i = 3; i >= 1; --i) {
    clock.Enter();
    threads.emplace_back([&, i] {
      clock.SleepFor(std::chrono::milliseconds(20 * i));
      std::lock_guard<std::mutex> lock(mu);
      order.push_back((clock.Now() - kStart) / std::chrono::milliseconds(1));
      clock.Leave();
    });
  }
  clock.Leave();
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(order, (std::vector<int64_t>{20, 40, 60}));
}

TEST(ElasticPoolTest, GrowsWhileEveryThreadIsBusy) {
  ElasticPool pool(64);
  std::atomic<int> started{0};
  std::atomic<bool> release{false};
  for (int i = 0; i < 10; ++i) {
    pool.Submit([&] {
      ++started;
      while (!release.load()) std::this_thread::yield();
    });
  }
  while (started.load() < 10) std::this_thread::yield();
  EXPECT_EQ(pool.threads(), 10u);
  release = true;
}

}  // namespace
}  // namespace toolops
