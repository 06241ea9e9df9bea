// src/runner/asio_runner_test.cc
//
// The coroutine runner: the same rules as the blocking one, with waits that
// suspend. Uses real time with short waits; asserts counts and outcomes.

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "toolops/asio.h"

namespace toolops {
namespace {

using std::chrono::milliseconds;

asio::awaitable<void> Delay(milliseconds d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(asio::use_awaitable);
}

class AsioToolTest : public ::testing::Test {
 protected:
  AsioToolTest() : random_(3), pool_(NewThreadPool(8)) {
    registry_.Register("memory", std::shared_ptr<Store>(NewMemoryStore({}).value().release()));
    env_.random = &random_;
    env_.stores = &registry_;
    env_.executor = pool_.get();
  }

  // Runs `body` to completion on a fresh io_context with `threads` threads.
  template <typename F>
  void Run(F body, int threads = 1) {
    asio::io_context io;
    asio::co_spawn(io, body(), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
    std::vector<std::thread> workers;
    for (int i = 1; i < threads; ++i) workers.emplace_back([&] { io.run(); });
    io.run();
    for (auto& w : workers) w.join();
  }

  SeededRandom random_;
  StoreRegistry registry_;
  std::unique_ptr<Executor> pool_;
  Environment env_;
};

TEST_F(AsioToolTest, HitMissAndSameSignature) {
  std::atomic<int> calls{0};
  auto search = ReadonlyAsync(
      {"search", "1", {"query"}}, {},
      [&](std::string q) -> asio::awaitable<std::string> {
        ++calls;
        co_await Delay(milliseconds(1));
        co_return "about " + q;
      },
      env_);
  Run([&]() -> asio::awaitable<void> {
    EXPECT_EQ(co_await search("paris"), "about paris");
    EXPECT_EQ(co_await search("paris"), "about paris");
    Result<std::string> r = co_await search.Call("lyon");
    EXPECT_TRUE(r.ok());
  });
  EXPECT_EQ(calls.load(), 2);
  EXPECT_EQ(search.stats()[Counter::kFreshHit], 1u);
}

TEST_F(AsioToolTest, ManyConcurrentCoroutinesShareOneUpstreamCall) {
  std::atomic<int> calls{0};
  auto tool = ReadonlyAsync(
      {"slow"}, {},
      [&](int key) -> asio::awaitable<int> {
        ++calls;
        co_await Delay(milliseconds(20));
        co_return key * 3;
      },
      env_);
  constexpr int kTasks = 2000;
  std::atomic<int> right{0};
  Run(
      [&]() -> asio::awaitable<void> {
        auto executor = co_await asio::this_coro::executor;
        for (int i = 0; i < kTasks; ++i) {
          asio::co_spawn(
              executor,
              [&, i]() -> asio::awaitable<void> {
                if (co_await tool(i % 5) == (i % 5) * 3) ++right;
              },
              asio::detached);
        }
        co_return;
      },
      2);
  EXPECT_EQ(right.load(), kTasks);
  EXPECT_EQ(calls.load(), 5);
  EXPECT_EQ(tool.stats().saved(), uint64_t{kTasks - 5});
  EXPECT_EQ(tool.core().flights(), 0u);
}

TEST_F(AsioToolTest, TheSemanticCacheAnswersTheSameQuestionInOtherWords) {
  std::atomic<int> calls{0};
  ToolPolicy policy;
  policy.cache.semantic.params = {"query"};
  auto search = ReadonlyAsync(
      {"search", "1", {"query"}}, policy,
      [&](std::string q) -> asio::awaitable<std::string> {
        ++calls;
        co_await Delay(milliseconds(1));
        co_return "answer to: " + q;
      },
      env_);
  Run([&]() -> asio::awaitable<void> {
    EXPECT_EQ(co_await search("weather in Paris tomorrow"), "answer to: weather in Paris tomorrow");
    EXPECT_EQ(co_await search("tomorrow weather in Paris"), "answer to: weather in Paris tomorrow");
    // Kept under its own key too: asked again, an exact hit.
    EXPECT_EQ(co_await search("tomorrow weather in Paris"), "answer to: weather in Paris tomorrow");
    EXPECT_EQ(co_await search("weather in Lyon tomorrow"), "answer to: weather in Lyon tomorrow");
  });
  EXPECT_EQ(calls.load(), 2);
  EXPECT_EQ(search.stats()[Counter::kSemanticHit], 1u);
  EXPECT_EQ(search.stats()[Counter::kFreshHit], 1u);
}

TEST_F(AsioToolTest, RetriesSuspendBetweenAttempts) {
  std::atomic<int> calls{0};
  ToolPolicy policy;
  policy.retry.max_attempts = 3;
  policy.retry.initial_backoff = milliseconds(5);
  policy.retry.budget_min_retries_per_second = 100;
  auto tool = ReadonlyAsync(
      {"flaky"}, policy,
      [&](int) -> asio::awaitable<Result<int>> {
        if (++calls < 3) co_return UnavailableError("flaky");
        co_return 9;
      },
      env_);
  Run([&]() -> asio::awaitable<void> { EXPECT_EQ(co_await tool(1), 9); });
  EXPECT_EQ(calls.load(), 3);
  EXPECT_EQ(tool.stats()[Counter::kRetries], 2u);
}

TEST_F(AsioToolTest, AttemptTimeoutAbandonsATooSlowAttempt) {
  std::atomic<int> calls{0};
  ToolPolicy policy;
  policy.timeout.attempt_timeout = milliseconds(30);
  auto tool = ReadonlyAsync(
      {"hang"}, policy,
      [&](int) -> asio::awaitable<int> {
        ++calls;
        co_await Delay(milliseconds(300));
        co_return 1;
      },
      env_);
  Result<int> r = Status();
  Run([&]() -> asio::awaitable<void> { r = co_await tool.Call(1); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().guard(), Guard::kAttemptTimeout);
  EXPECT_EQ(tool.stats()[Counter::kAttemptTimeouts], 1u);
}

TEST_F(AsioToolTest, CancelledLeaderDoesNotCancelTheSharedCall) {
  std::atomic<int> calls{0};
  ToolPolicy policy;
  policy.timeout.deadline = std::chrono::seconds(5);
  auto tool = ReadonlyAsync(
      {"shared"}, policy,
      [&](int) -> asio::awaitable<int> {
        ++calls;
        co_await Delay(milliseconds(50));
        co_return 11;
      },
      env_);
  std::atomic<int> follower_value{0};
  Run([&]() -> asio::awaitable<void> {
    auto executor = co_await asio::this_coro::executor;
    // The leader gives up after 5 ms (its own timer wins the race).
    using namespace asio::experimental::awaitable_operators;
    asio::co_spawn(
        executor,
        [&]() -> asio::awaitable<void> {
          asio::steady_timer give_up(co_await asio::this_coro::executor, milliseconds(5));
          co_await (tool(1) || give_up.async_wait(asio::use_awaitable));
        },
        asio::detached);
    co_await Delay(milliseconds(1));
    follower_value = co_await tool(1);
  });
  EXPECT_EQ(follower_value.load(), 11);
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(AsioToolTest, ConcurrencyLimitQueuesWithinMaxWait) {
  std::atomic<int> running{0}, peak{0}, calls{0};
  ToolPolicy policy;
  policy.cache.enabled = false;
  policy.coalesce.enabled = false;
  policy.limit.max_concurrent = 2;
  policy.limit.max_wait = std::chrono::seconds(5);
  auto tool = ReadonlyAsync(
      {"limited"}, policy,
      [&](int) -> asio::awaitable<int> {
        int now = ++running;
        int seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
        ++calls;
        co_await Delay(milliseconds(5));
        --running;
        co_return 1;
      },
      env_);
  std::atomic<int> ok{0};
  Run([&]() -> asio::awaitable<void> {
    auto executor = co_await asio::this_coro::executor;
    for (int i = 0; i < 10; ++i) {
      asio::co_spawn(
          executor,
          [&, i]() -> asio::awaitable<void> {
            if ((co_await tool.Call(i)).ok()) ++ok;
          },
          asio::detached);
    }
    co_return;
  });
  EXPECT_EQ(ok.load(), 10);
  EXPECT_LE(peak.load(), 2);
  EXPECT_EQ(calls.load(), 10);
}

}  // namespace
}  // namespace toolops
