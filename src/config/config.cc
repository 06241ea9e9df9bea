// src/config/config.cc
//
// The TOML configuration: environment overrides merged into the parsed
// document, then one walk over it with a table of known fields per section.
// toml++ parses; everything after (types, units, unknown keys, messages) is
// here. A tool's fields are checked with the same Validate() that checks a
// policy given in code, so that a file and code meet the same ranges.

#include "toolops/config.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "base/format.h"

extern char** environ;

namespace toolops {
namespace {

// -- values ------------------------------------------------------------------

enum class Kind : uint8_t { kBool, kInt, kSize, kDouble, kDuration, kString, kStrings, kEnum };

struct Value {
  bool b = false;
  int64_t i = 0;
  double d = 0;
  Duration duration{};
  std::string s;
  std::vector<std::string> list;
};

// A known field of some section: its dotted name below the section's table,
// what it holds, and how it lands in the target.
template <typename T>
struct Field {
  std::string name;
  Kind kind;
  std::function<void(T*, const Value&)> set;
  std::vector<std::string> choices = {};  // kEnum
  int64_t min = std::numeric_limits<int32_t>::min();
  int64_t max = std::numeric_limits<int32_t>::max();
};

std::string KindText(Kind kind, const std::vector<std::string>& choices, int64_t min, int64_t max) {
  switch (kind) {
    case Kind::kBool:
      return "true or false";
    case Kind::kInt:
    case Kind::kSize:
      if (min == std::numeric_limits<int32_t>::min()) return "an integer";
      if (max >= std::numeric_limits<int32_t>::max()) {
        return "an integer of at least " + std::to_string(min);
      }
      return "an integer from " + std::to_string(min) + " to " + std::to_string(max);
    case Kind::kDouble:
      return "a number";
    case Kind::kDuration:
      return "a duration (a number of seconds, or a string such as \"250ms\", \"5s\", \"1m\")";
    case Kind::kString:
      return "a string";
    case Kind::kStrings:
      return "a list of strings";
    case Kind::kEnum: {
      std::string out = "one of";
      for (size_t i = 0; i < choices.size(); ++i) {
        out += (i == 0 ? " \"" : ", \"") + choices[i] + "\"";
      }
      return out;
    }
  }
  return "a value";
}

// How a TOML node reads in a message: `got -1`, `got a table`.
std::string Describe(const toml::node& node) {
  if (const auto* s = node.as_string()) {
    std::string text = s->get();
    if (text.size() > 40) text = text.substr(0, 40) + "...";
    return "\"" + text + "\"";
  }
  if (const auto* i = node.as_integer()) return std::to_string(i->get());
  if (const auto* f = node.as_floating_point()) {
    std::ostringstream out;
    out << f->get();
    return out.str();
  }
  if (const auto* b = node.as_boolean()) return b->get() ? "true" : "false";
  if (node.is_table()) return "a table";
  if (node.is_array()) return "a list";
  return "a date or time";
}

bool ParseInt(std::string_view text, int64_t* out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size() && !text.empty();
}

bool ParseDouble(std::string_view text, double* out) {
  std::string s(text);
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size() && std::isfinite(*out);
}

Result<Duration> SecondsToDuration(double seconds) {
  if (!std::isfinite(seconds) || std::fabs(seconds) > 1e9) {
    return Status(StatusCode::kInvalidArgument, "out of range", Guard::kPolicy);
  }
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(seconds));
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// " (did you mean 'ttl'?)" for the nearest known name, or "".
std::string DidYouMean(std::string_view key, const std::vector<std::string>& known) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, key.size() / 3) + 1;
  for (const std::string& name : known) {
    size_t d = EditDistance(key, name);
    if (d < best_distance) {
      best_distance = d;
      best = name;
    }
  }
  return best.empty() ? "" : " (did you mean '" + best + "'?)";
}

