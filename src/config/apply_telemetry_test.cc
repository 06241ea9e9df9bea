// src/config/apply_telemetry_test.cc
//
// The [telemetry] table put to work: the metrics endpoint serving on the
// configured port, the log level filtering, spans sampled at the configured
// ratio arriving at a real HTTP collector, and the environment winning over
// the file.

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/stats_cmd.h"
#include "http_recorder.h"
#include "processes.h"
#include "toolops/config.h"
#include "toolops/log.h"
#include "toolops/metrics.h"
#include "toolops/tool.h"
#include "toolops/tracing.h"

namespace toolops {
namespace {

using std::chrono::milliseconds;
using testing::HttpRecorder;

// Sets a variable for the life of the object.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() { unsetenv(name_); }

 private:
  const char* name_;
};

Config Parse(const std::string& text, const ConfigEnv& env = {}) {
  Result<Config> config = ParseConfig(text, "toolops.toml", env);
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  return config.ok() ? std::move(config).value() : Config{};
}

TelemetryParts Only(bool TelemetryParts::*part) {
  TelemetryParts parts;
  parts.logging = parts.tracing = parts.metrics_endpoint = parts.stats_publisher = false;
  parts.*part = true;
  return parts;
}

// Spans named `name` the collector received.
size_t SpansNamed(const HttpRecorder& collector, const std::string& name) {
  size_t n = 0;
  for (const auto& request : collector.requests()) {
    nlohmann::json body = nlohmann::json::parse(request.body);
    for (const auto& rs : body.at("resourceSpans")) {
      for (const auto& ss : rs.at("scopeSpans")) {
        for (const auto& s : ss.at("spans")) n += s.at("name") == name ? 1 : 0;
      }
    }
  }
  return n;
}

TEST(ApplyTelemetryTest, MetricsEndpointServesOnTheConfiguredPortAndTheEnvironmentMovesIt) {
  auto tool = Readonly({"configured_metrics"}, {}, [](int x) { return x; });
  tool(1);
  tool(1);

  const int port = testing::PickFreePort();
  Config config = Parse("[telemetry]\nmetrics_port = " + std::to_string(port) + "\n");
  ASSERT_TRUE(ApplyTelemetry(config, Only(&TelemetryParts::metrics_endpoint)).ok());
  EXPECT_EQ(AppliedMetricsPort(), port);
  Result<std::string> text =
      cli::FetchText("http://127.0.0.1:" + std::to_string(port) + "/metrics", 5000);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_NE(text->find("toolops_calls_total{tool=\"configured_metrics\",outcome=\"fresh_hit\"} 1"),
            std::string::npos);

  // TOOLOPS__TELEMETRY__METRICS_PORT wins over the file: the endpoint moves.
  const int other = testing::PickFreePort();
  Config moved = Parse("[telemetry]\nmetrics_port = " + std::to_string(port) + "\n",
                       {{"TOOLOPS__TELEMETRY__METRICS_PORT", std::to_string(other)}});
  ASSERT_TRUE(ApplyTelemetry(moved, Only(&TelemetryParts::metrics_endpoint)).ok());
  EXPECT_EQ(AppliedMetricsPort(), other);
  EXPECT_TRUE(cli::FetchText("http://127.0.0.1:" + std::to_string(other) + "/metrics", 5000).ok());
  EXPECT_FALSE(cli::FetchText("http://127.0.0.1:" + std::to_string(port) + "/metrics", 2000).ok());

  StopAppliedTelemetry();
  EXPECT_EQ(AppliedMetricsPort(), 0);
}

TEST(ApplyTelemetryTest, AMetricsPortInUseFailsNamingTheFieldAndTheFix) {
  Result<std::unique_ptr<MetricsServer>> holder = MetricsServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(holder.ok());
  Config config =
      Parse("\n[telemetry]\nmetrics_port = " + std::to_string((*holder)->port()) + "\n");
  Status s = ApplyTelemetry(config, Only(&TelemetryParts::metrics_endpoint));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("telemetry.metrics_port (toolops.toml:3)"), std::string_view::npos)
      << s.message();
  EXPECT_NE(s.message().find("TOOLOPS__TELEMETRY__METRICS_PORT"), std::string_view::npos);
  EXPECT_EQ(AppliedMetricsPort(), 0);
}

