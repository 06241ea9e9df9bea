// src/cli/replay_cli.cc

#include "cli/replay_cli.h"

#include <unistd.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>

#include "replay/replay.h"
#include "replay/report.h"
#include "replay/sample.h"
#include "replay/trace.h"
#include "toolops/config.h"
#include "toolops/embedder.h"
#include "toolops/postgres_store.h"
#include "toolops/redis_store.h"

namespace toolops {

const char kReplayUsage[] =
    "usage: toolops replay TRACE [options]\n"
    "       toolops replay --generate N [options]\n"
    "\n"
    "Replays a trace of tool calls (JSON Lines, docs/TRACE_FORMAT.md) through the\n"
    "middleware (memory store, semantic cache with the bundled embedder) against\n"
    "simulated tools, in the trace's own timing, and reports what it saved.\n"
    "\n"
    "options:\n"
    "  --generate N        replay the bundled sample: N generated calls (no TRACE)\n"
    "  --seed S            the sample's and the simulation's seed (default 1)\n"
    "  --data DIR          paraphrase data for the sample (default ../shared/data)\n"
    "  --policy P          none | exact | semantic | semantic:T | semantic-noguard:T |\n"
    "                      a JSON policy file (default semantic)\n"
    "  --compare P,P,...   replay once per policy and show them side by side\n"
    "  --ttl SECONDS       cache TTL of the presets (default 300)\n"
    "  --speed N|max       trace seconds per real second (default max: as fast as\n"
    "                      possible; the concurrency of the trace is kept at any speed)\n"
    "  --simulation FILE   models of the upstream tools (latency, failures, rate limit,\n"
    "                      cost); see docs/TRACE_FORMAT.md\n"
    "  --upstream trace|model  take latency, cost and outcome from the trace when it\n"
    "                      has them (default), or from the models only\n"
    "  --on-error skip|fail  malformed trace lines: report and skip (default), or stop\n"
    "  --model DIR         embedder model directory (default: the bundled model)\n"
    "  --json              print one JSON object instead of the table\n"
    "  --html FILE         also write a self-contained HTML page with charts\n"
    "  --max-threads N     most calls in flight at once (a thread each; default 4096)\n"
    "  --store URL|NAME    a store the workers share: redis://..., rediss://...,\n"
    "                      postgres://..., or a Redis/PostgreSQL store of the config\n"
    "                      file (its connection only); exact cache, coalescing across\n"
    "                      workers and processes, semantic entries on Redis\n"
    "  --store-namespace NS  keys of the replay in the shared store (default\n"
    "                      toolops-replay: never the namespace real tools use; with\n"
    "                      --compare, NS-1, NS-2, ... one per policy)\n"
    "  --config FILE       the configuration file for --store NAME (default\n"
    "                      $TOOLOPS_CONFIG, else ./toolops.toml)\n"
    "  --workers N         middleware instances, as if processes, each replaying the\n"
    "                      calls of a share of the agents (default 1)\n"
    "  --show-wrong N      list the first N distinct wrong answers of each policy\n"
    "                      (default 0)\n"
    "  --no-progress       no progress bar (it is shown only when stderr is a terminal)\n"
    "\n"
    "exit status: 0 done, 1 the replay failed, 2 bad usage or input.\n";

const char kSampleTraceUsage[] =
    "usage: toolops sample-trace [options]\n"
    "\n"
    "Writes the bundled sample trace (JSON Lines) to stdout or --out: a multi-agent\n"
    "workload with Zipf-popular intents worded from the paraphrase data, bursts of\n"
    "agents asking at once and an outage of web_search. The same seed gives the same\n"
    "trace.\n"
    "\n"
    "options:\n"
    "  --calls N           calls to write (default 100000)\n"
    "  --seed S            seed (default 1)\n"
    "  --rate R            mean calls per second of trace time (default 20)\n"
    "  --data DIR          paraphrase data (default ../shared/data)\n"
    "  --out FILE          write there instead of stdout\n";

namespace {

int UsageError(const std::string& message, const char* usage) {
  std::fprintf(stderr, "toolops: %s\n\n%s", message.c_str(), usage);
  return 2;
}

int Fail(const Status& status, int code = 2) {
  std::fprintf(stderr, "toolops: %s\n", std::string(status.message()).c_str());
  return code;
}

bool ParseUnsigned(const std::string& s, uint64_t* out) {
  if (s.empty() || s.find_first_not_of("0123456789_,") != std::string::npos) return false;
  std::string digits;
  for (char c : s) {
    if (c != '_' && c != ',') digits.push_back(c);
  }
  if (digits.empty() || digits.size() > 18) return false;
  *out = std::strtoull(digits.c_str(), nullptr, 10);
  return true;
}

bool ParseDouble(const std::string& s, double* out) {
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size();
}

std::vector<std::string> SplitCommas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

uint64_t CountLines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char buffer[1 << 16];
  uint64_t lines = 0;
  while (in.read(buffer, sizeof(buffer)) || in.gcount() > 0) {
    for (std::streamsize i = 0; i < in.gcount(); ++i) lines += buffer[i] == '\n';
  }
  return lines;
}

// A one-line progress bar on stderr.
class ProgressBar {
 public:
  ProgressBar(std::string label, uint64_t total) : label_(std::move(label)), total_(total) {}
  void Show(const ReplayProgress& p) {
    std::lock_guard<std::mutex> lock(mu_);
    const int width = 30;
    double share = total_ == 0 ? 0 : std::min(1.0, double(p.completed) / total_);
    std::string bar(static_cast<size_t>(share * width), '#');
    bar.resize(width, '.');
    double saved = p.completed == 0 ? 0 : 100.0 * p.saved / p.completed;
    std::fprintf(stderr, "\r%-22s [%s] %5.1f%% %s calls, %.1f%% saved, trace %s   ",
                 label_.substr(0, 22).c_str(), bar.c_str(), 100 * share,
                 FormatCount(p.completed).c_str(), saved,
                 FormatTraceDuration(p.trace_elapsed).c_str());
    std::fflush(stderr);
  }
  void Done() {
    std::fprintf(stderr, "\r%*s\r", 110, "");
    std::fflush(stderr);
  }