std::string Join(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// The environment's name for a store or tool name: lower case, every other
// character than a letter or digit as '_'.
std::string EnvName(std::string_view name) {
  std::string out;
  for (char c : name) {
    out += std::isalnum(static_cast<unsigned char>(c))
               ? static_cast<char>(std::tolower(static_cast<unsigned char>(c)))
               : '_';
  }
  return out;
}

// -- the fields --------------------------------------------------------------

std::optional<TextNormalization> NormalizationOf(std::string_view s) {
  if (s == "none") return TextNormalization::kNone;
  if (s == "nfc") return TextNormalization::kNfc;
  if (s == "nfkc") return TextNormalization::kNfkc;
  if (s == "nfkc_casefold") return TextNormalization::kNfkcCasefold;
  return std::nullopt;
}

std::vector<std::string> CodeNames() {
  std::vector<std::string> names;
  for (int c = 1; c <= static_cast<int>(StatusCode::kUnauthenticated); ++c) {
    names.emplace_back(StatusCodeName(static_cast<StatusCode>(c)));
  }
  return names;
}

std::vector<StatusCode> CodesOf(const std::vector<std::string>& names) {
  std::vector<StatusCode> codes;
  for (const std::string& name : names) {
    for (int c = 1; c <= static_cast<int>(StatusCode::kUnauthenticated); ++c) {
      if (StatusCodeName(static_cast<StatusCode>(c)) == name) {
        codes.push_back(static_cast<StatusCode>(c));
      }
    }
  }
  return codes;
}

using PolicyField = Field<ToolPolicy>;

const std::vector<PolicyField>& PolicyFields() {
  using P = ToolPolicy;
  using V = Value;
  static const std::vector<PolicyField>* fields = new std::vector<PolicyField>{
      {"idempotent", Kind::kBool, [](P* p, const V& v) { p->idempotent = v.b; }},
      {"scope_param", Kind::kString, [](P* p, const V& v) { p->scope_param = v.s; }},
      {"sensitive_params", Kind::kStrings,
       [](P* p, const V& v) { p->sensitive_params = v.list; }},
      {"cost_per_call", Kind::kDouble, [](P* p, const V& v) { p->cost_per_call = v.d; }},
      {"cache.enabled", Kind::kBool, [](P* p, const V& v) { p->cache.enabled = v.b; }},
      {"cache.ttl", Kind::kDuration, [](P* p, const V& v) { p->cache.ttl = v.duration; }},
      {"cache.stale_while_revalidate", Kind::kDuration,
       [](P* p, const V& v) { p->cache.stale_while_revalidate = v.duration; }},
      {"cache.stale_if_error", Kind::kDuration,
       [](P* p, const V& v) { p->cache.stale_if_error = v.duration; }},
      {"cache.key_params", Kind::kStrings, [](P* p, const V& v) { p->cache.key_params = v.list; }},
      {"cache.normalization", Kind::kEnum,
       [](P* p, const V& v) { p->cache.normalization = *NormalizationOf(v.s); },
       {"none", "nfc", "nfkc", "nfkc_casefold"}},
      {"cache.store", Kind::kString, [](P* p, const V& v) { p->cache.store = v.s; }},
      {"cache.shared_store", Kind::kString, [](P* p, const V& v) { p->cache.shared_store = v.s; }},
      {"cache.max_value_bytes", Kind::kSize,
       [](P* p, const V& v) { p->cache.max_value_bytes = static_cast<size_t>(v.i); }, {}, 0,
       std::numeric_limits<int64_t>::max()},
      {"cache.semantic.params", Kind::kStrings,
       [](P* p, const V& v) { p->cache.semantic.params = v.list; }},
      {"cache.semantic.threshold", Kind::kDouble,
       [](P* p, const V& v) { p->cache.semantic.threshold = v.d; }},
      {"cache.semantic.guard", Kind::kBool,
       [](P* p, const V& v) { p->cache.semantic.guard = v.b; }},
      {"cache.semantic.candidates", Kind::kSize,
       [](P* p, const V& v) { p->cache.semantic.candidates = static_cast<size_t>(v.i); }, {}, 0,
       std::numeric_limits<int64_t>::max()},
      {"cache.semantic.max_per_partition", Kind::kSize,
       [](P* p, const V& v) { p->cache.semantic.max_per_partition = static_cast<size_t>(v.i); },
       {}, 0, std::numeric_limits<int64_t>::max()},
      {"retry.max_attempts", Kind::kInt,
       [](P* p, const V& v) { p->retry.max_attempts = static_cast<int>(v.i); }},
      {"retry.initial_backoff", Kind::kDuration,
       [](P* p, const V& v) { p->retry.initial_backoff = v.duration; }},
      {"retry.multiplier", Kind::kDouble, [](P* p, const V& v) { p->retry.multiplier = v.d; }},
      {"retry.max_backoff", Kind::kDuration,
       [](P* p, const V& v) { p->retry.max_backoff = v.duration; }},
      {"retry.retry_on", Kind::kStrings, [](P* p, const V& v) { p->retry.retry_on = CodesOf(v.list); }},
      {"retry.honor_retry_after", Kind::kBool,
       [](P* p, const V& v) { p->retry.honor_retry_after = v.b; }},
      {"retry.max_retry_after", Kind::kDuration,
       [](P* p, const V& v) { p->retry.max_retry_after = v.duration; }},
      {"retry.budget_ratio", Kind::kDouble, [](P* p, const V& v) { p->retry.budget_ratio = v.d; }},
      {"retry.budget_min_retries_per_second", Kind::kDouble,
       [](P* p, const V& v) { p->retry.budget_min_retries_per_second = v.d; }},
      {"retry.budget_window", Kind::kDuration,
       [](P* p, const V& v) { p->retry.budget_window = v.duration; }},
      {"timeout.attempt_timeout", Kind::kDuration,
       [](P* p, const V& v) { p->timeout.attempt_timeout = v.duration; }},
      {"timeout.deadline", Kind::kDuration,
       [](P* p, const V& v) { p->timeout.deadline = v.duration; }},
      {"breaker.enabled", Kind::kBool, [](P* p, const V& v) { p->breaker.enabled = v.b; }},
      {"breaker.window", Kind::kEnum,
       [](P* p, const V& v) {
         p->breaker.window = v.s == "time" ? BreakerWindow::kTimeBased : BreakerWindow::kCountBased;
       },
       {"count", "time"}},
      {"breaker.window_size", Kind::kInt,
       [](P* p, const V& v) { p->breaker.window_size = static_cast<int>(v.i); }},
      {"breaker.window_duration", Kind::kDuration,
       [](P* p, const V& v) { p->breaker.window_duration = v.duration; }},
      {"breaker.minimum_calls", Kind::kInt,
       [](P* p, const V& v) { p->breaker.minimum_calls = static_cast<int>(v.i); }},
      {"breaker.failure_rate_threshold", Kind::kDouble,
       [](P* p, const V& v) { p->breaker.failure_rate_threshold = v.d; }},
      {"breaker.slow_call_rate_threshold", Kind::kDouble,
       [](P* p, const V& v) { p->breaker.slow_call_rate_threshold = v.d; }},
      {"breaker.slow_call_duration", Kind::kDuration,
       [](P* p, const V& v) { p->breaker.slow_call_duration = v.duration; }},
      {"breaker.open_wait", Kind::kDuration,
       [](P* p, const V& v) { p->breaker.open_wait = v.duration; }},
      {"breaker.half_open_probes", Kind::kInt,
       [](P* p, const V& v) { p->breaker.half_open_probes = static_cast<int>(v.i); }},
      {"breaker.failure_codes", Kind::kStrings,
       [](P* p, const V& v) { p->breaker.failure_codes = CodesOf(v.list); }},
      {"breaker.shared_store", Kind::kString,
       [](P* p, const V& v) { p->breaker.shared_store = v.s; }},
      {"limit.max_concurrent", Kind::kInt,
       [](P* p, const V& v) { p->limit.max_concurrent = static_cast<int>(v.i); }},
      {"limit.max_wait", Kind::kDuration, [](P* p, const V& v) { p->limit.max_wait = v.duration; }},
      {"coalesce.enabled", Kind::kBool, [](P* p, const V& v) { p->coalesce.enabled = v.b; }},
      {"coalesce.max_flights", Kind::kSize,
       [](P* p, const V& v) { p->coalesce.max_flights = static_cast<size_t>(v.i); }, {}, 0,
       std::numeric_limits<int64_t>::max()},
      {"coalesce.across_processes", Kind::kBool,
       [](P* p, const V& v) { p->coalesce.across_processes = v.b; }},
  };
  return *fields;
}

using StoreField = Field<StoreConfig>;

std::chrono::milliseconds Millis(Duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d);
}

