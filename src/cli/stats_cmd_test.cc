// src/cli/stats_cmd_test.cc

#include "cli/stats_cmd.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>

namespace toolops::cli {
namespace {

constexpr char kProcessA[] = R"(# HELP toolops_calls_total Calls by outcome.
# TYPE toolops_calls_total counter
toolops_calls_total{tool="web_search",outcome="fresh_hit"} 90
toolops_calls_total{tool="web_search",outcome="semantic_hit"} 5
toolops_calls_total{tool="web_search",outcome="upstream_success"} 4
toolops_calls_total{tool="web_search",outcome="upstream_error"} 1
toolops_calls_total{tool="odd \"name\"",outcome="coalesced"} 2 1700000000000
toolops_upstream_calls_total{tool="web_search"} 5
toolops_upstream_attempts_total{tool="web_search"} 7
toolops_retries_total{tool="web_search"} 2
toolops_calls_saved_total{tool="web_search"} 95
toolops_money_saved_total{tool="web_search"} 0.95
toolops_cost_per_call{tool="web_search"} 0.01
toolops_call_duration_seconds_bucket{tool="web_search",le="0.001"} 90
toolops_call_duration_seconds_bucket{tool="web_search",le="+Inf"} 100
toolops_call_duration_seconds_sum{tool="web_search"} 2.5
toolops_call_duration_seconds_count{tool="web_search"} 100
toolops_breaker_state{tool="web_search"} 0
toolops_store_errors_total{tool="web_search"} 3
toolops_process_start_time_seconds 1700000000
some_other_metric{tool="web_search"} 12345
)";

constexpr char kProcessB[] = R"(toolops_calls_total{tool="web_search",outcome="fresh_hit"} 10
toolops_calls_total{tool="web_search",outcome="rejected_by_breaker"} 6
toolops_upstream_calls_total{tool="web_search"} 1
toolops_money_saved_total{tool="web_search"} 0.05
toolops_calls_saved_total{tool="web_search"} 5
toolops_breaker_state{tool="web_search"} 1
toolops_breaker_transitions_total{tool="web_search"} 1
toolops_calls_total{tool="pay",outcome="upstream_success"} 3
toolops_breaker_state{tool="pay"} 2
)";

TEST(StatsTest, SumsTheContractsMetricsOverEndpoints) {
  FleetStats stats;
  ASSERT_TRUE(AddPrometheusText(kProcessA, &stats).ok());
  ASSERT_TRUE(AddPrometheusText(kProcessB, &stats).ok());
  EXPECT_EQ(stats.processes, 2);
  ASSERT_EQ(stats.tools.count("web_search"), 1u);
  const ToolStats& t = stats.tools.at("web_search");
  EXPECT_DOUBLE_EQ(t.total_calls(), 116);
  EXPECT_DOUBLE_EQ(t.calls.at("fresh_hit"), 100);
  EXPECT_DOUBLE_EQ(t.served_without_upstream(), 105);
  EXPECT_DOUBLE_EQ(t.upstream_calls, 6);
  EXPECT_DOUBLE_EQ(t.upstream_attempts, 7);
  EXPECT_DOUBLE_EQ(t.retries, 2);
  EXPECT_DOUBLE_EQ(t.calls_saved, 100);
  EXPECT_DOUBLE_EQ(t.money_saved, 1.0);
  EXPECT_DOUBLE_EQ(t.cost_per_call, 0.01);
  EXPECT_DOUBLE_EQ(t.duration_sum / t.duration_count, 0.025);
  EXPECT_DOUBLE_EQ(t.duration_buckets.at(0.001), 90);
  EXPECT_EQ(t.breaker_state, 1);  // Open in one process: open.
  EXPECT_DOUBLE_EQ(t.breaker_transitions, 1);
  EXPECT_DOUBLE_EQ(t.store_errors, 3);
  EXPECT_EQ(stats.tools.at("pay").breaker_state, 2);
  // Escaped quotes in a label value; a timestamp after the value.
  EXPECT_DOUBLE_EQ(stats.tools.at("odd \"name\"").calls.at("coalesced"), 2);
  // Names outside the contract are ignored.
  EXPECT_EQ(stats.tools.size(), 3u);

  std::string table = FormatStatsTable(stats, false);
  EXPECT_NE(table.find("web_search"), std::string::npos) << table;
  EXPECT_NE(table.find("open"), std::string::npos) << table;
  EXPECT_NE(table.find("2 processes"), std::string::npos) << table;
  // Between two reads 10 s apart, web_search's calls went from 100 to 116.
  FleetStats before;
  ASSERT_TRUE(AddPrometheusText(kProcessA, &before).ok());
  std::string rates = FormatStatsTable(stats, false, &before, 10);
  EXPECT_NE(rates.find("CALLS/S"), std::string::npos) << rates;
  EXPECT_NE(rates.find("  1.6  "), std::string::npos) << rates;
  std::string json = FormatStatsJson(stats);
  EXPECT_NE(json.find("\"money_saved\": 1.0"), std::string::npos) << json;
}

TEST(StatsTest, MalformedTextIsAnErrorNamingTheLine) {
  FleetStats stats;
  Status s =
      AddPrometheusText("# ok\ntoolops_calls_total{tool=\"a\",outcome=\"fresh_hit\"} x\n", &stats);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("line 2"), std::string::npos) << s.message();
  Status labels = AddPrometheusText("toolops_calls_total{tool=\"a} 1\n", &stats);
  ASSERT_FALSE(labels.ok());
  EXPECT_NE(labels.message().find("line 1: malformed labels"), std::string::npos);
}

// Serves one fixed body over HTTP/1.0 to every connection, on a free port.
class TinyHttpServer {
 public:
  explicit TinyHttpServer(std::string body) : body_(std::move(body)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 16);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      while (true) {
        int c = accept(fd_, nullptr, nullptr);
        if (c < 0 || stop_) {
          if (c >= 0) close(c);
          return;
        }
        char buffer[4096];
        (void)read(c, buffer, sizeof(buffer));
        std::string reply =
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
            "Content-Length: " +
            std::to_string(body_.size()) + "\r\n\r\n" + body_;
        (void)write(c, reply.data(), reply.size());
        close(c);
      }
    });
  }
  ~TinyHttpServer() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  int port() const { return port_; }

 private:
  std::string body_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST(StatsTest, ReadsARunningEndpointAndSumsTwo) {
  TinyHttpServer a(kProcessA);
  TinyHttpServer b(kProcessB);
  FleetStats stats;
  for (int port : {a.port(), b.port()}) {
    Result<std::string> text =
        FetchText("http://127.0.0.1:" + std::to_string(port) + "/metrics", 2000);
    ASSERT_TRUE(text.ok()) << text.status().message();
    ASSERT_TRUE(AddPrometheusText(*text, &stats).ok());
  }
  EXPECT_DOUBLE_EQ(stats.tools.at("web_search").money_saved, 1.0);
  EXPECT_EQ(stats.processes, 2);
}

TEST(StatsTest, EndpointThatDoesNotAnswerIsUnavailable) {
  Result<std::string> text = FetchText("http://127.0.0.1:1/metrics", 500);
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(text.status().message().find("127.0.0.1:1"), std::string::npos);
}

}  // namespace
}  // namespace toolops::cli
