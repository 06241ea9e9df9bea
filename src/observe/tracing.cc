// src/observe/tracing.cc
//
// Sampling, span records and the OTLP/HTTP exporter. There is no OpenTelemetry
// C++ SDK in Debian, so the exporter is written here: a bounded queue, one
// background thread that POSTs batches as OTLP JSON with libcurl, and the
// standard OTEL_* variables.

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

#include "observe/trace.h"
#include "toolops/log.h"
#include "toolops/secrets.h"
#include "toolops/stats.h"

namespace toolops {
namespace internal {

constinit thread_local CallSampling call_sampling;
// On a cache line of its own: every hit reads it, and the span counters
// near it are written by every traced call.
alignas(64) std::atomic<uint32_t> tracing_generation{1};
constinit thread_local const SpanContext* current_parent = nullptr;
constinit thread_local const std::string* current_call_id = nullptr;
constinit thread_local const FunctionRef<std::string()>* current_args = nullptr;

namespace {

alignas(64) std::atomic<uint64_t> spans_started{0};
std::atomic<uint64_t> spans_exported{0};
std::atomic<uint64_t> spans_dropped{0};
std::atomic<uint64_t> export_failures{0};

size_t WriteIgnored(char*, size_t size, size_t n, void*) { return size * n; }

// One background thread that sends queued spans in batches.
class SpanExporter {
 public:
  explicit SpanExporter(TracingOptions options)
      : options_(std::move(options)), thread_([this] { Run(); }) {}

  ~SpanExporter() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    if (curl_ != nullptr) curl_easy_cleanup(curl_);
  }

  // Never waits for the network; drops the span when the queue is full.
  void Enqueue(SpanData span) {
    {
      std::lock_guard lock(mu_);
      if (queue_.size() >= options_.max_queue_spans) {
        spans_dropped.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      queue_.push_back(std::move(span));
      if (queue_.size() < options_.max_batch_spans) return;
    }
    cv_.notify_all();
  }

  bool Flush(Duration timeout) {
    std::unique_lock lock(mu_);
    flush_requested_ = true;
    cv_.notify_all();
    return done_cv_.wait_for(lock, timeout, [&] { return queue_.empty() && !sending_; });
  }

  const TracingOptions& options() const { return options_; }

 private:
  void Run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait_for(lock, options_.schedule_delay, [&] {
        return stop_ || flush_requested_ || queue_.size() >= options_.max_batch_spans;
      });
      if (queue_.empty()) {
        flush_requested_ = false;
        done_cv_.notify_all();
        if (stop_) return;
        continue;
      }
      std::vector<SpanData> batch;
      size_t n = std::min(queue_.size(), options_.max_batch_spans);
      batch.reserve(n);
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      sending_ = true;
      lock.unlock();
      bool ok = Send(batch);
      (ok ? spans_exported : export_failures).fetch_add(ok ? batch.size() : 1);
      lock.lock();
      sending_ = false;
      if (queue_.empty()) {
        flush_requested_ = false;
        done_cv_.notify_all();
      }
    }
  }

  bool Send(const std::vector<SpanData>& batch) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    std::string body = EncodeOtlpJson(batch, options_);
    // One handle for the exporter's life: its connection is kept alive
    // between batches.
    if (curl_ == nullptr) curl_ = curl_easy_init();
    CURL* curl = curl_;
    if (curl == nullptr) return false;
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    for (const auto& [name, value] : options_.headers) {
      headers = curl_slist_append(headers, (name + ": " + value).c_str());
    }
    curl_easy_setopt(curl, CURLOPT_URL, options_.endpoint.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(
        curl, CURLOPT_TIMEOUT_MS,
        static_cast<long>(
            std::chrono::duration_cast<std::chrono::milliseconds>(options_.timeout).count()));
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, WriteIgnored);
    CURLcode rc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    bool ok = rc == CURLE_OK && status >= 200 && status < 300;
    if (!ok) {
      // One line per failed request at most every minute: an unreachable
      // collector must not flood the log.
      auto now = std::chrono::steady_clock::now();
      if (now - last_failure_log_ > std::chrono::minutes(1)) {
        last_failure_log_ = now;
        Log(LogLevel::kWarning, "tracing.export_failed",
            "sending " + std::to_string(batch.size()) + " spans to " + options_.endpoint +
                " failed: " +
                (rc != CURLE_OK ? std::string(curl_easy_strerror(rc))
                                : "HTTP status " + std::to_string(status)) +
                "; those spans are lost");
      }
    }
    return ok;
  }

