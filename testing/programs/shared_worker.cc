// testing/programs/shared_worker.cc
//
// One "agent process" for the tests of coalescing across processes. It wraps
// a slow tool with a shared store (--store redis, the default, on --port;
// --store postgres on --conninfo, table --table; or --store sqlite on the
// file --path, which does not coalesce), starts --calls threads at the same
// wall-clock instant (--start-at), each calling the tool once for key
// (thread index % --keys), and prints one line of counts:
//
//   calls=200 ok=200 failed=0 upstream=7 coalesced=... shared_hits=...
//
// Each upstream call appends "S <key> <pid> <unix ns>" when it starts and
// "E <key> <pid> <unix ns>" when it ends to --record (O_APPEND, one write
// each), so that the test can check that calls for a key never overlapped
// across processes. --hold-ms makes the upstream call of key 0 hang that
// long (to be killed mid-call). --stats-ms N publishes the process's metrics
// to the shared store once the calls are done (a StatsPublisher with an
// interval of N ms, so the snapshot lives 3N ms) and prints "stats=<id>".

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "toolops/environment.h"
#include "toolops/postgres_store.h"
#include "toolops/redis_store.h"
#include "toolops/sqlite_store.h"
#include "toolops/stats_publisher.h"
#include "toolops/store.h"
#include "toolops/tool.h"

namespace {

int64_t UnixNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Flags {
  std::string store = "redis";
  int port = 6379;
  std::string conninfo;
  std::string table = "toolops_entries";
  std::string path;
  int keys = 50;
  int calls = 200;
  int upstream_ms = 20;
  int hold_ms = 0;
  int lease_ms = 5000;
  int64_t start_at_ms = 0;
  int deadline_ms = 0;
  std::string record;
  std::string tool = "search";
  int stats_ms = 0;
};

Flags Parse(int argc, char** argv) {
  Flags f;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string name = argv[i];
    std::string value = argv[i + 1];
    if (name == "--store")
      f.store = value;
    else if (name == "--port")
      f.port = std::stoi(value);
    else if (name == "--conninfo")
      f.conninfo = value;
    else if (name == "--table")
      f.table = value;
    else if (name == "--path")
      f.path = value;
    else if (name == "--keys")
      f.keys = std::stoi(value);
    else if (name == "--calls")
      f.calls = std::stoi(value);
    else if (name == "--upstream-ms")
      f.upstream_ms = std::stoi(value);
    else if (name == "--hold-ms")
      f.hold_ms = std::stoi(value);
    else if (name == "--lease-ms")
      f.lease_ms = std::stoi(value);
    else if (name == "--start-at")
      f.start_at_ms = std::stoll(value);
    else if (name == "--deadline-ms")
      f.deadline_ms = std::stoi(value);
    else if (name == "--record")
      f.record = value;
    else if (name == "--tool")
      f.tool = value;
    else if (name == "--stats-ms")
      f.stats_ms = std::stoi(value);
    else {
      std::fprintf(stderr, "unknown flag %s\n", name.c_str());
      std::exit(2);
    }
  }
  return f;
}

void Record(int fd, char kind, const std::string& key) {
  if (fd < 0) return;
  std::string line = std::string(1, kind) + " " + key + " " + std::to_string(getpid()) + " " +
                     std::to_string(UnixNanos()) + "\n";
  if (write(fd, line.data(), line.size()) < 0) std::perror("record");
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags = Parse(argc, argv);
  int record_fd = flags.record.empty()
                      ? -1
                      : open(flags.record.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

  toolops::Result<std::unique_ptr<toolops::Store>> shared =
      toolops::Status(toolops::StatusCode::kInvalidArgument,
                      "--store must be redis, postgres or sqlite, not '" + flags.store + "'");
  if (flags.store == "redis") {
    toolops::RedisStoreOptions redis;
    redis.port = flags.port;
    redis.lease_ttl = std::chrono::milliseconds(flags.lease_ms);
    redis.io_timeout = std::chrono::milliseconds(1000);
    shared = toolops::NewRedisStore(redis);
  } else if (flags.store == "postgres") {
    toolops::PostgresStoreOptions postgres;
    postgres.conninfo = flags.conninfo;
    postgres.table = flags.table;
    postgres.lease_ttl = std::chrono::milliseconds(flags.lease_ms);
    shared = toolops::NewPostgresStore(postgres);
  } else if (flags.store == "sqlite") {
    toolops::SqliteStoreOptions sqlite;
    sqlite.path = flags.path;
    shared = toolops::NewSqliteStore(sqlite);
  }
  if (!shared.ok()) {
    std::fprintf(stderr, "%s: %s\n", flags.store.c_str(), shared.status().ToString().c_str());
    return 1;
  }
  toolops::StoreRegistry stores;
  stores.Register("memory", std::move(toolops::NewMemoryStore({})).value());
  stores.Register("shared", std::shared_ptr<toolops::Store>(std::move(*shared)));
  toolops::Environment env;
  env.stores = &stores;

  toolops::ToolPolicy policy;
  policy.cache.ttl = std::chrono::minutes(10);
  policy.cache.shared_store = "shared";
  if (flags.deadline_ms > 0) policy.timeout.deadline = std::chrono::milliseconds(flags.deadline_ms);
  std::atomic<int> upstream{0};
  auto tool = toolops::Readonly(
      {flags.tool, "1", {"key"}}, policy,
      [&](const std::string& key) {
        ++upstream;
        Record(record_fd, 'S', key);
        int ms = (flags.hold_ms > 0 && key == "key-0") ? flags.hold_ms : flags.upstream_ms;
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        Record(record_fd, 'E', key);
        return "answer for " + key;
      },
      env);

  // Start together.
  if (flags.start_at_ms > 0) {
    int64_t wait_ns = flags.start_at_ms * 1'000'000 - UnixNanos();
    if (wait_ns > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(wait_ns));
  }
  std::atomic<int> ok{0};
  std::atomic<int> wrong{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < flags.calls; ++i) {
    threads.emplace_back([&, i] {
      std::string key = "key-" + std::to_string(i % flags.keys);
      toolops::Result<std::string> r = tool.Call(key);
      if (!r.ok()) {
        ++failed;
        std::fprintf(stderr, "call %s failed: %s\n", key.c_str(), r.status().ToString().c_str());
      } else if (r.value() != "answer for " + key) {
        ++wrong;
      } else {
        ++ok;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  toolops::StatsSnapshot s = tool.stats();
  std::printf(
      "calls=%d ok=%d wrong=%d failed=%d upstream=%d coalesced=%llu remote_coalesced=%llu "
      "shared_hits=%llu fresh_hits=%llu\n",
      flags.calls, ok.load(), wrong.load(), failed.load(), upstream.load(),
      static_cast<unsigned long long>(s[toolops::Counter::kCoalesced]),
      static_cast<unsigned long long>(s[toolops::Counter::kRemoteCoalesced]),
      static_cast<unsigned long long>(s[toolops::Counter::kSharedHits]),
      static_cast<unsigned long long>(s[toolops::Counter::kFreshHit]));
  if (flags.stats_ms > 0) {
    auto publisher = toolops::StatsPublisher::Start(stores.Get("shared").value(),
                                                    std::chrono::milliseconds(flags.stats_ms));
    if (!publisher.ok() || (*publisher)->published() != 1) {
      std::fprintf(stderr, "publishing statistics failed\n");
      return 1;
    }
    std::printf("stats=%s\n", (*publisher)->process_id().c_str());
  }
  std::fflush(stdout);
  return failed.load() == 0 && wrong.load() == 0 ? 0 : 1;
}
