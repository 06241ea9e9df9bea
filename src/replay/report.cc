// src/replay/report.cc

#include "replay/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

namespace toolops {
namespace {

using Json = nlohmann::json;

std::string Printf(const char* format, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), format, value);
  return buffer;
}

std::string Percent(double ratio) { return Printf("%.1f%%", 100 * ratio); }
std::string Money(double amount) { return Printf("$%.2f", amount); }

double Ms(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string LatencyText(Duration d) {
  double ms = Ms(d);
  if (ms == 0) return "0";
  if (ms < 1) return Printf("%.2fms", ms);
  if (ms < 1000) return Printf("%.0fms", ms);
  return Printf("%.2fs", ms / 1000);
}

std::string Percentiles(const ReplayHistogram& h) {
  return LatencyText(h.Quantile(0.5)) + " / " + LatencyText(h.Quantile(0.9)) + " / " +
         LatencyText(h.Quantile(0.99));
}

std::string CountOf(uint64_t n, uint64_t of) {
  return FormatCount(n) + (of == 0 ? "" : " (" + Percent(static_cast<double>(n) / of) + ")");
}

struct Row {
  std::string label;
  std::vector<std::string> values;
  bool heading = false;
};

std::vector<Row> Rows(const std::vector<ReplayReport>& reports) {
  std::vector<Row> rows;
  auto add = [&](std::string label, auto value) {
    Row row{std::move(label), {}};
    for (const ReplayReport& r : reports) row.values.push_back(value(r));
    rows.push_back(std::move(row));
  };
  add("policy", [](const ReplayReport& r) { return r.policy; });
  add("requested calls", [](const ReplayReport& r) { return FormatCount(r.requested); });
  add("upstream calls", [](const ReplayReport& r) { return CountOf(r.upstream, r.requested); });
  add("calls saved", [](const ReplayReport& r) { return CountOf(r.saved.total(), r.requested); });
  add("  exact", [](const ReplayReport& r) { return FormatCount(r.saved.exact); });
  add("  semantic", [](const ReplayReport& r) { return FormatCount(r.saved.semantic); });
  add("  coalesced", [](const ReplayReport& r) { return FormatCount(r.saved.coalesced); });
  add("  stale", [](const ReplayReport& r) { return FormatCount(r.saved.stale); });
  // Rows for what some replay used; the default replay shows none of them.
  auto any = [&](auto used) {
    return std::any_of(reports.begin(), reports.end(),
                       [&](const ReplayReport& r) { return static_cast<bool>(used(r)); });
  };
  if (any([](const ReplayReport& r) { return !r.shared_store.empty() || r.workers > 1; })) {
    add("workers", [](const ReplayReport& r) {
      return FormatCount(r.workers) +
             (r.shared_store.empty() ? " (no shared store)" : " sharing " + r.shared_store);
    });
    add("  hits from the shared store",
        [](const ReplayReport& r) { return FormatCount(r.shared_hits); });
    add("  coalesced across workers",
        [](const ReplayReport& r) { return FormatCount(r.remote_coalesced); });
  }
  add("attainable (bound)", [](const ReplayReport& r) { return FormatCount(r.attainable()); });
  add("saved / bound", [](const ReplayReport& r) { return Percent(r.bound_ratio()); });
  add("cost without", [](const ReplayReport& r) { return Money(r.cost_without); });
  add("cost with", [](const ReplayReport& r) { return Money(r.cost_with); });
  add("money saved", [](const ReplayReport& r) {
    return Money(r.money_saved()) +
           (r.cost_without > 0 ? " (" + Percent(r.money_saved() / r.cost_without) + ")" : "");
  });
  add("wrong answers", [](const ReplayReport& r) {
    return FormatCount(r.wrong) + " (" + Percent(r.wrong_ratio()) + " of " +
           FormatCount(r.labelled_served) + ")";
  });
  if (any([](const ReplayReport& r) { return r.wrong > 0; })) {
    add("  distinct (question, answer)",
        [](const ReplayReport& r) { return FormatCount(r.wrong_distinct); });
  }
  add("failed calls with", [](const ReplayReport& r) { return FormatCount(r.failed_with); });
  add("failed calls without", [](const ReplayReport& r) { return FormatCount(r.failed_without); });
  add("retries", [](const ReplayReport& r) { return FormatCount(r.retries); });
  add("breaker openings", [](const ReplayReport& r) {
    return FormatCount(r.breaker_openings) + " (" + FormatCount(r.rejected_by_breaker) +
           " rejected)";
  });
  if (any([](const ReplayReport& r) {
        return r.timeouts_set || r.attempt_timeouts > 0 || r.deadline_exceeded > 0;
      })) {
    add("attempt timeouts", [](const ReplayReport& r) { return FormatCount(r.attempt_timeouts); });
    add("calls past deadline",
        [](const ReplayReport& r) { return FormatCount(r.deadline_exceeded); });
  }
  if (any([](const ReplayReport& r) { return r.limit_set || r.rejected_by_limiter > 0; })) {
    add("limiter rejections",
        [](const ReplayReport& r) { return FormatCount(r.rejected_by_limiter); });
  }
  add("guard refusals", [](const ReplayReport& r) { return FormatCount(r.guard_refusals); });
  add("latency with p50/p90/p99",
      [](const ReplayReport& r) { return Percentiles(r.latency_with); });
  add("latency without p50/p90/p99",
      [](const ReplayReport& r) { return Percentiles(r.latency_without); });
  add("replay wall time", [](const ReplayReport& r) {
    return Printf("%.1fs", r.wall_seconds) +
           (r.speed > 0 ? " (speed " + Printf("%g", r.speed) + ")" : " (full speed)");
  });
  return rows;
}

Json LatencyJson(const ReplayHistogram& h) {
  return Json{{"p50", Ms(h.Quantile(0.5))},  {"p90", Ms(h.Quantile(0.9))},
              {"p99", Ms(h.Quantile(0.99))}, {"max", Ms(h.max())},
              {"mean", Ms(h.mean())},        {"count", h.count()}};
}

Json SavedJson(const SavedByKind& s) {
  return Json{{"total", s.total()},
              {"exact", s.exact},
              {"semantic", s.semantic},
              {"coalesced", s.coalesced},
              {"stale", s.stale}};
}

Json ReportJson(const ReplayReport& r) {
  Json j;
  j["policy"] = r.policy;
  j["requested"] = r.requested;
  j["upstream"] = r.upstream;
  j["saved"] = SavedJson(r.saved);
  j["saved_ratio"] = r.saved_ratio();
  j["attainable"] = r.attainable();
  j["ttl_windows"] = r.ttl_windows;
  j["bound_ratio"] = r.bound_ratio();
  j["served"] = r.served;
  j["money"] = {{"without", r.cost_without}, {"with", r.cost_with}, {"saved", r.money_saved()}};
  j["wrong"] = {{"answers", r.wrong},
                {"distinct", r.wrong_distinct},
                {"labelled_hits", r.labelled_served},
                {"ratio", r.wrong_ratio()}};
  j["failed"] = {{"with", r.failed_with}, {"without", r.failed_without}};
  j["retries"] = r.retries;
  j["breaker"] = {{"openings", r.breaker_openings}, {"rejected", r.rejected_by_breaker}};
  j["guard_refusals"] = r.guard_refusals;
  j["rate_limited"] = r.rate_limited;
  j["timeouts"] = {{"attempt_timeouts", r.attempt_timeouts},
                   {"deadline_exceeded", r.deadline_exceeded}};
  j["rejected_by_limiter"] = r.rejected_by_limiter;
  j["shared"] = {{"workers", r.workers},
                 {"store", r.shared_store.empty() ? Json(nullptr) : Json(r.shared_store)},
                 {"hits", r.shared_hits},
                 {"coalesced_across_workers", r.remote_coalesced}};
  j["latency_ms"] = {{"with", LatencyJson(r.latency_with)},
                     {"without", LatencyJson(r.latency_without)}};
  Json tools = Json::array();
  for (const ToolReport& t : r.tools) {
    tools.push_back({{"tool", t.tool},
                     {"requested", t.requested},
                     {"upstream", t.upstream},
                     {"saved", SavedJson(t.saved)},
                     {"money", {{"without", t.cost_without}, {"with", t.cost_with}}},
                     {"wrong", t.wrong},
                     {"retries", t.retries},
                     {"breaker_openings", t.breaker_openings},
                     {"rejected_by_breaker", t.rejected_by_breaker},
                     {"rate_limited", t.rate_limited},
                     {"attempt_timeouts", t.attempt_timeouts},
                     {"deadline_exceeded", t.deadline_exceeded},
                     {"rejected_by_limiter", t.rejected_by_limiter},
                     {"shared_hits", t.shared_hits},
                     {"remote_coalesced", t.remote_coalesced},
                     {"failed", {{"with", t.failed_with}, {"without", t.failed_without}}}});
  }
  j["tools"] = tools;
  Json series;
  series["start"] = FormatRfc3339(r.series.start_ns());
  series["interval_s"] = static_cast<double>(r.series.interval_ns()) / 1e9;
  const char* names[] = {"requested", "upstream", "saved", "failed"};
  for (int f = 0; f < TimeSeries::kFields; ++f) {
    Json values = Json::array();
    for (const auto& p : r.series.points()) values.push_back(p[f]);
    series[names[f]] = values;
  }
  j["series"] = series;
  j["run"] = {{"wall_seconds", r.wall_seconds},
              {"speed", r.speed > 0 ? Json(r.speed) : Json("max")},
              {"threads", r.peak_threads},
              {"clock_jumps", r.clock_jumps}};
  return j;
}

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

constexpr const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                    "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};

std::string Colour(size_t i) { return kColours[i % 8]; }

// Calls per interval over trace time: requested (grey) and each policy's
// upstream calls.
std::string CallsOverTimeSvg(const std::vector<ReplayReport>& reports) {
  const double w = 760, h = 260, left = 60, bottom = 30, top = 10, right = 10;
  const ReplayReport& first = reports.front();
  // Put every series on the coarsest interval among the reports.
  int64_t interval = 0;
  for (const ReplayReport& r : reports) interval = std::max(interval, r.series.interval_ns());
  auto resample = [&](const ReplayReport& r, int field) {
    std::vector<double> out;
    int64_t factor = interval / r.series.interval_ns();
    for (size_t i = 0; i < r.series.points().size(); ++i) {
      size_t j = i / factor;
      if (j >= out.size()) out.resize(j + 1);
      out[j] += r.series.points()[i][field];
    }
    return out;
  };
  std::vector<double> requested = resample(first, TimeSeries::kRequested);
  std::vector<std::vector<double>> upstream;
  for (const ReplayReport& r : reports) upstream.push_back(resample(r, TimeSeries::kUpstream));
  size_t n = requested.size();
  for (const auto& u : upstream) n = std::max(n, u.size());
  double peak = 1;
  for (double v : requested) peak = std::max(peak, v);
  for (const auto& u : upstream) {
    for (double v : u) peak = std::max(peak, v);
  }
  auto x = [&](size_t i) { return left + (w - left - right) * (n <= 1 ? 0 : double(i) / (n - 1)); };
  auto y = [&](double v) { return top + (h - top - bottom) * (1 - v / peak); };
  auto path = [&](const std::vector<double>& values, const std::string& colour, bool fill) {
    std::string d;
    for (size_t i = 0; i < n; ++i) {
      double v = i < values.size() ? values[i] : 0;
      d += (i == 0 ? "M" : "L") + Printf("%.1f", x(i)) + "," + Printf("%.1f", y(v)) + " ";
    }
    if (fill) {
      d += "L" + Printf("%.1f", x(n - 1)) + "," + Printf("%.1f", y(0)) + " L" +
           Printf("%.1f", x(0)) + "," + Printf("%.1f", y(0)) + " Z";
      return "<path d=\"" + d + "\" fill=\"#ddd\" stroke=\"#bbb\"/>";
    }
    return "<path d=\"" + d + "\" fill=\"none\" stroke=\"" + colour + "\" stroke-width=\"1.5\"/>";
  };
  std::string svg = "<svg viewBox=\"0 0 " + Printf("%.0f", w) + " " + Printf("%.0f", h) +
                    "\" width=\"" + Printf("%.0f", w) + "\" height=\"" + Printf("%.0f", h) +
                    "\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"11\">";
  svg += path(requested, "", true);
  for (size_t i = 0; i < upstream.size(); ++i) svg += path(upstream[i], Colour(i), false);
  // Axes and labels.
  svg += "<line x1=\"" + Printf("%.0f", left) + "\" y1=\"" + Printf("%.0f", h - bottom) +
         "\" x2=\"" + Printf("%.0f", w - right) + "\" y2=\"" + Printf("%.0f", h - bottom) +
         "\" stroke=\"#333\"/>";
  svg += "<line x1=\"" + Printf("%.0f", left) + "\" y1=\"" + Printf("%.0f", top) + "\" x2=\"" +
         Printf("%.0f", left) + "\" y2=\"" + Printf("%.0f", h - bottom) + "\" stroke=\"#333\"/>";
  svg += "<text x=\"4\" y=\"" + Printf("%.0f", top + 10) + "\">" + FormatCount(peak) + "</text>";
  svg += "<text x=\"4\" y=\"" + Printf("%.0f", h - bottom) + "\">0</text>";
  Duration total(interval * static_cast<int64_t>(n));
  svg += "<text x=\"" + Printf("%.0f", w - right - 120) + "\" y=\"" + Printf("%.0f", h - 8) +
         "\">trace time: " + FormatTraceDuration(total) + "</text>";
  svg += "<text x=\"" + Printf("%.0f", left) + "\" y=\"" + Printf("%.0f", h - 8) + "\">calls per " +
         FormatTraceDuration(Duration(interval)) + "</text>";
  svg += "</svg>";
  return svg;
}

// Stacked bars: saved calls by kind, per policy, as a share of requests.
std::string SavingsSvg(const std::vector<ReplayReport>& reports) {
  const double w = 760, bar = 26, gap = 14, left = 170, right = 20;
  double h = 30 + reports.size() * (bar + gap) + 30;
  const char* kinds[] = {"exact", "semantic", "coalesced", "stale"};
  const char* colours[] = {"#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd"};
  std::string svg = "<svg viewBox=\"0 0 " + Printf("%.0f", w) + " " + Printf("%.0f", h) +
                    "\" width=\"" + Printf("%.0f", w) + "\" height=\"" + Printf("%.0f", h) +
                    "\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"11\">";
  for (size_t i = 0; i < reports.size(); ++i) {
    const ReplayReport& r = reports[i];
    double yy = 20 + i * (bar + gap);
    uint64_t values[] = {r.saved.exact, r.saved.semantic, r.saved.coalesced, r.saved.stale};
    double xx = left;
    svg += "<text x=\"4\" y=\"" + Printf("%.0f", yy + bar * 0.65) + "\">" +
           Escape(r.policy.substr(0, 28)) + "</text>";
    for (int k = 0; k < 4; ++k) {
      double width = r.requested == 0 ? 0 : (w - left - right) * values[k] / double(r.requested);
      svg += "<rect x=\"" + Printf("%.1f", xx) + "\" y=\"" + Printf("%.1f", yy) + "\" width=\"" +
             Printf("%.1f", width) + "\" height=\"" + Printf("%.0f", bar) + "\" fill=\"" +
             colours[k] + "\"><title>" + kinds[k] + ": " + FormatCount(values[k]) +
             "</title></rect>";
      xx += width;
    }
    // The attainable bound.
    double bx =
        left + (r.requested == 0 ? 0 : (w - left - right) * r.attainable() / double(r.requested));
    svg += "<line x1=\"" + Printf("%.1f", bx) + "\" y1=\"" + Printf("%.1f", yy - 3) + "\" x2=\"" +
           Printf("%.1f", bx) + "\" y2=\"" + Printf("%.1f", yy + bar + 3) +
           "\" stroke=\"#000\" stroke-dasharray=\"3,2\"/>";
    svg += "<text x=\"" + Printf("%.1f", std::min(xx + 4, w - 60)) + "\" y=\"" +
           Printf("%.0f", yy + bar * 0.65) + "\">" + Percent(r.saved_ratio()) + "</text>";
  }
  double ly = h - 12;
  double lx = left;
  for (int k = 0; k < 4; ++k) {
    svg += "<rect x=\"" + Printf("%.0f", lx) + "\" y=\"" + Printf("%.0f", ly - 9) +
           "\" width=\"10\" height=\"10\" fill=\"" + colours[k] + "\"/><text x=\"" +
           Printf("%.0f", lx + 14) + "\" y=\"" + Printf("%.0f", ly) + "\">" + kinds[k] + "</text>";
    lx += 90;
  }
  svg += "<text x=\"" + Printf("%.0f", lx) + "\" y=\"" + Printf("%.0f", ly) +
         "\">- - attainable bound (share of requested calls)</text>";
  svg += "</svg>";
  return svg;
}

// Cumulative latency distributions on a log axis from 1 ms to the largest.
std::string LatencySvg(const std::vector<ReplayReport>& reports) {
  const double w = 760, h = 280, left = 50, bottom = 40, top = 10, right = 10;
  double max_ms = 10;
  for (const ReplayReport& r : reports) {
    max_ms = std::max({max_ms, Ms(r.latency_with.max()), Ms(r.latency_without.max())});
  }
  double lo = std::log10(1.0), hi = std::log10(max_ms);
  auto x = [&](double ms) {
    double v = std::log10(std::max(ms, 1.0));
    return left + (w - left - right) * (v - lo) / (hi - lo);
  };
  auto y = [&](double share) { return top + (h - top - bottom) * (1 - share); };
  auto curve = [&](const ReplayHistogram& hist, const std::string& colour, bool dashed) {
    if (hist.count() == 0) return std::string();
    std::string d = "M" + Printf("%.1f", x(1)) + "," + Printf("%.1f", y(0)) + " ";
    uint64_t seen = 0;
    for (const ReplayHistogram::Bucket& b : hist.Buckets()) {
      seen += b.count;
      d += "L" + Printf("%.1f", x(Ms(b.high))) + "," +
           Printf("%.1f", y(double(seen) / hist.count())) + " ";
    }
    return "<path d=\"" + d + "\" fill=\"none\" stroke=\"" + colour + "\" stroke-width=\"1.5\"" +
           (dashed ? " stroke-dasharray=\"5,3\"" : "") + "/>";
  };
  std::string svg = "<svg viewBox=\"0 0 " + Printf("%.0f", w) + " " + Printf("%.0f", h) +
                    "\" width=\"" + Printf("%.0f", w) + "\" height=\"" + Printf("%.0f", h) +
                    "\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"11\">";
  for (double ms = 1; ms <= max_ms * 1.001; ms *= 10) {
    svg += "<line x1=\"" + Printf("%.1f", x(ms)) + "\" y1=\"" + Printf("%.0f", top) + "\" x2=\"" +
           Printf("%.1f", x(ms)) + "\" y2=\"" + Printf("%.0f", h - bottom) +
           "\" stroke=\"#eee\"/><text x=\"" + Printf("%.1f", x(ms) - 10) + "\" y=\"" +
           Printf("%.0f", h - bottom + 14) + "\">" + LatencyText(Duration(int64_t(ms * 1e6))) +
           "</text>";
  }
  for (double s : {0.0, 0.5, 0.9, 1.0}) {
    svg += "<text x=\"4\" y=\"" + Printf("%.1f", y(s) + 4) + "\">" + Percent(s) + "</text>";
    svg += "<line x1=\"" + Printf("%.0f", left) + "\" y1=\"" + Printf("%.1f", y(s)) + "\" x2=\"" +
           Printf("%.0f", w - right) + "\" y2=\"" + Printf("%.1f", y(s)) + "\" stroke=\"#eee\"/>";
  }
  svg += curve(reports.front().latency_without, "#777", true);
  for (size_t i = 0; i < reports.size(); ++i) {
    svg += curve(reports[i].latency_with, Colour(i), false);
  }
  svg += "<text x=\"" + Printf("%.0f", left) + "\" y=\"" + Printf("%.0f", h - 6) +
         "\">share of calls answered within (log scale; a hit takes no trace time and counts "
         "from the left edge); dashed: without the middleware</text>";
  svg += "</svg>";
  return svg;
}

}  // namespace

