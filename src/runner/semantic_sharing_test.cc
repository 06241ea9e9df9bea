// src/runner/semantic_sharing_test.cc
//
// The semantic cache across processes, against a real redis-server: what one
// "process" (its own memory store, index and Redis client) learns answers a
// question in other words in another, through the SemanticBus; a process
// that starts later catches up on what is already shared; entries from a
// foreign or corrupt writer are dropped.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "redis_server.h"
#include "semantic/shared_entry.h"
#include "toolops/environment.h"
#include "toolops/redis_store.h"
#include "toolops/tool.h"

namespace toolops {
namespace {

using std::chrono::milliseconds;
using testing::RedisServer;

struct AgentProcess {
  explicit AgentProcess(int port) {
    RedisStoreOptions options;
    options.port = port;
    Result<std::unique_ptr<RedisStore>> opened = RedisStore::Open(options);
    EXPECT_TRUE(opened.ok()) << opened.status().ToString();
    if (opened.ok()) redis = std::shared_ptr<RedisStore>(std::move(*opened));
    stores.Register("memory", std::move(NewMemoryStore({})).value());
    if (redis) stores.Register("redis", redis);
    env.stores = &stores;
  }
  StoreRegistry stores;
  std::shared_ptr<RedisStore> redis;
  Environment env;
};

ToolPolicy SemanticSharedPolicy() {
  ToolPolicy policy;
  policy.cache.ttl = std::chrono::minutes(10);
  policy.cache.shared_store = "redis";
  policy.cache.semantic.params = {"query"};
  policy.retry.max_attempts = 1;
  policy.breaker.enabled = false;
  return policy;
}

// A tool that answers; and one that never can, so that every answer it
// returns came from the cache (its own calls never teach it anything).
auto Answering(AgentProcess& p, std::atomic<int>* calls) {
  return Readonly(
      {"search", "1", {"query"}}, SemanticSharedPolicy(),
      [calls](const std::string& q) {
        ++*calls;
        return "answer to: " + q;
      },
      p.env);
}
auto Failing(AgentProcess& p) {
  return Readonly(
      {"search", "1", {"query"}}, SemanticSharedPolicy(),
      [](const std::string&) -> Result<std::string> { return UnavailableError("offline"); }, p.env);
}

// Calls `tool` with `query` until it answers (or `limit` passes); returns the
// answer and sets *waited.
template <typename Tool>
std::string AskUntilAnswered(Tool& tool, const std::string& query, milliseconds limit,
                             double* waited_ms) {
  auto start = std::chrono::steady_clock::now();
  while (true) {
    Result<std::string> r = tool.Call(query);
    auto now = std::chrono::steady_clock::now();
    *waited_ms = std::chrono::duration<double, std::milli>(now - start).count();
    if (r.ok()) return r.value();
    if (now - start > limit) return "";
    std::this_thread::sleep_for(milliseconds(1));
  }
}

class SemanticSharingTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.ok()) << server_.error(); }
  RedisServer server_;
};

TEST_F(SemanticSharingTest, WhatOneProcessLearnsAnswersOtherWordsInAnother) {
  AgentProcess first(server_.port());
  AgentProcess second(server_.port());
  std::atomic<int> calls{0};
  auto teacher = Answering(first, &calls);
  auto learner = Failing(second);
  EXPECT_EQ(teacher("weather in Paris tomorrow"), "answer to: weather in Paris tomorrow");
  double waited = 0;
  EXPECT_EQ(AskUntilAnswered(learner, "tomorrow weather in Paris", milliseconds(5000), &waited),
            "answer to: weather in Paris tomorrow");
  EXPECT_EQ(calls.load(), 1);
  EXPECT_GE(learner.stats()[Counter::kSemanticHit], 1u);
  // The guard still holds across processes.
  EXPECT_FALSE(learner.Call("weather in Lyon tomorrow").ok());
}

