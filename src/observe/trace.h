// src/observe/trace.h
//
// The inside of tracing: the per-thread sampling state read on the call
// paths, span records, and the exporter queue they go to. The runners use
// CallSpan; the public API is include/toolops/tracing.h.

#ifndef TOOLOPS_OBSERVE_TRACE_H_
#define TOOLOPS_OBSERVE_TRACE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "toolops/bytes.h"
#include "toolops/function_ref.h"
#include "toolops/tracing.h"

namespace toolops::internal {

// Per-thread state of the call paths. The lock-free hit path decrements the
// two countdowns and compares the generation; anything else happens in the
// slow path (SampleSlow).
struct CallSampling {
  // Calls until the next traced root call (a geometric draw with the
  // sampler's ratio, so that the calls traced are a Bernoulli sample).
  uint32_t trace_left = 1;
  // Fresh hits until the next timed one.
  uint32_t timing_left = 1;
  // The tracing configuration this thread has read (0: none yet).
  uint32_t generation = 0;
  // A decision taken by the hit path of a call that then missed, for the
  // full call of the same core on this thread to honour (not to draw twice).
  const void* decided_for = nullptr;
  bool decided_traced = false;
  uint64_t rng = 0;
};
extern constinit thread_local CallSampling call_sampling;
// Bumped by every ConfigureTracing; starts at 1.
extern std::atomic<uint32_t> tracing_generation;
// The parent of calls started on this thread (an attempt span, or a
// ScopedParentSpan), or null.
extern constinit thread_local const SpanContext* current_parent;
// The call id set by ScopedCallId, or null.
extern constinit thread_local const std::string* current_call_id;

// True when the hit path must leave its fast lane: the tracing
// configuration changed, a parent is set, or one of the countdowns ran out.
inline bool HitNeedsSlowPath() {
  CallSampling& s = call_sampling;
  return s.generation != tracing_generation.load(std::memory_order_relaxed) ||
         current_parent != nullptr || --s.trace_left == 0 || --s.timing_left == 0;
}

// The slow path's decisions for one hit-path call, after HitNeedsSlowPath.
struct HitDecision {
  bool traced = false;
  bool timed = false;
};
HitDecision DecideHit();

// The decision of a full call by `core` starting on this thread: the hit
// path's decision when it took one for this core, a fresh draw otherwise.
bool DecideTraced(const void* core);

// Reads the OTEL_* variables once per process, unless the program configured
// tracing first. Called when a tool is wrapped.
void EnsureTracingFromEnv();

// True when traces record arguments and results.
bool RecordArguments();

using AttributeValue = std::variant<std::string, int64_t, bool, double>;

struct SpanData {
  std::array<uint8_t, 16> trace_id{};
  std::array<uint8_t, 8> span_id{};
  std::array<uint8_t, 8> parent_span_id{};  // All zero: a root span.
  std::string name;
  int64_t start_unix_ns = 0;
  int64_t end_unix_ns = 0;
  bool error = false;
  std::string status_message;
  // Keys are string literals (static storage): no allocation per key.
  std::vector<std::pair<const char*, AttributeValue>> attributes;
};

// A span being recorded; inactive (every method a no-op) unless started.
class Span {
 public:
  Span() = default;
  Span(Span&&) = default;
  Span& operator=(Span&&) = default;
  ~Span() { End(); }

  // Starts a span now, the child of `parent` (null: a new trace).
  void Start(std::string name, const SpanContext* parent);
  bool active() const { return data_ != nullptr; }
  SpanContext context() const;

  // REQUIRES: `key` is a string literal.
  void Set(const char* key, std::string value);
  void Set(const char* key, std::string_view value) { Set(key, std::string(value)); }
  void Set(const char* key, const char* value) { Set(key, std::string(value)); }
  void Set(const char* key, int64_t value);
  void Set(const char* key, bool value);
  void SetError(std::string_view error_type, std::string_view message);
  // Ends the span now and hands it to the exporter.
  void End();
  // Drops the span unsent.
  void Discard() { data_.reset(); }

 private:
  std::unique_ptr<SpanData> data_;
};

// Makes `context` the parent of calls on this thread while it lives.
class ScopedCurrentSpan {
 public:
  explicit ScopedCurrentSpan(const SpanContext* context)
      : previous_(current_parent), active_(context != nullptr) {
    if (active_) current_parent = context;
  }
  ~ScopedCurrentSpan() {
    if (active_) current_parent = previous_;
  }
  ScopedCurrentSpan(const ScopedCurrentSpan&) = delete;
  ScopedCurrentSpan& operator=(const ScopedCurrentSpan&) = delete;

 private:
  const SpanContext* previous_;
  bool active_;
};

// A result as a span attribute: its text (valid UTF-8, at most 4 KiB, with
// secret values masked) or "<N bytes>".
std::string DescribeResult(const Bytes& value);

// The OTLP/JSON body of one export request.
std::string EncodeOtlpJson(const std::vector<SpanData>& spans, const TracingOptions& options);

std::string Hex(const uint8_t* bytes, size_t n);

}  // namespace toolops::internal

#endif  // TOOLOPS_OBSERVE_TRACE_H_