constexpr int64_t kMaxI64 = std::numeric_limits<int64_t>::max();

// The fields of each store type ("type" itself is read first).
const std::vector<StoreField>& StoreFields(StoreType type) {
  using S = StoreConfig;
  using V = Value;
  static const auto* memory = new std::vector<StoreField>{
      {"type", Kind::kString, [](S*, const V&) {}},
      {"max_entries",
       Kind::kSize,
       [](S* s, const V& v) { s->memory.max_entries = static_cast<size_t>(v.i); },
       {},
       1,
       kMaxI64},
      {"max_bytes",
       Kind::kSize,
       [](S* s, const V& v) { s->memory.max_bytes = static_cast<size_t>(v.i); },
       {},
       1,
       kMaxI64},
      {"shards",
       Kind::kSize,
       [](S* s, const V& v) { s->memory.shards = static_cast<size_t>(v.i); },
       {},
       0,
       4096},
      {"eviction",
       Kind::kEnum,
       [](S* s, const V& v) {
         s->memory.eviction = v.s == "lru" ? EvictionPolicy::kLru : EvictionPolicy::kTinyLfu;
       },
       {"lru", "tinylfu"}},
  };
  static const auto* sqlite = new std::vector<StoreField>{
      {"type", Kind::kString, [](S*, const V&) {}},
      {"path", Kind::kString, [](S* s, const V& v) { s->sqlite.path = v.s; }},
      {"namespace", Kind::kString, [](S* s, const V& v) { s->sqlite.key_namespace = v.s; }},
      {"max_value_bytes",
       Kind::kSize,
       [](S* s, const V& v) { s->sqlite.max_value_bytes = static_cast<size_t>(v.i); },
       {},
       1,
       kMaxI64},
      {"busy_timeout", Kind::kDuration,
       [](S* s, const V& v) { s->sqlite.busy_timeout = v.duration; }},
      {"purge_batch",
       Kind::kSize,
       [](S* s, const V& v) { s->sqlite.purge_batch = static_cast<size_t>(v.i); },
       {},
       1,
       kMaxI64},
  };
  static const auto* redis = new std::vector<StoreField>{
      {"type", Kind::kString, [](S*, const V&) {}},
      {"url", Kind::kString, [](S* s, const V& v) { s->redis.url = v.s; }},
      {"host", Kind::kString, [](S* s, const V& v) { s->redis.host = v.s; }},
      {"port",
       Kind::kInt,
       [](S* s, const V& v) { s->redis.port = static_cast<int>(v.i); },
       {},
       1,
       65535},
      {"username", Kind::kString, [](S* s, const V& v) { s->redis.username = v.s; }},
      {"password", Kind::kString, [](S* s, const V& v) { s->redis.password = v.s; }},
      {"db",
       Kind::kInt,
       [](S* s, const V& v) { s->redis.db = static_cast<int>(v.i); },
       {},
       0,
       1'000'000},
      {"cluster", Kind::kBool, [](S* s, const V& v) { s->redis.cluster = v.b; }},
      {"namespace", Kind::kString, [](S* s, const V& v) { s->redis.key_namespace = v.s; }},
      {"max_value_bytes",
       Kind::kSize,
       [](S* s, const V& v) { s->redis.max_value_bytes = static_cast<size_t>(v.i); },
       {},
       1,
       kMaxI64},
      {"connect_timeout", Kind::kDuration,
       [](S* s, const V& v) { s->redis.connect_timeout = Millis(v.duration); }},
      {"io_timeout", Kind::kDuration,
       [](S* s, const V& v) { s->redis.io_timeout = Millis(v.duration); }},
      {"pool_size",
       Kind::kSize,
       [](S* s, const V& v) { s->redis.pool_size = static_cast<size_t>(v.i); },
       {},
       1,
       1024},
      {"outage_initial_backoff", Kind::kDuration,
       [](S* s, const V& v) { s->redis.outage_initial_backoff = Millis(v.duration); }},
      {"outage_max_backoff", Kind::kDuration,
       [](S* s, const V& v) { s->redis.outage_max_backoff = Millis(v.duration); }},
      {"lease_ttl", Kind::kDuration,
       [](S* s, const V& v) { s->redis.lease_ttl = Millis(v.duration); }},
      {"error_ttl", Kind::kDuration,
       [](S* s, const V& v) { s->redis.error_ttl = Millis(v.duration); }},
      {"follower_poll", Kind::kDuration,
       [](S* s, const V& v) { s->redis.follower_poll = Millis(v.duration); }},
      {"tls.enabled", Kind::kBool, [](S* s, const V& v) { s->redis.tls.enabled = v.b; }},
      {"tls.ca_file", Kind::kString, [](S* s, const V& v) { s->redis.tls.ca_file = v.s; }},
      {"tls.cert_file", Kind::kString, [](S* s, const V& v) { s->redis.tls.cert_file = v.s; }},
      {"tls.key_file", Kind::kString, [](S* s, const V& v) { s->redis.tls.key_file = v.s; }},
      {"tls.server_name", Kind::kString, [](S* s, const V& v) { s->redis.tls.server_name = v.s; }},
      {"tls.verify_peer", Kind::kBool, [](S* s, const V& v) { s->redis.tls.verify_peer = v.b; }},
  };
  static const auto* postgres = new std::vector<StoreField>{
      {"type", Kind::kString, [](S*, const V&) {}},
      {"url", Kind::kString, [](S* s, const V& v) { s->postgres.conninfo = v.s; }},
      {"table", Kind::kString, [](S* s, const V& v) { s->postgres.table = v.s; }},
      {"namespace", Kind::kString, [](S* s, const V& v) { s->postgres.key_namespace = v.s; }},
      {"max_value_bytes",
       Kind::kSize,
       [](S* s, const V& v) { s->postgres.max_value_bytes = static_cast<size_t>(v.i); },
       {},
       1,
       kMaxI64},
      {"connect_timeout", Kind::kDuration,
       [](S* s, const V& v) { s->postgres.connect_timeout = v.duration; }},
      {"statement_timeout", Kind::kDuration,
       [](S* s, const V& v) { s->postgres.statement_timeout = v.duration; }},
      {"pool_size",
       Kind::kSize,
       [](S* s, const V& v) { s->postgres.pool_size = static_cast<size_t>(v.i); },
       {},
       1,
       64},
      {"purge_batch",
       Kind::kSize,
       [](S* s, const V& v) { s->postgres.purge_batch = static_cast<size_t>(v.i); },
       {},
       1,
       kMaxI64},
  };
  switch (type) {
    case StoreType::kMemory:
      return *memory;
    case StoreType::kSqlite:
      return *sqlite;
    case StoreType::kRedis:
      return *redis;
    case StoreType::kPostgres:
      return *postgres;
  }
  return *memory;
}