 private:
  std::mutex mu_;
  std::string label_;
  uint64_t total_;
};

}  // namespace

int ReplayCommand(const std::vector<std::string>& args) {
  std::string trace_path;
  uint64_t generate = 0;
  uint64_t seed = 1;
  std::string data_flag;
  std::vector<std::string> policies;
  bool compare = false;
  double ttl_seconds = 300;
  double speed = 0;
  std::string simulation_path;
  bool use_trace = true;
  TraceReaderOptions reader_options;
  std::string model = DefaultModelDirectory();
  bool json = false;
  std::string html_path;
  bool progress = true;
  uint64_t show_wrong = 0;
  uint64_t max_threads = 4096;
  std::string store_flag;
  std::string store_namespace = "toolops-replay";
  std::string config_path;
  uint64_t workers = 1;

  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto value = [&]() -> const std::string* { return i + 1 < args.size() ? &args[++i] : nullptr; };
    const std::string* v = nullptr;
    if (arg == "-h" || arg == "--help") {
      std::fputs(kReplayUsage, stdout);
      return 0;
    } else if (arg == "--json") {
      json = true;
    } else if (arg == "--no-progress") {
      progress = false;
    } else if (arg == "--show-wrong") {
      if ((v = value()) == nullptr || !ParseUnsigned(*v, &show_wrong) || show_wrong > 1000) {
        return UsageError("--show-wrong needs a whole number up to 1000", kReplayUsage);
      }
    } else if (arg == "--max-threads") {
      if ((v = value()) == nullptr || !ParseUnsigned(*v, &max_threads) || max_threads == 0 ||
          max_threads > 100'000) {
        return UsageError("--max-threads needs a whole number from 1 to 100000", kReplayUsage);
      }
    } else if (arg == "--store") {
      if ((v = value()) == nullptr || v->empty()) {
        return UsageError("--store needs a redis:// or postgres:// URL or a store name",
                          kReplayUsage);
      }
      store_flag = *v;
    } else if (arg == "--store-namespace") {
      if ((v = value()) == nullptr || v->empty()) {
        return UsageError("--store-namespace needs a name", kReplayUsage);
      }
      store_namespace = *v;
    } else if (arg == "--config") {
      if ((v = value()) == nullptr) return UsageError("--config needs a file", kReplayUsage);
      config_path = *v;
    } else if (arg == "--workers") {
      if ((v = value()) == nullptr || !ParseUnsigned(*v, &workers) || workers == 0 ||
          workers > 1024) {
        return UsageError("--workers needs a whole number from 1 to 1024", kReplayUsage);
      }
    } else if (arg == "--generate") {
      if ((v = value()) == nullptr || !ParseUnsigned(*v, &generate) || generate == 0) {
        return UsageError("--generate needs a positive number of calls", kReplayUsage);
      }
    } else if (arg == "--seed") {
      if ((v = value()) == nullptr || !ParseUnsigned(*v, &seed)) {
        return UsageError("--seed needs a whole number", kReplayUsage);
      }
    } else if (arg == "--data") {
      if ((v = value()) == nullptr) return UsageError("--data needs a directory", kReplayUsage);
      data_flag = *v;
    } else if (arg == "--policy") {
      if ((v = value()) == nullptr) return UsageError("--policy needs a policy", kReplayUsage);
      policies.push_back(*v);
    } else if (arg == "--compare") {
      if ((v = value()) == nullptr || SplitCommas(*v).size() < 2) {
        return UsageError(
            "--compare needs two or more policies separated by commas, "
            "as in exact,semantic,semantic:0.85",
            kReplayUsage);
      }
      for (const std::string& p : SplitCommas(*v)) policies.push_back(p);
      compare = true;
    } else if (arg == "--ttl") {
      if ((v = value()) == nullptr || !ParseDouble(*v, &ttl_seconds) || !(ttl_seconds > 0)) {
        return UsageError("--ttl needs a positive number of seconds", kReplayUsage);
      }
    } else if (arg == "--speed") {
      if ((v = value()) == nullptr)
        return UsageError("--speed needs a number or max", kReplayUsage);
      if (*v == "max") {
        speed = 0;
      } else if (!ParseDouble(*v, &speed) || !(speed > 0)) {
        return UsageError(
            "--speed needs a positive number (trace seconds per real second) or "
            "max",
            kReplayUsage);
      }
    } else if (arg == "--simulation") {
      if ((v = value()) == nullptr) return UsageError("--simulation needs a file", kReplayUsage);
      simulation_path = *v;
    } else if (arg == "--upstream") {
      if ((v = value()) == nullptr || (*v != "trace" && *v != "model")) {
        return UsageError("--upstream needs trace or model", kReplayUsage);
      }
      use_trace = *v == "trace";
    } else if (arg == "--on-error") {
      if ((v = value()) == nullptr || (*v != "skip" && *v != "fail")) {
        return UsageError("--on-error needs skip or fail", kReplayUsage);
      }
      reader_options.on_error = *v == "skip" ? OnError::kSkip : OnError::kFail;
    } else if (arg == "--model") {
      if ((v = value()) == nullptr) return UsageError("--model needs a directory", kReplayUsage);
      model = *v;
    } else if (arg == "--html") {
      if ((v = value()) == nullptr) return UsageError("--html needs a file name", kReplayUsage);
      html_path = *v;
    } else if (!arg.empty() && arg[0] == '-') {
      return UsageError("unknown option '" + arg + "'", kReplayUsage);
    } else if (trace_path.empty()) {
      trace_path = arg;
    } else {
      return UsageError("one TRACE only (got '" + trace_path + "' and '" + arg + "')",
                        kReplayUsage);
    }
  }
  if (trace_path.empty() == (generate == 0)) {
    return UsageError(trace_path.empty() ? "replay needs a TRACE file or --generate N"
                                         : "give a TRACE file or --generate N, not both",
                      kReplayUsage);
  }
  if (policies.empty()) policies.push_back("semantic");
  if (policies.size() > 1 && !compare) {
    return UsageError("--policy given more than once; use --compare P,P,... to compare",
                      kReplayUsage);
  }

  // Policies, simulation, embedder, sample data: every input is checked
  // before the first replay starts.
  std::vector<ReplayPolicy> parsed;
  bool semantic = false;
  for (const std::string& p : policies) {
    Result<ReplayPolicy> policy =
        ParsePolicySpec(p, Duration(static_cast<int64_t>(ttl_seconds * 1e9)));
    if (!policy.ok()) return Fail(policy.status());
    semantic = semantic || !policy->base.cache.semantic.params.empty();
    for (const auto& [name, tool] : policy->tools) {
      semantic = semantic || !tool.cache.semantic.params.empty();
    }
    parsed.push_back(std::move(policy).value());
  }
  // The shared store's opener for a key namespace.
  std::function<SharedStoreOpener(const std::string&)> open_shared;
  std::string shared_label;
  if (!store_flag.empty()) {
    if (store_flag.find("://") != std::string::npos) {
      Result<SharedStoreOpener> opener = SharedStoreFromUrl(store_flag, store_namespace);
      if (!opener.ok()) return Fail(opener.status());
      open_shared = [store_flag](const std::string& ns) {
        return SharedStoreFromUrl(store_flag, ns).value();
      };
      shared_label = RedactUrl(store_flag);
    } else {
      Result<Config> config = LoadConfig(config_path);
      if (!config.ok()) return Fail(config.status());
      auto it = config->stores.find(store_flag);
      if (it == config->stores.end()) {
        std::string known;
        for (const auto& [name, store] : config->stores)
          known += (known.empty() ? "" : ", ") + name;
        return Fail(Status(StatusCode::kNotFound,
                           "--store " + store_flag + ": the configuration" +
                               (config->path.empty() ? "" : " " + config->path) +
                               " has no such store (it has: " + (known.empty() ? "none" : known) +
                               "); give a redis:// or postgres:// URL instead"));
      }
      const StoreConfig& store = it->second;
      // The store's connection, but the replay's own key namespace: simulated
      // answers never reach the entries real tools read.
      if (store.type == StoreType::kRedis) {
        RedisStoreOptions options = store.redis;
        options.name = "shared";
        open_shared = [options](const std::string& ns) mutable -> SharedStoreOpener {
          options.key_namespace = ns;
          return [options](Clock* clock, UnixClock unix_clock) -> Result<std::unique_ptr<Store>> {
            Result<std::unique_ptr<RedisStore>> opened =
                RedisStore::Open(options, clock, unix_clock);
            if (!opened.ok()) return opened.status();
            return std::unique_ptr<Store>(std::move(opened).value());
          };
        };
      } else if (store.type == StoreType::kPostgres) {
        PostgresStoreOptions options = store.postgres;
        options.name = "shared";
        open_shared = [options](const std::string& ns) mutable -> SharedStoreOpener {
          options.key_namespace = ns;
          return [options](Clock* clock, UnixClock unix_clock) -> Result<std::unique_ptr<Store>> {
            Result<std::unique_ptr<PostgresStore>> opened =
                PostgresStore::Open(options, clock, unix_clock);
            if (!opened.ok()) return opened.status();
            return std::unique_ptr<Store>(std::move(opened).value());
          };
        };
      } else {
        return Fail(Status(StatusCode::kInvalidArgument,
                           "--store " + store_flag + " is a " + store.type_name + " store (" +
                               store.where +
                               "); the replay shares a redis or postgres store only"));
      }
      shared_label = store_flag + " (" + store.type_name + ")";
    }
  }
  Simulation simulation = SampleSimulation();
  if (!simulation_path.empty()) {
    Result<Simulation> loaded = LoadSimulation(simulation_path);
    if (!loaded.ok()) return Fail(loaded.status());
    simulation = std::move(loaded).value();
  }
  simulation.use_trace = use_trace;
  simulation.seed = seed;
  std::unique_ptr<Embedder> embedder;
  if (semantic) {
    Result<std::unique_ptr<Embedder>> loaded = LoadStaticEmbedder(model);
    if (!loaded.ok()) return Fail(loaded.status());
    embedder = std::move(loaded).value();
  }
  std::shared_ptr<const SampleData> data;
  SampleOptions sample_options;
  sample_options.calls = generate;
  sample_options.seed = seed;
  if (generate > 0) {
    std::string dir = FindSampleDataDir(data_flag);
    if (dir.empty()) {
      return Fail(Status(StatusCode::kNotFound,
                         "the sample's paraphrase data was not found in $TOOLOPS_DATA_DIR, "
                         "../shared/data or /work/shared/data; pass --data DIR"));
    }
    Result<SampleData> loaded = LoadSampleData(dir);
    if (!loaded.ok()) return Fail(loaded.status());
    data = std::make_shared<const SampleData>(std::move(loaded).value());
  } else {
    std::ifstream probe(trace_path);
    if (!probe) {
      return Fail(
          Status(StatusCode::kNotFound, "trace '" + trace_path + "' cannot be opened for reading"));
    }
  }

