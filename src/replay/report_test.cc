// src/replay/report_test.cc

#include "replay/report.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace toolops {
namespace {

ReplayReport SmallReport(const std::string& policy) {
  std::vector<TraceCall> calls;
  for (int i = 0; i < 20; ++i) {
    TraceCall call;
    call.time_ns = 1'750'000'000'000'000'000 + int64_t{i} * 1'000'000'000;
    call.tool = i % 2 == 0 ? "a" : "b";
    call.args = Value(Value::Map{{"id", Value(i % 4)}});
    call.intent = "intent-" + std::to_string(i % 4);
    call.latency = std::chrono::milliseconds(100 + 10 * i);
    call.outcome = StatusCode::kOk;
    call.cost = 1.0;
    calls.push_back(call);
  }
  VectorCallSource source(calls);
  Result<ReplayPolicy> p = ParsePolicySpec(policy);
  EXPECT_TRUE(p.ok());
  Result<ReplayReport> r = RunReplay(source, *p, Simulation(), ReplayOptions());
  EXPECT_TRUE(r.ok());
  return *r;
}

TEST(ReportTest, JsonHasEveryFigure) {
  std::vector<ReplayReport> reports = {SmallReport("exact"), SmallReport("none")};
  TraceInfo info{"small", 20, 1, {{7, "not valid JSON"}}};
  nlohmann::json j = nlohmann::json::parse(FormatReportJson(info, reports));
  EXPECT_EQ(j["trace"]["name"], "small");
  EXPECT_EQ(j["trace"]["malformed"], 1);
  EXPECT_EQ(j["trace"]["errors"][0]["line"], 7);
  EXPECT_EQ(j["trace"]["calls"], 20);
  ASSERT_EQ(j["reports"].size(), 2u);
  const nlohmann::json& exact = j["reports"][0];
  EXPECT_EQ(exact["policy"], "exact");
  EXPECT_EQ(exact["requested"], 20);
  EXPECT_EQ(exact["upstream"], 4);
  EXPECT_EQ(exact["saved"]["total"], 16);
  EXPECT_EQ(exact["saved"]["exact"], 16);
  for (const char* kind : {"semantic", "coalesced", "stale"}) EXPECT_EQ(exact["saved"][kind], 0);
  EXPECT_EQ(exact["attainable"], 16);
  EXPECT_DOUBLE_EQ(exact["bound_ratio"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(exact["money"]["without"].get<double>(), 20.0);
  EXPECT_DOUBLE_EQ(exact["money"]["with"].get<double>(), 4.0);
  EXPECT_DOUBLE_EQ(exact["money"]["saved"].get<double>(), 16.0);
  EXPECT_EQ(exact["wrong"]["answers"], 0);
  EXPECT_EQ(exact["wrong"]["labelled_hits"], 16);
  EXPECT_EQ(exact["failed"]["with"], 0);
  EXPECT_EQ(exact["retries"], 0);
  EXPECT_EQ(exact["breaker"]["openings"], 0);
  EXPECT_EQ(exact["latency_ms"]["with"]["count"], 20);
  EXPECT_GT(exact["latency_ms"]["without"]["p50"].get<double>(), 150);
  EXPECT_EQ(exact["latency_ms"]["with"]["p50"].get<double>(), 0);
  EXPECT_EQ(exact["tools"].size(), 2u);
  EXPECT_EQ(exact["series"]["requested"][0], 1);
  EXPECT_EQ(exact["run"]["speed"], "max");
  const nlohmann::json& none = j["reports"][1];
  EXPECT_EQ(none["upstream"], 20);
  EXPECT_EQ(none["saved"]["total"], 0);
}

TEST(ReportTest, TableShowsPoliciesSideBySide) {
  std::vector<ReplayReport> reports = {SmallReport("exact"), SmallReport("none")};
  std::string table = FormatReportTable(TraceInfo{"small", 20, 0, {}}, reports);
  EXPECT_NE(table.find("policy"), std::string::npos);
  EXPECT_NE(table.find("exact"), std::string::npos);
  EXPECT_NE(table.find("none"), std::string::npos);
  EXPECT_NE(table.find("16 (80.0%)"), std::string::npos) << table;
  EXPECT_NE(table.find("saved / bound"), std::string::npos);
}

TEST(ReportTest, HtmlIsSelfContained) {
  std::vector<ReplayReport> reports = {SmallReport("exact"), SmallReport("none")};
  std::string html = FormatReportHtml(TraceInfo{"small <trace>", 20, 0, {}}, reports);
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("Calls over time"), std::string::npos);
  EXPECT_NE(html.find("Savings by kind"), std::string::npos);
  EXPECT_NE(html.find("Latency distribution"), std::string::npos);
  EXPECT_NE(html.find("small &lt;trace&gt;"), std::string::npos);
  // Nothing to fetch: no scripts, no external resources.
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);
  EXPECT_EQ(html.find("href="), std::string::npos);
  EXPECT_EQ(html.find("https:"), std::string::npos);
}

TEST(HistogramTest, QuantilesWithinABucket) {
  ReplayHistogram h;
  for (int ms = 1; ms <= 1000; ++ms) h.Add(std::chrono::milliseconds(ms));
  EXPECT_EQ(h.count(), 1000u);
  auto ms = [](Duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  EXPECT_NEAR(ms(h.Quantile(0.5)), 500, 500 * 0.03);
  EXPECT_NEAR(ms(h.Quantile(0.99)), 990, 990 * 0.03);
  EXPECT_EQ(h.max(), std::chrono::milliseconds(1000));
  ReplayHistogram zeros;
  zeros.Add(Duration::zero());
  EXPECT_EQ(zeros.Quantile(0.5), Duration::zero());
}

TEST(HistogramTest, TimeSeriesStaysBounded) {
  TimeSeries series(0, 100);
  for (int64_t s = 0; s < 100'000; ++s) series.Add(s * 1'000'000'000, TimeSeries::kRequested);
  EXPECT_LE(series.points().size(), 100u);
  uint64_t total = 0;
  for (const auto& p : series.points()) total += p[TimeSeries::kRequested];
  EXPECT_EQ(total, 100'000u);
  EXPECT_GE(series.interval_ns() * 100, int64_t{100'000} * 1'000'000'000);
}

}  // namespace
}  // namespace toolops
