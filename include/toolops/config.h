// include/toolops/config.h
//
// The configuration file: one TOML file, read by the C++ core and (through
// the binding) by the Python package, with environment variables overriding
// single fields.
//
//   [stores.shared]                    # a store, registered under its name
//   type = "redis"                     # memory | sqlite | redis | valkey | postgres
//   url = "redis://cache.internal:6379/0"
//   io_timeout = "250ms"
//
//   [tools.web_search]                 # a tool's policy, by the tool's name
//   cost_per_call = 0.005
//   cache.ttl = "10m"
//   cache.shared_store = "shared"
//   retry.max_attempts = 3
//
//   [telemetry]
//   metrics_port = 9464
//   log_level = "info"
//
// Durations are TOML numbers of seconds (1.5) or strings with a unit: "250ms",
// "5s", "1m", "2h" ("us" and "d" too). Every key is known: an unknown one is
// an error that suggests the nearest known name.
//
// Precedence, lowest first: the policy the code gives when it wraps a tool,
// then the file's fields for that tool, then environment variables. Only the
// fields the file (or environment) sets replace the code's.
//
// Environment variables: TOOLOPS__<SECTION>__<NAME>__<FIELD>[__<SUBFIELD>...]
// with double underscores between the parts and any case, for example
//   TOOLOPS__TOOLS__WEB_SEARCH__CACHE__TTL=60s
//   TOOLOPS__STORES__SHARED__PASSWORD=s3cret
//   TOOLOPS__TELEMETRY__LOG_LEVEL=debug
// <NAME> matches a store or tool of the file whose name, lower-cased with
// every character other than a letter or digit read as '_', is the same
// ("myapp.search" is TOOLOPS__TOOLS__MYAPP_SEARCH__...); a name the file does
// not have is taken lower-cased. The value is read as the field's type wants
// it ("60s", "3", "true", "[\"a\", \"b\"]" or "a,b" for lists). Errors in
// environment values name the variable instead of a file line.
//
// Config values are plain data: safe to read from many threads; LoadConfig
// and ParseConfig are safe to call concurrently. ApplyConfig changes
// process-wide state (see there).

#ifndef TOOLOPS_CONFIG_H_
#define TOOLOPS_CONFIG_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "toolops/clock.h"
#include "toolops/environment.h"
#include "toolops/policy.h"
#include "toolops/postgres_store.h"
#include "toolops/redis_store.h"
#include "toolops/sqlite_store.h"
#include "toolops/status.h"
#include "toolops/store.h"

namespace toolops {

enum class StoreType : uint8_t { kMemory, kSqlite, kRedis, kPostgres };

// One [stores.NAME] table. Only the options of `type` are meaningful; their
// `name` is the table's name.
struct StoreConfig {
  std::string name;
  // As written: "memory", "sqlite", "redis", "valkey" or "postgres".
  std::string type_name;
  StoreType type = StoreType::kMemory;
  // "toolops.toml:12": where the table starts, for messages.
  std::string where;
  MemoryStoreOptions memory;
  SqliteStoreOptions sqlite;
  RedisStoreOptions redis;
  PostgresStoreOptions postgres;

  // True for the stores other processes can see (all but memory).
  bool shared() const { return type != StoreType::kMemory; }
  // The key namespace of a shared store ("" for memory).
  const std::string& key_namespace() const;
  // Opens the store. The errors of the store's Open, prefixed with the
  // store's name and where it is configured.
  Result<std::unique_ptr<Store>> Open(Clock* clock = RealClock()) const;
};

// One field of a tool's policy set by the file or the environment.
struct PolicyOverride {
  // The field's dotted name inside the policy: "retry.max_attempts".
  std::string field;
  // "toolops.toml:12" or "environment variable TOOLOPS__TOOLS__X__RETRY__MAX_ATTEMPTS".
  std::string where;
  std::function<void(ToolPolicy*)> apply;
};

// One [tools.NAME] table.
struct ToolConfig {
  std::string name;
  std::string where;
  // The tool's version, for commands that address its entries in a store
  // (toolops clear --tool, inspect). Not applied to the wrapped tool: the
  // code owns its version. Default "1".
  std::string version = "1";
  // Tags of every entry of this tool (toolops invalidate --tag).
  std::vector<std::string> tags;
  // The policy fields set, in file order (environment ones last).
  std::vector<PolicyOverride> overrides;

  // Sets the configured fields of *policy, leaving the others as they are.
  void ApplyTo(ToolPolicy* policy) const;
  // " (set by toolops.toml:12)" when `message` names a field this config
  // sets, else "".
  std::string Blame(std::string_view message) const;
};

// The [telemetry] table, parsed and checked. ApplyTelemetry (below) puts it
// to work; only the fields the file or a TOOLOPS__TELEMETRY__* variable set
// are applied (`set_at` names them), the others leave the process's
// telemetry as it is.
struct TelemetryConfig {
  // The Prometheus text endpoint (GET /metrics). Port 0: off.
  std::string metrics_host = "127.0.0.1";
  int metrics_port = 0;
  // OTLP/HTTP traces, "http://host:4318" (/v1/traces is added) or with the
  // full path. Empty: off (the standard OTEL_* variables may still turn it
  // on).
  std::string otlp_endpoint;
  // Share of root calls traced, in [0, 1] (the parentbased_traceidratio
  // sampler).
  double sampling_ratio = 1.0;
  // Spans record the calls' arguments and results (secrets masked).
  bool record_arguments = false;
  // The service.name of the spans' resource; empty: the OTEL_* default.
  std::string service_name;
  // "json" or "text"; "debug", "info", "warning" or "error".
  std::string log_format = "json";
  std::string log_level = "info";
  // A configured SQLite, Redis or PostgreSQL store to which this process
  // publishes its tools' counters every `stats_interval` (read by `toolops
  // stats --store`); empty: none. A snapshot lives 3 intervals, so a process
  // that died drops out of the sum.
  std::string stats_store;
  Duration stats_interval = std::chrono::seconds(10);
  std::string where;
  // The fields set by the file or the environment -> where
  // ("toolops.toml:14" or "environment variable TOOLOPS__TELEMETRY__...").
  std::map<std::string, std::string> set_at;

