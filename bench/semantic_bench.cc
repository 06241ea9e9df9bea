// bench/semantic_bench.cc
//
// The semantic cache at scale, on one core: a partition of N entries (N up to
// 1,000,000), built from the questions of the QQP pair file, each combined
// with one of a set of phrasings so that every entry is a distinct question.
//
//   BM_SemanticAtScale/N   builds the index (counter build_seconds), then
//                          measures lookups the way the engine makes them:
//                          embed the question, search the partition for the
//                          best candidates above the threshold, run the match
//                          guard on them. Counters: lookup_p50_us,
//                          lookup_p99_us (target at 1M: p99 <= 1,000 us),
//                          embed_p50_us (target: <= 50 us), and
//                          bytes_per_entry: heap bytes of the index per entry,
//                          beyond the payload bytes (target: <= 600).
//
//   build/semantic_bench [--benchmark_filter=BM_SemanticAtScale/1000000$]
//
// The pair file is ../shared/data/paraphrase_pairs_qqp.csv, or $TOOLOPS_PAIRS.

#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "semantic/guard.h"
#include "semantic/pairs.h"
#include "semantic/vector_index.h"
#include "toolops/embedder.h"

namespace toolops {
namespace {

// Ways to ask a question in a context: entry i is question (i / size) in
// phrasing (i % size).
const std::vector<std::string>& Phrasings() {
  static const std::vector<std::string> phrasings = [] {
    std::vector<std::string> out = {""};
    const char* places[] = {"in London", "in Paris",  "in Tokyo",   "in Berlin", "in Madrid",
                            "in Delhi",  "in Sydney", "in Toronto", "in Lagos",  "in Lima"};
    const char* times[] = {"in 2015", "in 2016", "in 2017", "in 2018", "today", "this year"};
    for (const char* p : places) out.push_back(std::string(" ") + p);
    for (const char* t : times) out.push_back(std::string(" ") + t);
    for (const char* p : places) {
      for (const char* t : times) out.push_back(std::string(" ") + p + " " + t);
    }
    return out;  // 77 phrasings
  }();
  return phrasings;
}

const std::vector<std::string>& Questions() {
  static const std::vector<std::string> questions = [] {
    const char* env = std::getenv("TOOLOPS_PAIRS");
    auto pairs = ReadPairsCsv(env ? env : "../shared/data/paraphrase_pairs_qqp.csv");
    std::vector<std::string> out;
    if (!pairs.ok()) return out;
    std::set<std::string> seen;
    for (const LabelledPair& p : *pairs) {
      for (const std::string* q : {&p.first, &p.second}) {
        std::string text = *q;
        while (!text.empty() && (text.back() == '?' || text.back() == ' ')) text.pop_back();
        if (!text.empty() && seen.insert(text).second) out.push_back(text);
      }
    }
    return out;
  }();
  return questions;
}

std::string EntryText(size_t i) {
  const auto& q = Questions();
  const auto& ph = Phrasings();
  return q[(i / ph.size()) % q.size()] + ph[i % ph.size()] + "?";
}

// Bytes in use on the heap, including blocks malloc maps on their own.
size_t HeapBytes() {
  struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

void BM_SemanticAtScale(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  auto embedder = LoadStaticEmbedder(DefaultModelDirectory());
  if (!embedder.ok()) {
    state.SkipWithError(embedder.status().ToString().c_str());
    return;
  }
  if (Questions().size() * Phrasings().size() < n) {
    state.SkipWithError("the pair file is missing or too small (set TOOLOPS_PAIRS)");
    return;
  }
  const Embedder& e = **embedder;
  constexpr double kThreshold = 0.90;
  constexpr size_t kCandidates = 4;
  MatchGuard guard;
  for (auto _ : state) {
    VectorIndexOptions options;
    options.dims = e.dims();
    options.max_per_partition = n;
    size_t payload_bytes = 0;
    size_t heap_before = HeapBytes();
    auto start = std::chrono::steady_clock::now();
    auto index = std::make_unique<VectorIndex>(options);
    const std::string partition =
        "search_tool\x1f"
        "1";
    for (size_t i = 0; i < n; ++i) {
      std::string text = EntryText(i);
      std::vector<float> v = *e.Embed(text);
      // The engine's payload: key length, the exact key, the question.
      std::string key =
          "search_tool\x1f"
          "1\x1fk" +
          std::to_string(i);
      uint32_t key_size = static_cast<uint32_t>(key.size());
      std::string payload(reinterpret_cast<const char*>(&key_size), 4);
      payload += key;
      payload += text;
      payload_bytes += payload.size();
      index->Insert(partition, i, v, TimePoint::max(), std::move(payload));
    }
    double build_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    size_t heap_after = HeapBytes();

    // Lookups: the same questions in other words (the pair file's other
    // side, which the index may or may not hold) and in the index's own
    // phrasings, so that hits and misses both occur.
    std::vector<double> lookup_us, embed_us;
    size_t hits = 0;
    const size_t kLookups = 5000;
    for (size_t j = 0; j < kLookups; ++j) {
      std::string query = EntryText((j * 7919) % n);
      if (j % 2 == 1) query = "Tell me: " + query;
      auto t0 = std::chrono::steady_clock::now();
      std::vector<float> v = *e.Embed(query);
      auto t1 = std::chrono::steady_clock::now();
      auto matches = index->Search(partition, v, kCandidates, kThreshold, TimePoint{});
      for (const auto& m : matches) {
        uint32_t key_size;
        std::memcpy(&key_size, m.payload.data(), 4);
        std::string_view question = std::string_view(m.payload).substr(4 + key_size);
        if (guard.Check(query, question).accept) {
          ++hits;
          break;
        }
      }
      auto t2 = std::chrono::steady_clock::now();
      embed_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      lookup_us.push_back(std::chrono::duration<double, std::micro>(t2 - t0).count());
    }
    state.counters["entries"] = static_cast<double>(index->size());
    state.counters["build_seconds"] = build_seconds;
    state.counters["bytes_per_entry"] =
        (static_cast<double>(heap_after) - heap_before - payload_bytes) / n;
    state.counters["embed_p50_us"] = Percentile(embed_us, 0.50);
    state.counters["lookup_p50_us"] = Percentile(lookup_us, 0.50);
    state.counters["lookup_p99_us"] = Percentile(lookup_us, 0.99);
    state.counters["hit_share"] = static_cast<double>(hits) / kLookups;
  }
}
BENCHMARK(BM_SemanticAtScale)
    ->Arg(100'000)
    ->Arg(1'000'000)
    ->Iterations(1)
    ->Unit(benchmark::kSecond)
    ->UseRealTime();

}  // namespace
}  // namespace toolops

BENCHMARK_MAIN();