using TelemetryField = Field<TelemetryConfig>;

const std::vector<TelemetryField>& TelemetryFields() {
  using T = TelemetryConfig;
  using V = Value;
  static const auto* fields = new std::vector<TelemetryField>{
      {"metrics_host", Kind::kString, [](T* t, const V& v) { t->metrics_host = v.s; }},
      {"metrics_port",
       Kind::kInt,
       [](T* t, const V& v) { t->metrics_port = static_cast<int>(v.i); },
       {},
       0,
       65535},
      {"otlp_endpoint", Kind::kString, [](T* t, const V& v) { t->otlp_endpoint = v.s; }},
      {"sampling_ratio", Kind::kDouble, [](T* t, const V& v) { t->sampling_ratio = v.d; }},
      {"record_arguments", Kind::kBool, [](T* t, const V& v) { t->record_arguments = v.b; }},
      {"service_name", Kind::kString, [](T* t, const V& v) { t->service_name = v.s; }},
      {"stats_store", Kind::kString, [](T* t, const V& v) { t->stats_store = v.s; }},
      {"stats_interval", Kind::kDuration, [](T* t, const V& v) { t->stats_interval = v.duration; }},
      {"log_format", Kind::kEnum, [](T* t, const V& v) { t->log_format = v.s; }, {"json", "text"}},
      {"log_level",
       Kind::kEnum,
       [](T* t, const V& v) { t->log_level = v.s; },
       {"debug", "info", "warning", "error"}},
  };
  return *fields;
}

// -- the walk ----------------------------------------------------------------

class Reader {
 public:
  Reader(std::string source) : source_(std::move(source)) {}

  // Merges TOOLOPS__* variables into `root`.
  void MergeEnvironment(toml::table& root, const ConfigEnv& env, Config* config);
  void Read(const toml::table& root, Config* config);

  const std::vector<std::string>& errors() const { return errors_; }

 private:
  std::string Where(const toml::node& node, const std::string& path) const {
    auto it = env_paths_.find(path);
    if (it != env_paths_.end()) return "environment variable " + it->second;
    return source_ + ":" + std::to_string(node.source().begin.line);
  }
  void Error(const toml::node& node, const std::string& path, const std::string& what) {
    errors_.push_back(Where(node, path) + ": " + path + ": " + what);
  }

  // Reads one node as `kind`; false (and an error) when it does not fit.
  template <typename T>
  bool ReadValue(const toml::node& node, const std::string& path, const Field<T>& field,
                 Value* out);

  // Walks `table` (the section below `path`) against `fields`, calling
  // `found(field, value, where)` for each known field.
  // Keys in `skip` (at the top level) are read by the caller.
  template <typename T, typename Found>
  void Walk(const toml::table& table, const std::string& path, const std::string& prefix,
            const std::vector<Field<T>>& fields, Found found,
            const std::vector<std::string>& skip = {});

  void ReadStore(const std::string& name, const toml::node& node, Config* config);
  void ReadTool(const std::string& name, const toml::node& node, Config* config);

  std::string source_;
  // Display path -> the environment variable that set it.
  std::map<std::string, std::string> env_paths_;
  std::vector<std::string> errors_;
};

