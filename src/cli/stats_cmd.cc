// src/cli/stats_cmd.cc
//
// The Prometheus text parser here reads only what the metrics contract
// writes (name, labels, value; comments skipped); it is written by hand
// because Debian packages no C++ parser of the format, and the subset is a
// few dozen lines.

#include "cli/stats_cmd.h"

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "cli/cli_common.h"
#include "toolops/config.h"
#include "toolops/stats_publisher.h"

namespace toolops::cli {

const char kStatsUsage[] =
    "usage: toolops stats [--endpoint URL ... | --store NAME|URL ...] [--config FILE]\n"
    "                     [--json] [--watch [SECONDS]]\n"
    "\n"
    "Per tool: calls, hits by kind (fresh, semantic, stale), coalesced calls,\n"
    "upstream calls and errors, calls and money saved, mean latency and the\n"
    "breaker's state, summed over the running agents; a breaker shows the worst\n"
    "state any process reports. The numbers come from the agents' metrics\n"
    "endpoints (GET /metrics, Prometheus text), or from the snapshots they\n"
    "publish to a shared store (telemetry.stats_store): each live process\n"
    "replaces its own every telemetry.stats_interval, and a process that stopped\n"
    "drops out after three intervals.\n"
    "\n"
    "options:\n"
    "  --endpoint URL     a metrics endpoint (http://HOST:PORT/metrics; /metrics is\n"
    "                     added to a URL without a path); repeat for several\n"
    "                     processes\n"
    "  --store NAME|URL   a configured SQLite, Redis or PostgreSQL store, the URL\n"
    "                     of a Redis or PostgreSQL server (redis://, rediss://,\n"
    "                     valkey://, postgres://, postgresql://), or sqlite:PATH\n"
    "                     for a SQLite file (default namespace); repeat for several\n"
    "  --config FILE      the configuration (default: $TOOLOPS_CONFIG, else\n"
    "                     ./toolops.toml if present)\n"
    "  --json             one JSON object instead of the table\n"
    "  --watch [SECONDS]  redraw every SECONDS (default 2) until interrupted\n"
    "\n"
    "Without --endpoint or --store: telemetry.stats_store of the configuration if\n"
    "set, else its telemetry.metrics_host/metrics_port if set, else every SQLite,\n"
    "Redis and PostgreSQL store it configures.\n"
    "\n"
    "exit status: 0 every source read, 1 a source did not answer or sent malformed\n"
    "text (the others are still shown) or no process reported, 2 bad usage.\n";

double ToolStats::total_calls() const {
  double total = 0;
  for (const auto& [outcome, n] : calls) total += n;
  return total;
}

double ToolStats::served_without_upstream() const {
  double total = 0;
  for (const char* outcome :
       {"fresh_hit", "semantic_hit", "stale_hit", "stale_if_error", "coalesced"}) {
    auto it = calls.find(outcome);
    if (it != calls.end()) total += it->second;
  }
  return total;
}

namespace {

bool ParseValue(std::string_view text, double* out) {
  if (text == "+Inf" || text == "Inf") {
    *out = INFINITY;
    return true;
  }
  if (text == "-Inf") {
    *out = -INFINITY;
    return true;
  }
  if (text == "NaN") {
    *out = NAN;
    return true;
  }
  std::string s(text);
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size();
}

// Parses `{a="x",b="y"}` at the start of *rest; consumes it.
bool ParseLabels(std::string_view* rest, std::map<std::string, std::string>* labels) {
  if (rest->empty() || rest->front() != '{') return true;
  rest->remove_prefix(1);
  while (true) {
    while (!rest->empty() && (rest->front() == ' ' || rest->front() == ',')) rest->remove_prefix(1);
    if (rest->empty()) return false;
    if (rest->front() == '}') {
      rest->remove_prefix(1);
      return true;
    }
    size_t eq = rest->find('=');
    if (eq == std::string_view::npos) return false;
    std::string name(rest->substr(0, eq));
    while (!name.empty() && name.back() == ' ') name.pop_back();
    rest->remove_prefix(eq + 1);
    if (rest->empty() || rest->front() != '"') return false;
    rest->remove_prefix(1);
    std::string value;
    bool closed = false;
    while (!rest->empty()) {
      char c = rest->front();
      rest->remove_prefix(1);
      if (c == '\\' && !rest->empty()) {
        char e = rest->front();
        rest->remove_prefix(1);
        value.push_back(e == 'n' ? '\n' : e);
      } else if (c == '"') {
        closed = true;
        break;
      } else {
        value.push_back(c);
      }
    }
    if (!closed) return false;
    (*labels)[name] = value;
  }
}

// Breaker states ordered from best to worst: closed, half-open, open.
int Worse(int a, int b) {
  auto rank = [](int s) { return s == 1 ? 3 : s == 2 ? 2 : s == 0 ? 1 : 0; };
  return rank(a) >= rank(b) ? a : b;
}

}  // namespace

Status AddPrometheusText(std::string_view text, FleetStats* into) {
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    size_t name_end = line.find_first_of("{ ");
    if (name_end == std::string_view::npos) {
      return Status(StatusCode::kInvalidArgument,
                    "line " + std::to_string(line_no) + ": a metric without a value");
    }
    std::string name(line.substr(0, name_end));
    std::string_view rest = line.substr(name_end);
    std::map<std::string, std::string> labels;
    if (!ParseLabels(&rest, &labels)) {
      return Status(StatusCode::kInvalidArgument, "line " + std::to_string(line_no) +
                                                      ": malformed labels in '" +
                                                      std::string(line.substr(0, 80)) + "'");
    }
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    std::string_view value_text = rest.substr(0, rest.find(' '));  // A timestamp may follow.
    double value = 0;
    if (!ParseValue(value_text, &value)) {
      return Status(StatusCode::kInvalidArgument, "line " + std::to_string(line_no) + ": '" +
                                                      std::string(value_text) +
                                                      "' is not a number");
    }
    if (!name.starts_with("toolops_")) continue;
    auto tool_it = labels.find("tool");
    if (tool_it == labels.end()) continue;  // toolops_process_start_time_seconds and the like.
    ToolStats& t = into->tools[tool_it->second];
    if (name == "toolops_calls_total") {
      t.calls[labels["outcome"]] += value;
    } else if (name == "toolops_upstream_calls_total") {
      t.upstream_calls += value;
    } else if (name == "toolops_upstream_attempts_total") {
      t.upstream_attempts += value;
    } else if (name == "toolops_retries_total") {
      t.retries += value;
    } else if (name == "toolops_calls_saved_total") {
      t.calls_saved += value;
    } else if (name == "toolops_money_saved_total") {
      t.money_saved += value;
    } else if (name == "toolops_cost_per_call") {
      t.cost_per_call = std::max(t.cost_per_call, value);
    } else if (name == "toolops_call_duration_seconds_sum") {
      t.duration_sum += value;
    } else if (name == "toolops_call_duration_seconds_count") {
      t.duration_count += value;
    } else if (name == "toolops_call_duration_seconds_bucket") {
      double le = 0;
      if (ParseValue(labels["le"], &le)) t.duration_buckets[le] += value;
    } else if (name == "toolops_breaker_state") {
      t.breaker_state = Worse(t.breaker_state, static_cast<int>(value));
    } else if (name == "toolops_breaker_transitions_total") {
      t.breaker_transitions += value;
    } else if (name == "toolops_store_errors_total") {
      t.store_errors += value;
    }
  }
  into->processes += 1;
  return Status();
}

