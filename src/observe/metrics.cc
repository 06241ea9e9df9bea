// src/observe/metrics.cc
//
// The registry of live tools, their metrics, and the Prometheus text.

#include "toolops/metrics.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <unordered_map>

#include "observe/registry.h"
#include "toolops/tool_core.h"
#include "toolops/tracing.h"

namespace toolops {
namespace {

struct Registry {
  std::mutex mu;
  std::unordered_map<const ToolCore*, std::weak_ptr<ToolCore>> tools;  // Guarded by mu.
};

Registry& TheRegistry() {
  static Registry* registry = new Registry();  // Never destroyed: tools may die late.
  return *registry;
}

// When this library was loaded, as Unix seconds: the process's start for
// programs that link it.
const double kStartSeconds =
    std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();

int BreakerStateValue(std::string_view state) {
  if (state == "open") return 1;
  if (state == "half-open") return 2;
  return 0;
}

// Worst first: open, half-open, closed.
int Severity(int state) { return state == 1 ? 2 : state == 2 ? 1 : 0; }

// Label values escaped as the text format says: backslash, quote, newline.
std::string Escape(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string Number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  // The shortest text that reads back as the same double ("5e-05", "0.25").
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), v, std::chars_format::general);
  return std::string(buffer, end);
}

constexpr Counter kOutcomes[] = {
    Counter::kFreshHit,         Counter::kSemanticHit,       Counter::kStaleHit,
    Counter::kStaleIfError,     Counter::kCoalesced,         Counter::kUpstreamSuccess,
    Counter::kUpstreamError,    Counter::kRejectedByBreaker, Counter::kRejectedByLimiter,
    Counter::kRejectedByBudget, Counter::kFallback};

}  // namespace

namespace internal {

void RegisterTool(const std::shared_ptr<ToolCore>& core) {
  Registry& r = TheRegistry();
  std::lock_guard lock(r.mu);
  r.tools[core.get()] = core;
}

void UnregisterTool(const ToolCore* core) {
  Registry& r = TheRegistry();
  std::lock_guard lock(r.mu);
  r.tools.erase(core);
}

}  // namespace internal

std::vector<std::shared_ptr<ToolCore>> LiveTools() {
  std::vector<std::weak_ptr<ToolCore>> weak;
  {
    Registry& r = TheRegistry();
    std::lock_guard lock(r.mu);
    weak.reserve(r.tools.size());
    for (const auto& [ptr, w] : r.tools) weak.push_back(w);
  }
  // Locked outside the registry's mutex: the last owner may drop a tool
  // while this runs, and its destructor takes the mutex.
  std::vector<std::shared_ptr<ToolCore>> out;
  for (const auto& w : weak) {
    if (std::shared_ptr<ToolCore> core = w.lock()) out.push_back(std::move(core));
  }
  return out;
}

std::vector<ToolMetrics> CollectToolMetrics() {
  std::map<std::string, ToolMetrics> by_name;
  {
    std::vector<std::shared_ptr<ToolCore>> tools = LiveTools();
    for (const std::shared_ptr<ToolCore>& core : tools) {
      ToolMetrics& m = by_name[core->spec().name];
      m.tool = core->spec().name;
      StatsSnapshot counters = core->stats();
      for (size_t i = 0; i < kNumCounters; ++i) m.counters.values[i] += counters.values[i];
      m.latency += core->latency();
      m.cost_per_call = std::max(m.cost_per_call, core->policy().cost_per_call);
      m.money_saved += static_cast<double>(counters.saved()) * core->policy().cost_per_call;
      int state = BreakerStateValue(core->breaker_state());
      if (m.instances == 0 || Severity(state) > Severity(m.breaker_state)) {
        m.breaker_state = state;
        m.breaker_state_name = std::string(core->breaker_state());
      }
      m.breaker_transitions += core->breaker_transitions();
      ++m.instances;
    }
    // `tools` is released here, outside any lock of ours.
  }
  std::vector<ToolMetrics> out;
  out.reserve(by_name.size());
  for (auto& [name, m] : by_name) {
    m.upstream_calls = m.counters[Counter::kUpstreamSuccess] + m.counters[Counter::kUpstreamError];
    out.push_back(std::move(m));
  }
  return out;
}