  const TracingOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  std::deque<SpanData> queue_;  // Guarded by mu_.
  bool stop_ = false;           // Guarded by mu_.
  bool flush_requested_ = false;
  bool sending_ = false;
  std::chrono::steady_clock::time_point last_failure_log_{};  // Exporter thread only.
  CURL* curl_ = nullptr;                                      // Exporter thread only.
  std::thread thread_;
};

// The configuration read on the slow paths.
struct TracingState {
  std::mutex mu;
  std::shared_ptr<SpanExporter> exporter;  // Guarded by mu; null when off.
  bool configured = false;                 // Guarded by mu: set by ConfigureTracing.
  std::atomic<bool> enabled{false};
  std::atomic<TraceSampler> sampler{TraceSampler::kParentBasedAlwaysOn};
  std::atomic<double> ratio{1.0};
  std::atomic<bool> record_arguments{false};
};

TracingState& State() {
  static TracingState* state = new TracingState();  // Never destroyed: threads may end late.
  return *state;
}

std::shared_ptr<SpanExporter> CurrentExporter() {
  TracingState& state = State();
  std::lock_guard lock(state.mu);
  return state.exporter;
}

uint64_t NextRandom(CallSampling& s) {
  if (s.rng == 0) {
    std::random_device device;
    s.rng = (static_cast<uint64_t>(device()) << 32) ^ device() ^
            static_cast<uint64_t>(reinterpret_cast<uintptr_t>(&s));
    if (s.rng == 0) s.rng = 1;
  }
  // SplitMix64.
  uint64_t z = (s.rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

bool ParentBased(TraceSampler sampler) {
  return sampler == TraceSampler::kParentBasedAlwaysOn ||
         sampler == TraceSampler::kParentBasedAlwaysOff ||
         sampler == TraceSampler::kParentBasedTraceIdRatio;
}

// The share of root calls traced.
double RootRatio() {
  TracingState& state = State();
  if (!state.enabled.load(std::memory_order_relaxed)) return 0;
  switch (state.sampler.load(std::memory_order_relaxed)) {
    case TraceSampler::kAlwaysOn:
    case TraceSampler::kParentBasedAlwaysOn:
      return 1;
    case TraceSampler::kAlwaysOff:
    case TraceSampler::kParentBasedAlwaysOff:
      return 0;
    case TraceSampler::kTraceIdRatio:
    case TraceSampler::kParentBasedTraceIdRatio:
      return state.ratio.load(std::memory_order_relaxed);
  }
  return 0;
}

// Calls until the next traced root call: geometric with parameter `p`, so
// that each call is traced with probability p independently of the others.
// When nothing is traced, a long countdown (the generation check still sees
// a new configuration at once).
uint32_t Gap(CallSampling& s, double p) {
  constexpr uint32_t kNever = 1u << 30;
  if (p >= 1) return 1;
  if (p <= 0) return kNever;
  double u = static_cast<double>((NextRandom(s) >> 11) + 1) * 0x1.0p-53;  // (0, 1]
  double gap = std::floor(std::log(u) / std::log1p(-p)) + 1;
  return gap >= kNever ? kNever : static_cast<uint32_t>(gap);
}

// Reads a new configuration into this thread's state.
void Refresh(CallSampling& s) {
  uint32_t generation = tracing_generation.load(std::memory_order_acquire);
  if (s.generation == generation) return;
  s.generation = generation;
  s.trace_left = Gap(s, RootRatio());
  s.decided_for = nullptr;
}

// One root decision: consumes the countdown.
bool DecideRoot(CallSampling& s) {
  if (--s.trace_left != 0) return false;
  double p = RootRatio();
  s.trace_left = Gap(s, p);
  return p > 0;
}

// A decision when a parent is set: follow it for the parent-based samplers.
bool DecideWithParent(CallSampling& s, const SpanContext& parent) {
  TracingState& state = State();
  if (!state.enabled.load(std::memory_order_relaxed)) return false;
  if (ParentBased(state.sampler.load(std::memory_order_relaxed))) return parent.sampled;
  return DecideRoot(s);
}

int64_t UnixNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

template <size_t N>
void RandomId(CallSampling& s, std::array<uint8_t, N>* id) {
  for (;;) {
    for (size_t i = 0; i < N; i += 8) {
      uint64_t r = NextRandom(s);
      for (size_t j = 0; j < 8 && i + j < N; ++j) (*id)[i + j] = static_cast<uint8_t>(r >> (8 * j));
    }
    for (uint8_t b : *id) {
      if (b != 0) return;
    }
  }
}

}  // namespace

HitDecision DecideHit() {
  CallSampling& s = call_sampling;
  HitDecision d;
  // Both countdowns may have been decremented by HitNeedsSlowPath (the
  // second only when the first did not run out).
  bool trace_due = s.trace_left == 0;
  if (s.timing_left == 0) {
    d.timed = true;
    s.timing_left = LatencyHistogram::kHitTimingPeriod;
  }
  if (s.generation != tracing_generation.load(std::memory_order_relaxed)) {
    Refresh(s);
    trace_due = false;
    d.traced = current_parent != nullptr ? DecideWithParent(s, *current_parent) : DecideRoot(s);
    return d;
  }
  if (current_parent != nullptr) {
    if (trace_due) s.trace_left = 1;  // Given back: the next root call is traced.
    d.traced = DecideWithParent(s, *current_parent);
    return d;
  }
  if (trace_due) {
    double p = RootRatio();
    s.trace_left = Gap(s, p);
    d.traced = p > 0;
    // The timing countdown was not decremented by the fast check.
    if (--s.timing_left == 0) {
      d.timed = true;
      s.timing_left = LatencyHistogram::kHitTimingPeriod;
    }
  }
  return d;
}

bool DecideTraced(const void* core) {
  CallSampling& s = call_sampling;
  if (s.decided_for == core && s.generation == tracing_generation.load(std::memory_order_relaxed)) {
    s.decided_for = nullptr;
    return s.decided_traced;
  }
  s.decided_for = nullptr;
  Refresh(s);
  if (current_parent != nullptr) return DecideWithParent(s, *current_parent);
  return DecideRoot(s);
}

namespace {

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t j = 1; j < n; ++j) {
      if ((static_cast<unsigned char>(s[i + j]) >> 6) != 2) return false;
    }
    i += n;
  }
  return true;
}

}  // namespace

