// src/runner/shared_tier_test.cc
//
// Wrapped tools with a shared store (cache.shared_store), each test run once
// against a real redis-server and once against a real PostgreSQL server
// (both private to the test): hits from another process's results, one
// upstream call for concurrent callers in several "processes" of this test
// and in several real processes (toolops_shared_worker), a leader killed
// with SIGKILL, and the server stopped and started in the middle of a load.
// Breaker sharing, which only Redis carries, is tested on Redis alone.
// Published statistics and per-call tags, which a SQLite file shared by the
// processes of one host carries too, are tested on SQLite as well.

#include <signal.h>
#include <sys/wait.h>

#include <gtest/gtest.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/stats_cmd.h"
#include "postgres_server.h"
#include "redis_server.h"
#include "store/tag_index.h"
#include "toolops/asio.h"
#include "toolops/environment.h"
#include "toolops/log.h"
#include "toolops/postgres_store.h"
#include "toolops/redis_store.h"
#include "toolops/sqlite_store.h"
#include "toolops/stats_publisher.h"
#include "toolops/tool.h"

namespace toolops {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::ChildProcess;
using testing::PostgresServer;
using testing::ReadFileOrEmpty;
using testing::RedisServer;
using testing::TempDir;

int64_t UnixNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

enum class Backend { kRedis, kPostgres, kSqlite };

// The store's type as the configuration names it ("redis").
const char* BackendType(Backend backend) {
  switch (backend) {
    case Backend::kRedis:
      return "redis";
    case Backend::kPostgres:
      return "postgres";
    case Backend::kSqlite:
      return "sqlite";
  }
  return "unknown";
}

// The test's name suffix: the type, capitalised ("Redis").
std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  std::string name = BackendType(info.param);
  name[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(name[0])));
  return name;
}

// Store settings a test may change, whatever the server.
struct SharedOptions {
  // Pauses while the server is down (the stores' defaults when unset).
  std::optional<milliseconds> outage_initial_backoff;
  std::optional<milliseconds> outage_max_backoff;
};

// One private server of the kind under test: how to reach it from this
// process (a store) and from a worker process (its flags), and how to stop
// and start it. For SQLite the "server" is a file in a directory of the test
// (it cannot be stopped).
class SharedServer {
 public:
  explicit SharedServer(Backend backend) : backend_(backend) {
    if (backend_ == Backend::kSqlite) {
      sqlite_dir_ = std::make_unique<TempDir>("toolops-shared-sqlite");
    } else if (backend_ == Backend::kRedis) {
      redis_ = std::make_unique<RedisServer>();
      if (!redis_->ok()) error_ = redis_->error();
    } else {
      postgres_ = std::make_unique<PostgresServer>();
      Status started = postgres_->Start();
      if (!started.ok()) error_ = started.ToString();
    }
  }

  const std::string& error() const { return error_; }

  Result<std::unique_ptr<Store>> OpenStore(const SharedOptions& shared) const {
    if (backend_ == Backend::kSqlite) {
      SqliteStoreOptions options;
      options.path = SqlitePath();
      return NewSqliteStore(options);
    }
    if (backend_ == Backend::kRedis) {
      RedisStoreOptions options;
      options.port = redis_->port();
      if (shared.outage_initial_backoff) {
        options.outage_initial_backoff = *shared.outage_initial_backoff;
      }
      if (shared.outage_max_backoff) options.outage_max_backoff = *shared.outage_max_backoff;
      return NewRedisStore(options);
    }
    PostgresStoreOptions options;
    options.conninfo = postgres_->conninfo();
    if (shared.outage_initial_backoff) {
      options.outage_initial_backoff = *shared.outage_initial_backoff;
    }
    if (shared.outage_max_backoff) options.outage_max_backoff = *shared.outage_max_backoff;
    return NewPostgresStore(options);
  }

  // Outages the store has begun (it must come from OpenStore).
  uint64_t Outages(Store& store) const {
    if (backend_ == Backend::kSqlite) return 0;  // A file has no outages to count.
    if (backend_ == Backend::kRedis) return static_cast<RedisStore&>(store).counters().outages;
    return static_cast<PostgresStore&>(store).counters().outages;
  }

  // The worker's flags that name this server.
  std::vector<std::string> WorkerFlags() const {
    if (backend_ == Backend::kSqlite) return {"--store", "sqlite", "--path", SqlitePath()};
    if (backend_ == Backend::kRedis)
      return {"--store", "redis", "--port", std::to_string(redis_->port())};
    return {"--store", "postgres", "--conninfo", postgres_->conninfo()};
  }

