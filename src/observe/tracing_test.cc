// src/observe/tracing_test.cc
//
// Traces of tool calls, received by a real HTTP server on a loopback port
// and decoded from OTLP JSON: span names, attributes, parent links,
// sampling, the bounded queue, and the OTEL_* variables.

#include "toolops/tracing.h"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http_recorder.h"
#include "toolops/asio.h"
#include "toolops/tool.h"

namespace toolops {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using testing::HttpRecorder;

struct DecodedSpan {
  std::string trace_id, span_id, parent_span_id, name;
  std::map<std::string, json> attributes;  // key -> the AnyValue object
  int status_code = 0;
  std::string service_name;

  std::string Str(const std::string& key) const {
    auto it = attributes.find(key);
    return it == attributes.end() ? "<absent>" : it->second.value("stringValue", "<not a string>");
  }
  std::string Int(const std::string& key) const {
    auto it = attributes.find(key);
    return it == attributes.end() ? "<absent>" : it->second.value("intValue", "<not an int>");
  }
  bool Has(const std::string& key) const { return attributes.count(key) > 0; }
};

std::vector<DecodedSpan> Decode(const HttpRecorder& collector) {
  std::vector<DecodedSpan> out;
  for (const auto& request : collector.requests()) {
    json body = json::parse(request.body);
    for (const json& rs : body.at("resourceSpans")) {
      std::string service;
      for (const json& a : rs.at("resource").at("attributes")) {
        if (a.at("key") == "service.name") service = a.at("value").at("stringValue");
      }
      for (const json& ss : rs.at("scopeSpans")) {
        for (const json& s : ss.at("spans")) {
          DecodedSpan d;
          d.trace_id = s.at("traceId");
          d.span_id = s.at("spanId");
          d.parent_span_id = s.value("parentSpanId", "");
          d.name = s.at("name");
          d.service_name = service;
          for (const json& a : s.at("attributes")) d.attributes[a.at("key")] = a.at("value");
          if (s.contains("status")) d.status_code = s.at("status").value("code", 0);
          EXPECT_LE(std::stoll(s.at("startTimeUnixNano").get<std::string>()),
                    std::stoll(s.at("endTimeUnixNano").get<std::string>()));
          out.push_back(std::move(d));
        }
      }
    }
  }
  return out;
}

class TracingTest : public ::testing::Test {
 protected:
  TracingTest() : random_(5) {
    registry_.Register("memory", std::shared_ptr<Store>(NewMemoryStore({}).value().release()));
    env_.clock = &clock_;
    env_.random = &random_;
    env_.stores = &registry_;
  }
  ~TracingTest() override { ShutdownTracing(); }

  TracingOptions Options(TraceSampler sampler = TraceSampler::kAlwaysOn) {
    TracingOptions o;
    o.enabled = true;
    o.endpoint = collector_.url("/v1/traces");
    o.sampler = sampler;
    o.schedule_delay = milliseconds(20);
    o.service_name = "agent-test";
    return o;
  }

  HttpRecorder collector_;
  FakeClock clock_;
  SeededRandom random_;
  StoreRegistry registry_;
  Environment env_;
};

TEST_F(TracingTest, ACallAndItsAttemptsReachTheCollectorAsLinkedSpans) {
  TracingOptions options = Options();
  options.headers = {{"x-team", "tools"}};
  ASSERT_TRUE(ConfigureTracing(options).ok());
  ToolPolicy policy;
  policy.retry.max_attempts = 2;
  policy.retry.initial_backoff = milliseconds(1);
  int failures_left = 1;
  auto tool = Readonly(
      {"search", "1", {"query"}}, policy,
      [&](const std::string& q) -> Result<std::string> {
        if (q == "down") return UnavailableError("the search API is down");
        if (failures_left-- > 0) return UnavailableError("flaky");
        return "sunny in " + q;
      },
      env_);
  {
    ScopedCallId id("call_42");
    EXPECT_EQ(tool("paris"), "sunny in paris");  // Miss: a failed attempt, then a success.
  }
  EXPECT_EQ(tool("paris"), "sunny in paris");  // A fresh hit.
  EXPECT_FALSE(tool.Call("down").ok());        // Two failed attempts.
  ASSERT_TRUE(FlushTracing(std::chrono::seconds(10)));

  for (const auto& r : collector_.requests()) {
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.path, "/v1/traces");
    EXPECT_EQ(r.headers.at("content-type"), "application/json");
    EXPECT_EQ(r.headers.at("x-team"), "tools");
  }
  std::vector<DecodedSpan> spans = Decode(collector_);
  std::vector<DecodedSpan> calls, attempts;
  for (const DecodedSpan& s : spans) {
    EXPECT_EQ(s.service_name, "agent-test");
    if (s.name == "execute_tool search") calls.push_back(s);
    if (s.name == "upstream_attempt search") attempts.push_back(s);
  }
  ASSERT_EQ(calls.size(), 3u);
  ASSERT_EQ(attempts.size(), 4u);