namespace {

size_t Append(char* data, size_t size, size_t count, void* out) {
  auto* text = static_cast<std::string*>(out);
  if (text->size() > (64u << 20)) return 0;  // Far beyond any metrics page: stop.
  text->append(data, size * count);
  return size * count;
}

}  // namespace

Result<std::string> FetchText(const std::string& url, long timeout_ms) {
  static const bool initialised = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  (void)initialised;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return Status(StatusCode::kInternal, "libcurl could not start");
  std::string body;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    return Status(StatusCode::kUnavailable, url + ": " + curl_easy_strerror(rc));
  }
  if (status != 200) {
    return Status(StatusCode::kUnavailable, url + ": HTTP status " + std::to_string(status));
  }
  return body;
}

namespace {

std::string Count(double v) {
  char buffer[32];
  if (v >= 1e6) {
    std::snprintf(buffer, sizeof(buffer), "%.1fM", v / 1e6);
  } else if (v >= 1e4) {
    std::snprintf(buffer, sizeof(buffer), "%.1fk", v / 1e3);
  } else {
    std::snprintf(buffer, sizeof(buffer), "%.0f", v);
  }
  return buffer;
}

std::string Money(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), v < 100 ? "%.4f" : "%.2f", v);
  return buffer;
}

std::string BreakerName(int state) {
  switch (state) {
    case 0:
      return "closed";
    case 1:
      return "open";
    case 2:
      return "half-open";
    default:
      return "-";
  }
}

