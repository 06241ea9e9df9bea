// bench/args_bench.cc
//
// Cost of the canonical argument encoding: one short string (the hot path of
// a one-parameter tool), the same under each normalisation, and a small map
// of arguments. Every benchmark reuses one output string, so the figures
// exclude its growth; "allocs" counts operator new calls per encoding (not
// utf8proc's own malloc, which every non-ASCII normalisation makes).

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <new>
#include <string>
#include <unordered_map>

#include "toolops/args.h"

namespace {

std::atomic<size_t> allocations{0};

}  // namespace

// Counts every allocation of this program. GCC takes the malloc/free pairs
// below for a new/free mismatch once they are inlined; they are not.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

namespace toolops {
namespace {

// Runs `encode` once per iteration into a reused string, checking the status.
template <typename Encode>
void RunEncoding(benchmark::State& state, TextNormalization normalization, Encode encode) {
  std::string out;
  out.reserve(256);
  const size_t before = allocations.load(std::memory_order_relaxed);
  for (auto _ : state) {
    out.clear();
    ArgWriter writer(&out, normalization);
    encode(writer);
    if (!writer.Finish().ok()) state.SkipWithError("encoding failed");
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.counters["allocs"] =
      benchmark::Counter(static_cast<double>(allocations.load(std::memory_order_relaxed) - before),
                         benchmark::Counter::kAvgIterations);
  state.counters["bytes"] = static_cast<double>(out.size());
}

constexpr std::string_view kShortAscii = "weather in Paris";
constexpr std::string_view kShortNonAscii = "m\xC3\xA9t\xC3\xA9o \xC3\xA0 Paris";

// Baselines. The text's size is hidden from the compiler, as it is for a
// real argument. AppendOnly: the bytes alone. AppendHeaderAndText: a tag, a
// length byte and the bytes, in two appends: the floor for any
// length-prefixed encoding into a std::string.
void BM_AppendOnly(benchmark::State& state) {
  std::string_view text = kShortAscii;
  benchmark::DoNotOptimize(text);
  std::string out;
  out.reserve(256);
  for (auto _ : state) {
    out.clear();
    out.append(text.data(), text.size());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_AppendOnly);

void BM_AppendHeaderAndText(benchmark::State& state) {
  std::string_view text = kShortAscii;
  benchmark::DoNotOptimize(text);
  std::string out;
  out.reserve(256);
  for (auto _ : state) {
    out.clear();
    const char header[2] = {static_cast<char>(ArgTag::kText), static_cast<char>(text.size())};
    out.append(header, 2);
    out.append(text.data(), text.size());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_AppendHeaderAndText);

void BM_ShortString(benchmark::State& state) {
  const auto normalization = static_cast<TextNormalization>(state.range(0));
  const std::string_view text = state.range(1) ? kShortNonAscii : kShortAscii;
  state.SetLabel(std::string(state.range(1) ? "non-ASCII " : "ASCII ") +
                 (normalization == TextNormalization::kNone   ? "kNone"
                  : normalization == TextNormalization::kNfc  ? "kNfc"
                  : normalization == TextNormalization::kNfkc ? "kNfkc"
                                                              : "kNfkcCasefold"));
  RunEncoding(state, normalization, [text](ArgWriter& writer) { EncodeArg(writer, text); });
}
BENCHMARK(BM_ShortString)->ArgsProduct({{0, 1, 2, 3}, {0, 1}});

void BM_Int(benchmark::State& state) {
  RunEncoding(state, TextNormalization::kNone,
              [](ArgWriter& writer) { EncodeArg(writer, int64_t{42}); });
}
BENCHMARK(BM_Int);

// {"city": "Paris", "days": 3, "units": "metric"} in three containers.
void BM_SmallStdMap(benchmark::State& state) {
  const std::map<std::string, Value> args = {{"city", "Paris"}, {"days", 3}, {"units", "metric"}};
  RunEncoding(state, TextNormalization::kNone,
              [&args](ArgWriter& writer) { EncodeArg(writer, args); });
}
BENCHMARK(BM_SmallStdMap);

void BM_SmallUnorderedMap(benchmark::State& state) {
  const std::unordered_map<std::string, std::string> args = {
      {"city", "Paris"}, {"days", "3"}, {"units", "metric"}};
  RunEncoding(state, TextNormalization::kNone,
              [&args](ArgWriter& writer) { EncodeArg(writer, args); });
}
BENCHMARK(BM_SmallUnorderedMap);

void BM_SmallValueMap(benchmark::State& state) {
  const Value args = Value::Map{{"city", "Paris"}, {"days", 3}, {"units", "metric"}};
  RunEncoding(state, TextNormalization::kNone,
              [&args](ArgWriter& writer) { EncodeArg(writer, args); });
}
BENCHMARK(BM_SmallValueMap);

}  // namespace
}  // namespace toolops

BENCHMARK_MAIN();