  const DecodedSpan& miss = calls[0];
  EXPECT_EQ(miss.Str("gen_ai.operation.name"), "execute_tool");
  EXPECT_EQ(miss.Str("gen_ai.tool.name"), "search");
  EXPECT_EQ(miss.Str("gen_ai.tool.call.id"), "call_42");
  EXPECT_EQ(miss.Str("toolops.cache.result"), "miss");
  EXPECT_EQ(miss.Str("toolops.outcome"), "upstream_success");
  EXPECT_EQ(miss.Int("toolops.attempts"), "2");
  EXPECT_EQ(miss.attributes.at("toolops.coalesced").value("boolValue", true), false);
  EXPECT_EQ(miss.Str("toolops.breaker.state"), "closed");
  EXPECT_FALSE(miss.Has("error.type"));
  EXPECT_TRUE(miss.parent_span_id.empty());
  EXPECT_EQ(miss.trace_id.size(), 32u);
  EXPECT_EQ(miss.span_id.size(), 16u);
  // Arguments are not recorded unless asked for.
  EXPECT_FALSE(miss.Has("gen_ai.tool.call.arguments"));

  // Its two attempts are its children, in the same trace; the first failed.
  int children = 0;
  for (const DecodedSpan& a : attempts) {
    if (a.parent_span_id != miss.span_id) continue;
    ++children;
    EXPECT_EQ(a.trace_id, miss.trace_id);
    if (a.Int("toolops.attempt") == "1") {
      EXPECT_EQ(a.Str("error.type"), "UNAVAILABLE");
      EXPECT_EQ(a.status_code, 2);
    } else {
      EXPECT_FALSE(a.Has("error.type"));
    }
  }
  EXPECT_EQ(children, 2);

  const DecodedSpan& hit = calls[1];
  EXPECT_EQ(hit.Str("toolops.cache.result"), "fresh");
  EXPECT_EQ(hit.Int("toolops.attempts"), "0");
  EXPECT_FALSE(hit.Has("gen_ai.tool.call.id"));  // The id was for the first call only.
  EXPECT_NE(hit.trace_id, miss.trace_id);

  const DecodedSpan& failed = calls[2];
  EXPECT_EQ(failed.Str("error.type"), "UNAVAILABLE");
  EXPECT_EQ(failed.status_code, 2);
  EXPECT_EQ(failed.Str("toolops.outcome"), "upstream_error");
  EXPECT_EQ(failed.Int("toolops.attempts"), "2");
}

TEST_F(TracingTest, AToolCallingAnotherToolNestsUnderItsAttempt) {
  ASSERT_TRUE(ConfigureTracing(Options()).ok());
  auto inner = Readonly(
      {"inner"}, {}, [](int x) { return x + 1; }, env_);
  auto outer = Readonly(
      {"outer"}, {}, [&](int x) { return inner(x) * 10; }, env_);
  EXPECT_EQ(outer(1), 20);
  ASSERT_TRUE(FlushTracing(std::chrono::seconds(10)));
  std::map<std::string, DecodedSpan> by_name;
  for (const DecodedSpan& s : Decode(collector_)) by_name[s.name] = s;
  ASSERT_EQ(by_name.count("execute_tool inner"), 1u);
  ASSERT_EQ(by_name.count("upstream_attempt outer"), 1u);
  EXPECT_EQ(by_name["execute_tool inner"].parent_span_id,
            by_name["upstream_attempt outer"].span_id);
  EXPECT_EQ(by_name["execute_tool inner"].trace_id, by_name["execute_tool outer"].trace_id);
}

