// src/replay/report.h
//
// What a replay reports, in three forms: a table for the terminal (one
// column per policy, side by side), one JSON object for programs, and a
// self-contained HTML page (inline SVG, no script or network) with charts of
// calls over time, savings by kind and the latency distribution.

#ifndef TOOLOPS_REPLAY_REPORT_H_
#define TOOLOPS_REPLAY_REPORT_H_

#include <string>
#include <vector>

#include "replay/replay.h"

namespace toolops {

// Where the calls came from, for the heading.
struct TraceInfo {
  std::string name;  // A file name, or "sample (seed 1)".
  uint64_t lines = 0;
  uint64_t malformed = 0;
  std::vector<TraceLineError> errors;
};

std::string FormatReportTable(const TraceInfo& trace, const std::vector<ReplayReport>& reports);
std::string FormatReportJson(const TraceInfo& trace, const std::vector<ReplayReport>& reports);
std::string FormatReportHtml(const TraceInfo& trace, const std::vector<ReplayReport>& reports);

// "1h23m", "4m05s", "12.3s", "850ms".
std::string FormatTraceDuration(Duration d);
// "12,345".
std::string FormatCount(uint64_t n);

}  // namespace toolops

#endif  // TOOLOPS_REPLAY_REPORT_H_