#ifdef __GLIBC__
  // Each call of a replay runs on its own thread, and glibc would give each
  // thread an arena of its own whose freed pages it keeps: resident memory
  // then creeps up with the trace's length although the heap does not grow.
  // The threads mostly wait in trace time, so one arena costs nothing.
  mallopt(M_ARENA_MAX, 1);
#endif
  const bool show_progress = progress && isatty(STDERR_FILENO);
  uint64_t total = generate;
  if (show_progress && generate == 0) total = CountLines(trace_path);

  TraceInfo info;
  info.name = generate > 0 ? "sample (" + FormatCount(generate) + " calls, seed " +
                                 std::to_string(seed) + ")"
                           : trace_path;
  std::vector<ReplayReport> reports;
  for (size_t p = 0; p < parsed.size(); ++p) {
    const ReplayPolicy& policy = parsed[p];
    std::unique_ptr<CallSource> source;
    TraceReader* reader = nullptr;
    if (generate > 0) {
      source = std::make_unique<SampleGenerator>(data, sample_options);
    } else {
      Result<std::unique_ptr<TraceReader>> opened = TraceReader::Open(trace_path, reader_options);
      if (!opened.ok()) return Fail(opened.status());
      reader = opened->get();
      source = std::move(opened).value();
    }
    ReplayOptions options;
    options.speed = speed;
    options.embedder = embedder.get();
    options.keep_wrong = show_wrong;
    options.max_threads = max_threads;
    options.workers = workers;
    if (open_shared) {
      // Compared policies each start from their own (possibly warm) entries,
      // never from the previous policy's.
      options.open_shared_store = open_shared(
          parsed.size() == 1 ? store_namespace : store_namespace + "-" + std::to_string(p + 1));
    }
    options.shared_store_label = shared_label;
    std::unique_ptr<ProgressBar> bar;
    if (show_progress) {
      bar = std::make_unique<ProgressBar>(policy.name, total);
      options.on_progress = [&bar](const ReplayProgress& p) { bar->Show(p); };
    }
    Result<ReplayReport> report = RunReplay(*source, policy, simulation, options);
    if (bar) bar->Done();
    if (!report.ok())
      return Fail(report.status(), report.status().guard() == Guard::kCodec ? 2 : 1);
    if (reader != nullptr) {
      info.lines = reader->lines();
      info.malformed = reader->malformed();
      info.errors = reader->errors();
    }
    reports.push_back(std::move(report).value());
  }

  std::string text = json ? FormatReportJson(info, reports) : FormatReportTable(info, reports);
  std::fputs(text.c_str(), stdout);
  if (!html_path.empty()) {
    std::ofstream out(html_path);
    out << FormatReportHtml(info, reports);
    if (!out) {
      return Fail(Status(StatusCode::kUnavailable, "cannot write '" + html_path + "'"), 1);
    }
    if (!json) std::printf("\nwrote %s\n", html_path.c_str());
  }
  return 0;
}