TEST(ApplyTelemetryTest, LogLevelFiltersAndTheEnvironmentWins) {
  std::vector<std::string> events;
  SetLogSink([&](const LogRecord& r) { events.emplace_back(r.event); });

  // Only the level is set: the program's sink stays.
  ASSERT_TRUE(ApplyTelemetry(Parse("[telemetry]\nlog_level = \"warning\"\n"),
                             Only(&TelemetryParts::logging))
                  .ok());
  Log(LogLevel::kInfo, "test.info", "dropped");
  Log(LogLevel::kWarning, "test.warning", "kept");
  EXPECT_EQ(events, std::vector<std::string>({"test.warning"}));

  // TOOLOPS_LOG_LEVEL wins over the file.
  {
    ScopedEnv level("TOOLOPS_LOG_LEVEL", "debug");
    ASSERT_TRUE(ApplyTelemetry(Parse("[telemetry]\nlog_level = \"error\"\n"),
                               Only(&TelemetryParts::logging))
                    .ok());
    events.clear();
    Log(LogLevel::kDebug, "test.debug", "kept");
    EXPECT_EQ(events, std::vector<std::string>({"test.debug"}));
  }

  // log_format = "json": JSON lines on stderr, at the file's level.
  ::testing::internal::CaptureStderr();
  ASSERT_TRUE(ApplyTelemetry(Parse("[telemetry]\nlog_format = \"json\"\nlog_level = \"error\"\n"),
                             Only(&TelemetryParts::logging))
                  .ok());
  Log(LogLevel::kWarning, "test.json_dropped", "dropped");
  Log(LogLevel::kError, "test.json_kept", "kept");
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(err.find("test.json_dropped"), std::string::npos) << err;
  EXPECT_NE(err.find("\"event\": \"test.json_kept\""), std::string::npos) << err;

  SetLogSink(nullptr);
  ClearLogLevel();  // Later tests in this process count records of every level.
}

TEST(ApplyTelemetryTest, SpansAreSampledAtTheConfiguredRatioAndTheEnvironmentWins) {
  HttpRecorder collector;
  std::string base = collector.url("");
  while (!base.empty() && base.back() == '/') base.pop_back();
  auto tool = SideEffect({"sampled"}, {}, [](int x) { return x; });

  // The file: the collector's base URL (/v1/traces is added), a quarter of
  // the calls, a service name.
  Config config = Parse("[telemetry]\notlp_endpoint = \"" + base +
                        "\"\nsampling_ratio = 0.25\nservice_name = \"file-service\"\n");
  ASSERT_TRUE(ApplyTelemetry(config, Only(&TelemetryParts::tracing)).ok());
  constexpr int kCalls = 2000;
  for (int i = 0; i < kCalls; ++i) tool(i);
  ASSERT_TRUE(FlushTracing());
  size_t traced = SpansNamed(collector, "execute_tool sampled");
  EXPECT_GT(traced, 380u);  // 2000 * 0.25 +- 6 standard deviations (19.4).
  EXPECT_LT(traced, 620u);
  for (const auto& request : collector.requests()) {
    EXPECT_EQ(request.path, "/v1/traces");
    EXPECT_NE(request.body.find("file-service"), std::string::npos);
  }

  // OTEL_TRACES_SAMPLER wins over sampling_ratio: every call is traced.
  {
    ScopedEnv sampler("OTEL_TRACES_SAMPLER", "always_on");
    ASSERT_TRUE(ApplyTelemetry(config, Only(&TelemetryParts::tracing)).ok());
    for (int i = 0; i < 100; ++i) tool(i);
    ASSERT_TRUE(FlushTracing());
    EXPECT_EQ(SpansNamed(collector, "execute_tool sampled"), traced + 100);
  }

  // OTEL_SDK_DISABLED turns tracing off whatever the file says.
  {
    ScopedEnv disabled("OTEL_SDK_DISABLED", "true");
    ASSERT_TRUE(ApplyTelemetry(config, Only(&TelemetryParts::tracing)).ok());
    uint64_t before = GetTracingStats().spans_started;
    for (int i = 0; i < 100; ++i) tool(i);
    EXPECT_EQ(GetTracingStats().spans_started, before);
  }

  // The standard endpoint variable wins over otlp_endpoint.
  HttpRecorder other;
  {
    ScopedEnv endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", other.url("/custom"));
    ScopedEnv sampler("OTEL_TRACES_SAMPLER", "always_on");
    ASSERT_TRUE(ApplyTelemetry(config, Only(&TelemetryParts::tracing)).ok());
    tool(1);
    ASSERT_TRUE(FlushTracing());
    EXPECT_EQ(SpansNamed(other, "execute_tool sampled"), 1u);
  }
  ShutdownTracing();
}