  // A configuration file's table for this server, as store NAME.
  std::string StoreToml(const std::string& name) const {
    if (backend_ == Backend::kSqlite) {
      return "[stores." + name + "]\ntype = \"sqlite\"\npath = \"" + SqlitePath() + "\"\n";
    }
    if (backend_ == Backend::kRedis) {
      return "[stores." + name +
             "]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:" + std::to_string(redis_->port()) +
             "/0\"\n";
    }
    return "[stores." + name + "]\ntype = \"postgres\"\nurl = \"" + postgres_->conninfo() + "\"\n";
  }

  void Stop() {
    if (backend_ == Backend::kSqlite) {
      ADD_FAILURE() << "a SQLite file cannot be stopped";
    } else if (backend_ == Backend::kRedis) {
      redis_->Stop();
    } else {
      Status stopped = postgres_->Stop();
      EXPECT_TRUE(stopped.ok()) << stopped.ToString();
    }
  }
  void Start() {
    if (backend_ == Backend::kSqlite) {
      ADD_FAILURE() << "a SQLite file cannot be started";
    } else if (backend_ == Backend::kRedis) {
      EXPECT_TRUE(redis_->Start()) << redis_->error();
    } else {
      Status started = postgres_->Start();
      EXPECT_TRUE(started.ok()) << started.ToString() << postgres_->LogTail();
    }
  }

 private:
  std::string SqlitePath() const { return sqlite_dir_->File("shared.db"); }

  const Backend backend_;
  std::unique_ptr<TempDir> sqlite_dir_;
  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<PostgresServer> postgres_;
  std::string error_;
};

// What one process has: its own memory store and its own client of the
// shared server, registered as "shared".
struct AgentProcess {
  explicit AgentProcess(const SharedServer& server, const SharedOptions& options = {}) {
    Result<std::unique_ptr<Store>> opened = server.OpenStore(options);
    EXPECT_TRUE(opened.ok()) << opened.status().ToString();
    if (opened.ok()) shared = std::shared_ptr<Store>(std::move(*opened));
    MemoryStoreOptions memory_options;
    memory_options.max_entries = 10'000;
    stores.Register("memory", std::move(NewMemoryStore(memory_options)).value());
    if (shared) stores.Register("shared", shared);
    env.stores = &stores;
  }
  StoreRegistry stores;
  std::shared_ptr<Store> shared;
  Environment env;
};

ToolPolicy SharedPolicy() {
  ToolPolicy policy;
  policy.cache.ttl = std::chrono::minutes(10);
  policy.cache.shared_store = "shared";
  return policy;
}

class SharedTierTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.error().empty()) << server_.error(); }
  const char* store_name() const { return BackendType(GetParam()); }
  SharedServer server_{GetParam()};
};

INSTANTIATE_TEST_SUITE_P(Stores, SharedTierTest,
                         ::testing::Values(Backend::kRedis, Backend::kPostgres), BackendName);

// What every shared store carries, SQLite included: published statistics
// and per-call tags.
class SharedBoardTest : public SharedTierTest {};

INSTANTIATE_TEST_SUITE_P(Stores, SharedBoardTest,
                         ::testing::Values(Backend::kRedis, Backend::kPostgres, Backend::kSqlite),
                         BackendName);

// Breaker openings travel through Redis only.
class SharedBreakerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.error().empty()) << server_.error(); }
  SharedServer server_{Backend::kRedis};
};

TEST_P(SharedTierTest, AnotherProcessIsServedFromTheSharedStore) {
  AgentProcess first(server_);
  AgentProcess second(server_);
  std::atomic<int> calls{0};
  auto make = [&](AgentProcess& p) {
    return Readonly(
        {"search", "1", {"query"}}, SharedPolicy(),
        [&](const std::string& q) {
          ++calls;
          return "results for " + q;
        },
        p.env);
  };
  auto search1 = make(first);
  auto search2 = make(second);
  EXPECT_EQ(search1("paris"), "results for paris");
  EXPECT_EQ(search2("paris"), "results for paris");
  EXPECT_EQ(search2("paris"), "results for paris");
  EXPECT_EQ(calls.load(), 1);
  // The second process's first call came from Redis, its second from memory.
  EXPECT_EQ(search2.stats()[Counter::kSharedHits], 1u);
  EXPECT_EQ(search2.stats()[Counter::kFreshHit], 2u);
  EXPECT_EQ(second.shared->Stats().hits, 1u);
  // Clearing the cache clears both tiers, for every process.
  EXPECT_EQ(search1.core().ClearCache(), 2u);
  EXPECT_EQ(search2("lyon"), "results for lyon");
  EXPECT_EQ(calls.load(), 2);
}

