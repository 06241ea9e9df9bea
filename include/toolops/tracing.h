// include/toolops/tracing.h
//
// Traces of tool calls, exported over OTLP/HTTP (the JSON encoding) to an
// OpenTelemetry collector or any backend that accepts it.
//
// Each wrapped call that is sampled becomes one span named
// "execute_tool {tool name}" with the OpenTelemetry GenAI attributes
// (gen_ai.operation.name = "execute_tool", gen_ai.tool.name,
// gen_ai.tool.call.id when the caller set one with ScopedCallId, error.type
// on failure) and ToolOps' own: toolops.cache.result (fresh, semantic,
// stale, stale_if_error, miss, disabled), toolops.coalesced,
// toolops.attempts, toolops.breaker.state, toolops.outcome. Every upstream
// attempt the call led is a child span "upstream_attempt {tool name}".
// Arguments and results are recorded only when TracingOptions says so, and
// then with secret values masked.
//
// Sampling is decided when a call starts: an unsampled call costs a
// thread-local countdown and never reads a clock for tracing. Spans go to a
// bounded queue that a background thread sends in batches; when the queue is
// full, spans are dropped and counted, and a call never waits for the
// network.
//
// Tracing is off until ConfigureTracing() is called, or until the first tool
// is wrapped with the OTEL_* environment variables asking for it (see
// TracingOptionsFromEnv). All functions are safe for concurrent use.

#ifndef TOOLOPS_TRACING_H_
#define TOOLOPS_TRACING_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "toolops/clock.h"
#include "toolops/function_ref.h"
#include "toolops/status.h"

namespace toolops {

enum class TraceSampler : uint8_t {
  kAlwaysOn,
  kAlwaysOff,
  kTraceIdRatio,             // A share `ratio` of the calls.
  kParentBasedAlwaysOn,      // Follow the parent's decision; always_on for roots.
  kParentBasedAlwaysOff,     // Follow the parent's decision; always_off for roots.
  kParentBasedTraceIdRatio,  // Follow the parent's decision; traceidratio for roots.
};

struct TracingOptions {
  // False: no span is recorded or exported.
  bool enabled = false;
  // The full URL spans are POSTed to, e.g. "http://localhost:4318/v1/traces".
  std::string endpoint = "http://localhost:4318/v1/traces";
  // Extra request headers (for example an authorization header).
  std::vector<std::pair<std::string, std::string>> headers;
  // Longest one export request may take.
  Duration timeout = std::chrono::seconds(10);
  std::string service_name = "unknown_service";
  // Resource attributes besides service.name.
  std::vector<std::pair<std::string, std::string>> resource_attributes;
  TraceSampler sampler = TraceSampler::kParentBasedAlwaysOn;
  // For the ratio samplers: the share of root calls traced, in [0, 1].
  double ratio = 1.0;
  // Spans waiting for export; past it, new spans are dropped (and counted).
  size_t max_queue_spans = 2048;
  // Spans per export request.
  size_t max_batch_spans = 512;
  // Longest a span waits before its batch is sent.
  Duration schedule_delay = std::chrono::milliseconds(2000);
  // Record gen_ai.tool.call.arguments and gen_ai.tool.call.result. Values of
  // sensitive parameters and of parameters whose names look like secrets are
  // masked; secrets in the text of results (key=value, "key": "value") too.
  bool record_arguments = false;
};

// Options from the standard variables: OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER
// (otlp | none), OTEL_EXPORTER_OTLP_ENDPOINT (a base URL; "/v1/traces" is
// appended), OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the full URL),
// OTEL_EXPORTER_OTLP_HEADERS / OTEL_EXPORTER_OTLP_TRACES_HEADERS
// ("k=v,k2=v2", URL-encoded values), OTEL_EXPORTER_OTLP_TIMEOUT /
// OTEL_EXPORTER_OTLP_TRACES_TIMEOUT (milliseconds), OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER (always_on, always_off,
// traceidratio, parentbased_always_on, parentbased_always_off,
// parentbased_traceidratio), OTEL_TRACES_SAMPLER_ARG, OTEL_BSP_MAX_QUEUE_SIZE,
// OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BSP_SCHEDULE_DELAY, and
// TOOLOPS_TRACE_ARGUMENTS (true | false).
//
// Tracing is enabled when OTEL_TRACES_EXPORTER is "otlp" or an OTLP endpoint
// variable is set, unless OTEL_SDK_DISABLED is "true" or OTEL_TRACES_EXPORTER
// is "none": a library should not send spans to a default address nobody
// asked for. Returns InvalidArgument naming the variable, its value and what
// is expected when one is malformed.
Result<TracingOptions> TracingOptionsFromEnv();

// Replaces the tracing configuration: stops the previous exporter (sending
// what it holds, within its timeout) and starts a new one when enabled.
// Returns InvalidArgument for a bad option (ratio out of range, an endpoint
// that is not an http(s) URL, a zero queue). Blocks while the old exporter
// flushes.
Status ConfigureTracing(const TracingOptions& options);
// ConfigureTracing(TracingOptionsFromEnv()).
Status ConfigureTracingFromEnv();
// Sends every queued span now; true when all were delivered before
// `timeout`. Blocks.
bool FlushTracing(Duration timeout = std::chrono::seconds(5));
// Stops tracing and the exporter (after a last flush).
void ShutdownTracing();

struct TracingStats {
  uint64_t spans_started = 0;  // Spans recorded (ended), whatever became of them.
  uint64_t spans_exported = 0;
  uint64_t spans_dropped = 0;    // The queue was full.
  uint64_t export_failures = 0;  // Requests that failed (their spans are lost).
};
TracingStats GetTracingStats();

// A span's identity, as carried by a W3C traceparent header.
struct SpanContext {
  std::array<uint8_t, 16> trace_id{};
  std::array<uint8_t, 8> span_id{};
  bool sampled = false;
  bool valid() const;
};

// Parses "00-<32 hex>-<16 hex>-<2 hex>". InvalidArgument when malformed.
Result<SpanContext> ParseTraceparent(std::string_view header);
std::string FormatTraceparent(const SpanContext& context);

// The span that a call starting on this thread would take as its parent:
// the upstream attempt running here (so that a tool calling another wrapped
// tool nests), or the one set by ScopedParentSpan; null otherwise.
const SpanContext* CurrentSpanContext();

// Makes `parent` the parent of the calls started on this thread while it
// lives (for example the span of an incoming request). Not movable; nest
// them like locks.
class ScopedParentSpan {
 public:
  explicit ScopedParentSpan(const SpanContext& parent);
  ~ScopedParentSpan();
  ScopedParentSpan(const ScopedParentSpan&) = delete;
  ScopedParentSpan& operator=(const ScopedParentSpan&) = delete;