std::string FormatCount(uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

std::string FormatTraceDuration(Duration d) {
  double s = std::chrono::duration<double>(d).count();
  char buffer[64];
  if (s < 1) {
    std::snprintf(buffer, sizeof(buffer), "%.0fms", s * 1000);
  } else if (s < 60) {
    std::snprintf(buffer, sizeof(buffer), "%.1fs", s);
  } else if (s < 3600) {
    std::snprintf(buffer, sizeof(buffer), "%dm%02ds", int(s) / 60, int(s) % 60);
  } else {
    std::snprintf(buffer, sizeof(buffer), "%dh%02dm", int(s) / 3600, int(s) / 60 % 60);
  }
  return buffer;
}

std::string FormatReportTable(const TraceInfo& trace, const std::vector<ReplayReport>& reports) {
  std::string out;
  if (reports.empty()) return out;
  const ReplayReport& first = reports.front();
  out += "trace: " + trace.name + ": " + FormatCount(first.requested) + " calls over " +
         FormatTraceDuration(Duration(first.last_ns - first.first_ns)) + " (" +
         FormatRfc3339(first.first_ns).substr(0, 19) + "Z to " +
         FormatRfc3339(first.last_ns).substr(0, 19) + "Z)";
  if (trace.malformed > 0) {
    out += ", " + FormatCount(trace.malformed) + " malformed lines skipped";
  }
  out += "\n";
  for (const TraceLineError& e : trace.errors) {
    out += "  line " + std::to_string(e.line) + ": " + e.message + "\n";
  }
  if (trace.malformed > trace.errors.size()) {
    out += "  ... and " + FormatCount(trace.malformed - trace.errors.size()) + " more\n";
  }
  out += "\n";
  std::vector<Row> rows = Rows(reports);
  size_t label_width = 0;
  std::vector<size_t> widths(reports.size(), 0);
  for (const Row& row : rows) {
    label_width = std::max(label_width, row.label.size());
    for (size_t i = 0; i < row.values.size(); ++i) {
      widths[i] = std::max(widths[i], row.values[i].size());
    }
  }
  for (const Row& row : rows) {
    std::string line = row.label + std::string(label_width + 2 - row.label.size(), ' ');
    for (size_t i = 0; i < row.values.size(); ++i) {
      line += std::string(widths[i] - row.values[i].size(), ' ') + row.values[i] + "   ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  if (reports.size() == 1 && first.tools.size() > 1) {
    out += "\nper tool           requested   upstream      saved  money saved   wrong\n";
    for (const ToolReport& t : first.tools) {
      char line[256];
      std::snprintf(line, sizeof(line), "%-16s %11s %10s %10s %12s %7s\n",
                    t.tool.substr(0, 16).c_str(), FormatCount(t.requested).c_str(),
                    FormatCount(t.upstream).c_str(),
                    Percent(t.requested == 0 ? 0 : double(t.saved.total()) / t.requested).c_str(),
                    Money(t.cost_without - t.cost_with).c_str(), FormatCount(t.wrong).c_str());
      out += line;
    }
  }
  for (const ReplayReport& r : reports) {
    if (r.wrong_examples.empty()) continue;
    out += "\nwrong answers under " + r.policy + " (first " +
           std::to_string(r.wrong_examples.size()) + "):\n";
    for (const WrongAnswer& w : r.wrong_examples) {
      out += "  " + w.tool + " " + w.asked + " [" + w.asked_intent + "]\n    got the answer to " +
             w.source + " [" + w.source_intent + "]\n";
    }
  }
  out +=
      "\nsaved / bound: calls saved over the attainable bound (requested calls minus the\n"
      "distinct intents per TTL window). Wrong answers: served answers whose source call\n"
      "had another intent label. Latency is in trace time; a cache hit takes none.\n";
  return out;
}

std::string FormatReportJson(const TraceInfo& trace, const std::vector<ReplayReport>& reports) {
  Json j;
  Json t;
  t["name"] = trace.name;
  t["lines"] = trace.lines;
  t["malformed"] = trace.malformed;
  Json errors = Json::array();
  for (const TraceLineError& e : trace.errors) {
    errors.push_back({{"line", e.line}, {"message", e.message}});
  }
  t["errors"] = errors;
  if (!reports.empty()) {
    t["calls"] = reports.front().requested;
    t["first"] = FormatRfc3339(reports.front().first_ns);
    t["last"] = FormatRfc3339(reports.front().last_ns);
    t["duration_s"] = double(reports.front().last_ns - reports.front().first_ns) / 1e9;
  }
  j["trace"] = t;
  Json list = Json::array();
  for (const ReplayReport& r : reports) list.push_back(ReportJson(r));
  j["reports"] = list;
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

std::string FormatReportHtml(const TraceInfo& trace, const std::vector<ReplayReport>& reports) {
  std::string out =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<title>toolops replay</title><style>"
      "body{font-family:sans-serif;max-width:800px;margin:2em auto;color:#222}"
      "table{border-collapse:collapse}td,th{padding:2px 10px;text-align:right}"
      "td:first-child,th:first-child{text-align:left}tr:nth-child(even){background:#f4f4f4}"
      "h2{margin-top:1.6em}.legend span{display:inline-block;margin-right:1.2em}"
      "</style></head><body>\n";
  out += "<h1>toolops replay</h1>\n";
  if (reports.empty()) return out + "<p>No calls.</p></body></html>\n";
  const ReplayReport& first = reports.front();
  out += "<p>Trace <b>" + Escape(trace.name) + "</b>: " + FormatCount(first.requested) +
         " calls over " + FormatTraceDuration(Duration(first.last_ns - first.first_ns)) +
         ", from " + FormatRfc3339(first.first_ns) + ".";
  if (trace.malformed > 0) out += " " + FormatCount(trace.malformed) + " malformed lines skipped.";
  out += "</p>\n<table><tr><th></th>";
  std::vector<Row> rows = Rows(reports);
  for (const Row& row : rows) {
    if (row.label == "policy") {
      for (size_t i = 0; i < row.values.size(); ++i) {
        out += "<th style=\"color:" + Colour(i) + "\">" + Escape(row.values[i]) + "</th>";
      }
      out += "</tr>\n";
      continue;
    }
    out += "<tr><td>" + Escape(row.label) + "</td>";
    for (const std::string& v : row.values) out += "<td>" + Escape(v) + "</td>";
    out += "</tr>\n";
  }
  out += "</table>\n";
  out +=
      "<h2>Calls over time</h2>\n<p class=\"legend\"><span style=\"color:#999\">&#9632; "
      "requested</span>";
  for (size_t i = 0; i < reports.size(); ++i) {
    out += "<span style=\"color:" + Colour(i) + "\">&#9472; upstream, " +
           Escape(reports[i].policy) + "</span>";
  }
  out += "</p>\n" + CallsOverTimeSvg(reports) + "\n";
  out += "<h2>Savings by kind</h2>\n" + SavingsSvg(reports) + "\n";
  out +=
      "<h2>Latency distribution</h2>\n<p class=\"legend\"><span style=\"color:#777\">- - "
      "without the middleware</span>";
  for (size_t i = 0; i < reports.size(); ++i) {
    out +=
        "<span style=\"color:" + Colour(i) + "\">&#9472; " + Escape(reports[i].policy) + "</span>";
  }
  out += "</p>\n" + LatencySvg(reports) + "\n";
  out +=
      "<p>Saved / bound: calls saved over the attainable bound (requested calls minus the "
      "distinct intents per TTL window). Wrong answers: served answers whose source call had "
      "another intent label. Latency is trace time.</p>\n</body></html>\n";
  return out;
}

}  // namespace toolops