std::string DescribeResult(const Bytes& value) {
  constexpr size_t kMax = 4096;
  std::string_view text = value.view();
  if (!ValidUtf8(text)) return "<" + std::to_string(value.size()) + " bytes>";
  if (text.size() <= kMax) return MaskSecretsInText(text);
  size_t cut = kMax;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) >> 6) == 2) --cut;
  return MaskSecretsInText(text.substr(0, cut)) + "...";
}

void AppendJsonString(std::string* out, std::string_view text) {
  out->push_back('"');
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (static_cast<unsigned char>(c) >= 0x80) {
      // Valid UTF-8 sequences are copied; any other byte becomes U+FFFD.
      unsigned char lead = static_cast<unsigned char>(c);
      size_t n = (lead >> 5) == 6 ? 2 : (lead >> 4) == 14 ? 3 : (lead >> 3) == 30 ? 4 : 0;
      bool valid = n > 0 && i + n <= text.size();
      for (size_t j = 1; valid && j < n; ++j) {
        valid = (static_cast<unsigned char>(text[i + j]) >> 6) == 2;
      }
      if (valid) {
        out->append(text.substr(i, n));
        i += n - 1;
      } else {
        *out += "\\ufffd";
      }
      continue;
    }
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buffer[8];
          std::snprintf(buffer, sizeof(buffer), "\\u%04x", c);
          *out += buffer;
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

std::string ParamName(const std::vector<std::string>& params, size_t index) {
  return index < params.size() ? params[index] : "arg" + std::to_string(index);
}

bool MaskedParam(const std::vector<std::string>& sensitive, std::string_view name) {
  return std::find(sensitive.begin(), sensitive.end(), name) != sensitive.end() ||
         LooksLikeSecretName(name);
}

bool RecordArguments() { return State().record_arguments.load(std::memory_order_relaxed); }

std::string Hex(const uint8_t* bytes, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 15];
  }
  return out;
}