double Outcome(const ToolStats& t, const char* outcome) {
  auto it = t.calls.find(outcome);
  return it == t.calls.end() ? 0 : it->second;
}

}  // namespace

std::string FormatStatsTable(const FleetStats& stats, bool colour, const FleetStats* previous,
                             double seconds) {
  const bool rates = previous != nullptr && seconds > 0;
  std::vector<std::string> header = {"TOOL",      "CALLS",       "FRESH",  "SEMANTIC", "STALE",
                                     "COALESCED", "UPSTREAM",    "ERRORS", "REJECTED", "HIT%",
                                     "SAVED",     "MONEY SAVED", "MEAN",   "BREAKER"};
  if (rates) header.insert(header.begin() + 2, "CALLS/S");
  Table table(header);
  double total_calls = 0, total_saved = 0, total_money = 0, total_upstream = 0;
  for (const auto& [name, t] : stats.tools) {
    double calls = t.total_calls();
    double hits = Outcome(t, "fresh_hit") + Outcome(t, "semantic_hit") + Outcome(t, "stale_hit") +
                  Outcome(t, "stale_if_error");
    double rejected = Outcome(t, "rejected_by_breaker") + Outcome(t, "rejected_by_limiter") +
                      Outcome(t, "rejected_by_budget");
    char rate[16];
    std::snprintf(rate, sizeof(rate), "%.1f", calls > 0 ? 100.0 * hits / calls : 0.0);
    Colour tint = t.breaker_state == 1   ? Colour::kRed
                  : t.breaker_state == 2 ? Colour::kYellow
                                         : Colour::kNone;
    std::vector<std::string> row = {
        name,
        Count(calls),
        Count(Outcome(t, "fresh_hit")),
        Count(Outcome(t, "semantic_hit")),
        Count(Outcome(t, "stale_hit") + Outcome(t, "stale_if_error")),
        Count(Outcome(t, "coalesced")),
        Count(t.upstream_calls),
        Count(Outcome(t, "upstream_error")),
        Count(rejected),
        rate,
        Count(t.calls_saved),
        Money(t.money_saved),
        t.duration_count > 0 ? FormatSeconds(t.duration_sum / t.duration_count) : "-",
        Paint(BreakerName(t.breaker_state), tint, colour)};
    if (rates) {
      // A process that restarted between reads shows its counters from zero.
      auto before = previous->tools.find(name);
      double delta = calls - (before == previous->tools.end() ? 0 : before->second.total_calls());
      char per_second[32];
      std::snprintf(per_second, sizeof(per_second), "%.1f", std::max(0.0, delta) / seconds);
      row.insert(row.begin() + 2, per_second);
    }
    table.Add(std::move(row));
    total_calls += calls;
    total_saved += t.calls_saved;
    total_money += t.money_saved;
    total_upstream += t.upstream_calls;
  }
  std::string out = rates ? table.Render({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13})
                          : table.Render({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  out += "\n" + std::to_string(stats.processes) + " process" + (stats.processes == 1 ? "" : "es") +
         ", " + Count(total_calls) + " calls, " + Count(total_upstream) + " upstream, " +
         Count(total_saved) + " saved, " + Paint(Money(total_money), Colour::kGreen, colour) +
         " money saved\n";
  return out;
}

std::string FormatStatsJson(const FleetStats& stats) {
  nlohmann::json tools = nlohmann::json::object();
  for (const auto& [name, t] : stats.tools) {
    tools[name] = {{"calls", t.total_calls()},
                   {"outcomes", t.calls},
                   {"upstream_calls", t.upstream_calls},
                   {"upstream_attempts", t.upstream_attempts},
                   {"retries", t.retries},
                   {"calls_saved", t.calls_saved},
                   {"money_saved", t.money_saved},
                   {"cost_per_call", t.cost_per_call},
                   {"mean_seconds", t.duration_count > 0 ? t.duration_sum / t.duration_count : 0},
                   {"breaker", BreakerName(t.breaker_state)},
                   {"breaker_transitions", t.breaker_transitions},
                   {"store_errors", t.store_errors}};
  }
  return nlohmann::json{{"processes", stats.processes}, {"tools", std::move(tools)}}.dump(2) + "\n";
}

namespace {

volatile std::sig_atomic_t g_interrupted = 0;

void OnInterrupt(int) { g_interrupted = 1; }

}  // namespace

namespace {

// A store given to --store: a configured store's name or a URL.
Result<StoreConfig> StatsStoreConfig(const std::string& given, const Config* config) {
  auto scheme_is = [&](std::string_view scheme) { return given.starts_with(scheme); };
  // A URL may hold a password: messages name the option, not the URL.
  StoreConfig store;
  store.name = "--store URL";
  store.where = "the command line";
  if (scheme_is("redis://") || scheme_is("rediss://") || scheme_is("valkey://")) {
    store.type = StoreType::kRedis;
    store.type_name = "redis";
    store.redis.url = scheme_is("valkey://") ? "redis://" + given.substr(9) : given;
    return store;
  }
  if (scheme_is("postgres://") || scheme_is("postgresql://")) {
    store.type = StoreType::kPostgres;
    store.type_name = "postgres";
    store.postgres.conninfo = given;
    return store;
  }
  if (scheme_is("sqlite:")) {
    // sqlite:PATH, or sqlite://PATH (so sqlite:///var/db/c.db is /var/db/c.db).
    std::string path = given.substr(7);
    if (path.starts_with("//")) path.erase(0, 2);
    std::error_code error;
    if (path.empty() || !std::filesystem::is_regular_file(path, error)) {
      // Reading statistics never creates a database file.
      return Status(StatusCode::kInvalidArgument,
                    "--store " + given + ": no SQLite file at '" + path +
                        "'; give the path of the file the agents' store uses");
    }
    store.type = StoreType::kSqlite;
    store.type_name = "sqlite";
    store.sqlite.path = path;
    return store;
  }
  if (config != nullptr) {
    auto it = config->stores.find(given);
    if (it != config->stores.end()) {
      if (!it->second.shared()) {
        return Status(StatusCode::kInvalidArgument,
                      "store '" + given + "' is of type " + it->second.type_name +
                          "; statistics are published to sqlite, redis, valkey or postgres "
                          "stores");
      }
      return it->second;
    }
  }
  std::string known;
  if (config != nullptr) {
    for (const auto& [name, s] : config->stores) known += (known.empty() ? "" : ", ") + name;
  }
  return Status(
      StatusCode::kInvalidArgument,
      "--store '" + given +
          "' is neither a configured store nor a redis://, valkey://, postgres:// or "
          "sqlite: URL" +
          (known.empty() ? std::string(" (no store is configured)") : "; configured: " + known));
}

}  // namespace

int StatsMain(const std::vector<std::string>& args) {
  Options options({"--json", "-h", "--help"}, {"--endpoint", "--store", "--config"}, {"--watch"});
  if (std::string error = options.Parse(args); !error.empty()) {
    return UsageError(error, kStatsUsage);
  }
  if (options.Has("-h") || options.Has("--help")) {
    std::fputs(kStatsUsage, stdout);
    return kExitOk;
  }
  if (!options.positional().empty()) {
    return UsageError("stats takes no arguments (got '" + options.positional()[0] + "')",
                      kStatsUsage);
  }
  std::vector<std::string> endpoints = options.All("--endpoint");
  std::vector<std::string> store_names = options.All("--store");
  if (!endpoints.empty() && !store_names.empty()) {
    return UsageError("give --endpoint or --store, not both", kStatsUsage);
  }

  // Sources: the options, else the configuration.
  std::optional<Config> config;
  const bool store_urls_only = std::all_of(store_names.begin(), store_names.end(), [](auto& n) {
    return n.find("://") != std::string::npos;
  });
  if (endpoints.empty() && (store_names.empty() || !store_urls_only)) {
    Result<Config> loaded = LoadCliConfig(options.Get("--config"));
    if (!loaded.ok()) return Fail(std::string(loaded.status().message()), kExitUsage);
    config = std::move(loaded).value();
    if (endpoints.empty() && store_names.empty()) {
      if (!config->telemetry.stats_store.empty()) {
        store_names.push_back(config->telemetry.stats_store);
      } else if (config->telemetry.metrics_port != 0) {
        std::string host = config->telemetry.metrics_host;
        if (host == "0.0.0.0" || host == "::") host = "127.0.0.1";
        endpoints.push_back("http://" + host + ":" +
                            std::to_string(config->telemetry.metrics_port) + "/metrics");
      } else {
        // Else every store of the file that can hold statistics.
        for (const auto& [name, store] : config->stores) {
          if (store.shared()) {
            store_names.push_back(name);
          }
        }
        if (store_names.empty()) {
          return UsageError(
              "nothing to read: give --endpoint http://HOST:PORT/metrics or --store NAME|URL, "
              "or set telemetry.stats_store or telemetry.metrics_port in the configuration",
              kStatsUsage);
        }
      }
    }
  }
  for (std::string& e : endpoints) {
    if (!e.starts_with("http://") && !e.starts_with("https://")) e = "http://" + e;
    size_t scheme_end = e.find("://") + 3;
    if (e.find('/', scheme_end) == std::string::npos) e += "/metrics";
  }
  std::vector<std::pair<std::string, std::unique_ptr<Store>>> stores;
  for (const std::string& name : store_names) {
    Result<StoreConfig> store_config = StatsStoreConfig(name, config ? &*config : nullptr);
    if (!store_config.ok()) {
      return UsageError(std::string(store_config.status().message()), kStatsUsage);
    }
    Result<std::unique_ptr<Store>> store = store_config->Open();
    if (!store.ok()) return Fail(std::string(store.status().message()));
    stores.emplace_back(name.find("://") == std::string::npos ? name : "--store URL",
                        std::move(store).value());
  }

  double interval = 0;
  const bool watch = options.Has("--watch");
  if (watch) {
    std::string v = *options.Get("--watch");
    interval = 2;
    if (!v.empty()) {
      char* end = nullptr;
      interval = std::strtod(v.c_str(), &end);
      if (end != v.c_str() + v.size() || !(interval >= 0.1 && interval <= 3600)) {
        return UsageError("--watch needs a number of seconds from 0.1 to 3600 (got '" + v + "')",
                          kStatsUsage);
      }
    }
    std::signal(SIGINT, OnInterrupt);
    std::signal(SIGTERM, OnInterrupt);
  }
  const bool colour = UseColour(stdout);
  std::optional<FleetStats> previous;
  auto previous_at = std::chrono::steady_clock::now();
  while (true) {
    FleetStats stats;
    const auto read_at = std::chrono::steady_clock::now();
    std::vector<std::string> problems;
    for (const std::string& url : endpoints) {
      Result<std::string> text = FetchText(url, 2000);
      if (!text.ok()) {
        problems.push_back(std::string(text.status().message()));
        continue;
      }
      if (Status s = AddPrometheusText(*text, &stats); !s.ok()) {
        problems.push_back(url + ": " + std::string(s.message()));
      }
    }
    for (const auto& [name, store] : stores) {
      Result<std::vector<std::string>> snapshots = ReadPublishedStats(*store);
      if (!snapshots.ok()) {
        problems.push_back("store '" + name + "': " + std::string(snapshots.status().message()));
        continue;
      }
      for (const std::string& text : *snapshots) {
        if (Status s = AddPrometheusText(text, &stats); !s.ok()) {
          problems.push_back("store '" + name + "': a snapshot: " + std::string(s.message()));
        }
      }
    }
    std::string out;
    if (watch && colour) out += "\x1b[H\x1b[2J";
    out += options.Has("--json")
               ? FormatStatsJson(stats)
               : FormatStatsTable(stats, colour, previous ? &*previous : nullptr,
                                  std::chrono::duration<double>(read_at - previous_at).count());
    previous = stats;
    previous_at = read_at;
    std::fputs(out.c_str(), stdout);
    for (const std::string& p : problems) std::fprintf(stderr, "toolops: %s\n", p.c_str());
    std::fflush(stdout);
    if (!watch) {
      if (stats.processes == 0) {
        return Fail(stores.empty()
                        ? "no metrics endpoint answered; is the agent running with "
                          "telemetry.metrics_port set?"
                        : "no live process has published statistics to the store; do the "
                          "agents run with telemetry.stats_store set to it?");
      }
      return problems.empty() ? kExitOk : kExitFailed;
    }
    auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(interval);
    while (!g_interrupted && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (g_interrupted) return kExitOk;
  }
}

}  // namespace toolops::cli
