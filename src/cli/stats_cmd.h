// src/cli/stats_cmd.h
//
// `toolops stats`: what running agents saved and how their tools behave,
// read from their metrics endpoints or from the snapshots they publish to a
// shared store (Prometheus text, the names of the metrics contract, either
// way) and summed over processes: counters and histograms add, a breaker's
// state is the worst any process reports.

#ifndef TOOLOPS_CLI_STATS_CMD_H_
#define TOOLOPS_CLI_STATS_CMD_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "toolops/status.h"

namespace toolops::cli {

extern const char kStatsUsage[];

struct ToolStats {
  std::map<std::string, double> calls;  // By outcome (fresh_hit, upstream_success, ...).
  double upstream_calls = 0;
  double upstream_attempts = 0;
  double retries = 0;
  double calls_saved = 0;
  double money_saved = 0;
  double cost_per_call = 0;
  double duration_sum = 0;    // Seconds.
  double duration_count = 0;  // Calls timed.
  // le -> cumulative count.
  std::map<double, double> duration_buckets;
  // -1 unknown, 0 closed, 1 open, 2 half-open.
  int breaker_state = -1;
  double breaker_transitions = 0;
  double store_errors = 0;

  double total_calls() const;
  // Hits of every kind (fresh, semantic, stale, stale-if-error) and coalesced.
  double served_without_upstream() const;
};

struct FleetStats {
  std::map<std::string, ToolStats> tools;
  int processes = 0;  // Endpoints and published snapshots read.
};

// Adds what `text` (Prometheus text exposition 0.0.4) says to *into.
// Unknown metric names are ignored; malformed lines are errors naming the
// line.
Status AddPrometheusText(std::string_view text, FleetStats* into);

// GET `url` (http:// only needs libcurl's defaults), within `timeout_ms`.
Result<std::string> FetchText(const std::string& url, long timeout_ms);

// With `previous` (read `seconds` earlier), a column of calls per second.
std::string FormatStatsTable(const FleetStats& stats, bool colour,
                             const FleetStats* previous = nullptr, double seconds = 0);
std::string FormatStatsJson(const FleetStats& stats);

int StatsMain(const std::vector<std::string>& args);

}  // namespace toolops::cli

#endif  // TOOLOPS_CLI_STATS_CMD_H_