template <typename T>
bool Reader::ReadValue(const toml::node& node, const std::string& path, const Field<T>& field,
                       Value* out) {
  const bool from_env = env_paths_.count(path) > 0;
  const std::string expected = KindText(field.kind, field.choices, field.min, field.max);
  auto fail = [&]() {
    Error(node, path, "expected " + expected + ", got " + Describe(node));
    return false;
  };
  // Environment values arrive as text and are read as the field wants.
  const std::string* text = node.is_string() ? &node.as_string()->get() : nullptr;
  switch (field.kind) {
    case Kind::kBool:
      if (const auto* b = node.as_boolean()) {
        out->b = b->get();
        return true;
      }
      if (from_env && text != nullptr && (*text == "true" || *text == "false")) {
        out->b = *text == "true";
        return true;
      }
      return fail();
    case Kind::kInt:
    case Kind::kSize: {
      int64_t v = 0;
      if (const auto* i = node.as_integer()) {
        v = i->get();
      } else if (!(from_env && text != nullptr && ParseInt(*text, &v))) {
        return fail();
      }
      if (v < field.min || v > field.max) {
        Error(node, path, "expected " + expected + ", got " + std::to_string(v));
        return false;
      }
      out->i = v;
      return true;
    }
    case Kind::kDouble: {
      if (const auto* f = node.as_floating_point()) {
        out->d = f->get();
      } else if (const auto* i = node.as_integer()) {
        out->d = static_cast<double>(i->get());
      } else if (!(from_env && text != nullptr && ParseDouble(*text, &out->d))) {
        return fail();
      }
      if (!std::isfinite(out->d)) return fail();
      return true;
    }
    case Kind::kDuration: {
      Result<Duration> d = Status(StatusCode::kInvalidArgument, "", Guard::kPolicy);
      if (const auto* f = node.as_floating_point()) {
        d = SecondsToDuration(f->get());
      } else if (const auto* i = node.as_integer()) {
        d = SecondsToDuration(static_cast<double>(i->get()));
      } else if (text != nullptr) {
        d = ParseDurationText(*text);
      }
      if (!d.ok()) return fail();
      out->duration = *d;
      return true;
    }
    case Kind::kString:
      if (text == nullptr) return fail();
      out->s = *text;
      return true;
    case Kind::kEnum:
      if (text == nullptr ||
          std::find(field.choices.begin(), field.choices.end(), *text) == field.choices.end()) {
        return fail();
      }
      out->s = *text;
      return true;
    case Kind::kStrings: {
      out->list.clear();
      if (from_env && text != nullptr) {
        // "a,b" or a TOML list.
        std::string_view rest = *text;
        if (!rest.empty() && rest.front() == '[') {
          try {
            toml::table parsed = toml::parse("v = " + *text);
            const toml::array* array = parsed["v"].as_array();
            if (array == nullptr) return fail();
            for (const toml::node& item : *array) {
              if (!item.is_string()) return fail();
              out->list.push_back(item.as_string()->get());
            }
          } catch (const toml::parse_error&) {
            return fail();
          }
        } else {
          while (!rest.empty()) {
            size_t comma = rest.find(',');
            std::string_view item = rest.substr(0, comma);
            while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
            while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
            if (!item.empty()) out->list.emplace_back(item);
            if (comma == std::string_view::npos) break;
            rest.remove_prefix(comma + 1);
          }
        }
      } else {
        const toml::array* array = node.as_array();
        if (array == nullptr) return fail();
        for (const toml::node& item : *array) {
          if (!item.is_string()) {
            Error(item, path, "expected a list of strings, got " + Describe(item) + " in it");
            return false;
          }
          out->list.push_back(item.as_string()->get());
        }
      }
      return true;
    }
  }
  return fail();
}

template <typename T, typename Found>
void Reader::Walk(const toml::table& table, const std::string& path, const std::string& prefix,
                  const std::vector<Field<T>>& fields, Found found,
                  const std::vector<std::string>& skip) {
  for (const auto& [key, node] : table) {
    if (std::find(skip.begin(), skip.end(), key.str()) != skip.end()) continue;
    const std::string name =
        prefix.empty() ? std::string(key.str()) : prefix + "." + std::string(key.str());
    const std::string full = path + "." + std::string(key.str());
    auto field = std::find_if(fields.begin(), fields.end(),
                              [&](const Field<T>& f) { return f.name == name; });
    if (field != fields.end()) {
      Value value;
      if (ReadValue(node, full, *field, &value)) found(*field, value, Where(node, full));
      continue;
    }
    // A sub-table (cache, retry, tls, ...) holds the fields that start with it.
    const std::string sub = name + ".";
    bool is_group = std::any_of(fields.begin(), fields.end(), [&](const Field<T>& f) {
      return f.name.compare(0, sub.size(), sub) == 0;
    });
    if (is_group) {
      if (const toml::table* inner = node.as_table()) {
        Walk(*inner, full, name, fields, found);
      } else {
        Error(node, full, "expected a table of fields, got " + Describe(node));
      }
      continue;
    }
    // Unknown: suggest a name of this level.
    std::vector<std::string> known;
    const std::string level = prefix.empty() ? "" : prefix + ".";
    for (const Field<T>& f : fields) {
      if (f.name.compare(0, level.size(), level) != 0) continue;
      std::string rest = f.name.substr(level.size());
      rest = rest.substr(0, rest.find('.'));
      if (std::find(known.begin(), known.end(), rest) == known.end()) known.push_back(rest);
    }
    errors_.push_back(Where(node, full) + ": " + full + ": unknown key" +
                      DidYouMean(key.str(), known) + "; known keys here: " + Join(known));
  }
}

