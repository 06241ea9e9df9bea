// bench/tool_bench.cc
//
// The core's figures, each against a baseline measured in the same run:
//
//   BM_BaselineMapFind     a plain unordered_map<string, shared_ptr<const string>> find
//   BM_WrappedHit          a cache hit through a wrapped blocking tool (memory
//                          store, one string argument, 100-byte result, counters on)
//   BM_WrappedHitBytes     the same tool returning Bytes (no copy of the result)
//
// Both pairs above cycle over 64 hot keys, which a core keeps in its L1 cache
// and its branch predictors learn by heart. The Wide pair measures the same
// two operations over 100,000 entries, hit in a fixed random order over
// 8,192 of them (more than a thread's front cache holds):
//
//   BM_BaselineMapFindWide, BM_WrappedHitBytesWide
//
//   BM_HandOutShared       a copy and drop of one of 64 Bytes (two atomic updates)
//   BM_HandOutSpare        the same through a SpareRefs per Bytes (what a
//                          front-cache hit does)
//
//   BM_Stampede            64 threads, 100,000 calls over 10 keys, upstream 5 ms:
//                          counter upstream_calls (target: exactly 10)
//   BM_BudgetUnderOutage   100% upstream failure, 5 attempts allowed, 20% budget:
//                          counter attempts_per_call (target: <= 1.2 plus the floor)
//
// bench/core_figures.py runs this binary and prints the ratios. For callgrind,
// the binary also runs a fixed number of hot-key calls of one kind and exits:
//
//   tool_bench --hits=N --case=baseline|string|bytes

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "toolops/tool.h"