 private:
  SpanContext context_;
  const SpanContext* previous_;
};

// Gives the next wrapped call started on this thread (while it lives) the
// tool-call id of the agent framework (gen_ai.tool.call.id, and
// CallContext::call_id for the tool). The id is copied.
class ScopedCallId {
 public:
  explicit ScopedCallId(std::string_view id);
  ~ScopedCallId();
  ScopedCallId(const ScopedCallId&) = delete;
  ScopedCallId& operator=(const ScopedCallId&) = delete;

 private:
  std::string id_;
  const std::string* previous_;
};

namespace internal {

// For traces that record arguments: a renderer of the arguments of the
// wrapped call starting on this thread, set by the typed wrappers around
// their full call (never on the hit path) and consumed by the call.
extern constinit thread_local const FunctionRef<std::string()>* current_args;

class ScopedArgs {
 public:
  explicit ScopedArgs(const FunctionRef<std::string()>* describe) : previous_(current_args) {
    current_args = describe;
  }
  ~ScopedArgs() { current_args = previous_; }
  ScopedArgs(const ScopedArgs&) = delete;
  ScopedArgs& operator=(const ScopedArgs&) = delete;

 private:
  const FunctionRef<std::string()>* previous_;
};

// JSON pieces for DescribeArgs.
void AppendJsonString(std::string* out, std::string_view text);
// Whether parameter `index` named in `params` is masked: declared sensitive
// or named like a secret. Unnamed parameters are "arg<index>".
std::string ParamName(const std::vector<std::string>& params, size_t index);
bool MaskedParam(const std::vector<std::string>& sensitive, std::string_view name);

template <typename T>
void AppendArgJson(std::string* out, const T& value) {
  using D = std::decay_t<T>;
  if constexpr (std::is_same_v<D, bool>) {
    *out += value ? "true" : "false";
  } else if constexpr (std::is_arithmetic_v<D>) {
    *out += std::to_string(value);
  } else if constexpr (std::is_convertible_v<const D&, std::string_view>) {
    std::string_view text(value);
    if (text.size() > 1024) text = text.substr(0, 1024);
    AppendJsonString(out, text);
  } else {
    *out += "\"<not rendered>\"";
  }
}

// {"name": value, ...} with masked values as "***".
template <typename... Args>
std::string DescribeArgs(const std::vector<std::string>& params,
                         const std::vector<std::string>& sensitive, const Args&... args) {
  std::string out = "{";
  size_t i = 0;
  auto one = [&](const auto& arg) {
    if (i > 0) out += ", ";
    std::string name = ParamName(params, i);
    AppendJsonString(&out, name);
    out += ": ";
    if (MaskedParam(sensitive, name)) {
      out += "\"***\"";
    } else {
      AppendArgJson(&out, arg);
    }
    ++i;
  };
  (one(args), ...);
  out += "}";
  return out;
}

}  // namespace internal
}  // namespace toolops

#endif  // TOOLOPS_TRACING_H_