void Span::Start(std::string name, const SpanContext* parent) {
  CallSampling& s = call_sampling;
  data_ = std::make_unique<SpanData>();
  data_->name = std::move(name);
  data_->attributes.reserve(12);
  if (parent != nullptr && parent->valid()) {
    data_->trace_id = parent->trace_id;
    data_->parent_span_id = parent->span_id;
  } else {
    RandomId(s, &data_->trace_id);
  }
  RandomId(s, &data_->span_id);
  data_->start_unix_ns = UnixNowNs();
}

SpanContext Span::context() const {
  SpanContext c;
  if (data_ == nullptr) return c;
  c.trace_id = data_->trace_id;
  c.span_id = data_->span_id;
  c.sampled = true;
  return c;
}

void Span::Set(const char* key, std::string value) {
  if (data_ != nullptr) data_->attributes.emplace_back(key, std::move(value));
}
void Span::Set(const char* key, int64_t value) {
  if (data_ != nullptr) data_->attributes.emplace_back(key, value);
}
void Span::Set(const char* key, bool value) {
  if (data_ != nullptr) data_->attributes.emplace_back(key, value);
}

void Span::SetError(std::string_view error_type, std::string_view message) {
  if (data_ == nullptr) return;
  data_->error = true;
  data_->status_message = MaskSecretsInText(message);
  Set("error.type", error_type);
}

void Span::End() {
  if (data_ == nullptr) return;
  data_->end_unix_ns = UnixNowNs();
  spans_started.fetch_add(1, std::memory_order_relaxed);
  std::unique_ptr<SpanData> data = std::move(data_);
  if (std::shared_ptr<SpanExporter> exporter = CurrentExporter()) {
    exporter->Enqueue(std::move(*data));
  }
}

namespace {

void AppendAttribute(std::string* out, std::string_view key, const AttributeValue& value) {
  *out += "{\"key\":";
  AppendJsonString(out, key);
  *out += ",\"value\":{";
  if (const auto* s = std::get_if<std::string>(&value)) {
    *out += "\"stringValue\":";
    AppendJsonString(out, *s);
  } else if (const auto* i = std::get_if<int64_t>(&value)) {
    // int64 is a string in the protobuf JSON mapping.
    *out += "\"intValue\":\"" + std::to_string(*i) + "\"";
  } else if (const auto* b = std::get_if<bool>(&value)) {
    *out += *b ? "\"boolValue\":true" : "\"boolValue\":false";
  } else {
    char buffer[32];
    std::snprintf(buffer, sizeof(buffer), "%.17g", std::get<double>(value));
    *out += "\"doubleValue\":";
    *out += buffer;
  }
  *out += "}}";
}

}  // namespace

