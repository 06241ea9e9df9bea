// include/toolops/metrics.h
//
// Metrics of every wrapped tool alive in the process: counters by outcome,
// upstream calls and attempts, calls and money saved, call latency
// histograms, breaker state and transitions, store errors.
//
//   std::vector<toolops::ToolMetrics> all = toolops::CollectToolMetrics();
//   std::string text = toolops::PrometheusText();          // GET /metrics body
//   auto server = toolops::MetricsServer::Start("127.0.0.1", 9464).value();
//
// Labels are bounded: the tool's name, the outcome, never arguments or ids.
// Tools that share a name (wrapped twice) are summed into one series.
//
// Reading metrics never blocks calls: calls do not touch the registry, and
// counters are read with relaxed loads. All functions are safe for
// concurrent use.

#ifndef TOOLOPS_METRICS_H_
#define TOOLOPS_METRICS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "toolops/stats.h"
#include "toolops/status.h"

namespace toolops {

class ToolCore;

// Every ToolCore alive now (each registers itself when created and leaves
// when destroyed). The pointers keep them alive until dropped.
std::vector<std::shared_ptr<ToolCore>> LiveTools();

// The metrics of one tool (or of every live tool with that name).
struct ToolMetrics {
  std::string tool;
  StatsSnapshot counters;
  HistogramSnapshot latency;
  // Upstream calls led: upstream_success + upstream_error.
  uint64_t upstream_calls = 0;
  // The policy's cost of one upstream call, and calls saved times it.
  double cost_per_call = 0;
  double money_saved = 0;
  // 0 closed, 1 open, 2 half-open (the worst of same-named tools).
  int breaker_state = 0;
  std::string breaker_state_name = "closed";
  uint64_t breaker_transitions = 0;
  // Instances summed into this entry.
  int instances = 0;
};

// The metrics of every live tool, one entry per tool name, sorted by name.
std::vector<ToolMetrics> CollectToolMetrics();

// Prometheus text exposition (format 0.0.4) of CollectToolMetrics(): the
// names and labels of the metrics contract (toolops_calls_total{tool,outcome},
// toolops_upstream_calls_total, toolops_upstream_attempts_total,
// toolops_retries_total, toolops_calls_saved_total, toolops_money_saved_total,
// toolops_cost_per_call, toolops_call_duration_seconds (histogram),
// toolops_breaker_state, toolops_breaker_transitions_total,
// toolops_store_errors_total, toolops_process_start_time_seconds), plus the
// span exporter's counters (toolops_spans_*_total).
std::string PrometheusText();

// An HTTP endpoint serving PrometheusText() at GET /metrics (404 for any
// other path, 405 for other methods), on its own thread. Opt-in: nothing
// listens unless Start() is called. One request per connection.
class MetricsServer {
 public:
  // Binds `host` (an IP address, e.g. "127.0.0.1" or "0.0.0.0") and `port`
  // (0: a free port; port() says which) and starts serving. InvalidArgument
  // for a host that is not an address; Unavailable when the port cannot be
  // bound (in use, no permission), naming it.
  static Result<std::unique_ptr<MetricsServer>> Start(const std::string& host, uint16_t port);
  // Stops listening and joins the thread.
  ~MetricsServer();
  uint16_t port() const;
  const std::string& host() const;
  // Requests answered so far.
  uint64_t requests() const;

  class Impl;

 private:
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace toolops

#endif  // TOOLOPS_METRICS_H_