void Reader::MergeEnvironment(toml::table& root, const ConfigEnv& env, Config* config) {
  for (const auto& [var, value] : env) {
    if (var.size() < 9) continue;
    std::string head = var.substr(0, 9);
    for (char& c : head) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (head != "TOOLOPS__") continue;
    std::vector<std::string> parts;
    std::string_view rest = std::string_view(var).substr(9);
    while (true) {
      size_t at = rest.find("__");
      std::string part(rest.substr(0, at));
      for (char& c : part) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      parts.push_back(part);
      if (at == std::string_view::npos) break;
      rest.remove_prefix(at + 2);
    }
    auto bad = [&](const std::string& what) {
      errors_.push_back("environment variable " + var + ": " + what);
    };
    if (std::any_of(parts.begin(), parts.end(), [](const std::string& p) { return p.empty(); })) {
      bad("empty part (parts are separated by exactly two underscores)");
      continue;
    }
    const std::string& section = parts[0];
    size_t field_from = 1;
    if (section == "stores" || section == "tools") {
      if (parts.size() < 3) {
        bad("expected TOOLOPS__" + std::string(section == "stores" ? "STORES" : "TOOLS") +
            "__<NAME>__<FIELD>");
        continue;
      }
      // The file's name that reads as this part, else the part itself.
      if (toml::table* names = root[section].as_table()) {
        for (const auto& [key, node] : *names) {
          if (EnvName(key.str()) == parts[1]) {
            parts[1] = std::string(key.str());
            break;
          }
        }
      }
      field_from = 2;
    } else if (section == "telemetry") {
      if (parts.size() < 2) {
        bad("expected TOOLOPS__TELEMETRY__<FIELD>");
        continue;
      }
    } else {
      bad("unknown section '" + section + "'; expected STORES, TOOLS or TELEMETRY" +
          DidYouMean(section, {"stores", "tools", "telemetry"}));
      continue;
    }
    // Walk down, creating tables, and set the leaf as text.
    toml::table* table = &root;
    std::string path;
    bool ok = true;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      path += (path.empty() ? "" : ".") + parts[i];
      toml::node* next = table->get(parts[i]);
      if (next == nullptr) {
        table->insert(parts[i], toml::table{});
        next = table->get(parts[i]);
      }
      if (!next->is_table()) {
        bad(path + " is " + Describe(*next) + " in the file, not a table");
        ok = false;
        break;
      }
      table = next->as_table();
    }
    if (!ok) continue;
    (void)field_from;
    path += "." + parts.back();
    table->insert_or_assign(parts.back(), value);
    env_paths_[path] = var;
    config->environment.push_back(var);
  }
}

void Reader::ReadStore(const std::string& name, const toml::node& node, Config* config) {
  const std::string path = "stores." + name;
  const toml::table* table = node.as_table();
  if (table == nullptr) {
    Error(node, path, "expected a table ([" + path + "]), got " + Describe(node));
    return;
  }
  StoreConfig store;
  store.name = name;
  store.where = Where(node, path);
  const toml::node* type = table->get("type");
  static const std::vector<std::string> kTypes = {"memory", "sqlite", "redis", "valkey",
                                                  "postgres"};
  if (type == nullptr) {
    Error(node, path,
          "missing key 'type'; expected one of \"memory\", \"sqlite\", \"redis\", "
          "\"valkey\", \"postgres\"");
    return;
  }
  Field<StoreConfig> type_field{"type", Kind::kEnum, nullptr, kTypes};
  Value value;
  if (!ReadValue(*type, path + ".type", type_field, &value)) return;
  store.type_name = value.s;
  if (value.s == "memory") store.type = StoreType::kMemory;
  if (value.s == "sqlite") store.type = StoreType::kSqlite;
  if (value.s == "redis" || value.s == "valkey") store.type = StoreType::kRedis;
  if (value.s == "postgres") store.type = StoreType::kPostgres;
  store.memory.name = store.sqlite.name = store.redis.name = store.postgres.name = name;
  Walk(*table, path, "", StoreFields(store.type),
       [&](const StoreField& f, const Value& v, const std::string&) { f.set(&store, v); });
  if (store.type == StoreType::kSqlite && store.sqlite.path.empty()) {
    Error(node, path, "missing key 'path': the SQLite database file");
  }
  if (store.type == StoreType::kPostgres && store.postgres.conninfo.empty()) {
    Error(node, path,
          "missing key 'url': a libpq connection URI or string "
          "(\"postgresql://user@host/db\")");
  }
  config->stores[name] = std::move(store);
}