// Written by hand rather than through a JSON library: the exporter thread
// encodes every span, and building a document tree per span cost several
// times more.
std::string EncodeOtlpJson(const std::vector<SpanData>& spans, const TracingOptions& options) {
  std::string out;
  out.reserve(512 + spans.size() * 900);
  out += "{\"resourceSpans\":[{\"resource\":{\"attributes\":[";
  AppendAttribute(&out, "service.name", options.service_name);
  for (const auto& [key, value] : options.resource_attributes) {
    if (key == "service.name") continue;
    out += ',';
    AppendAttribute(&out, key, value);
  }
  out += ',';
  AppendAttribute(&out, "telemetry.sdk.name", std::string("toolops"));
  out += ',';
  AppendAttribute(&out, "telemetry.sdk.language", std::string("cpp"));
  out += "]},\"scopeSpans\":[{\"scope\":{\"name\":\"toolops\"},\"spans\":[";
  for (size_t n = 0; n < spans.size(); ++n) {
    const SpanData& span = spans[n];
    if (n > 0) out += ',';
    out += "{\"traceId\":\"" + Hex(span.trace_id.data(), span.trace_id.size()) + "\"";
    out += ",\"spanId\":\"" + Hex(span.span_id.data(), span.span_id.size()) + "\"";
    bool root = true;
    for (uint8_t b : span.parent_span_id) root = root && b == 0;
    if (!root) {
      out += ",\"parentSpanId\":\"" + Hex(span.parent_span_id.data(), span.parent_span_id.size()) +
             "\"";
    }
    out += ",\"name\":";
    AppendJsonString(&out, span.name);
    // SPAN_KIND_INTERNAL, as the GenAI conventions give execute_tool.
    out += ",\"kind\":1,\"startTimeUnixNano\":\"" + std::to_string(span.start_unix_ns) +
           "\",\"endTimeUnixNano\":\"" + std::to_string(span.end_unix_ns) + "\",\"attributes\":[";
    for (size_t a = 0; a < span.attributes.size(); ++a) {
      if (a > 0) out += ',';
      AppendAttribute(&out, span.attributes[a].first, span.attributes[a].second);
    }
    out += ']';
    if (span.error) {
      out += ",\"status\":{\"code\":2,\"message\":";
      AppendJsonString(&out, span.status_message);
      out += '}';
    }
    out += '}';
  }
  out += "]}]}]}";
  return out;
}

}  // namespace internal

using internal::State;

bool SpanContext::valid() const {
  bool trace = false, span = false;
  for (uint8_t b : trace_id) trace = trace || b != 0;
  for (uint8_t b : span_id) span = span || b != 0;
  return trace && span;
}

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // Upper case is not allowed by the W3C format.
}

template <size_t N>
bool ParseHex(std::string_view text, std::array<uint8_t, N>* out) {
  if (text.size() != 2 * N) return false;
  for (size_t i = 0; i < N; ++i) {
    int hi = HexValue(text[2 * i]), lo = HexValue(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*out)[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return true;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = HexValue(static_cast<char>(std::tolower(static_cast<unsigned char>(s[i + 1]))));
      int lo = HexValue(static_cast<char>(std::tolower(static_cast<unsigned char>(s[i + 2]))));
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

// "k=v,k2=v2" (the W3C baggage-like lists of the OTEL_* variables).
Result<std::vector<std::pair<std::string, std::string>>> ParsePairs(std::string_view variable,
                                                                    std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    std::string item = Trim(text.substr(start, end - start));
    if (!item.empty()) {
      size_t eq = item.find('=');
      if (eq == std::string::npos || Trim(item.substr(0, eq)).empty()) {
        return Status(StatusCode::kInvalidArgument,
                      std::string(variable) + " has the entry '" + item.substr(0, 40) +
                          "'; each entry must be key=value, entries separated by commas");
      }
      out.emplace_back(Trim(item.substr(0, eq)), PercentDecode(Trim(item.substr(eq + 1))));
    }
    start = end + 1;
  }
  return out;
}

const char* Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

Result<Duration> ParseMillis(const char* variable, const char* text) {
  char* end = nullptr;
  double ms = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(ms >= 0)) {
    return Status(StatusCode::kInvalidArgument, std::string(variable) + " is '" + text +
                                                    "'; it must be a number of milliseconds");
  }
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(ms));
}

