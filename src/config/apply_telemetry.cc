// src/config/apply_telemetry.cc
//
// ApplyTelemetry: the [telemetry] table put to work. Each field the file
// (or a TOOLOPS__TELEMETRY__* variable) sets is applied unless a standard
// variable of the same meaning is set, which wins; fields not set leave the
// process's telemetry as it was. The metrics endpoint and the statistics
// publisher it starts are kept here, process-wide.

#include <cctype>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/mutex.h"
#include "toolops/config.h"
#include "toolops/log.h"
#include "toolops/metrics.h"
#include "toolops/stats_publisher.h"
#include "toolops/tracing.h"

namespace toolops {
namespace {

// The variable's value when it is set and not empty.
const char* Env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : nullptr;
}

std::string Lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// What ApplyTelemetry started, replaced by the next call.
struct Running {
  Mutex mu;
  std::unique_ptr<MetricsServer> metrics TOOLOPS_GUARDED_BY(mu);
  std::unique_ptr<StatsPublisher> publisher TOOLOPS_GUARDED_BY(mu);
  std::string publisher_store TOOLOPS_GUARDED_BY(mu);
};

Running& Started() {
  static Running* running = new Running();
  return *running;
}

// "telemetry.metrics_port (toolops.toml:7)".
std::string Field(const TelemetryConfig& t, const std::string& field) {
  auto it = t.set_at.find(field);
  return "telemetry." + field + (it == t.set_at.end() ? "" : " (" + it->second + ")");
}

Status ApplyLogging(const TelemetryConfig& t) {
  if (!t.is_set("log_format") && !t.is_set("log_level")) return Status();
  // Each variable wins over its field of the file.
  std::string format = t.is_set("log_format") ? t.log_format : "";
  if (const char* env = Env("TOOLOPS_LOG_FORMAT")) format = Lower(env);
  std::string level = t.is_set("log_level") ? t.log_level : "";
  if (const char* env = Env("TOOLOPS_LOG_LEVEL")) level = env;
  if (!format.empty() && format != "json" && format != "text") {
    return Status(StatusCode::kInvalidArgument,
                  "TOOLOPS_LOG_FORMAT is '" + format + "'; use json or text", Guard::kPolicy);
  }
  std::optional<LogLevel> parsed;
  if (!level.empty()) {
    Result<LogLevel> l = ParseLogLevel(level);
    if (!l.ok()) {
      return Status(StatusCode::kInvalidArgument,
                    "TOOLOPS_LOG_LEVEL: " + std::string(l.status().message()), Guard::kPolicy);
    }
    parsed = l.value();
  }
  if (format == "json") {
    SetLogSink(JsonLogSink(stderr));
    if (!parsed) parsed = LogLevel::kInfo;
  } else if (format == "text") {
    SetLogSink(nullptr);
  }
  if (parsed) SetLogLevel(*parsed);
  return Status();
}

Status ApplyTracing(const TelemetryConfig& t) {
  if (!t.is_set("otlp_endpoint") && !t.is_set("sampling_ratio") && !t.is_set("record_arguments") &&
      !t.is_set("service_name")) {
    return Status();
  }
  Result<TracingOptions> from_env = TracingOptionsFromEnv();
  if (!from_env.ok()) return from_env.status();
  TracingOptions options = std::move(from_env).value();

  const bool env_endpoint =
      Env("OTEL_EXPORTER_OTLP_ENDPOINT") != nullptr || Env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  const char* exporter = Env("OTEL_TRACES_EXPORTER");
  const char* disabled = Env("OTEL_SDK_DISABLED");
  const bool env_off = (exporter != nullptr && Lower(exporter) == "none") ||
                       (disabled != nullptr && Lower(disabled) == "true");
  if (t.is_set("otlp_endpoint") && !t.otlp_endpoint.empty() && !env_endpoint) {
    std::string url = t.otlp_endpoint;
    size_t scheme_end = url.find("://");
    size_t path = url.find('/', scheme_end == std::string::npos ? 0 : scheme_end + 3);
    if (path == std::string::npos || url.substr(path) == "/") {
      while (!url.empty() && url.back() == '/') url.pop_back();
      url += "/v1/traces";
    }
    options.endpoint = url;
    options.enabled = !env_off;
  }
  if (t.is_set("sampling_ratio") && !Env("OTEL_TRACES_SAMPLER") &&
      !Env("OTEL_TRACES_SAMPLER_ARG")) {
    options.sampler = TraceSampler::kParentBasedTraceIdRatio;
    options.ratio = t.sampling_ratio;
  }
  if (t.is_set("record_arguments") && !Env("TOOLOPS_TRACE_ARGUMENTS")) {
    options.record_arguments = t.record_arguments;
  }
  const char* attributes = Env("OTEL_RESOURCE_ATTRIBUTES");
  const bool env_service =
      Env("OTEL_SERVICE_NAME") != nullptr ||
      (attributes != nullptr &&
       std::string_view(attributes).find("service.name=") != std::string::npos);
  if (t.is_set("service_name") && !t.service_name.empty() && !env_service) {
    options.service_name = t.service_name;
  }
  if (Status s = ConfigureTracing(options); !s.ok()) {
    return Status(StatusCode::kInvalidArgument,
                  Field(t, "otlp_endpoint") + ": " + std::string(s.message()), Guard::kPolicy);
  }
  return Status();
}

Status ApplyMetricsEndpoint(const TelemetryConfig& t) {
  if (!t.is_set("metrics_port") && !t.is_set("metrics_host")) return Status();
  Running& running = Started();
  MutexLock lock(&running.mu);
  if (t.metrics_port == 0) {
    running.metrics.reset();
    return Status();
  }
  if (running.metrics != nullptr && running.metrics->host() == t.metrics_host &&
      running.metrics->port() == t.metrics_port) {
    return Status();
  }
  running.metrics.reset();  // Frees the port when only the host changes.
  Result<std::unique_ptr<MetricsServer>> server =
      MetricsServer::Start(t.metrics_host, static_cast<uint16_t>(t.metrics_port));
  if (!server.ok()) {
    return Status(server.status().code(),
                  Field(t, "metrics_port") + ": " + std::string(server.status().message()) +
                      "; choose a free port for each process (TOOLOPS__TELEMETRY__METRICS_PORT "
                      "overrides the file), or 0 for none",
                  Guard::kPolicy);
  }
  running.metrics = std::move(server).value();
  return Status();
}

Status ApplyStatsPublisher(const TelemetryConfig& t, StoreRegistry* registry) {
  if (!t.is_set("stats_store") && !t.is_set("stats_interval")) return Status();
  Running& running = Started();
  MutexLock lock(&running.mu);
  if (t.stats_store.empty()) {
    running.publisher.reset();
    running.publisher_store.clear();
    return Status();
  }
  Result<std::shared_ptr<Store>> store = registry->Get(t.stats_store);
  if (!store.ok()) {
    return Status(StatusCode::kInvalidArgument,
                  Field(t, "stats_store") + ": " + std::string(store.status().message()) +
                      "; apply the configuration's stores first (ApplyConfig)",
                  Guard::kPolicy);
  }
  if (running.publisher != nullptr && running.publisher_store == t.stats_store &&
      &running.publisher->store() == store->get() &&
      running.publisher->interval() == t.stats_interval) {
    return Status();
  }
  running.publisher.reset();
  Result<std::unique_ptr<StatsPublisher>> publisher =
      StatsPublisher::Start(std::move(store).value(), t.stats_interval);
  if (!publisher.ok()) {
    return Status(StatusCode::kInvalidArgument,
                  Field(t, "stats_store") + ": " + std::string(publisher.status().message()),
                  Guard::kPolicy);
  }
  running.publisher = std::move(publisher).value();
  running.publisher_store = t.stats_store;
  return Status();
}

}  // namespace

Status ApplyTelemetry(const Config& config, const TelemetryParts& parts, StoreRegistry* registry) {
  const TelemetryConfig& t = config.telemetry;
  Status first;
  auto keep = [&](Status s) {
    if (first.ok() && !s.ok()) first = std::move(s);
  };
  if (parts.logging) keep(ApplyLogging(t));
  if (parts.tracing) keep(ApplyTracing(t));
  if (parts.metrics_endpoint) keep(ApplyMetricsEndpoint(t));
  if (parts.stats_publisher) keep(ApplyStatsPublisher(t, registry));
  return first;
}

uint16_t AppliedMetricsPort() {
  Running& running = Started();
  MutexLock lock(&running.mu);
  return running.metrics == nullptr ? 0 : running.metrics->port();
}

void StopAppliedTelemetry() {
  Running& running = Started();
  std::unique_ptr<MetricsServer> metrics;
  std::unique_ptr<StatsPublisher> publisher;
  {
    MutexLock lock(&running.mu);
    metrics = std::move(running.metrics);
    publisher = std::move(running.publisher);
    running.publisher_store.clear();
  }
}

}  // namespace toolops