TEST_F(TracingTest, SamplersDecideAtCallStart) {
  ToolPolicy policy;
  auto tool = SideEffect(
      {"write"}, policy, [](int x) { return x; }, env_);

  ASSERT_TRUE(ConfigureTracing(Options(TraceSampler::kAlwaysOff)).ok());
  uint64_t before = GetTracingStats().spans_started;
  for (int i = 0; i < 100; ++i) tool(i);
  EXPECT_EQ(GetTracingStats().spans_started, before);

  // A share of the calls: each traced call is two spans (call, attempt).
  TracingOptions ratio = Options(TraceSampler::kTraceIdRatio);
  ratio.ratio = 0.5;
  ratio.max_queue_spans = 100'000;
  ASSERT_TRUE(ConfigureTracing(ratio).ok());
  before = GetTracingStats().spans_started;
  for (int i = 0; i < 2000; ++i) tool(i);
  uint64_t traced = (GetTracingStats().spans_started - before) / 2;
  EXPECT_GT(traced, 800u);  // 2000 * 0.5 +- 9 standard deviations.
  EXPECT_LT(traced, 1200u);

  // Parent-based: an unsampled parent silences the call, a sampled one
  // adopts it.
  ASSERT_TRUE(ConfigureTracing(Options(TraceSampler::kParentBasedAlwaysOn)).ok());
  SpanContext parent =
      ParseTraceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00").value();
  before = GetTracingStats().spans_started;
  {
    ScopedParentSpan scoped(parent);
    tool(1);
  }
  EXPECT_EQ(GetTracingStats().spans_started, before);
  parent.sampled = true;
  {
    ScopedParentSpan scoped(parent);
    tool(2);
  }
  ASSERT_TRUE(FlushTracing(std::chrono::seconds(10)));
  bool adopted = false;
  for (const DecodedSpan& s : Decode(collector_)) {
    if (s.name == "execute_tool write" && s.parent_span_id == "b7ad6b7169203331") {
      adopted = true;
      EXPECT_EQ(s.trace_id, "0af7651916cd43dd8448eb211c80319c");
    }
  }
  EXPECT_TRUE(adopted);
}

TEST_F(TracingTest, AFullQueueDropsSpansAndNeverBlocks) {
  TracingOptions o = Options();
  o.max_queue_spans = 2;
  o.max_batch_spans = 100;
  o.schedule_delay = std::chrono::hours(1);
  ASSERT_TRUE(ConfigureTracing(o).ok());
  auto tool = SideEffect(
      {"burst"}, {}, [](int x) { return x; }, env_);
  uint64_t dropped = GetTracingStats().spans_dropped;
  for (int i = 0; i < 5; ++i) tool(i);  // Ten spans for a queue of two.
  EXPECT_EQ(GetTracingStats().spans_dropped - dropped, 8u);
  ShutdownTracing();  // Sends what the queue holds.
  EXPECT_EQ(Decode(collector_).size(), 2u);
}

TEST_F(TracingTest, TheAsioRunnerTracesCallsAndAttempts) {
  ASSERT_TRUE(ConfigureTracing(Options()).ok());
  auto tool = ReadonlyAsync(
      {"async_search"}, {}, [](int x) -> asio::awaitable<int> { co_return x * 3; }, env_);
  asio::io_context io;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        ScopedCallId id("call_async");
        EXPECT_EQ(co_await tool(2), 6);
      },
      asio::detached);
  io.run();
  ASSERT_TRUE(FlushTracing(std::chrono::seconds(10)));
  std::map<std::string, DecodedSpan> by_name;
  for (const DecodedSpan& s : Decode(collector_)) by_name[s.name] = s;
  ASSERT_EQ(by_name.count("execute_tool async_search"), 1u);
  ASSERT_EQ(by_name.count("upstream_attempt async_search"), 1u);
  const DecodedSpan& call = by_name["execute_tool async_search"];
  EXPECT_EQ(call.Int("toolops.attempts"), "1");
  EXPECT_EQ(call.Str("gen_ai.tool.call.id"), "call_async");
  EXPECT_EQ(by_name["upstream_attempt async_search"].parent_span_id, call.span_id);
}