Result<size_t> ParseCount(const char* variable, const char* text) {
  char* end = nullptr;
  long long n = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || n <= 0) {
    return Status(StatusCode::kInvalidArgument,
                  std::string(variable) + " is '" + text + "'; it must be a positive integer");
  }
  return static_cast<size_t>(n);
}

Status CheckOptions(const TracingOptions& o) {
  if (!(o.ratio >= 0 && o.ratio <= 1)) {
    return Status(StatusCode::kInvalidArgument,
                  "tracing ratio is " + std::to_string(o.ratio) + "; it must be in [0, 1]");
  }
  if (!o.enabled) return Status();
  if (!o.endpoint.starts_with("http://") && !o.endpoint.starts_with("https://")) {
    return Status(StatusCode::kInvalidArgument,
                  "tracing endpoint is '" + o.endpoint +
                      "'; it must be an http:// or https:// URL such as "
                      "http://localhost:4318/v1/traces");
  }
  if (o.max_queue_spans == 0 || o.max_batch_spans == 0) {
    return Status(StatusCode::kInvalidArgument,
                  "tracing max_queue_spans and max_batch_spans must be positive");
  }
  if (o.timeout <= Duration::zero()) {
    return Status(StatusCode::kInvalidArgument, "tracing timeout must be positive");
  }
  return Status();
}

}  // namespace

