// bench/telemetry_bench.cc
//
// What telemetry costs on the hit path, against the same hit with telemetry
// off, in one run of one process:
//
//   BM_TelemetryHitCost   alternates blocks of fresh hits on two tools of the
//                         same shape (memory store, one string argument,
//                         100-byte Bytes result, 64 hot keys): one with
//                         ToolPolicy::telemetry = false, one with the latency
//                         histogram on and tracing at 1% (traceidratio 0.01,
//                         spans exported over OTLP/HTTP to a collector on a
//                         loopback port). Counters per hit, medians over the
//                         blocks: CPU time of the calling thread (off_cpu_ns,
//                         on_cpu_ns, cpu_ratio) and wall time (off_wall_ns,
//                         on_wall_ns, wall_ratio).
//   BM_HitTelemetryOff, BM_HitTelemetryOn, BM_HitMetricsOnly
//                         the same hits as plain benchmarks (the last with
//                         tracing off).
//
// For instruction counts under callgrind (which counts the same on a busy
// machine), the binary also runs a fixed number of hits and exits:
//
//   telemetry_bench --hits=N --telemetry=off|on
//
// bench/telemetry_figures.py runs both and prints the figures.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "http_recorder.h"
#include "toolops/tool.h"
#include "toolops/tracing.h"

namespace toolops {
namespace {

constexpr int kKeys = 1000;

std::string Query(int i) { return "weather in city number " + std::to_string(i); }

using HitTool = Tool<Bytes(const std::string&)>;

HitTool* MakeTool(const std::string& name, bool telemetry) {
  ToolPolicy policy;
  policy.cache.ttl = std::chrono::hours(1);
  policy.telemetry = telemetry;
  auto* tool = new HitTool(Readonly({name, "1", {"query"}}, policy, [](const std::string& q) {
    std::string out = "answer:" + q;
    out.resize(100, '.');
    return Bytes::Copy(out);
  }));
  for (int i = 0; i < kKeys; ++i) (*tool)(Query(i));  // Warm every key.
  return tool;
}

// Tracing at 1% to a real collector (on), or off.
void SetTracing(bool one_percent) {
  static testing::HttpRecorder* collector = new testing::HttpRecorder(/*keep_bodies=*/false);
  static int current = -1;
  if (current == static_cast<int>(one_percent)) return;
  current = one_percent;
  TracingOptions o;
  o.enabled = one_percent;
  o.endpoint = collector->url("/v1/traces");
  o.sampler = TraceSampler::kTraceIdRatio;
  o.ratio = 0.01;
  o.max_queue_spans = 1 << 16;
  if (!ConfigureTracing(o).ok()) std::abort();
}

HitTool& OffTool() {
  static HitTool* tool = MakeTool("telemetry_off", false);
  return *tool;
}
HitTool& OnTool() {
  static HitTool* tool = MakeTool("telemetry_on", true);
  return *tool;
}

std::vector<std::string> HotQueries() {
  std::vector<std::string> queries;
  for (int i = 0; i < 64; ++i) queries.push_back(Query((i * 97) % kKeys));
  return queries;
}

void RunHits(benchmark::State& state, HitTool& tool) {
  std::vector<std::string> queries = HotQueries();
  size_t i = 0;
  for (auto _ : state) {
    Bytes r = tool(queries[i++ & 63]);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_HitTelemetryOff(benchmark::State& state) {
  SetTracing(true);
  RunHits(state, OffTool());
}
BENCHMARK(BM_HitTelemetryOff);

void BM_HitTelemetryOn(benchmark::State& state) {
  SetTracing(true);
  RunHits(state, OnTool());
}
BENCHMARK(BM_HitTelemetryOn);

void BM_HitMetricsOnly(benchmark::State& state) {
  static HitTool* tool = [] {
    HitTool* t = MakeTool("metrics_only", true);
    return t;
  }();
  SetTracing(false);
  RunHits(state, *tool);
}
BENCHMARK(BM_HitMetricsOnly);

// Blocks of hits on each tool in turn, so that a machine that slows down or
// speeds up moves both sides alike.
void BM_TelemetryHitCost(benchmark::State& state) {
  SetTracing(true);
  HitTool& off = OffTool();
  HitTool& on = OnTool();
  std::vector<std::string> queries = HotQueries();
  constexpr int kBlock = 20'000;
  constexpr int kRounds = 200;
  // Per hit, in CPU time of this thread (what the hit path itself costs,
  // whatever else the machine runs) and in wall time (which also pays for
  // the exporter thread when the cores are busy).
  struct Cost {
    double cpu_ns, wall_ns;
  };
  auto thread_cpu = [] {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
  };
  auto block = [&](HitTool& tool) {
    double cpu_start = thread_cpu();
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kBlock; ++i) {
      Bytes r = tool(queries[i & 63]);
      benchmark::DoNotOptimize(r);
    }
    double wall =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
    return Cost{(thread_cpu() - cpu_start) / kBlock, wall / kBlock};
  };
  for (auto _ : state) {
    std::vector<double> off_cpu, on_cpu, off_wall, on_wall;
    auto add = [](Cost c, std::vector<double>* cpu, std::vector<double>* wall) {
      cpu->push_back(c.cpu_ns);
      wall->push_back(c.wall_ns);
    };
    for (int round = 0; round < kRounds; ++round) {
      if (round % 2 == 0) {
        add(block(off), &off_cpu, &off_wall);
        add(block(on), &on_cpu, &on_wall);
      } else {
        add(block(on), &on_cpu, &on_wall);
        add(block(off), &off_cpu, &off_wall);
      }
    }
    auto median = [](std::vector<double> v) {
      std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
      return v[v.size() / 2];
    };
    state.counters["off_cpu_ns"] = median(off_cpu);
    state.counters["on_cpu_ns"] = median(on_cpu);
    state.counters["cpu_ratio"] = median(on_cpu) / median(off_cpu);
    state.counters["off_wall_ns"] = median(off_wall);
    state.counters["on_wall_ns"] = median(on_wall);
    state.counters["wall_ratio"] = median(on_wall) / median(off_wall);
    state.counters["spans"] = static_cast<double>(GetTracingStats().spans_started);
  }
}
BENCHMARK(BM_TelemetryHitCost)->Iterations(1)->Unit(benchmark::kMillisecond);

// --hits=N --telemetry=off|on: N hits and exit (for callgrind).
int CountHits(long n, bool telemetry) {
  SetTracing(telemetry);
  HitTool& tool = telemetry ? OnTool() : OffTool();
  std::vector<std::string> queries = HotQueries();
  size_t total = 0;
  for (long i = 0; i < n; ++i) total += tool(queries[i & 63]).size();
  return total == static_cast<size_t>(n) * 100 ? 0 : 1;
}

}  // namespace
}  // namespace toolops

int main(int argc, char** argv) {
  long hits = -1;
  bool telemetry = true;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--hits=", 7) == 0) hits = std::atol(argv[i] + 7);
    if (std::strcmp(argv[i], "--telemetry=off") == 0) telemetry = false;
  }
  if (hits >= 0) return toolops::CountHits(hits, telemetry);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
