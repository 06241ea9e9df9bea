// bench/memory_store_bench.cc
//
// Benchmarks of the in-memory store:
//
//   BM_MemoryStoreGet / BM_UnorderedMapFind
//       The cache-hit path against the plainest possible cache, a
//       std::unordered_map<std::string, std::shared_ptr<const std::string>>
//       find that copies out the shared_ptr (our Get also hands out a
//       reference). Keys are looked up in a random order; each thread has its
//       own keys. The first argument is the number of keys.
//   BM_MemoryStoreGetHashingKey
//       The same Get, also paying for KeyRef::Of (the engine hashes a key
//       once per call and shares the hash, so BM_MemoryStoreGet is the
//       store's own cost).
//   BM_MemoryStorePutEvicting
//       Put of new keys into a full store, one eviction per Put.
//   BM_HitRatio
//       LRU against Window TinyLFU on synthetic traces of 1,000,000 keys:
//       Zipf popularity (s = 0.7, 0.9, 1.1), and Zipf mixed with periodic
//       scans of one-off keys, at cache sizes of 1% and 10% of the keys.
//       Both policies run on the same trace; the hit ratios (in percent,
//       after a warm-up) are the counters lru_hit_pct and tinylfu_hit_pct.
//   BM_MemoryOverhead
//       Fills a store with 1,000,000 entries of 24-byte keys and 100-byte
//       values and reports every byte the store and the values took from
//       malloc (mallinfo2 arena plus mmapped bytes), less the key and value
//       bytes, per entry: overhead_bytes_per_entry.

#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "store/memory_store.h"
#include "toolops/bytes.h"
#include "toolops/clock.h"
#include "toolops/store.h"