  bool is_set(std::string_view field) const { return set_at.count(std::string(field)) > 0; }
};

struct Config {
  // The file read (ParseConfig: its `source`), or empty when there was none.
  std::string path;
  std::map<std::string, StoreConfig> stores;
  std::map<std::string, ToolConfig> tools;
  TelemetryConfig telemetry;
  // The TOOLOPS__* variables that were applied.
  std::vector<std::string> environment;

  // The [tools.NAME] of `name`, or null.
  const ToolConfig* FindTool(std::string_view name) const;
};

// NAME=VALUE pairs; Environ() is the process's environment.
using ConfigEnv = std::vector<std::pair<std::string, std::string>>;
ConfigEnv ProcessEnvironment();

// Reads a config file with the process's environment overrides. `path`
// empty: $TOOLOPS_CONFIG, else ./toolops.toml if it exists, else no file
// (a Config with only the environment's fields). Returns InvalidArgument
// (guard kPolicy) listing every problem, one per line, each as
// "FILE:LINE: FIELD: what was expected, what was found"; NotFound when the
// file named by `path` or $TOOLOPS_CONFIG does not exist.
Result<Config> LoadConfig(const std::string& path = "");
// The same from text; `source` names it in messages.
Result<Config> ParseConfig(std::string_view text, const std::string& source,
                           const ConfigEnv& env = {});

// Opens every configured store and registers it in `registry` under its
// name, then makes `config`'s tools the process's tool configuration: every
// tool wrapped afterwards whose name is under [tools] takes those fields over
// its code's (see the precedence above). Returns the first store that could
// not be opened (nothing is registered then, and the tool configuration is
// unchanged). Safe to call from any thread; tools wrapped before keep their
// policy.
Status ApplyConfig(const Config& config, StoreRegistry* registry = StoreRegistry::Default(),
                   Clock* clock = RealClock());

// The tool configuration ApplyConfig installed (null before, or after
// ResetAppliedConfig). Kept alive by the pointer.
std::shared_ptr<const Config> AppliedConfig();
// Forgets it (for tests).
void ResetAppliedConfig();

// Which parts of the telemetry ApplyTelemetry touches.
struct TelemetryParts {
  bool logging = true;           // log_format, log_level
  bool tracing = true;           // otlp_endpoint, sampling_ratio, record_arguments, service_name
  bool metrics_endpoint = true;  // metrics_host, metrics_port
  bool stats_publisher = true;   // stats_store, stats_interval
};

// Puts `config.telemetry` to work, process-wide, for the fields it sets:
//   - logging: the log sink (JSON lines or text on stderr) and level;
//   - tracing: ConfigureTracing with the options of the OTEL_* variables,
//     over which the file's fields apply where no variable says otherwise;
//   - metrics_endpoint: a MetricsServer on metrics_host:metrics_port, kept
//     until the next ApplyTelemetry or StopAppliedTelemetry (one already
//     serving that address is kept);
//   - stats_store: a StatsPublisher to that store of `registry` (so
//     ApplyConfig must have registered it).
// Precedence: environment variables win over the file, field by field:
// TOOLOPS_LOG_FORMAT and TOOLOPS_LOG_LEVEL over log_format and log_level;
// OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT over
// otlp_endpoint (and OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none
// turn tracing off whatever the file says); OTEL_TRACES_SAMPLER /
// OTEL_TRACES_SAMPLER_ARG over sampling_ratio; TOOLOPS_TRACE_ARGUMENTS over
// record_arguments; OTEL_SERVICE_NAME (or service.name in
// OTEL_RESOURCE_ATTRIBUTES) over service_name. (TOOLOPS__TELEMETRY__* are
// already merged into the config by LoadConfig.)
// Every part is tried; returns the first failure, naming the field and
// where it was set: Unavailable when the metrics port cannot be bound,
// InvalidArgument for a malformed OTEL_* variable or a stats_store that is
// not registered or cannot carry statistics. Blocks while a previous span
// exporter flushes. Safe to call from any thread.
Status ApplyTelemetry(const Config& config, const TelemetryParts& parts = {},
                      StoreRegistry* registry = StoreRegistry::Default());
// The port of the metrics endpoint ApplyTelemetry started, or 0.
uint16_t AppliedMetricsPort();
// Stops the metrics endpoint and the statistics publisher ApplyTelemetry
// started (tracing and logging stay as they are).
void StopAppliedTelemetry();

// What the CLI and tools use to name a duration in messages and to read
// one: "250ms" -> 250 ms. InvalidArgument for anything else.
Result<Duration> ParseDurationText(std::string_view text);

}  // namespace toolops

#endif  // TOOLOPS_CONFIG_H_
