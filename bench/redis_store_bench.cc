// bench/redis_store_bench.cc
//
// A hit through the Redis store against a raw hiredis GET of the same value
// from the same server, in one run. The store's hit does what a raw GET does
// (one round trip) plus the key digest (SHA-256), the pool, the envelope
// check (SHA-256 of the value) and the copy into Bytes; the figure is the
// ratio of their wall times per operation (the client mostly waits on the
// network, so CPU time would flatter both). Each benchmark starts its own
// redis-server on a free port.
//
//   build/redis_store_bench --benchmark_repetitions=5

#include <hiredis/hiredis.h>
#include <sched.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "redis_server.h"
#include "store/envelope.h"
#include "toolops/redis_store.h"

namespace toolops {
namespace {

constexpr size_t kValueBytes = 1024;

struct Fixture {
  Fixture() {
    if (!server.ok()) {
      std::fprintf(stderr, "redis-server: %s\n", server.error().c_str());
      std::abort();
    }
    // Server on one core, client on another: where the scheduler puts them
    // otherwise changes from run to run and moves both figures by half.
    if (sysconf(_SC_NPROCESSORS_ONLN) >= 2) {
      cpu_set_t server_cpu;
      CPU_ZERO(&server_cpu);
      CPU_SET(1, &server_cpu);
      sched_setaffinity(server.pid(), sizeof server_cpu, &server_cpu);
      cpu_set_t client_cpu;
      CPU_ZERO(&client_cpu);
      CPU_SET(0, &client_cpu);
      sched_setaffinity(0, sizeof client_cpu, &client_cpu);
    }
    RedisStoreOptions options;
    options.port = server.port();
    auto opened = RedisStore::Open(options);
    if (!opened.ok()) {
      std::fprintf(stderr, "%s\n", opened.status().ToString().c_str());
      std::abort();
    }
    store = std::move(*opened);
    key = std::string(
        "search\0"
        "1\0"
        "paris weather",
        22);
    TimePoint now = RealClock()->Now();
    StoredValue v{Bytes::Copy(std::string(kValueBytes, 'v')), now + std::chrono::hours(1),
                  now + std::chrono::hours(1)};
    if (!store->Put(KeyRef::Of(key), v, now).ok()) std::abort();
    std::string digest = StoreKeyDigest("toolops", key);
    size_t colon = digest.rfind(':');
    redis_key = digest.substr(0, colon + 1) + "{" + digest.substr(colon + 1) + "}";
  }
  testing::RedisServer server;
  std::unique_ptr<RedisStore> store;
  std::string key;
  std::string redis_key;
};

Fixture& Shared() {
  static Fixture* fixture = new Fixture();
  return *fixture;
}

void BM_RawHiredisGet(benchmark::State& state) {
  Fixture& f = Shared();
  redisContext* c = redisConnect("127.0.0.1", f.server.port());
  if (c == nullptr || c->err) {
    state.SkipWithError("cannot connect");
    return;
  }
  size_t bytes = 0;
  for (auto _ : state) {
    auto* reply =
        static_cast<redisReply*>(redisCommand(c, "GET %b", f.redis_key.data(), f.redis_key.size()));
    bytes += reply->len;
    freeReplyObject(reply);
  }
  benchmark::DoNotOptimize(bytes);
  redisFree(c);
}
BENCHMARK(BM_RawHiredisGet)->UseRealTime();

void BM_RedisStoreHit(benchmark::State& state) {
  Fixture& f = Shared();
  KeyRef key = KeyRef::Of(f.key);
  size_t bytes = 0;
  for (auto _ : state) {
    std::optional<StoredValue> v = f.store->Get(key, RealClock()->Now());
    bytes += v->value.size();
  }
  benchmark::DoNotOptimize(bytes);
}
BENCHMARK(BM_RedisStoreHit)->UseRealTime();

}  // namespace
}  // namespace toolops

BENCHMARK_MAIN();