TEST(ApplyTelemetryTest, UnsetFieldsLeaveTheTelemetryAlone) {
  // No [telemetry] table: nothing starts, the program's sink and level stay.
  std::vector<std::string> events;
  SetLogSink([&](const LogRecord& r) { events.emplace_back(r.event); });
  SetLogLevel(LogLevel::kDebug);
  ASSERT_TRUE(ApplyTelemetry(Parse("[tools.x]\ncache.ttl = \"1m\"\n")).ok());
  Log(LogLevel::kDebug, "test.still_debug", "kept");
  EXPECT_EQ(events, std::vector<std::string>({"test.still_debug"}));
  EXPECT_EQ(AppliedMetricsPort(), 0);
  SetLogSink(nullptr);
  ClearLogLevel();  // Later tests in this process count records of every level.
}

TEST(ApplyTelemetryTest, StatsStoreMustBeASharedStoreOfTheFile) {
  Result<Config> missing = ParseConfig(
      "[telemetry]\nstats_store = \"shard\"\n\n[stores.shared]\n"
      "type = \"redis\"\n",
      "toolops.toml");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(
                "toolops.toml:2: telemetry.stats_store: no store 'shard' is configured"),
            std::string_view::npos)
      << missing.status().message();
  EXPECT_NE(missing.status().message().find("shared"), std::string_view::npos);

  Result<Config> memory =
      ParseConfig("[stores.local]\ntype = \"memory\"\n\n[telemetry]\nstats_store = \"local\"\n",
                  "toolops.toml");
  ASSERT_FALSE(memory.ok());
  EXPECT_NE(memory.status().message().find("is of type memory"), std::string_view::npos)
      << memory.status().message();

  Result<Config> interval = ParseConfig("[telemetry]\nstats_interval = \"10ms\"\n", "toolops.toml");
  ASSERT_FALSE(interval.ok());
  EXPECT_NE(interval.status().message().find("from 100ms to 1h"), std::string_view::npos)
      << interval.status().message();
}

TEST(ApplyTelemetryTest, StatsPublishedToASqliteStoreAreReadByTheCommand) {
  auto tool = Readonly({"published_to_sqlite"}, {}, [](int x) { return x; });
  tool(1);
  tool(2);
  testing::TempDir dir("toolops-stats-sqlite");
  const std::string path = dir.File("toolops.toml");
  const std::string text = "[stores.local]\ntype = \"sqlite\"\npath = \"" + dir.File("stats.db") +
                           "\"\n\n[telemetry]\nstats_store = \"local\"\n"
                           "stats_interval = \"1s\"\n";
  {
    FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(text.c_str(), f);
    std::fclose(f);
  }
  Config config = Parse(text);
  StoreRegistry registry;
  ASSERT_TRUE(ApplyConfig(config, &registry).ok());
  Status applied = ApplyTelemetry(config, Only(&TelemetryParts::stats_publisher), &registry);
  ResetAppliedConfig();
  ASSERT_TRUE(applied.ok()) << applied.ToString();

  // The publisher wrote its first snapshot before ApplyTelemetry returned;
  // the command, another process, reads it from the file.
  int status = testing::RunProgram(
      {TOOLOPS_CLI_BINARY, "stats", "--config", path, "--store", "local", "--json"},
      dir.File("out"));
  // Without --store nor telemetry settings, the command reads every shared
  // store of the file, this SQLite one included.
  const std::string plain = dir.File("plain.toml");
  {
    FILE* f = std::fopen(plain.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(text.substr(0, text.find("[telemetry]")).c_str(), f);
    std::fclose(f);
  }
  int by_default = testing::RunProgram({TOOLOPS_CLI_BINARY, "stats", "--config", plain, "--json"},
                                       dir.File("default"));
  // With no configuration at all, the file named by a sqlite: URL.
  int by_url = testing::RunProgram(
      {TOOLOPS_CLI_BINARY, "stats", "--store", "sqlite://" + dir.File("stats.db"), "--json"},
      dir.File("url"));
  StopAppliedTelemetry();
  for (const auto& [code, file] :
       {std::pair{status, "out"}, std::pair{by_default, "default"}, std::pair{by_url, "url"}}) {
    std::string out = testing::ReadFileOrEmpty(dir.File(file));
    ASSERT_EQ(code, 0) << out;
    nlohmann::json json = nlohmann::json::parse(out.substr(out.find('{')));
    EXPECT_EQ(json.at("processes"), 1) << out;
    EXPECT_EQ(json.at("tools").at("published_to_sqlite").at("calls"), 2) << out;
  }
}

}  // namespace
}  // namespace toolops
