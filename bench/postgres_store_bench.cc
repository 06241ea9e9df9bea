// bench/postgres_store_bench.cc
//
// The PostgreSQL store's hit path against the plainest way to read the same
// row, on a private server this binary starts (testing/postgres_server.h):
//
//   BM_RawPreparedSelect
//       The baseline: PQexecPrepared of "SELECT envelope FROM t WHERE
//       digest = $1" on a connection of its own, binary result, over the same
//       TCP loopback as the store.
//   BM_PostgresStoreGetHit
//       PostgresStore::Get of the same row (a 1 KiB value): the key digest,
//       a pooled connection, the round trip with its deadline, and the
//       envelope check and copy. Counter vs_raw: its time per call divided by
//       the baseline's median time per call in this run (target: <= 1.15).
//
// After the benchmarks, one line gives the medians over the repetitions and
// their ratio ("postgres_store_hit_vs_raw_select: ..."). Output is always the
// console table (the reporter adds the ratio), whatever --benchmark_format says.
// Run with --benchmark_repetitions=3 (or more); the ratio is the figure, the
// nanoseconds move with the machine. On a machine with other work, add
// --benchmark_enable_random_interleaving=true so that both see the same load.

#include <benchmark/benchmark.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "postgres_server.h"
#include "store/envelope.h"
#include "toolops/postgres_store.h"

namespace toolops {
namespace {

constexpr size_t kValueBytes = 1024;
constexpr const char* kTable = "bench_entries";

// The server, the store with one row in it, and a raw connection ready to
// read that row. Built once, before the benchmarks run.
struct Fixture {
  testing::PostgresServer server;
  std::unique_ptr<PostgresStore> store;
  // A tool key as the wrappers build it: name, NUL, version, NUL, arguments.
  static constexpr char kKey[] =
      "search\0"
      "1\0"
      "weather in city number 42";
  std::string key = std::string(kKey, sizeof(kKey) - 1);
  KeyRef key_ref = KeyRef::Of(key);
  std::string digest;
  PGconn* raw = nullptr;

  ~Fixture() {
    if (raw != nullptr) PQfinish(raw);
  }

  // An empty string, or why the fixture cannot be built.
  std::string SetUp() {
    Status started = server.Start();
    if (!started.ok()) return "cannot start PostgreSQL: " + started.ToString();

    PostgresStoreOptions options;
    options.conninfo = server.conninfo();
    options.table = kTable;
    Result<std::unique_ptr<PostgresStore>> opened = PostgresStore::Open(options);
    if (!opened.ok()) return opened.status().ToString();
    store = std::move(opened).value();
    std::string value(kValueBytes, '\0');
    std::mt19937_64 rng(1);
    for (char& c : value) c = static_cast<char>('a' + rng() % 26);
    TimePoint now = RealClock()->Now();
    Status put = store->Put(
        key_ref,
        StoredValue{Bytes::Copy(value), now + std::chrono::hours(1), now + std::chrono::hours(2)},
        now);
    if (!put.ok()) return put.ToString();
    digest = StoreKeyDigest(options.key_namespace, key);

    raw = PQconnectdb(server.conninfo().c_str());
    if (PQstatus(raw) != CONNECTION_OK) return PQerrorMessage(raw);
    PGresult* prepared = PQprepare(
        raw, "raw_get",
        ("SELECT envelope FROM " + std::string(kTable) + " WHERE digest = $1").c_str(), 1, nullptr);
    bool ok = PQresultStatus(prepared) == PGRES_COMMAND_OK;
    std::string error = PQresultErrorMessage(prepared);
    PQclear(prepared);
    return ok ? "" : error;
  }
};

Fixture* fixture = nullptr;

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void BM_RawPreparedSelect(benchmark::State& state) {
  const char* values[] = {fixture->digest.c_str()};
  const int lengths[] = {static_cast<int>(fixture->digest.size())};
  const int formats[] = {1};
  size_t bytes = 0;
  for (auto _ : state) {
    PGresult* result = PQexecPrepared(fixture->raw, "raw_get", 1, values, lengths, formats, 1);
    if (PQresultStatus(result) != PGRES_TUPLES_OK || PQntuples(result) != 1) {
      state.SkipWithError("the raw select found no row");
      PQclear(result);
      break;
    }
    bytes += static_cast<size_t>(PQgetlength(result, 0, 0));
    PQclear(result);
  }
  benchmark::DoNotOptimize(bytes);
}

void BM_PostgresStoreGetHit(benchmark::State& state) {
  size_t hits = 0;
  for (auto _ : state) {
    std::optional<StoredValue> found = fixture->store->Get(fixture->key_ref, RealClock()->Now());
    hits += found.has_value();
    benchmark::DoNotOptimize(found);
  }
  if (hits != static_cast<size_t>(state.iterations())) state.SkipWithError("a Get missed");
}

// The baseline first, so that each store run can be set against it.
BENCHMARK(BM_RawPreparedSelect)->UseRealTime();
BENCHMARK(BM_PostgresStoreGetHit)->UseRealTime();

// The console reporter, also collecting the time per call of each
// repetition (not the aggregates) and adding vs_raw to the store's.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  // Colours only on a terminal (the library's --benchmark_color applies to
  // reporters it makes itself).
  RatioReporter() : ConsoleReporter(isatty(fileno(stdout)) ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    std::vector<Run> shown = runs;
    for (Run& run : shown) {
      if (run.run_type != Run::RT_Iteration || run.iterations == 0) continue;
      double ns = run.GetAdjustedRealTime() * 1e9 / benchmark::GetTimeUnitMultiplier(run.time_unit);
      std::string name = run.benchmark_name();
      if (name.starts_with("BM_RawPreparedSelect")) raw_ns.push_back(ns);
      if (name.starts_with("BM_PostgresStoreGetHit")) {
        store_ns.push_back(ns);
        if (!raw_ns.empty()) run.counters["vs_raw"] = benchmark::Counter(ns / Median(raw_ns));
      }
    }
    ConsoleReporter::ReportRuns(shown);
  }

  std::vector<double> raw_ns;
  std::vector<double> store_ns;
};

}  // namespace
}  // namespace toolops

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  auto fixture = std::make_unique<toolops::Fixture>();
  if (std::string error = fixture->SetUp(); !error.empty()) {
    std::fprintf(stderr, "postgres_store_bench: %s\n", error.c_str());
    return 1;
  }
  toolops::fixture = fixture.get();
  toolops::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  double raw = toolops::Median(reporter.raw_ns);
  double store = toolops::Median(reporter.store_ns);
  if (raw > 0 && store > 0) {
    std::printf("postgres_store_hit_vs_raw_select: %.0f ns / %.0f ns = %.3f (target <= 1.15)\n",
                store, raw, store / raw);
  }
  toolops::fixture = nullptr;
  return 0;
}