namespace toolops {
namespace {

constexpr size_t kKeySize = 24;
constexpr size_t kValueSize = 100;

// A small deterministic generator (SplitMix64), so every run sees the same
// traces.
class SplitMix {
 public:
  explicit SplitMix(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

// A key of exactly kKeySize bytes for id `id`.
std::string_view FormatKey(uint64_t id, char (&buffer)[kKeySize + 1]) {
  std::snprintf(buffer, sizeof(buffer), "key:%020llu", static_cast<unsigned long long>(id));
  return std::string_view(buffer, kKeySize);
}

TimePoint BenchNow() { return TimePoint(std::chrono::hours(1000)); }

StoredValue LongLived(Bytes value) {
  return StoredValue{std::move(value), BenchNow() + std::chrono::hours(1),
                     BenchNow() + std::chrono::hours(2)};
}

// ---- Get against unordered_map::find ----

// The same keys in a MemoryStore and in an unordered_map, built once per key
// count and shared by every thread.
struct GetFixture {
  std::vector<std::string> keys;
  std::vector<KeyRef> refs;
  std::unique_ptr<Store> store;
  std::unordered_map<std::string, std::shared_ptr<const std::string>> map;

  explicit GetFixture(size_t count) {
    MemoryStoreOptions options;
    options.max_entries = 2 * count;
    options.max_bytes = size_t{1} << 34;
    store = std::move(NewMemoryStore(options)).value();
    map.reserve(count);
    std::string value(kValueSize, 'v');
    char buffer[kKeySize + 1];
    for (size_t i = 0; i < count; ++i) keys.emplace_back(FormatKey(i, buffer));
    for (const std::string& key : keys) {
      refs.push_back(KeyRef::Of(key));
      (void)store->Put(refs.back(), LongLived(Bytes::Copy(value)), BenchNow());
      map.emplace(key, std::make_shared<const std::string>(value));
    }
  }

  static GetFixture& For(size_t count) {
    static std::mutex mu;
    static std::map<size_t, std::unique_ptr<GetFixture>>* fixtures =
        new std::map<size_t, std::unique_ptr<GetFixture>>();
    std::lock_guard<std::mutex> lock(mu);
    std::unique_ptr<GetFixture>& fixture = (*fixtures)[count];
    if (!fixture) fixture = std::make_unique<GetFixture>(count);
    return *fixture;
  }

  // This thread's share of the keys, in a random order.
  std::vector<uint32_t> OrderFor(const benchmark::State& state) const {
    size_t begin = keys.size() * state.thread_index() / state.threads();
    size_t end = keys.size() * (state.thread_index() + 1) / state.threads();
    std::vector<uint32_t> order(end - begin);
    std::iota(order.begin(), order.end(), static_cast<uint32_t>(begin));
    SplitMix random(state.thread_index() + 1);
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[random.Next() % i]);
    return order;
  }
};

void BM_MemoryStoreGet(benchmark::State& state) {
  GetFixture& fixture = GetFixture::For(static_cast<size_t>(state.range(0)));
  std::vector<uint32_t> order = fixture.OrderFor(state);
  size_t next = 0;
  size_t hits = 0;
  for (auto _ : state) {
    std::optional<StoredValue> found = fixture.store->Get(fixture.refs[order[next]], BenchNow());
    hits += found.has_value();
    benchmark::DoNotOptimize(found);
    if (++next == order.size()) next = 0;
  }
  if (hits != static_cast<size_t>(state.iterations())) state.SkipWithError("a Get missed");
}

void BM_MemoryStoreGetHashingKey(benchmark::State& state) {
  GetFixture& fixture = GetFixture::For(static_cast<size_t>(state.range(0)));
  std::vector<uint32_t> order = fixture.OrderFor(state);
  size_t next = 0;
  for (auto _ : state) {
    std::optional<StoredValue> found =
        fixture.store->Get(KeyRef::Of(fixture.keys[order[next]]), BenchNow());
    benchmark::DoNotOptimize(found);
    if (++next == order.size()) next = 0;
  }
}

void BM_UnorderedMapFind(benchmark::State& state) {
  GetFixture& fixture = GetFixture::For(static_cast<size_t>(state.range(0)));
  std::vector<uint32_t> order = fixture.OrderFor(state);
  size_t next = 0;
  for (auto _ : state) {
    auto it = fixture.map.find(fixture.keys[order[next]]);
    std::shared_ptr<const std::string> value = it->second;
    benchmark::DoNotOptimize(value);
    if (++next == order.size()) next = 0;
  }
}

BENCHMARK(BM_MemoryStoreGet)->Arg(10'000)->Arg(1'000'000)->Threads(1)->Threads(2);
BENCHMARK(BM_UnorderedMapFind)->Arg(10'000)->Arg(1'000'000)->Threads(1)->Threads(2);
BENCHMARK(BM_MemoryStoreGetHashingKey)->Arg(10'000)->Arg(1'000'000)->Threads(1)->Threads(2);

void BM_MemoryStorePutEvicting(benchmark::State& state) {
  MemoryStoreOptions options;
  options.max_entries = static_cast<size_t>(state.range(0));
  options.eviction = static_cast<EvictionPolicy>(state.range(1));
  std::unique_ptr<Store> store = std::move(NewMemoryStore(options)).value();
  Bytes value = Bytes::Copy(std::string(kValueSize, 'v'));
  char buffer[kKeySize + 1];
  uint64_t id = 0;
  for (; id < options.max_entries; ++id) {
    (void)store->Put(KeyRef::Of(FormatKey(id, buffer)), LongLived(value), BenchNow());
  }
  for (auto _ : state) {
    Status status = store->Put(KeyRef::Of(FormatKey(id++, buffer)), LongLived(value), BenchNow());
    benchmark::DoNotOptimize(status);
  }
  state.counters["evictions"] = static_cast<double>(store->Stats().evictions);
}

BENCHMARK(BM_MemoryStorePutEvicting)
    ->Args({100'000, static_cast<int>(EvictionPolicy::kLru)})
    ->Args({100'000, static_cast<int>(EvictionPolicy::kTinyLfu)});

// ---- Hit ratios ----

constexpr uint32_t kTraceKeys = 1'000'000;
constexpr size_t kTraceLength = 4'000'000;
constexpr size_t kWarmup = 1'000'000;

// Zipf(s) over kTraceKeys keys by inverting the cumulative distribution;
// popularity ranks are mapped to key ids through a fixed random permutation.
std::vector<uint32_t> ZipfRequests(double s, size_t count, uint64_t seed) {
  std::vector<double> cdf(kTraceKeys);
  double total = 0;
  for (uint32_t rank = 0; rank < kTraceKeys; ++rank) {
    total += std::pow(static_cast<double>(rank) + 1, -s);
    cdf[rank] = total;
  }
  std::vector<uint32_t> id_of_rank(kTraceKeys);
  std::iota(id_of_rank.begin(), id_of_rank.end(), 0u);
  SplitMix random(seed);
  for (size_t i = id_of_rank.size(); i > 1; --i) {
    std::swap(id_of_rank[i - 1], id_of_rank[random.Next() % i]);
  }
  std::vector<uint32_t> requests(count);
  for (uint32_t& request : requests) {
    double target = random.Uniform() * total;
    size_t rank = std::upper_bound(cdf.begin(), cdf.end(), target) - cdf.begin();
    request = id_of_rank[std::min<size_t>(rank, kTraceKeys - 1)];
  }
  return requests;
}

const std::vector<uint32_t>& ZipfTrace(int s_percent) {
  static std::map<int, std::vector<uint32_t>>* traces = new std::map<int, std::vector<uint32_t>>();
  std::vector<uint32_t>& trace = (*traces)[s_percent];
  if (trace.empty()) trace = ZipfRequests(s_percent / 100.0, kTraceLength, 42 + s_percent);
  return trace;
}

// Ids at or above this are one-off scan keys.
constexpr uint64_t kScanIdBase = uint64_t{1} << 32;

// Replays `requests` as the engine uses a store (Get; on a miss, Put) and
// returns the hit ratio over the requests after the warm-up, in percent.
// Every `scan_every` requests (if not 0), `scan_length` never-repeated keys
// are requested first.
double HitRatio(EvictionPolicy policy, size_t capacity, const std::vector<uint32_t>& requests,
                size_t scan_every, size_t scan_length) {
  MemoryStoreOptions options;
  options.max_entries = capacity;
  options.max_bytes = size_t{1} << 40;
  options.eviction = policy;
  std::unique_ptr<Store> store = std::move(NewMemoryStore(options)).value();
  Bytes value = Bytes::Copy(std::string(kValueSize, 'v'));
  char buffer[kKeySize + 1];
  uint64_t next_scan_id = kScanIdBase;
  size_t counted = 0;
  size_t hits = 0;
  auto access = [&](uint64_t id, bool count) {
    KeyRef key = KeyRef::Of(FormatKey(id, buffer));
    bool hit = store->Get(key, BenchNow()).has_value();
    if (!hit) (void)store->Put(key, LongLived(value), BenchNow());
    if (count) {
      ++counted;
      hits += hit;
    }
  };
  for (size_t i = 0; i < requests.size(); ++i) {
    bool count = i >= kWarmup;
    if (scan_every != 0 && i % scan_every == 0) {
      for (size_t j = 0; j < scan_length; ++j) access(next_scan_id++, count);
    }
    access(requests[i], count);
  }
  return 100.0 * static_cast<double>(hits) / static_cast<double>(counted);
}

// Arguments: Zipf s in hundredths, cache size in percent of the keys, and
// whether scans are mixed in (a scan of one cache's worth of one-off keys
// every 200,000 requests).
void BM_HitRatio(benchmark::State& state) {
  const std::vector<uint32_t>& trace = ZipfTrace(static_cast<int>(state.range(0)));
  size_t capacity = kTraceKeys * static_cast<size_t>(state.range(1)) / 100;
  size_t scan_every = state.range(2) != 0 ? 200'000 : 0;
  double lru = 0;
  double tiny_lfu = 0;
  for (auto _ : state) {
    lru = HitRatio(EvictionPolicy::kLru, capacity, trace, scan_every, capacity);
    tiny_lfu = HitRatio(EvictionPolicy::kTinyLfu, capacity, trace, scan_every, capacity);
  }
  state.counters["lru_hit_pct"] = lru;
  state.counters["tinylfu_hit_pct"] = tiny_lfu;
  state.counters["tinylfu_gain_pct"] = tiny_lfu - lru;
}

BENCHMARK(BM_HitRatio)
    ->ArgNames({"zipf_s_x100", "cache_pct", "scans"})
    ->ArgsProduct({{70, 90, 110}, {1, 10}, {0}})
    ->ArgsProduct({{90}, {1, 10}, {1}})
    ->Iterations(1)
    ->Unit(benchmark::kSecond);

// ---- Memory ----

size_t HeapInUse() {
  struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

// Arguments: max_entries, eviction policy. Always puts 1,000,000 entries.
void BM_MemoryOverhead(benchmark::State& state) {
  constexpr size_t kEntries = 1'000'000;
  MemoryStoreOptions options;
  options.max_entries = static_cast<size_t>(state.range(0));
  options.max_bytes = size_t{1} << 34;
  options.eviction = static_cast<EvictionPolicy>(state.range(1));
  std::string payload(kValueSize, 'v');
  char buffer[kKeySize + 1];
  for (auto _ : state) {
    size_t before = HeapInUse();
    std::unique_ptr<Store> store = std::move(NewMemoryStore(options)).value();
    for (size_t i = 0; i < kEntries; ++i) {
      // The value buffer is allocated here, inside the measured region.
      (void)store->Put(KeyRef::Of(FormatKey(i, buffer)), LongLived(Bytes::Copy(payload)),
                       BenchNow());
    }
    size_t after = HeapInUse();
    StoreStats stats = store->Stats();
    double overhead = static_cast<double>(after - before) - static_cast<double>(stats.bytes);
    state.counters["entries"] = static_cast<double>(stats.entries);
    state.counters["evictions"] = static_cast<double>(stats.evictions);
    state.counters["heap_bytes_per_entry"] =
        static_cast<double>(after - before) / static_cast<double>(stats.entries);
    state.counters["overhead_bytes_per_entry"] = overhead / static_cast<double>(stats.entries);
  }
}

BENCHMARK(BM_MemoryOverhead)
    ->ArgNames({"max_entries", "policy"})
    ->Args({1'000'000, static_cast<int>(EvictionPolicy::kTinyLfu)})
    ->Args({1'000'000, static_cast<int>(EvictionPolicy::kLru)})
    ->Args({4'000'000, static_cast<int>(EvictionPolicy::kTinyLfu)})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace toolops

BENCHMARK_MAIN();