void Reader::ReadTool(const std::string& name, const toml::node& node, Config* config) {
  const std::string path = "tools." + name;
  const toml::table* table = node.as_table();
  if (table == nullptr) {
    Error(node, path, "expected a table ([" + path + "]), got " + Describe(node));
    return;
  }
  ToolConfig tool;
  tool.name = name;
  tool.where = Where(node, path);

  // version and tags are not policy fields; read them apart.
  if (const toml::node* version = table->get("version")) {
    Value v;
    if (ReadValue(*version, path + ".version", Field<ToolConfig>{"version", Kind::kString, nullptr},
                  &v)) {
      if (v.s.empty()) {
        Error(*version, path + ".version", "expected a non-empty string, got \"\"");
      }
      tool.version = v.s;
    }
  }
  if (const toml::node* tags = table->get("tags")) {
    Value v;
    if (ReadValue(*tags, path + ".tags", Field<ToolConfig>{"tags", Kind::kStrings, nullptr}, &v)) {
      tool.tags = v.list;
    }
  }
  size_t errors_before = errors_.size();
  Walk(*table, path, "", PolicyFields(),
       [&](const PolicyField& f, const Value& v, const std::string& where) {
         auto set = f.set;
         // retry_on / failure_codes: names checked here, where the line is known.
         if (f.name == "retry.retry_on" || f.name == "breaker.failure_codes") {
           std::vector<std::string> known = CodeNames();
           for (const std::string& code : v.list) {
             if (std::find(known.begin(), known.end(), code) == known.end()) {
               errors_.push_back(where + ": " + path + "." + f.name + ": unknown status code '" +
                                 code + "'" + DidYouMean(code, known) + "; known: " + Join(known));
               return;
             }
           }
         }
         tool.overrides.push_back(
             PolicyOverride{f.name, where, [set, v](ToolPolicy* p) { set(p, v); }});
       },
       {"version", "tags"});
  // Environment overrides come last, so that they win over the file.
  std::stable_partition(tool.overrides.begin(), tool.overrides.end(), [](const PolicyOverride& o) {
    return o.where.rfind("environment", 0) != 0;
  });

  // The same checks as a policy given in code: on a default read-only policy
  // with these fields, with every parameter the fields name declared.
  if (errors_.size() == errors_before) {
    ToolPolicy policy;
    tool.ApplyTo(&policy);
    ToolSpec spec(name, tool.version);
    std::set<std::string> params;
    auto declare = [&](const std::vector<std::string>& names) {
      for (const std::string& n : names) {
        if (params.insert(n).second) spec.params.push_back(n);
      }
    };
    declare(policy.sensitive_params);
    if (!policy.scope_param.empty()) declare({policy.scope_param});
    declare(policy.cache.key_params);
    declare(policy.cache.semantic.params);
    if (Status s = Validate(spec, policy); !s.ok()) {
      std::string message(s.message());
      const std::string head = "tool '" + name + "': ";
      if (message.rfind(head, 0) == 0) message = message.substr(head.size());
      // The override the message is about: the longest field name in it.
      const PolicyOverride* culprit = nullptr;
      for (const PolicyOverride& o : tool.overrides) {
        if (message.find(o.field) != std::string::npos &&
            (culprit == nullptr || o.field.size() > culprit->field.size())) {
          culprit = &o;
        }
      }
      if (culprit != nullptr && message.rfind(culprit->field, 0) == 0) {
        errors_.push_back(culprit->where + ": " + path + "." + message);
      } else {
        errors_.push_back((culprit ? culprit->where : tool.where) + ": " + path + ": " + message);
      }
    }
  }
  config->tools[name] = std::move(tool);
}

void Reader::Read(const toml::table& root, Config* config) {
  for (const auto& [key, node] : root) {
    const std::string section(key.str());
    if (section == "stores" || section == "tools") {
      const toml::table* table = node.as_table();
      if (table == nullptr) {
        Error(node, section, "expected tables [" + section + ".NAME], got " + Describe(node));
        continue;
      }
      for (const auto& [name, inner] : *table) {
        if (name.str().empty()) {
          Error(inner, section, "a name must not be empty");
          continue;
        }
        if (section == "stores") {
          ReadStore(std::string(name.str()), inner, config);
        } else {
          ReadTool(std::string(name.str()), inner, config);
        }
      }
    } else if (section == "telemetry") {
      const toml::table* table = node.as_table();
      if (table == nullptr) {
        Error(node, section, "expected a table [telemetry], got " + Describe(node));
        continue;
      }
      config->telemetry.where = Where(node, section);
      Walk(*table, section, "", TelemetryFields(),
           [&](const TelemetryField& f, const Value& v, const std::string& where) {
             if (f.name == "sampling_ratio" && !(v.d >= 0 && v.d <= 1)) {
               errors_.push_back(where +
                                 ": telemetry.sampling_ratio: expected a number from 0 "
                                 "to 1, got " +
                                 std::to_string(v.d));
               return;
             }
             if (f.name == "stats_interval" && !(v.duration >= std::chrono::milliseconds(100) &&
                                                 v.duration <= std::chrono::hours(1))) {
               errors_.push_back(where +
                                 ": telemetry.stats_interval: expected a duration from 100ms "
                                 "to 1h, got " +
                                 FormatDuration(v.duration));
               return;
             }
             f.set(&config->telemetry, v);
             config->telemetry.set_at[f.name] = where;
           });
    } else {
      errors_.push_back(Where(node, section) + ": " + section + ": unknown section" +
                        DidYouMean(section, {"stores", "tools", "telemetry"}) +
                        "; known sections: stores, tools, telemetry");
    }
  }

  // Statistics go to a store of this file that other processes can read.
  const TelemetryConfig& telemetry = config->telemetry;
  if (!telemetry.stats_store.empty()) {
    const std::string& where = telemetry.set_at.at("stats_store");
    auto it = config->stores.find(telemetry.stats_store);
    if (it == config->stores.end()) {
      std::vector<std::string> names;
      for (const auto& [name, store] : config->stores) names.push_back(name);
      errors_.push_back(where + ": telemetry.stats_store: no store '" + telemetry.stats_store +
                        "' is configured; name a [stores.NAME] of type sqlite, redis, valkey or "
                        "postgres" +
                        DidYouMean(telemetry.stats_store, names));
    } else if (!it->second.shared()) {
      // A memory store lives inside the process: nobody else could read it.
      errors_.push_back(where + ": telemetry.stats_store: store '" + telemetry.stats_store +
                        "' is of type " + it->second.type_name +
                        "; statistics are published to a sqlite, redis, valkey or postgres store");
    }
  }
}

std::mutex& AppliedMutex() {
  static std::mutex* mu = new std::mutex();
  return *mu;
}
std::shared_ptr<const Config>& AppliedSlot() {
  static auto* slot = new std::shared_ptr<const Config>();
  return *slot;
}

}  // namespace