Result<TracingOptions> TracingOptionsFromEnv() {
  TracingOptions o;
  bool asked = false;
  const char* exporter = Env("OTEL_TRACES_EXPORTER");
  if (exporter != nullptr) {
    std::string e = Lower(Trim(exporter));
    if (e == "otlp") {
      asked = true;
    } else if (e != "none") {
      return Status(StatusCode::kInvalidArgument,
                    std::string("OTEL_TRACES_EXPORTER is '") + exporter +
                        "'; ToolOps exports spans with 'otlp' (OTLP/HTTP JSON) or not at all "
                        "('none')");
    }
  }
  if (const char* base = Env("OTEL_EXPORTER_OTLP_ENDPOINT")) {
    std::string url = Trim(base);
    while (!url.empty() && url.back() == '/') url.pop_back();
    o.endpoint = url + "/v1/traces";
    asked = true;
  }
  if (const char* url = Env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) {
    o.endpoint = Trim(url);
    asked = true;
  }
  for (const char* variable :
       {"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"}) {
    if (const char* protocol = Env(variable); protocol != nullptr && Lower(protocol) == "grpc") {
      return Status(StatusCode::kInvalidArgument,
                    std::string(variable) +
                        " is 'grpc'; ToolOps exports over OTLP/HTTP only: point the endpoint at "
                        "the collector's HTTP port (4318) and unset it or set it to http/json");
    }
  }
  for (const char* variable : {"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"}) {
    if (const char* headers = Env(variable)) {
      auto parsed = ParsePairs(variable, headers);
      if (!parsed.ok()) return parsed.status();
      for (auto& h : parsed.value()) o.headers.push_back(std::move(h));
    }
  }
  for (const char* variable : {"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"}) {
    if (const char* timeout = Env(variable)) {
      auto parsed = ParseMillis(variable, timeout);
      if (!parsed.ok()) return parsed.status();
      o.timeout = parsed.value();
    }
  }
  if (const char* attributes = Env("OTEL_RESOURCE_ATTRIBUTES")) {
    auto parsed = ParsePairs("OTEL_RESOURCE_ATTRIBUTES", attributes);
    if (!parsed.ok()) return parsed.status();
    for (auto& [key, value] : parsed.value()) {
      if (key == "service.name") {
        o.service_name = value;
      } else {
        o.resource_attributes.emplace_back(key, value);
      }
    }
  }
  if (const char* service = Env("OTEL_SERVICE_NAME")) o.service_name = Trim(service);
  if (const char* sampler = Env("OTEL_TRACES_SAMPLER")) {
    std::string s = Lower(Trim(sampler));
    if (s == "always_on") {
      o.sampler = TraceSampler::kAlwaysOn;
    } else if (s == "always_off") {
      o.sampler = TraceSampler::kAlwaysOff;
    } else if (s == "traceidratio") {
      o.sampler = TraceSampler::kTraceIdRatio;
    } else if (s == "parentbased_always_on") {
      o.sampler = TraceSampler::kParentBasedAlwaysOn;
    } else if (s == "parentbased_always_off") {
      o.sampler = TraceSampler::kParentBasedAlwaysOff;
    } else if (s == "parentbased_traceidratio") {
      o.sampler = TraceSampler::kParentBasedTraceIdRatio;
    } else {
      return Status(StatusCode::kInvalidArgument,
                    std::string("OTEL_TRACES_SAMPLER is '") + sampler +
                        "'; expected always_on, always_off, traceidratio, parentbased_always_on, "
                        "parentbased_always_off or parentbased_traceidratio");
    }
  }
  if (const char* arg = Env("OTEL_TRACES_SAMPLER_ARG")) {
    char* end = nullptr;
    double ratio = std::strtod(arg, &end);
    if (end == arg || *end != '\0' || !(ratio >= 0 && ratio <= 1)) {
      return Status(StatusCode::kInvalidArgument,
                    std::string("OTEL_TRACES_SAMPLER_ARG is '") + arg +
                        "'; it must be a number in [0, 1] (the share of calls traced)");
    }
    o.ratio = ratio;
  }
  if (const char* n = Env("OTEL_BSP_MAX_QUEUE_SIZE")) {
    auto parsed = ParseCount("OTEL_BSP_MAX_QUEUE_SIZE", n);
    if (!parsed.ok()) return parsed.status();
    o.max_queue_spans = parsed.value();
  }
  if (const char* n = Env("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")) {
    auto parsed = ParseCount("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", n);
    if (!parsed.ok()) return parsed.status();
    o.max_batch_spans = parsed.value();
  }
  if (const char* delay = Env("OTEL_BSP_SCHEDULE_DELAY")) {
    auto parsed = ParseMillis("OTEL_BSP_SCHEDULE_DELAY", delay);
    if (!parsed.ok()) return parsed.status();
    o.schedule_delay = parsed.value();
  }
  if (const char* record = Env("TOOLOPS_TRACE_ARGUMENTS")) {
    std::string r = Lower(Trim(record));
    if (r != "true" && r != "false" && r != "1" && r != "0") {
      return Status(StatusCode::kInvalidArgument, std::string("TOOLOPS_TRACE_ARGUMENTS is '") +
                                                      record + "'; expected true or false");
    }
    o.record_arguments = r == "true" || r == "1";
  }
  o.enabled = asked;
  if (exporter != nullptr && Lower(Trim(exporter)) == "none") o.enabled = false;
  if (const char* disabled = Env("OTEL_SDK_DISABLED"); disabled != nullptr) {
    if (Lower(Trim(disabled)) == "true") o.enabled = false;
  }
  if (Status s = CheckOptions(o); !s.ok()) return s;
  return o;
}

