// src/observe/metrics_test.cc
//
// Metrics of wrapped tools: the registry, the latency histogram (and how the
// lock-free hit path is timed), the Prometheus text of the contract, and the
// /metrics endpoint over real HTTP.

#include "toolops/metrics.h"

#include <curl/curl.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <chrono>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "toolops/asio.h"
#include "toolops/tool.h"

namespace toolops {
namespace {

using std::chrono::milliseconds;

// Samples of one metric family: the labels text ("tool=\"x\",outcome=\"y\"")
// to the value.
std::map<std::string, double> Samples(const std::string& text, const std::string& name) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    size_t space = line.rfind(' ');
    std::string series = line.substr(0, space);
    std::string metric = series.substr(0, series.find('{'));
    if (metric != name) continue;
    std::string labels;
    if (size_t open = series.find('{'); open != std::string::npos) {
      labels = series.substr(open + 1, series.size() - open - 2);
    }
    out[labels] = std::stod(line.substr(space + 1));
  }
  return out;
}

class MetricsTest : public ::testing::Test {
 protected:
  MetricsTest() : random_(3) {
    registry_.Register("memory", std::shared_ptr<Store>(NewMemoryStore({}).value().release()));
    env_.clock = &clock_;
    env_.random = &random_;
    env_.stores = &registry_;
  }
  FakeClock clock_;
  SeededRandom random_;
  StoreRegistry registry_;
  Environment env_;
};

TEST(LatencyHistogramTest, BucketsFollowTheBounds) {
  EXPECT_EQ(LatencyHistogram::BucketOf(std::chrono::microseconds(10)), 0u);
  EXPECT_EQ(LatencyHistogram::BucketOf(std::chrono::microseconds(50)), 0u);  // le is inclusive
  EXPECT_EQ(LatencyHistogram::BucketOf(std::chrono::microseconds(51)), 1u);
  EXPECT_EQ(LatencyHistogram::BucketOf(std::chrono::seconds(1)), 13u);
  EXPECT_EQ(LatencyHistogram::BucketOf(std::chrono::seconds(61)), kLatencyBuckets - 1);
}

TEST(LatencyHistogramTest, ATimedHitCarriesTheUntimedHitsBeforeIt) {
  LatencyHistogram h;
  for (int i = 0; i < 9; ++i) h.AddUntimedHit();
  HistogramSnapshot before = h.Snapshot();
  EXPECT_EQ(before.count, 0u);
  EXPECT_EQ(before.pending_hits, 9u);
  h.RecordHit(std::chrono::microseconds(20));
  h.Record(std::chrono::seconds(2));
  HistogramSnapshot after = h.Snapshot();
  EXPECT_EQ(after.count, 11u);
  EXPECT_EQ(after.pending_hits, 0u);
  EXPECT_EQ(after.counts[0], 10u);
  EXPECT_EQ(after.counts[LatencyHistogram::BucketOf(std::chrono::seconds(2))], 1u);
  EXPECT_NEAR(after.sum_seconds, 10 * 20e-6 + 2.0, 1e-9);
}

TEST_F(MetricsTest, TheRegistryListsLiveToolsOnly) {
  auto count = [](const std::string& name) {
    int n = 0;
    for (const auto& core : LiveTools()) n += core->spec().name == name;
    return n;
  };
  {
    auto tool = Readonly(
        {"registry_probe"}, {}, [](int x) { return x; }, env_);
    EXPECT_EQ(count("registry_probe"), 1);
  }
  EXPECT_EQ(count("registry_probe"), 0);
}

TEST_F(MetricsTest, PrometheusTextCarriesEveryMetricOfTheContract) {
  ToolPolicy policy;
  policy.cost_per_call = 0.25;
  policy.retry.max_attempts = 2;
  policy.retry.initial_backoff = milliseconds(1);
  int failures_left = 1;
  auto tool = Readonly(
      {"prom_search", "1", {"q"}}, policy,
      [&](int q) -> Result<int> {
        if (q < 0) return UnavailableError("down");
        if (failures_left-- > 0) return UnavailableError("flaky");
        return q * 2;
      },
      env_);
  EXPECT_EQ(tool(1), 2);                                // Miss: two attempts (one retry).
  for (int i = 0; i < 200; ++i) EXPECT_EQ(tool(1), 2);  // Hits.
  EXPECT_FALSE(tool.Call(-1).ok());                     // Upstream error.

  std::string text = PrometheusText();
  const std::string t = "tool=\"prom_search\"";
  auto calls = Samples(text, "toolops_calls_total");
  EXPECT_EQ(calls[t + ",outcome=\"fresh_hit\""], 200);
  EXPECT_EQ(calls[t + ",outcome=\"upstream_success\""], 1);
  EXPECT_EQ(calls[t + ",outcome=\"upstream_error\""], 1);
  EXPECT_EQ(calls[t + ",outcome=\"semantic_hit\""], 0);
  EXPECT_EQ(calls.count(t + ",outcome=\"rejected_by_budget\""), 1u);
  EXPECT_EQ(Samples(text, "toolops_upstream_calls_total")[t], 2);
  EXPECT_EQ(Samples(text, "toolops_upstream_attempts_total")[t], 4);
  EXPECT_EQ(Samples(text, "toolops_retries_total")[t], 2);
  EXPECT_EQ(Samples(text, "toolops_calls_saved_total")[t], 200);
  EXPECT_DOUBLE_EQ(Samples(text, "toolops_money_saved_total")[t], 50.0);
  EXPECT_DOUBLE_EQ(Samples(text, "toolops_cost_per_call")[t], 0.25);
  EXPECT_EQ(Samples(text, "toolops_breaker_state")[t], 0);
  EXPECT_EQ(Samples(text, "toolops_breaker_transitions_total")[t], 0);
  EXPECT_EQ(Samples(text, "toolops_store_errors_total")[t], 0);
  EXPECT_GT(Samples(text, "toolops_process_start_time_seconds")[""], 1.7e9);

  // The histogram: cumulative buckets, +Inf equal to the count, and every
  // call in it but the hits not yet carried by a timed one.
  auto buckets = Samples(text, "toolops_call_duration_seconds_bucket");
  double count = Samples(text, "toolops_call_duration_seconds_count")[t];
  EXPECT_EQ(buckets[t + ",le=\"+Inf\""], count);
  EXPECT_LE(buckets[t + ",le=\"5e-05\""], buckets[t + ",le=\"0.0001\""]);
  HistogramSnapshot latency = tool.core().latency();
  EXPECT_EQ(latency.count + latency.pending_hits, 202u);
  EXPECT_EQ(static_cast<uint64_t>(count), latency.count);
  EXPECT_LT(latency.pending_hits, LatencyHistogram::kHitTimingPeriod);
  EXPECT_TRUE(text.find("# TYPE toolops_call_duration_seconds histogram") != std::string::npos);
}