TEST(TracingEnvTest, StandardVariablesConfigureTheExporter) {
  struct Var {
    const char* name;
    const char* value;
  };
  std::vector<Var> vars = {
      {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"},
      {"OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc, x-tenant = t1"},
      {"OTEL_EXPORTER_OTLP_TIMEOUT", "2500"},
      {"OTEL_SERVICE_NAME", "agents"},
      {"OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,service.name=ignored"},
      {"OTEL_TRACES_SAMPLER", "parentbased_traceidratio"},
      {"OTEL_TRACES_SAMPLER_ARG", "0.25"},
  };
  for (const Var& v : vars) setenv(v.name, v.value, 1);
  Result<TracingOptions> o = TracingOptionsFromEnv();
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_TRUE(o->enabled);
  EXPECT_EQ(o->endpoint, "http://collector:4318/v1/traces");
  ASSERT_EQ(o->headers.size(), 2u);
  EXPECT_EQ(o->headers[0].first, "authorization");
  EXPECT_EQ(o->headers[0].second, "Bearer abc");
  EXPECT_EQ(o->headers[1].first, "x-tenant");
  EXPECT_EQ(o->headers[1].second, "t1");
  EXPECT_EQ(o->timeout, milliseconds(2500));
  EXPECT_EQ(o->service_name, "agents");
  ASSERT_EQ(o->resource_attributes.size(), 1u);
  EXPECT_EQ(o->resource_attributes[0].second, "prod");
  EXPECT_EQ(o->sampler, TraceSampler::kParentBasedTraceIdRatio);
  EXPECT_DOUBLE_EQ(o->ratio, 0.25);

  setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://other:4318/custom", 1);
  EXPECT_EQ(TracingOptionsFromEnv()->endpoint, "http://other:4318/custom");
  setenv("OTEL_SDK_DISABLED", "TRUE", 1);
  EXPECT_FALSE(TracingOptionsFromEnv()->enabled);
  unsetenv("OTEL_SDK_DISABLED");
  setenv("OTEL_TRACES_EXPORTER", "none", 1);
  EXPECT_FALSE(TracingOptionsFromEnv()->enabled);

  // Malformed values name the variable and what is expected.
  setenv("OTEL_TRACES_EXPORTER", "zipkin", 1);
  EXPECT_NE(TracingOptionsFromEnv().status().message().find("OTEL_TRACES_EXPORTER"),
            std::string_view::npos);
  setenv("OTEL_TRACES_EXPORTER", "otlp", 1);
  setenv("OTEL_TRACES_SAMPLER", "sometimes", 1);
  Result<TracingOptions> bad = TracingOptionsFromEnv();
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("OTEL_TRACES_SAMPLER"), std::string_view::npos);
  setenv("OTEL_TRACES_SAMPLER", "traceidratio", 1);
  setenv("OTEL_TRACES_SAMPLER_ARG", "1.5", 1);
  EXPECT_NE(TracingOptionsFromEnv().status().message().find("[0, 1]"), std::string_view::npos);
  setenv("OTEL_TRACES_SAMPLER_ARG", "0.5", 1);
  setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "soon", 1);
  EXPECT_NE(TracingOptionsFromEnv().status().message().find("milliseconds"),
            std::string_view::npos);

  for (const char* name :
       {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"}) {
    unsetenv(name);
  }
  EXPECT_FALSE(TracingOptionsFromEnv()->enabled);  // Nothing asked: off.
}

TEST(TracingEnvTest, BadOptionsAreRefused) {
  TracingOptions o;
  o.enabled = true;
  o.endpoint = "collector:4318";
  EXPECT_NE(ConfigureTracing(o).message().find("http://"), std::string_view::npos);
  o.endpoint = "http://127.0.0.1:1/v1/traces";
  o.ratio = -0.1;
  EXPECT_FALSE(ConfigureTracing(o).ok());
}

TEST(TraceparentTest, RoundTripsAndRefusesMalformedHeaders) {
  const std::string header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  Result<SpanContext> c = ParseTraceparent(header);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->sampled);
  EXPECT_EQ(FormatTraceparent(*c), header);
  for (const char* bad : {"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                          "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                          "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                          "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}) {
    EXPECT_FALSE(ParseTraceparent(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace toolops
