// src/observe/stats_publisher_test.cc
//
// The snapshot a process publishes, and a publisher against a real
// redis-server: periodic replacement, and expiry once it stops.

#include "toolops/stats_publisher.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "redis_server.h"
#include "toolops/redis_store.h"
#include "toolops/tool.h"

namespace toolops {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(StatsPublisherTest, SnapshotHasNoCommentsNorZeroSeriesButKeepsTheBreaker) {
  auto tool = Readonly({"published_text"}, {}, [](int x) { return x; });
  tool(1);
  auto idle = Readonly({"published_idle"}, {}, [](int x) { return x; });
  std::string text = PublishedStatsText();
  EXPECT_EQ(text.find('#'), std::string::npos) << text;
  EXPECT_NE(
      text.find("toolops_calls_total{tool=\"published_text\",outcome=\"upstream_success\"} 1"),
      std::string::npos)
      << text;
  EXPECT_EQ(text.find("{tool=\"published_text\",outcome=\"fresh_hit\"} 0"), std::string::npos)
      << text;
  // A tool not called yet is still listed, by its breaker's state.
  EXPECT_NE(text.find("toolops_breaker_state{tool=\"published_idle\"} 0"), std::string::npos)
      << text;
}

TEST(StatsPublisherTest, AStoreWithoutABoardIsRefused) {
  std::shared_ptr<Store> memory(NewMemoryStore({}).value());
  Result<std::unique_ptr<StatsPublisher>> publisher =
      StatsPublisher::Start(memory, std::chrono::seconds(1));
  EXPECT_EQ(publisher.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(publisher.status().message().find("Redis or PostgreSQL"), std::string_view::npos);
  EXPECT_EQ(ReadPublishedStats(*memory).status().code(), StatusCode::kInvalidArgument);
}

TEST(StatsPublisherTest, PublishesEveryIntervalAndTheSnapshotExpiresAfterItStops) {
  testing::RedisServer server;
  ASSERT_TRUE(server.ok()) << server.error();
  RedisStoreOptions options;
  options.port = server.port();
  std::shared_ptr<Store> store(NewRedisStore(options).value());
  auto tool = Readonly({"published_live"}, {}, [](int x) { return x; });
  tool(7);

  auto publisher = StatsPublisher::Start(store, milliseconds(100));
  ASSERT_TRUE(publisher.ok()) << publisher.status().ToString();
  auto until = std::chrono::steady_clock::now() + seconds(20);
  while ((*publisher)->published() < 3) {
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "no periodic publication";
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_EQ((*publisher)->failures(), 0u);
  Result<std::vector<std::string>> snapshots = ReadPublishedStats(*store);
  ASSERT_TRUE(snapshots.ok()) << snapshots.status().ToString();
  ASSERT_EQ(snapshots->size(), 1u);  // Replaced, not added.
  EXPECT_NE((*snapshots)[0].find("tool=\"published_live\""), std::string::npos);

  // Stopped: the snapshot lives three intervals, then drops out.
  publisher->reset();
  until = std::chrono::steady_clock::now() + seconds(20);
  while (!ReadPublishedStats(*store).value().empty()) {
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "the snapshot never expired";
    std::this_thread::sleep_for(milliseconds(50));
  }
}

}  // namespace
}  // namespace toolops