TEST_F(SemanticSharingTest, AProcessThatStartsLaterCatchesUp) {
  std::atomic<int> calls{0};
  AgentProcess first(server_.port());
  auto teacher = Answering(first, &calls);
  const std::vector<std::string> cities = {"Paris", "Lyon", "Rome", "Oslo", "Lima"};
  for (const std::string& city : cities) teacher("weather in " + city + " tomorrow");
  std::this_thread::sleep_for(milliseconds(200));  // Let the shares reach Redis.

  AgentProcess late(server_.port());
  auto learner = Failing(late);
  for (const std::string& city : cities) {
    double waited = 0;
    EXPECT_EQ(AskUntilAnswered(learner, "tomorrow weather in " + city, milliseconds(5000), &waited),
              "answer to: weather in " + city + " tomorrow");
  }
  EXPECT_EQ(calls.load(), static_cast<int>(cities.size()));
}

// The figure: how long after one process learns an answer another process's
// index finds it (target: within 100 ms). Printed, not asserted as a time.
TEST_F(SemanticSharingTest, PropagationDelayFigure) {
  AgentProcess first(server_.port());
  AgentProcess second(server_.port());
  std::atomic<int> calls{0};
  auto teacher = Answering(first, &calls);
  auto learner = Failing(second);
  std::vector<double> delays;
  for (int i = 0; i < 50; ++i) {
    std::string city = "Town" + std::string(1, static_cast<char>('A' + i % 26)) +
                       std::string(1, static_cast<char>('a' + i / 26));
    teacher("weather in " + city + " tomorrow");
    double waited = 0;
    std::string answer =
        AskUntilAnswered(learner, "tomorrow weather in " + city, milliseconds(5000), &waited);
    ASSERT_EQ(answer, "answer to: weather in " + city + " tomorrow");
    delays.push_back(waited);
  }
  std::sort(delays.begin(), delays.end());
  std::printf(
      "figure: semantic entry found by another process after p50 %.2f ms, p90 %.2f ms, "
      "max %.2f ms (50 entries)\n",
      delays[delays.size() / 2], delays[delays.size() * 9 / 10], delays.back());
}

TEST(SemanticEntryTest, RoundTripsAndRefusesWhatIsNotAnEntry) {
  SemanticEntry entry{"part", "key-bytes", "weather in Paris", std::vector<float>(8, 0.0f)};
  entry.vector[0] = 0.6f;
  entry.vector[3] = -0.8f;
  std::string bytes = EncodeSemanticEntry(entry);
  std::optional<SemanticEntry> back = DecodeSemanticEntry(bytes, 8);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->partition, "part");
  EXPECT_EQ(back->key, "key-bytes");
  EXPECT_EQ(back->question, "weather in Paris");
  EXPECT_NEAR(back->vector[0], 0.6f, 0.005f);
  EXPECT_NEAR(back->vector[3], -0.8f, 0.005f);
  EXPECT_FALSE(DecodeSemanticEntry(bytes, 16).has_value());  // Other dims.
  EXPECT_FALSE(DecodeSemanticEntry(bytes.substr(0, bytes.size() - 1), 8).has_value());
  EXPECT_FALSE(DecodeSemanticEntry(bytes + "x", 8).has_value());
  std::string other_version = bytes;
  other_version[3] = 2;
  EXPECT_FALSE(DecodeSemanticEntry(other_version, 8).has_value());
  EXPECT_FALSE(DecodeSemanticEntry("", 8).has_value());
  SemanticEntry zero{"p", "k", "q", std::vector<float>(8, 0.0f)};
  EXPECT_FALSE(DecodeSemanticEntry(EncodeSemanticEntry(zero), 8).has_value());
  // Every truncation is refused, never read past its end.
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(DecodeSemanticEntry(bytes.substr(0, n), 8).has_value()) << n;
  }
}

}  // namespace
}  // namespace toolops