TEST_F(MetricsTest, FakeTimeLandsInTheRightBucket) {
  auto tool = SideEffect(
      {"slow_write"}, {},
      [&](int) {
        clock_.Advance(std::chrono::milliseconds(300));
        return 1;
      },
      env_);
  tool(1);
  HistogramSnapshot latency = tool.core().latency();
  EXPECT_EQ(latency.count, 1u);
  EXPECT_EQ(latency.counts[LatencyHistogram::BucketOf(milliseconds(300))], 1u);
  EXPECT_NEAR(latency.sum_seconds, 0.3, 1e-9);
}

TEST_F(MetricsTest, SameNamedToolsAreSummedAndTheWorstBreakerWins) {
  ToolPolicy policy;
  policy.cache.enabled = false;
  policy.breaker.minimum_calls = 1;
  policy.breaker.window_size = 1;
  auto healthy = Readonly(
      {"twin"}, policy, [](int x) { return x; }, env_);
  auto broken = Readonly(
      {"twin"}, policy, [](int) -> Result<int> { return UnavailableError("x"); }, env_);
  healthy(1);
  EXPECT_FALSE(broken.Call(1).ok());
  for (const ToolMetrics& m : CollectToolMetrics()) {
    if (m.tool != "twin") continue;
    EXPECT_EQ(m.instances, 2);
    EXPECT_EQ(m.counters[Counter::kCalls], 2u);
    EXPECT_EQ(m.breaker_state, 1);
    EXPECT_EQ(m.breaker_state_name, "open");
    EXPECT_GE(m.breaker_transitions, 1u);
  }
}

TEST_F(MetricsTest, TheAsioRunnerRecordsLatencyToo) {
  ToolPolicy policy;
  auto tool = ReadonlyAsync(
      {"async_metrics"}, policy, [](int x) -> asio::awaitable<int> { co_return x + 1; }, env_);
  asio::io_context io;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < 3; ++i) EXPECT_EQ(co_await tool(5), 6);
      },
      asio::detached);
  io.run();
  HistogramSnapshot latency = tool.core().latency();
  EXPECT_EQ(latency.count + latency.pending_hits, 3u);
  EXPECT_GE(latency.count, 1u);  // The miss, at least.
}

size_t Collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// GET with libcurl: the status code and the body.
std::pair<long, std::string> HttpGet(const std::string& url) {
  std::string body;
  CURL* curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, Collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
  CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(curl);
  EXPECT_EQ(rc, CURLE_OK) << curl_easy_strerror(rc);
  return {status, body};
}

TEST_F(MetricsTest, TheEndpointServesMetricsOverHttp) {
  auto tool = Readonly(
      {"served_tool"}, {}, [](int x) { return x; }, env_);
  tool(1);
  tool(1);
  Result<std::unique_ptr<MetricsServer>> server = MetricsServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  uint16_t port = (*server)->port();
  ASSERT_NE(port, 0);
  std::string base = "http://127.0.0.1:" + std::to_string(port);

  auto [status, body] = HttpGet(base + "/metrics");
  EXPECT_EQ(status, 200);
  auto calls = Samples(body, "toolops_calls_total");
  EXPECT_EQ(calls["tool=\"served_tool\",outcome=\"fresh_hit\""], 1);
  EXPECT_EQ(calls["tool=\"served_tool\",outcome=\"upstream_success\""], 1);

  EXPECT_EQ(HttpGet(base + "/").first, 404);
  EXPECT_EQ(HttpGet(base + "/metrics/extra").first, 404);
  EXPECT_EQ((*server)->requests(), 3u);

  // The same port again cannot be bound; a host that is not an address is
  // refused with what to use instead.
  Result<std::unique_ptr<MetricsServer>> taken = MetricsServer::Start("127.0.0.1", port);
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(taken.status().message().find(std::to_string(port)), std::string_view::npos);
  Result<std::unique_ptr<MetricsServer>> bad = MetricsServer::Start("localhost:80", 0);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace toolops