std::string PrometheusText() {
  std::vector<ToolMetrics> tools = CollectToolMetrics();
  std::string out;
  out.reserve(1024 + tools.size() * 4096);
  auto family = [&](std::string_view name, std::string_view type, std::string_view help) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
  };
  auto per_tool = [&](std::string_view name, std::string_view type, std::string_view help,
                      auto value) {
    family(name, type, help);
    for (const ToolMetrics& m : tools) {
      out += name;
      out += "{tool=\"" + Escape(m.tool) + "\"} " + Number(value(m)) + "\n";
    }
  };

  family("toolops_calls_total", "counter", "Calls finished, by outcome.");
  for (const ToolMetrics& m : tools) {
    for (Counter c : kOutcomes) {
      out += "toolops_calls_total{tool=\"" + Escape(m.tool) + "\",outcome=\"" +
             std::string(CounterName(c)) + "\"} " + std::to_string(m.counters[c]) + "\n";
    }
  }
  per_tool("toolops_upstream_calls_total", "counter",
           "Upstream calls led (upstream_success + upstream_error).",
           [](const ToolMetrics& m) { return static_cast<double>(m.upstream_calls); });
  per_tool("toolops_upstream_attempts_total", "counter",
           "Upstream attempts started (first tries and retries).", [](const ToolMetrics& m) {
             return static_cast<double>(m.counters[Counter::kAttempts]);
           });
  per_tool("toolops_retries_total", "counter", "Upstream attempts after the first of a call.",
           [](const ToolMetrics& m) { return static_cast<double>(m.counters[Counter::kRetries]); });
  per_tool("toolops_calls_saved_total", "counter",
           "Calls answered without an upstream call of their own.",
           [](const ToolMetrics& m) { return static_cast<double>(m.counters.saved()); });
  per_tool("toolops_money_saved_total", "counter",
           "Calls saved times the tool's declared cost per call.",
           [](const ToolMetrics& m) { return m.money_saved; });
  per_tool("toolops_cost_per_call", "gauge", "The tool's declared cost of one upstream call.",
           [](const ToolMetrics& m) { return m.cost_per_call; });

  family("toolops_call_duration_seconds", "histogram", "Duration of tool calls, in seconds.");
  for (const ToolMetrics& m : tools) {
    std::string label = "{tool=\"" + Escape(m.tool) + "\"";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < kLatencyBuckets; ++i) {
      cumulative += m.latency.counts[i];
      std::string le = i < kLatencyBucketBounds.size() ? Number(kLatencyBucketBounds[i]) : "+Inf";
      out += "toolops_call_duration_seconds_bucket" + label + ",le=\"" + le + "\"} " +
             std::to_string(cumulative) + "\n";
    }
    out +=
        "toolops_call_duration_seconds_sum" + label + "} " + Number(m.latency.sum_seconds) + "\n";
    out += "toolops_call_duration_seconds_count" + label + "} " + std::to_string(m.latency.count) +
           "\n";
  }

  per_tool("toolops_breaker_state", "gauge",
           "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
           [](const ToolMetrics& m) { return static_cast<double>(m.breaker_state); });
  per_tool("toolops_breaker_transitions_total", "counter", "Circuit breaker state changes.",
           [](const ToolMetrics& m) { return static_cast<double>(m.breaker_transitions); });
  per_tool(
      "toolops_store_errors_total", "counter", "Store operations that failed.",
      [](const ToolMetrics& m) { return static_cast<double>(m.counters[Counter::kStoreErrors]); });
  family("toolops_process_start_time_seconds", "gauge",
         "When the process started (the library was loaded), in Unix seconds.");
  out += "toolops_process_start_time_seconds " + Number(kStartSeconds) + "\n";

  TracingStats spans = GetTracingStats();
  family("toolops_spans_exported_total", "counter", "Spans delivered to the OTLP endpoint.");
  out += "toolops_spans_exported_total " + std::to_string(spans.spans_exported) + "\n";
  family("toolops_spans_dropped_total", "counter", "Spans dropped because the queue was full.");
  out += "toolops_spans_dropped_total " + std::to_string(spans.spans_dropped) + "\n";
  return out;
}

}  // namespace toolops