// A process that never asked a question can still serve another process's
// answer stale while the tool is down, in the blocking and coroutine runners.
TEST_P(SharedTierTest, StaleIfErrorServesAnotherProcesssAnswerWhileTheToolIsDown) {
  AgentProcess first(server_);
  AgentProcess second(server_);
  AgentProcess third(server_);
  ToolPolicy policy = SharedPolicy();
  policy.cache.ttl = milliseconds(300);
  policy.cache.stale_if_error = std::chrono::minutes(10);
  std::atomic<bool> down{false};
  std::atomic<int> calls{0};
  auto make = [&](AgentProcess& p) {
    return MakeTool(
        {"weather", "1", {"city"}}, policy,
        [&](const std::string& city) -> Result<std::string> {
          ++calls;
          if (down) return Status(StatusCode::kNotFound, "the weather service is down");
          return "sunny in " + city;
        },
        p.env);
  };
  auto t1 = make(first).value();
  auto t2 = make(second).value();
  auto t3 = ReadonlyAsync(
      {"weather", "1", {"city"}}, policy,
      [&](std::string) -> asio::awaitable<Result<std::string>> {
        ++calls;
        co_return Status(StatusCode::kNotFound, "the weather service is down");
      },
      third.env);
  EXPECT_EQ(t1.Call("paris").value(), "sunny in paris");
  std::this_thread::sleep_for(milliseconds(500));  // Past the answer's freshness.
  down = true;

  Result<std::string> blocking = t2.Call("paris");
  ASSERT_TRUE(blocking.ok()) << blocking.status().ToString();
  EXPECT_EQ(blocking.value(), "sunny in paris");
  EXPECT_EQ(t2.stats()[Counter::kStaleIfError], 1u);

  Result<std::string> coroutine = Status();
  asio::io_context io;
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { coroutine = co_await t3.Call("paris"); },
      asio::detached);
  io.run();
  ASSERT_TRUE(coroutine.ok()) << coroutine.status().ToString();
  EXPECT_EQ(coroutine.value(), "sunny in paris");
  EXPECT_EQ(t3.stats()[Counter::kStaleIfError], 1u);
  // Both went upstream first (the answer was no longer fresh) and failed.
  EXPECT_EQ(calls.load(), 3);

  // A question nobody answered before still fails, with the tool's error.
  Result<std::string> unknown = t2.Call("lyon");
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
}

TEST_P(SharedTierTest, UnknownSharedStoreFailsWhenWrapping) {
  AgentProcess p(server_);
  ToolPolicy policy = SharedPolicy();
  policy.cache.shared_store = "redis-typo";
  EXPECT_THROW(Readonly(
                   {"t", "1", {"q"}}, policy, [](const std::string& q) { return q; }, p.env),
               ToolError);
  policy.cache.shared_store = "memory";
  try {
    Readonly(
        {"t", "1", {"q"}}, policy, [](const std::string& q) { return q; }, p.env);
    ADD_FAILURE() << "a shared store equal to the local one was accepted";
  } catch (const ToolError& e) {
    EXPECT_NE(std::string(e.what()).find("shared_store"), std::string::npos) << e.what();
  }
}

TEST_P(SharedTierTest, ConcurrentCallersInSeveralProcessesMakeOneUpstreamCall) {
  constexpr int kProcesses = 4;
  constexpr int kThreads = 16;
  std::vector<std::unique_ptr<AgentProcess>> processes;
  for (int i = 0; i < kProcesses; ++i) {
    processes.push_back(std::make_unique<AgentProcess>(server_));
  }
  std::atomic<int> calls{0};
  std::atomic<int> running{0};
  std::atomic<int> overlapped{0};
  using SearchTool = decltype(Readonly({"search", "1", {"query"}}, SharedPolicy(),
                                       [](const std::string& q) { return q; }));
  std::vector<std::unique_ptr<SearchTool>> tools;
  for (auto& p : processes) {
    tools.push_back(std::make_unique<SearchTool>(Readonly(
        {"search", "1", {"query"}}, SharedPolicy(),
        [&](const std::string& q) {
          ++calls;
          if (running.fetch_add(1) != 0) ++overlapped;
          std::this_thread::sleep_for(milliseconds(100));
          running.fetch_sub(1);
          return "results for " + q;
        },
        p->env)));
  }
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int p = 0; p < kProcesses; ++p) {
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, p] {
        if ((*tools[p])("same question") != "results for same question") ++wrong;
      });
    }
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(overlapped.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  uint64_t remote = 0;
  for (auto& tool : tools) remote += tool->stats()[Counter::kRemoteCoalesced];
  uint64_t shared_hits = 0;
  for (auto& tool : tools) shared_hits += tool->stats()[Counter::kSharedHits];
  // Each of the other processes' leaders followed the one leader, or found
  // its value already stored.
  EXPECT_EQ(remote + shared_hits, static_cast<uint64_t>(kProcesses - 1));
}

