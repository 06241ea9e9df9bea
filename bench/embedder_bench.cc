// bench/embedder_bench.cc
//
// The built-in embedder on short queries (target: at most 50 us each), and
// its parts: tokenising alone.
//
//   build/embedder_bench

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "semantic/wordpiece.h"
#include "toolops/embedder.h"

namespace toolops {
namespace {

const std::vector<std::string>& Queries() {
  static const std::vector<std::string> queries = {
      "What is the weather in Paris tomorrow?",
      "How do I learn Python quickly?",
      "best italian restaurants near me open now",
      "Convert 150 USD to EUR",
      "Who won the 2010 FIFA World Cup?",
      "What's the difference between a crocodile and an alligator?",
      "tomorrow's forecast for Lyon",
      "How can I improve my English speaking skills?",
  };
  return queries;
}

void BM_EmbedShortQuery(benchmark::State& state) {
  static auto embedder = LoadStaticEmbedder(DefaultModelDirectory());
  if (!embedder.ok()) {
    state.SkipWithError(embedder.status().ToString().c_str());
    return;
  }
  size_t i = 0;
  for (auto _ : state) {
    auto v = (*embedder)->Embed(Queries()[i++ % Queries().size()]);
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_EmbedShortQuery);

void BM_TokenizeShortQuery(benchmark::State& state) {
  static auto tokenizer = WordPieceTokenizer::Load(DefaultModelDirectory() + "/tokenizer.json");
  if (!tokenizer.ok()) {
    state.SkipWithError(tokenizer.status().ToString().c_str());
    return;
  }
  size_t i = 0;
  for (auto _ : state) {
    auto ids = tokenizer->Encode(Queries()[i++ % Queries().size()]);
    benchmark::DoNotOptimize(ids);
  }
}
BENCHMARK(BM_TokenizeShortQuery);

}  // namespace
}  // namespace toolops

BENCHMARK_MAIN();