Status ConfigureTracing(const TracingOptions& options) {
  if (Status s = CheckOptions(options); !s.ok()) return s;
  internal::TracingState& state = State();
  std::shared_ptr<internal::SpanExporter> old;
  {
    std::lock_guard lock(state.mu);
    old = std::move(state.exporter);
    state.configured = true;
    if (options.enabled) state.exporter = std::make_shared<internal::SpanExporter>(options);
    state.enabled.store(options.enabled, std::memory_order_relaxed);
    state.sampler.store(options.sampler, std::memory_order_relaxed);
    state.ratio.store(options.ratio, std::memory_order_relaxed);
    state.record_arguments.store(options.enabled && options.record_arguments,
                                 std::memory_order_relaxed);
    internal::tracing_generation.fetch_add(1, std::memory_order_release);
  }
  old.reset();  // Flushes and joins outside the lock (a span ending meanwhile goes to the new one).
  return Status();
}

Status ConfigureTracingFromEnv() {
  Result<TracingOptions> options = TracingOptionsFromEnv();
  if (!options.ok()) return options.status();
  return ConfigureTracing(options.value());
}

namespace internal {

void EnsureTracingFromEnv() {
  static std::once_flag once;
  std::call_once(once, [] {
    {
      std::lock_guard lock(State().mu);
      if (State().configured) return;  // Configured by the program: it wins.
    }
    Result<TracingOptions> options = TracingOptionsFromEnv();
    if (!options.ok()) {
      Log(LogLevel::kWarning, "tracing.config",
          std::string(options.status().message()) + "; tracing stays off");
      return;
    }
    if (options->enabled) (void)ConfigureTracing(options.value());
  });
}

}  // namespace internal

bool FlushTracing(Duration timeout) {
  std::shared_ptr<internal::SpanExporter> exporter = internal::CurrentExporter();
  return exporter == nullptr || exporter->Flush(timeout);
}

void ShutdownTracing() { (void)ConfigureTracing(TracingOptions{}); }

TracingStats GetTracingStats() {
  TracingStats s;
  s.spans_started = internal::spans_started.load(std::memory_order_relaxed);
  s.spans_exported = internal::spans_exported.load(std::memory_order_relaxed);
  s.spans_dropped = internal::spans_dropped.load(std::memory_order_relaxed);
  s.export_failures = internal::export_failures.load(std::memory_order_relaxed);
  return s;
}

Result<SpanContext> ParseTraceparent(std::string_view header) {
  SpanContext c;
  std::string h = Trim(header);
  std::array<uint8_t, 1> version{}, flags{};
  if (h.size() != 55 || h[2] != '-' || h[35] != '-' || h[52] != '-' ||
      !ParseHex(std::string_view(h).substr(0, 2), &version) || version[0] == 0xff ||
      !ParseHex(std::string_view(h).substr(3, 32), &c.trace_id) ||
      !ParseHex(std::string_view(h).substr(36, 16), &c.span_id) ||
      !ParseHex(std::string_view(h).substr(53, 2), &flags) || !c.valid()) {
    return Status(StatusCode::kInvalidArgument,
                  "traceparent '" + h.substr(0, 64) +
                      "' is malformed; expected 00-<32 lower-case hex>-<16 lower-case hex>-<2 "
                      "hex>, with non-zero ids");
  }
  c.sampled = (flags[0] & 1) != 0;
  return c;
}

std::string FormatTraceparent(const SpanContext& c) {
  return "00-" + internal::Hex(c.trace_id.data(), 16) + "-" + internal::Hex(c.span_id.data(), 8) +
         (c.sampled ? "-01" : "-00");
}

const SpanContext* CurrentSpanContext() { return internal::current_parent; }

ScopedParentSpan::ScopedParentSpan(const SpanContext& parent)
    : context_(parent), previous_(internal::current_parent) {
  internal::current_parent = &context_;
}
ScopedParentSpan::~ScopedParentSpan() { internal::current_parent = previous_; }

ScopedCallId::ScopedCallId(std::string_view id) : id_(id), previous_(internal::current_call_id) {
  internal::current_call_id = &id_;
}
ScopedCallId::~ScopedCallId() { internal::current_call_id = previous_; }

}  // namespace toolops