int SampleTraceCommand(const std::vector<std::string>& args) {
  SampleOptions options;
  std::string data_flag;
  std::string out_path;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto value = [&]() -> const std::string* { return i + 1 < args.size() ? &args[++i] : nullptr; };
    const std::string* v = nullptr;
    if (arg == "-h" || arg == "--help") {
      std::fputs(kSampleTraceUsage, stdout);
      return 0;
    } else if (arg == "--calls") {
      if ((v = value()) == nullptr || !ParseUnsigned(*v, &options.calls) || options.calls == 0) {
        return UsageError("--calls needs a positive number", kSampleTraceUsage);
      }
    } else if (arg == "--seed") {
      if ((v = value()) == nullptr || !ParseUnsigned(*v, &options.seed)) {
        return UsageError("--seed needs a whole number", kSampleTraceUsage);
      }
    } else if (arg == "--rate") {
      if ((v = value()) == nullptr || !ParseDouble(*v, &options.calls_per_second)) {
        return UsageError("--rate needs a number of calls per second", kSampleTraceUsage);
      }
    } else if (arg == "--data") {
      if ((v = value()) == nullptr)
        return UsageError("--data needs a directory", kSampleTraceUsage);
      data_flag = *v;
    } else if (arg == "--out") {
      if ((v = value()) == nullptr) return UsageError("--out needs a file name", kSampleTraceUsage);
      out_path = *v;
    } else {
      return UsageError("unknown argument '" + arg + "'", kSampleTraceUsage);
    }
  }
  if (Status s = ValidateSampleOptions(options); !s.ok()) {
    return UsageError(std::string(s.message()), kSampleTraceUsage);
  }
  std::string dir = FindSampleDataDir(data_flag);
  if (dir.empty()) {
    return Fail(Status(StatusCode::kNotFound,
                       "the sample's paraphrase data was not found in $TOOLOPS_DATA_DIR, "
                       "../shared/data or /work/shared/data; pass --data DIR"));
  }
  Result<SampleData> data = LoadSampleData(dir);
  if (!data.ok()) return Fail(data.status());
  SampleGenerator generator(std::make_shared<const SampleData>(std::move(data).value()), options);
  std::ofstream file;
  if (!out_path.empty()) {
    file.open(out_path);
    if (!file) return Fail(Status(StatusCode::kUnavailable, "cannot write '" + out_path + "'"), 1);
  }
  std::ostream& out = out_path.empty() ? std::cout : file;
  std::string line;
  while (std::optional<TraceCall> call = generator.Next()) {
    line = FormatTraceLine(*call);
    line.push_back('\n');
    out.write(line.data(), static_cast<std::streamsize>(line.size()));
  }
  out.flush();
  if (!out) return Fail(Status(StatusCode::kUnavailable, "writing the trace failed"), 1);
  return 0;
}

}  // namespace toolops