namespace toolops {
namespace {

constexpr int kKeys = 1000;

std::string Query(int i) { return "weather in city number " + std::to_string(i); }
std::string Answer(const std::string& q) {
  std::string out = "answer:" + q;
  out.resize(100, '.');
  return out;
}

void BM_BaselineMapFind(benchmark::State& state) {
  static auto* map = [] {
    auto* m = new std::unordered_map<std::string, std::shared_ptr<const std::string>>();
    for (int i = 0; i < kKeys; ++i) {
      m->emplace(Query(i), std::make_shared<const std::string>(Answer(Query(i))));
    }
    return m;
  }();
  std::vector<std::string> queries;
  for (int i = 0; i < 64; ++i)
    queries.push_back(Query((i * 97 + state.thread_index() * 13) % kKeys));
  size_t i = 0;
  for (auto _ : state) {
    auto it = map->find(queries[i++ & 63]);
    benchmark::DoNotOptimize(it->second.get());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_BaselineMapFind)->Threads(1)->Threads(2)->UseRealTime();

constexpr int kWideKeys = 100'000;
constexpr size_t kWideQueries = 8192;

// A fixed pseudo-random order of queries over the wide key set.
std::vector<std::string> WideQueries(int thread) {
  std::vector<std::string> queries;
  uint64_t x = 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(thread);
  for (size_t i = 0; i < kWideQueries; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    queries.push_back(Query(static_cast<int>(x % kWideKeys)));
  }
  return queries;
}

void BM_BaselineMapFindWide(benchmark::State& state) {
  static auto* map = [] {
    auto* m = new std::unordered_map<std::string, std::shared_ptr<const std::string>>();
    for (int i = 0; i < kWideKeys; ++i) {
      m->emplace(Query(i), std::make_shared<const std::string>(Answer(Query(i))));
    }
    return m;
  }();
  std::vector<std::string> queries = WideQueries(state.thread_index());
  size_t i = 0;
  for (auto _ : state) {
    auto it = map->find(queries[i++ & (kWideQueries - 1)]);
    benchmark::DoNotOptimize(it->second.get());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_BaselineMapFindWide)->Threads(1)->UseRealTime();

void BM_WrappedHitBytesWide(benchmark::State& state) {
  static auto* tool = [] {
    // A store of its own, with room to spare: the default store holds
    // exactly 100,000 entries split over shards, so an uneven shard would
    // evict some keys and the loop would time upstream calls, not hits.
    MemoryStoreOptions options;
    options.name = "bench_wide";
    options.max_entries = 4 * kWideKeys;
    StoreRegistry::Default()->Register(options.name, NewMemoryStore(options).value());
    ToolPolicy policy;
    policy.cache.ttl = std::chrono::hours(1);
    policy.cache.store = options.name;
    auto* t = new Tool<Bytes(const std::string&)>(
        Readonly({"search_wide", "1", {"query"}}, policy,
                 [](const std::string& q) { return Bytes::Copy(Answer(q)); }));
    for (int i = 0; i < kWideKeys; ++i) (*t)(Query(i));
    return t;
  }();
  std::vector<std::string> queries = WideQueries(state.thread_index());
  uint64_t upstream_before = tool->stats()[Counter::kUpstreamSuccess];
  size_t i = 0;
  for (auto _ : state) {
    Bytes r = (*tool)(queries[i++ & (kWideQueries - 1)]);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
  // Every timed call must have been a hit (core_figures.py checks it).
  state.counters["upstream_calls"] =
      static_cast<double>(tool->stats()[Counter::kUpstreamSuccess] - upstream_before);
}
BENCHMARK(BM_WrappedHitBytesWide)->Threads(1)->UseRealTime();

// A tool wrapped once per result type and shared by every benchmark thread.
template <typename R>
Tool<R(const std::string&)>& SharedTool() {
  static auto* tool = [] {
    ToolPolicy policy;
    policy.cache.ttl = std::chrono::hours(1);
    auto* t = new Tool<R(const std::string&)>(
        Readonly({std::is_same_v<R, Bytes> ? "search_bytes" : "search", "1", {"query"}}, policy,
                 [](const std::string& q) -> R {
                   if constexpr (std::is_same_v<R, Bytes>) {
                     return Bytes::Copy(Answer(q));
                   } else {
                     return Answer(q);
                   }
                 }));
    for (int i = 0; i < kKeys; ++i) (*t)(Query(i));  // Warm every key.
    return t;
  }();
  return *tool;
}

template <typename R>
void WrappedHit(benchmark::State& state) {
  Tool<R(const std::string&)>& tool = SharedTool<R>();
  std::vector<std::string> queries;
  for (int i = 0; i < 64; ++i)
    queries.push_back(Query((i * 97 + state.thread_index() * 13) % kKeys));
  uint64_t upstream_before = tool.stats()[Counter::kUpstreamSuccess];
  size_t i = 0;
  for (auto _ : state) {
    R r = tool(queries[i++ & 63]);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
  // Zero when every timed call was a hit (core_figures.py checks it).
  state.counters["upstream_calls"] =
      static_cast<double>(tool.stats()[Counter::kUpstreamSuccess] - upstream_before);
}

// Control for the scaling figure: each thread calls a tool of its own, so
// nothing of ToolOps is shared between the threads. If this does not scale
// either, the machine (not a shared cache line) is the limit.
void BM_WrappedHitPrivateTools(benchmark::State& state) {
  static auto* tools = [] {
    auto* v = new std::vector<Tool<Bytes(const std::string&)>>();
    for (int t = 0; t < 2; ++t) {
      ToolPolicy policy;
      policy.cache.ttl = std::chrono::hours(1);
      v->push_back(Readonly({"private_" + std::to_string(t), "1", {"query"}}, policy,
                            [](const std::string& q) { return Bytes::Copy(Answer(q)); }));
      for (int i = 0; i < kKeys; ++i) v->back()(Query(i));
    }
    return v;
  }();
  Tool<Bytes(const std::string&)>& tool = (*tools)[state.thread_index() % 2];
  std::vector<std::string> queries;
  for (int i = 0; i < 64; ++i)
    queries.push_back(Query((i * 97 + state.thread_index() * 13) % kKeys));
  size_t i = 0;
  for (auto _ : state) {
    Bytes r = tool(queries[i++ & 63]);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_WrappedHitPrivateTools)->Threads(1)->Threads(2)->UseRealTime();

void BM_WrappedHit(benchmark::State& state) { WrappedHit<std::string>(state); }
BENCHMARK(BM_WrappedHit)->Threads(1)->Threads(2)->UseRealTime();

void BM_WrappedHitBytes(benchmark::State& state) { WrappedHit<Bytes>(state); }
BENCHMARK(BM_WrappedHitBytes)->Threads(1)->Threads(2)->UseRealTime();

std::vector<Bytes>& HandOutValues() {
  static auto* values = [] {
    auto* v = new std::vector<Bytes>();
    for (int i = 0; i < 64; ++i) v->push_back(Bytes::Copy(Answer(Query(i))));
    return v;
  }();
  return *values;
}

void BM_HandOutShared(benchmark::State& state) {
  std::vector<Bytes>& values = HandOutValues();
  size_t i = 0;
  for (auto _ : state) {
    Bytes b = values[i++ & 63];
    benchmark::DoNotOptimize(b);
  }
}
BENCHMARK(BM_HandOutShared);

void BM_HandOutSpare(benchmark::State& state) {
  std::vector<Bytes>& values = HandOutValues();
  std::vector<SpareRefs> spares(64);
  size_t i = 0;
  for (auto _ : state) {
    size_t k = i++ & 63;
    Bytes b = spares[k].Take(values[k]);
    benchmark::DoNotOptimize(b);
  }
}
BENCHMARK(BM_HandOutSpare);

void BM_Stampede(benchmark::State& state) {
  for (auto _ : state) {
    std::atomic<int> upstream{0};
    ToolPolicy policy;
    policy.cache.ttl = std::chrono::hours(1);
    auto tool = Readonly({"stampede"}, policy, [&](int key) {
      ++upstream;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      return key;
    });
    constexpr int kThreads = 64;
    constexpr int kCalls = 100'000;
    std::atomic<int> next{0}, wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        for (int n; (n = next.fetch_add(1)) < kCalls;) {
          if (tool(n % 10) != n % 10) ++wrong;
        }
      });
    }
    for (auto& t : threads) t.join();
    tool.core().ClearCache();
    state.counters["calls"] = kCalls;
    state.counters["upstream_calls"] = upstream.load();
    state.counters["wrong_results"] = wrong.load();
  }
}
BENCHMARK(BM_Stampede)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_BudgetUnderOutage(benchmark::State& state) {
  for (auto _ : state) {
    FakeClock clock;
    SeededRandom random(1);
    Environment env;
    env.clock = &clock;
    env.random = &random;
    ToolPolicy policy;
    policy.cache.enabled = false;
    policy.coalesce.enabled = false;
    policy.breaker.enabled = false;  // The budget alone bounds the retries here.
    policy.retry.max_attempts = 5;
    policy.retry.initial_backoff = std::chrono::milliseconds(10);
    policy.retry.budget_ratio = 0.2;
    policy.retry.budget_min_retries_per_second = 1;
    policy.retry.budget_window = std::chrono::seconds(10);
    auto tool = Readonly(
        {"outage"}, policy, [](int) -> Result<int> { return UnavailableError("down"); }, env);
    constexpr int kCalls = 100'000;
    TimePoint start = clock.Now();
    for (int i = 0; i < kCalls; ++i) {
      benchmark::DoNotOptimize(tool.Call(i));
      clock.Advance(std::chrono::milliseconds(1));  // 1,000 calls a second.
    }
    double seconds = std::chrono::duration<double>(clock.Now() - start).count();
    StatsSnapshot s = tool.stats();
    double floor = policy.retry.budget_min_retries_per_second * (seconds + 10);
    state.counters["calls"] = kCalls;
    state.counters["attempts"] = static_cast<double>(s[Counter::kAttempts]);
    state.counters["attempts_per_call"] = static_cast<double>(s[Counter::kAttempts]) / kCalls;
    state.counters["bound_per_call"] = (1.2 * kCalls + floor) / kCalls;
  }
}
BENCHMARK(BM_BudgetUnderOutage)->Iterations(1)->Unit(benchmark::kMillisecond);

// --hits=N --case=...: N calls over the 64 hot keys of the first thread, and
// exit (for callgrind: the difference between N and 2N calls is N calls).
int CountHits(long n, std::string_view kind) {
  std::vector<std::string> queries;
  for (int i = 0; i < 64; ++i) queries.push_back(Query((i * 97) % kKeys));
  size_t total = 0;
  if (kind == "baseline") {
    static auto* map = new std::unordered_map<std::string, std::shared_ptr<const std::string>>();
    for (int i = 0; i < kKeys; ++i) {
      map->emplace(Query(i), std::make_shared<const std::string>(Answer(Query(i))));
    }
    for (long i = 0; i < n; ++i) total += map->find(queries[i & 63])->second->size();
  } else if (kind == "string") {
    Tool<std::string(const std::string&)>& tool = SharedTool<std::string>();
    for (long i = 0; i < n; ++i) total += tool(queries[i & 63]).size();
  } else if (kind == "bytes") {
    Tool<Bytes(const std::string&)>& tool = SharedTool<Bytes>();
    for (long i = 0; i < n; ++i) total += tool(queries[i & 63]).size();
  } else {
    std::fprintf(stderr, "--case must be baseline, string or bytes\n");
    return 2;
  }
  return total == static_cast<size_t>(n) * 100 ? 0 : 1;
}

}  // namespace
}  // namespace toolops

int main(int argc, char** argv) {
  long hits = -1;
  std::string_view kind = "bytes";
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--hits=", 7) == 0) hits = std::atol(argv[i] + 7);
    if (std::strncmp(argv[i], "--case=", 7) == 0) kind = argv[i] + 7;
  }
  if (hits >= 0) return toolops::CountHits(hits, kind);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