Result<Duration> ParseDurationText(std::string_view text) {
  auto bad = [&]() {
    return Status(StatusCode::kInvalidArgument,
                  "'" + std::string(text) +
                      "' is not a duration; write a number with a unit: "
                      "\"250ms\", \"5s\", \"1m\", \"2h\"",
                  Guard::kPolicy);
  };
  size_t unit_at = 0;
  while (unit_at < text.size() &&
         (std::isdigit(static_cast<unsigned char>(text[unit_at])) || text[unit_at] == '.')) {
    ++unit_at;
  }
  double number = 0;
  if (unit_at == 0 || !ParseDouble(text.substr(0, unit_at), &number)) return bad();
  std::string_view unit = text.substr(unit_at);
  double seconds = 0;
  if (unit == "ns") {
    seconds = number / 1e9;
  } else if (unit == "us") {
    seconds = number / 1e6;
  } else if (unit == "ms") {
    seconds = number / 1e3;
  } else if (unit == "s") {
    seconds = number;
  } else if (unit == "m") {
    seconds = number * 60;
  } else if (unit == "h") {
    seconds = number * 3600;
  } else if (unit == "d") {
    seconds = number * 86400;
  } else {
    return bad();
  }
  Result<Duration> d = SecondsToDuration(seconds);
  if (!d.ok()) return bad();
  return d;
}

const std::string& StoreConfig::key_namespace() const {
  static const std::string* empty = new std::string();
  switch (type) {
    case StoreType::kMemory:
      return *empty;
    case StoreType::kSqlite:
      return sqlite.key_namespace;
    case StoreType::kRedis:
      return redis.key_namespace;
    case StoreType::kPostgres:
      return postgres.key_namespace;
  }
  return *empty;
}

Result<std::unique_ptr<Store>> StoreConfig::Open(Clock* clock) const {
  Result<std::unique_ptr<Store>> store = Status();
  switch (type) {
    case StoreType::kMemory:
      store = NewMemoryStore(memory);
      break;
    case StoreType::kSqlite:
      store = NewSqliteStore(sqlite, clock);
      break;
    case StoreType::kRedis:
      store = NewRedisStore(redis, clock);
      break;
    case StoreType::kPostgres:
      store = NewPostgresStore(postgres, clock);
      break;
  }
  if (!store.ok()) {
    return Status(store.status().code(),
                  "store '" + name + "' (" + where + "): " + std::string(store.status().message()),
                  store.status().guard());
  }
  return store;
}

void ToolConfig::ApplyTo(ToolPolicy* policy) const {
  for (const PolicyOverride& o : overrides) o.apply(policy);
}

std::string ToolConfig::Blame(std::string_view message) const {
  const PolicyOverride* culprit = nullptr;
  for (const PolicyOverride& o : overrides) {
    if (message.find(o.field) != std::string_view::npos &&
        (culprit == nullptr || o.field.size() > culprit->field.size())) {
      culprit = &o;
    }
  }
  return culprit == nullptr ? "" : " (" + culprit->field + " set by " + culprit->where + ")";
}

const ToolConfig* Config::FindTool(std::string_view name) const {
  auto it = tools.find(std::string(name));
  return it == tools.end() ? nullptr : &it->second;
}

ConfigEnv ProcessEnvironment() {
  ConfigEnv env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    size_t eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace_back(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  return env;
}

Result<Config> ParseConfig(std::string_view text, const std::string& source, const ConfigEnv& env) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return Status(StatusCode::kInvalidArgument,
                  source + ":" + std::to_string(e.source().begin.line) +
                      ": not valid TOML: " + std::string(e.description()),
                  Guard::kPolicy);
  }
  Config config;
  config.path = source;
  Reader reader(source);
  reader.MergeEnvironment(root, env, &config);
  reader.Read(root, &config);
  if (!reader.errors().empty()) {
    std::string message;
    for (const std::string& e : reader.errors()) message += (message.empty() ? "" : "\n") + e;
    return Status(StatusCode::kInvalidArgument, message, Guard::kPolicy);
  }
  return config;
}

Result<Config> LoadConfig(const std::string& path) {
  std::string file = path;
  bool required = !file.empty();
  if (file.empty()) {
    if (const char* env = std::getenv("TOOLOPS_CONFIG"); env != nullptr && *env != '\0') {
      file = env;
      required = true;
    } else if (std::error_code ec; std::filesystem::exists("toolops.toml", ec)) {
      file = "toolops.toml";
    }
  }
  if (file.empty()) {
    Result<Config> config = ParseConfig("", "(no file)", ProcessEnvironment());
    if (config.ok()) config->path.clear();
    return config;
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return Status(required ? StatusCode::kNotFound : StatusCode::kInvalidArgument,
                  file + ": cannot read the configuration file (" +
                      (std::filesystem::exists(file) ? "permission denied" : "no such file") +
                      "); give an existing file with --config or $TOOLOPS_CONFIG",
                  Guard::kPolicy);
  }
  std::ostringstream text;
  text << in.rdbuf();
  Result<Config> config = ParseConfig(text.str(), file, ProcessEnvironment());
  if (config.ok()) config->path = file;
  return config;
}

Status ApplyConfig(const Config& config, StoreRegistry* registry, Clock* clock) {
  std::vector<std::pair<std::string, std::shared_ptr<Store>>> opened;
  for (const auto& [name, store_config] : config.stores) {
    Result<std::unique_ptr<Store>> store = store_config.Open(clock);
    if (!store.ok()) return store.status();
    opened.emplace_back(name, std::shared_ptr<Store>(std::move(store).value()));
  }
  for (auto& [name, store] : opened) registry->Register(name, std::move(store));
  auto applied = std::make_shared<const Config>(config);
  std::lock_guard<std::mutex> lock(AppliedMutex());
  AppliedSlot() = std::move(applied);
  return Status();
}

std::shared_ptr<const Config> AppliedConfig() {
  std::lock_guard<std::mutex> lock(AppliedMutex());
  return AppliedSlot();
}

void ResetAppliedConfig() {
  std::lock_guard<std::mutex> lock(AppliedMutex());
  AppliedSlot().reset();
}

}  // namespace toolops