TEST_P(SharedTierTest, LeadersErrorReachesTheOtherProcessesOnce) {
  AgentProcess first(server_);
  AgentProcess second(server_);
  std::atomic<int> calls{0};
  auto make = [&](AgentProcess& p) {
    return MakeTool(
        {"flaky", "1", {"q"}}, SharedPolicy(),
        [&](const std::string&) -> Result<std::string> {
          ++calls;
          std::this_thread::sleep_for(milliseconds(200));
          return Status(StatusCode::kNotFound, "no such page");
        },
        p.env);
  };
  auto t1 = make(first).value();
  auto t2 = make(second).value();
  Result<std::string> r1 = Status(StatusCode::kUnknown, "unset");
  std::thread a([&] { r1 = t1.Call("x"); });
  std::this_thread::sleep_for(milliseconds(50));
  Result<std::string> r2 = t2.Call("x");
  a.join();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(r1.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(r2.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(r2.status().message(), "no such page");
  // Errors are not cached: a later call goes upstream again.
  (void)t2.Call("x");
  EXPECT_EQ(calls.load(), 2);
}

TEST_P(SharedTierTest, ServerStoppedDuringALoadFailsNoCallAndSharingResumes) {
  std::atomic<int> down_logs{0};
  SetLogSink([&](const LogRecord& r) {
    if (r.event == "store.down") ++down_logs;
  });
  SharedOptions options;
  options.outage_initial_backoff = milliseconds(20);
  options.outage_max_backoff = milliseconds(100);
  AgentProcess first(server_, options);
  AgentProcess second(server_, options);
  auto make = [&](AgentProcess& p) {
    ToolPolicy policy = SharedPolicy();
    policy.cache.ttl = std::chrono::minutes(10);
    return Readonly(
        {"lookup", "1", {"id"}}, policy, [](int id) { return "value " + std::to_string(id); },
        p.env);
  };
  auto tool1 = make(first);
  auto tool2 = make(second);

  constexpr int kCalls = 10'000;
  std::atomic<int> next{0};
  std::atomic<int> failed{0};
  std::atomic<int> wrong{0};
  std::atomic<bool> stopped{false};
  std::atomic<bool> stop_done{false};
  std::atomic<int64_t> restart_done_ns{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto& tool = t % 2 == 0 ? tool1 : tool2;
      for (int i = next++; i < kCalls; i = next++) {
        if (i == kCalls / 3 && !stopped.exchange(true)) {
          server_.Stop();
          stop_done = true;
        }
        if (i == 2 * kCalls / 3) {
          // The other threads go on calling meanwhile.
          while (!stop_done) std::this_thread::sleep_for(milliseconds(1));
          server_.Start();
          restart_done_ns = std::chrono::steady_clock::now().time_since_epoch().count();
        }
        int id = i / 2;  // Two calls per id, likely in different "processes".
        Result<std::string> r = tool.Call(id);
        if (!r.ok()) {
          ++failed;
        } else if (r.value() != "value " + std::to_string(id)) {
          ++wrong;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  SetLogSink(nullptr);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  uint64_t outages = server_.Outages(*first.shared) + server_.Outages(*second.shared);
  EXPECT_GE(outages, 1u);
  // At most one "down" line per outage per store object.
  EXPECT_LE(static_cast<uint64_t>(down_logs.load()), outages);

  // Sharing resumes by itself within a second of the restart.
  auto restarted = std::chrono::steady_clock::now();
  bool shared = false;
  for (int id = 100'000; std::chrono::steady_clock::now() - restarted < seconds(3); ++id) {
    (void)tool1(id);
    uint64_t before = tool2.stats()[Counter::kSharedHits];
    (void)tool2(id);
    if (tool2.stats()[Counter::kSharedHits] > before) {
      shared = true;
      std::chrono::steady_clock::time_point restart_done{
          std::chrono::steady_clock::duration(restart_done_ns.load())};
      std::printf(
          "figure (%s): server stopped at call %d and started at call %d of %d: %d failed, "
          "%d wrong; sharing back %lld ms after the server accepted connections again\n",
          store_name(), kCalls / 3, 2 * kCalls / 3, kCalls, failed.load(), wrong.load(),
          static_cast<long long>(std::chrono::duration_cast<milliseconds>(
                                     std::chrono::steady_clock::now() - restart_done)
                                     .count()));
      break;
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_TRUE(shared);
  EXPECT_LT(std::chrono::steady_clock::now() - restarted, seconds(1));
}

TEST_P(SharedTierTest, CoroutineToolsInSeveralProcessesShareOneUpstreamCallPerKey) {
  constexpr int kProcesses = 3;
  constexpr int kTasks = 200;
  constexpr int kKeys = 5;
  std::vector<std::unique_ptr<AgentProcess>> processes;
  for (int i = 0; i < kProcesses; ++i) {
    processes.push_back(std::make_unique<AgentProcess>(server_));
  }
  std::atomic<int> calls{0};
  auto make = [&](AgentProcess& p) {
    return ReadonlyAsync(
        {"async_search", "1", {"key"}}, SharedPolicy(),
        [&](int key) -> asio::awaitable<int> {
          ++calls;
          asio::steady_timer timer(co_await asio::this_coro::executor, milliseconds(100));
          co_await timer.async_wait(asio::use_awaitable);
          co_return key * 7;
        },
        p.env);
  };
  auto tool0 = make(*processes[0]);
  auto tool1 = make(*processes[1]);
  auto tool2 = make(*processes[2]);
  std::vector<decltype(tool0)*> tools = {&tool0, &tool1, &tool2};

  // One event loop per "process", all at once.
  std::atomic<int> right{0};
  std::vector<std::thread> loops;
  for (int p = 0; p < kProcesses; ++p) {
    loops.emplace_back([&, p] {
      asio::io_context io;
      for (int i = 0; i < kTasks; ++i) {
        asio::co_spawn(
            io,
            [&, i]() -> asio::awaitable<void> {
              if (co_await (*tools[p])(i % kKeys) == (i % kKeys) * 7) ++right;
            },
            asio::detached);
      }
      io.run();
    });
  }
  for (std::thread& t : loops) t.join();
  EXPECT_EQ(right.load(), kProcesses * kTasks);
  EXPECT_EQ(calls.load(), kKeys);
  uint64_t from_others = 0;
  for (auto& tool : tools) {
    from_others += tool->stats()[Counter::kRemoteCoalesced] + tool->stats()[Counter::kSharedHits];
  }
  EXPECT_EQ(from_others, static_cast<uint64_t>((kProcesses - 1) * kKeys));
}

TEST_F(SharedBreakerTest, BreakerOpeningInOneProcessOpensItInTheOthers) {
  AgentProcess first(server_);
  AgentProcess second(server_);
  ToolPolicy policy;
  policy.cache.enabled = false;
  policy.breaker.shared_store = "shared";
  policy.breaker.minimum_calls = 4;
  policy.breaker.window_size = 4;
  policy.breaker.open_wait = seconds(2);
  std::atomic<int> calls1{0};
  std::atomic<int> calls2{0};
  auto make = [&](AgentProcess& p, std::atomic<int>& calls) {
    return MakeTool(
               {"quotes", "1", {"symbol"}}, policy,
               [&](const std::string&) -> Result<std::string> {
                 ++calls;
                 return Status(StatusCode::kUnavailable, "quote service down");
               },
               p.env)
        .value();
  };
  auto quotes1 = make(first, calls1);
  auto quotes2 = make(second, calls2);
  for (int i = 0; i < 4; ++i) (void)quotes1.Call("ACME");
  EXPECT_EQ(quotes1.core().breaker_state(), "open");
  // The second process learns it without calling the tool.
  auto until = std::chrono::steady_clock::now() + seconds(5);
  while (quotes2.core().breaker_state() != "open" && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_EQ(quotes2.core().breaker_state(), "open");
  Result<std::string> rejected = quotes2.Call("ACME");
  EXPECT_EQ(rejected.status().guard(), Guard::kBreaker);
  EXPECT_NE(rejected.status().message().find("another process"), std::string::npos)
      << rejected.status().ToString();
  EXPECT_EQ(calls2.load(), 0);

  // A process that starts while the tool is open learns it at once.
  AgentProcess third(server_);
  std::atomic<int> calls3{0};
  auto quotes3 = make(third, calls3);
  until = std::chrono::steady_clock::now() + seconds(5);
  while (quotes3.core().breaker_state() != "open" && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_EQ(quotes3.core().breaker_state(), "open");

  // The opening ends when the first process's open wait does: the second
  // then probes the tool itself.
  std::this_thread::sleep_for(seconds(2) + milliseconds(100));
  (void)quotes2.Call("ACME");
  EXPECT_EQ(calls2.load(), 1);
}

TEST_F(SharedBreakerTest, BreakerSharingNeedsAStoreThatCanCarryIt) {
  AgentProcess p(server_);
  ToolPolicy policy;
  policy.breaker.shared_store = "memory";
  try {
    Readonly(
        {"t", "1", {"q"}}, policy, [](const std::string& q) { return q; }, p.env);
    ADD_FAILURE() << "a memory store was accepted for breaker sharing";
  } catch (const ToolError& e) {
    EXPECT_NE(std::string(e.what()).find("breaker.shared_store"), std::string::npos) << e.what();
  }
}

// The record of upstream calls written by the workers: per key, intervals.
struct Interval {
  int64_t start;
  int64_t end;
  int pid;
};

std::map<std::string, std::vector<Interval>> ReadRecord(const std::string& path, int64_t open_end) {
  std::map<std::string, std::vector<Interval>> out;
  std::map<std::pair<std::string, int>, int64_t> open;
  std::istringstream in(ReadFileOrEmpty(path));
  std::string kind, key;
  int pid;
  int64_t ns;
  while (in >> kind >> key >> pid >> ns) {
    if (kind == "S") {
      open[{key, pid}] = ns;
    } else {
      out[key].push_back({open[{key, pid}], ns, pid});
      open.erase({key, pid});
    }
  }
  for (const auto& [who, start] : open) out[who.first].push_back({start, open_end, who.second});
  return out;
}

int Overlaps(std::map<std::string, std::vector<Interval>> calls) {
  int overlaps = 0;
  for (auto& [key, intervals] : calls) {
    std::sort(intervals.begin(), intervals.end(),
              [](const Interval& a, const Interval& b) { return a.start < b.start; });
    for (size_t i = 1; i < intervals.size(); ++i) {
      if (intervals[i].start < intervals[i - 1].end) ++overlaps;
    }
  }
  return overlaps;
}

std::string Field(const std::string& line, const std::string& name) {
  size_t at = line.find(name + "=");
  if (at == std::string::npos) return "";
  size_t end = line.find(' ', at);
  return line.substr(at + name.size() + 1,
                     end == std::string::npos ? end : end - at - name.size() - 1);
}

TEST_P(SharedTierTest, EightProcessesOf200CallsOver50KeysMakeExactly50UpstreamCalls) {
  constexpr int kProcesses = 8;
  TempDir dir("toolops-workers");
  std::string record = dir.File("upstream.log");
  int64_t start_at_ms = UnixNanos() / 1'000'000 + 1500;
  std::vector<ChildProcess> workers(kProcesses);
  for (int i = 0; i < kProcesses; ++i) {
    std::vector<std::string> argv = {TOOLOPS_SHARED_WORKER};
    for (const std::string& flag : server_.WorkerFlags()) argv.push_back(flag);
    for (const std::string& flag :
         {"--keys", "50", "--calls", "200", "--upstream-ms", "20", "--start-at"}) {
      argv.push_back(flag);
    }
    argv.push_back(std::to_string(start_at_ms));
    argv.push_back("--record");
    argv.push_back(record);
    ASSERT_TRUE(workers[i].Start(argv, dir.File("worker" + std::to_string(i) + ".out")));
  }
  int upstream = 0;
  int ok = 0;
  for (int i = 0; i < kProcesses; ++i) {
    std::optional<int> status = workers[i].Wait(seconds(60));
    ASSERT_TRUE(status.has_value()) << "worker " << i << " did not finish";
    std::string out = ReadFileOrEmpty(dir.File("worker" + std::to_string(i) + ".out"));
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << out;
    upstream += std::atoi(Field(out, "upstream").c_str());
    ok += std::atoi(Field(out, "ok").c_str());
  }
  std::printf(
      "figure (%s): %d processes x 200 calls over 50 keys (upstream 20 ms): %d upstream calls, "
      "%d calls answered\n",
      store_name(), kProcesses, upstream, ok);
  EXPECT_EQ(upstream, 50);
  EXPECT_EQ(ok, kProcesses * 200);
  auto calls = ReadRecord(record, UnixNanos());
  EXPECT_EQ(calls.size(), 50u);
  EXPECT_EQ(Overlaps(calls), 0);
}

TEST_P(SharedTierTest, KilledLeaderIsReplacedWithinLeaseTtlAndCallsNeverOverlap) {
  constexpr int kLeaseMs = 1000;
  TempDir dir("toolops-workers");
  std::string record = dir.File("upstream.log");
  auto common = [&](int calls, int hold_ms) {
    std::vector<std::string> argv = {TOOLOPS_SHARED_WORKER};
    for (const std::string& flag : server_.WorkerFlags()) argv.push_back(flag);
    for (const std::string& flag :
         {std::string("--keys"), std::string("1"), std::string("--calls"), std::to_string(calls),
          std::string("--upstream-ms"), std::string("50"), std::string("--hold-ms"),
          std::to_string(hold_ms), std::string("--lease-ms"), std::to_string(kLeaseMs),
          std::string("--record"), record}) {
      argv.push_back(flag);
    }
    return argv;
  };
  ChildProcess leader;
  ASSERT_TRUE(leader.Start(common(1, 60'000), dir.File("leader.out")));
  // Wait until the leader is inside its upstream call.
  auto until = std::chrono::steady_clock::now() + seconds(10);
  while (ReadFileOrEmpty(record).find("S key-0") == std::string::npos) {
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "the leader never called upstream";
    std::this_thread::sleep_for(milliseconds(10));
  }
  std::vector<ChildProcess> followers(3);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(followers[i].Start(common(10, 0), dir.File("f" + std::to_string(i) + ".out")));
  }
  std::this_thread::sleep_for(milliseconds(500));  // The followers are waiting now.
  int64_t killed_at = UnixNanos();
  leader.Signal(SIGKILL);
  ASSERT_TRUE(leader.Wait(seconds(5)).has_value());
  auto kill_time = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    std::optional<int> status = followers[i].Wait(seconds(30));
    ASSERT_TRUE(status.has_value());
    std::string out = ReadFileOrEmpty(dir.File("f" + std::to_string(i) + ".out"));
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << out;
    EXPECT_EQ(Field(out, "failed"), "0") << out;
  }
  auto finished = std::chrono::steady_clock::now() - kill_time;
  std::printf(
      "figure (%s): leader killed; every waiter done %lld ms after the kill (lease TTL %d ms)\n",
      store_name(),
      static_cast<long long>(std::chrono::duration_cast<milliseconds>(finished).count()), kLeaseMs);
  EXPECT_LT(finished, milliseconds(kLeaseMs) + seconds(1));
  auto calls = ReadRecord(record, killed_at);
  ASSERT_EQ(calls["key-0"].size(), 2u) << ReadFileOrEmpty(record);
  EXPECT_EQ(Overlaps(calls), 0);
  // The replacement call started after the kill (the killed one is the
  // first, left open until the kill).
  std::vector<Interval>& key_calls = calls["key-0"];
  std::sort(key_calls.begin(), key_calls.end(),
            [](const Interval& a, const Interval& b) { return a.start < b.start; });
  EXPECT_GE(key_calls[1].start, killed_at);
}

TEST_P(SharedBoardTest, StatsPublishedByTwoProcessesAreSummedAndADeadOneDropsOut) {
  TempDir dir("toolops-workers");
  auto worker = [&](const std::string& tool, int calls, int keys, int stats_ms,
                    const std::string& out) {
    std::vector<std::string> argv = {TOOLOPS_SHARED_WORKER};
    for (const std::string& flag : server_.WorkerFlags()) argv.push_back(flag);
    for (const std::string& flag :
         {std::string("--tool"), tool, std::string("--calls"), std::to_string(calls),
          std::string("--keys"), std::to_string(keys), std::string("--upstream-ms"),
          std::string("1"), std::string("--stats-ms"), std::to_string(stats_ms)}) {
      argv.push_back(flag);
    }
    int status = testing::RunProgram(argv, dir.File(out));
    std::string text = ReadFileOrEmpty(dir.File(out));
    EXPECT_EQ(status, 0) << text;
    return text;
  };
  // Two processes of one tool whose snapshots live a minute, and one of
  // another tool whose snapshot lives 3 x 300 ms.
  std::string a = worker("stats_search", 30, 6, 20'000, "a.out");
  std::string b = worker("stats_search", 20, 6, 20'000, "b.out");
  std::string c = worker("stats_short", 10, 2, 300, "c.out");
  int upstream = std::atoi(Field(a, "upstream").c_str()) + std::atoi(Field(b, "upstream").c_str());
  EXPECT_NE(Field(a, "stats"), Field(b, "stats"));

  Result<std::unique_ptr<Store>> store = server_.OpenStore({});
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  Result<std::vector<std::string>> snapshots = ReadPublishedStats(**store);
  ASSERT_TRUE(snapshots.ok()) << snapshots.status().ToString();
  cli::FleetStats fleet;
  for (const std::string& text : *snapshots) ASSERT_TRUE(cli::AddPrometheusText(text, &fleet).ok());
  // c's snapshot may already have expired on a slow machine.
  ASSERT_GE(fleet.processes, 2);
  const cli::ToolStats& search = fleet.tools["stats_search"];
  EXPECT_DOUBLE_EQ(search.total_calls(), 50);
  EXPECT_DOUBLE_EQ(search.upstream_calls, upstream);

  // The short-lived snapshot drops out; the others stay.
  auto until = std::chrono::steady_clock::now() + seconds(20);
  while (true) {
    snapshots = ReadPublishedStats(**store);
    ASSERT_TRUE(snapshots.ok()) << snapshots.status().ToString();
    if (snapshots->size() == 2) break;
    ASSERT_LT(std::chrono::steady_clock::now(), until) << snapshots->size() << " snapshots";
    std::this_thread::sleep_for(milliseconds(100));
  }

  // The command sums the same, from a configured store by name.
  std::string config = dir.File("toolops.toml");
  {
    FILE* f = std::fopen(config.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(server_.StoreToml("fleet").c_str(), f);
    std::fclose(f);
  }
  int status = testing::RunProgram(
      {TOOLOPS_CLI_BINARY, "stats", "--config", config, "--store", "fleet", "--json"},
      dir.File("stats.json"));
  std::string out = ReadFileOrEmpty(dir.File("stats.json"));
  ASSERT_EQ(status, 0) << out;
  nlohmann::json json = nlohmann::json::parse(out.substr(out.find('{')));
  EXPECT_EQ(json.at("processes"), 2) << out;
  EXPECT_EQ(json.at("tools").at("stats_search").at("calls"), 50) << out;
  EXPECT_EQ(json.at("tools").at("stats_search").at("upstream_calls"), upstream) << out;
  EXPECT_FALSE(json.at("tools").contains("stats_short")) << out;
}

TEST_P(SharedBoardTest, EntriesTaggedByTheirCallsAreInvalidatedFromAnotherProcess) {
  Result<std::unique_ptr<Store>> opened = server_.OpenStore({});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Store& store = **opened;
  CallTagIndex* index = CallTagIndexOf(store);
  ASSERT_NE(index, nullptr);
  const std::string k1(
      "tagged\0"
      "1\0"
      "paris",
      14),
      k2("tagged\0"
         "1\0"
         "rome",
         13),
      k3("tagged\0"
         "1\0"
         "oslo",
         13);
  TimePoint now = RealClock()->Now();
  StoredValue value{Bytes::Copy("answer"), now + seconds(60), now + seconds(60)};
  for (const std::string* k : {&k1, &k2, &k3}) {
    ASSERT_TRUE(store.Put(KeyRef::Of(*k), value, now).ok());
  }
  ASSERT_TRUE(index->TagEntry(KeyRef::Of(k1), {"city:paris", "europe"}, seconds(60)).ok());
  ASSERT_TRUE(index->TagEntry(KeyRef::Of(k2), {"europe"}, seconds(60)).ok());
  ASSERT_TRUE(index->TagEntry(KeyRef::Of(k2), {"europe"}, seconds(60)).ok());  // Twice: harmless.
  ASSERT_TRUE(index->TagEntry(KeyRef::Of(k3), {"city:oslo"}, seconds(60)).ok());
  EXPECT_EQ(index->TagEntry(KeyRef::Of(k3), {""}, seconds(60)).code(),
            StatusCode::kInvalidArgument);

  Result<size_t> erased = index->EraseTagged("europe");
  ASSERT_TRUE(erased.ok()) << erased.status().ToString();
  EXPECT_EQ(*erased, 2u);
  EXPECT_FALSE(store.Get(KeyRef::Of(k1), RealClock()->Now()).has_value());
  EXPECT_FALSE(store.Get(KeyRef::Of(k2), RealClock()->Now()).has_value());
  EXPECT_TRUE(store.Get(KeyRef::Of(k3), RealClock()->Now()).has_value());
  EXPECT_EQ(index->EraseTagged("europe").value(), 0u);      // The record went with them.
  EXPECT_EQ(index->EraseTagged("city:paris").value(), 0u);  // Its entry is gone already.

  // The command, in another process, erases by the same tag.
  TempDir dir("toolops-tags");
  std::string config = dir.File("toolops.toml");
  {
    FILE* f = std::fopen(config.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(server_.StoreToml("fleet").c_str(), f);
    std::fclose(f);
  }
  int status = testing::RunProgram(
      {TOOLOPS_CLI_BINARY, "invalidate", "--config", config, "--tag", "city:oslo"},
      dir.File("out"));
  std::string out = ReadFileOrEmpty(dir.File("out"));
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("fleet: removed 1 entry"), std::string::npos) << out;
  EXPECT_FALSE(store.Get(KeyRef::Of(k3), RealClock()->Now()).has_value());
  status = testing::RunProgram(
      {TOOLOPS_CLI_BINARY, "invalidate", "--config", config, "--tag", "city:oslo"},
      dir.File("again"));
  EXPECT_EQ(status, 1) << ReadFileOrEmpty(dir.File("again"));  // Nothing carries it now.

  // A tag of the whole tool (recorded when a tool with static tags is
  // wrapped) reaches every entry of the tool through the same command.
  now = RealClock()->Now();
  for (const std::string* k : {&k1, &k2}) {
    ASSERT_TRUE(store.Put(KeyRef::Of(*k), value, now).ok());
  }
  ASSERT_TRUE(RecordToolTags(store,
                             std::string("tagged\0"
                                         "1\0",
                                         9),
                             {"whole"})
                  .ok());
  status = testing::RunProgram(
      {TOOLOPS_CLI_BINARY, "invalidate", "--config", config, "--tag", "whole"}, dir.File("whole"));
  out = ReadFileOrEmpty(dir.File("whole"));
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("fleet: removed 2 entries"), std::string::npos) << out;
  EXPECT_FALSE(store.Get(KeyRef::Of(k1), RealClock()->Now()).has_value());
  EXPECT_FALSE(store.Get(KeyRef::Of(k2), RealClock()->Now()).has_value());
}

}  // namespace
}  // namespace toolops
