// src/replay/trace.cc

#include "replay/trace.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

namespace toolops {
namespace {

using Json = nlohmann::json;

Status Bad(std::string message) {
  return Status(StatusCode::kInvalidArgument, std::move(message), Guard::kCodec);
}

Value ToValue(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null:
      return Value();
    case Json::value_t::boolean:
      return Value(j.get<bool>());
    case Json::value_t::number_integer:
      return Value(j.get<int64_t>());
    case Json::value_t::number_unsigned:
      return Value(j.get<uint64_t>());
    case Json::value_t::number_float:
      return Value(j.get<double>());
    case Json::value_t::string:
      return Value(j.get<std::string>());
    case Json::value_t::array: {
      Value::List items;
      items.reserve(j.size());
      for (const Json& item : j) items.push_back(ToValue(item));
      return Value(std::move(items));
    }
    case Json::value_t::object: {
      Value::Map entries;
      entries.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) entries.emplace_back(it.key(), ToValue(*it));
      return Value(std::move(entries));
    }
    default:
      return Value();
  }
}

// Days since 1970-01-01 of a proleptic Gregorian date.
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void CivilFromDays(int64_t z, int64_t* y, unsigned* m, unsigned* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = static_cast<int64_t>(yoe) + era * 400 + (*m <= 2);
}

bool Digits(std::string_view s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::optional<int64_t> ParseRfc3339(std::string_view s) {
  int year, month, day, hour, minute, second;
  if (!Digits(s, 0, 4, &year) || s.size() < 19 || s[4] != '-' || !Digits(s, 5, 2, &month) ||
      s[7] != '-' || !Digits(s, 8, 2, &day) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
      !Digits(s, 11, 2, &hour) || s[13] != ':' || !Digits(s, 14, 2, &minute) || s[16] != ':' ||
      !Digits(s, 17, 2, &second)) {
    return std::nullopt;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return std::nullopt;
  }
  size_t pos = 19;
  int64_t fraction_ns = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int64_t scale = 100'000'000;
    size_t digits = 0;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) {
      fraction_ns += (s[pos] - '0') * scale;
      scale /= 10;
      ++pos;
      ++digits;
    }
    if (digits == 0) return std::nullopt;
  }
  int64_t offset_s = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int oh, om;
    if (!Digits(s, pos + 1, 2, &oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !Digits(s, pos + 4, 2, &om)) {
      return std::nullopt;
    }
    offset_s = (oh * 3600 + om * 60) * (s[pos] == '+' ? 1 : -1);
    pos += 6;
  } else {
    return std::nullopt;  // RFC 3339 needs a zone.
  }
  if (pos != s.size()) return std::nullopt;
  int64_t days = DaysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  int64_t seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset_s;
  return seconds * 1'000'000'000 + fraction_ns;
}

std::string FormatRfc3339(int64_t unix_ns) {
  int64_t seconds =
      unix_ns >= 0 ? unix_ns / 1'000'000'000 : -((-unix_ns + 999'999'999) / 1'000'000'000);
  int64_t micros = (unix_ns - seconds * 1'000'000'000) / 1000;
  int64_t days = seconds >= 0 ? seconds / 86400 : -((-seconds + 86399) / 86400);
  int64_t rest = seconds - days * 86400;
  int64_t y;
  unsigned m, d;
  CivilFromDays(days, &y, &m, &d);
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%04lld-%02u-%02uT%02lld:%02lld:%02lld.%06lldZ",
                static_cast<long long>(y), m, d, static_cast<long long>(rest / 3600),
                static_cast<long long>(rest / 60 % 60), static_cast<long long>(rest % 60),
                static_cast<long long>(micros));
  return buffer;
}

std::optional<StatusCode> ParseOutcome(std::string_view text) {
  std::string name = Lower(text);
  if (name == "ok" || name == "success") return StatusCode::kOk;
  if (name == "error") return StatusCode::kUnknown;
  if (name == "timeout") return StatusCode::kDeadlineExceeded;
  if (name == "rate_limited") return StatusCode::kResourceExhausted;
  for (int c = 0; c <= static_cast<int>(StatusCode::kUnauthenticated); ++c) {
    if (Lower(StatusCodeName(static_cast<StatusCode>(c))) == name) {
      return static_cast<StatusCode>(c);
    }
  }
  return std::nullopt;
}

Result<TraceCall> ParseTraceLine(std::string_view line) {
  Json j = Json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad("not valid JSON");
  if (!j.is_object()) return Bad("not a JSON object");
  TraceCall call;

  // Timestamp: RFC 3339 text or Unix seconds.
  auto ts = j.find("ts");
  if (ts == j.end()) return Bad("no \"ts\" (the call's time: RFC 3339 text or Unix seconds)");
  if (ts->is_string()) {
    std::optional<int64_t> parsed = ParseRfc3339(ts->get_ref<const std::string&>());
    if (!parsed) {
      return Bad("\"ts\" is '" + ts->get<std::string>() +
                 "', not an RFC 3339 time such as 2025-06-02T09:00:00.250Z");
    }
    call.time_ns = *parsed;
  } else if (ts->is_number()) {
    double seconds = ts->get<double>();
    if (!std::isfinite(seconds) || std::fabs(seconds) > 9.2e9) return Bad("\"ts\" is out of range");
    call.time_ns = static_cast<int64_t>(std::llround(seconds * 1e9));
  } else {
    return Bad("\"ts\" must be RFC 3339 text or a number of Unix seconds");
  }

  auto text_field = [&](const char* name, bool required, std::string* out) -> Status {
    auto it = j.find(name);
    if (it == j.end() || it->is_null()) {
      return required ? Bad(std::string("no \"") + name + "\"") : Status();
    }
    if (!it->is_string()) return Bad(std::string("\"") + name + "\" must be a string");
    *out = it->get<std::string>();
    if (required && out->empty()) return Bad(std::string("\"") + name + "\" is empty");
    return Status();
  };
  if (Status s = text_field("tool", true, &call.tool); !s.ok()) return s;
  if (Status s = text_field("conversation", false, &call.conversation); !s.ok()) return s;
  if (Status s = text_field("agent", false, &call.agent); !s.ok()) return s;
  if (Status s = text_field("intent", false, &call.intent); !s.ok()) return s;

  auto args = j.find("args");
  if (args == j.end() || args->is_null()) {
    call.args = Value(Value::Map{});
  } else if (args->is_object()) {
    call.args = ToValue(*args);
  } else {
    return Bad("\"args\" must be a JSON object of the call's arguments");
  }

  if (auto it = j.find("cost"); it != j.end() && !it->is_null()) {
    if (!it->is_number() || it->get<double>() < 0 || !std::isfinite(it->get<double>())) {
      return Bad("\"cost\" must be a number of at least 0");
    }
    call.cost = it->get<double>();
  }
  if (auto it = j.find("latency_ms"); it != j.end() && !it->is_null()) {
    if (!it->is_number() || it->get<double>() < 0 || it->get<double>() > 86'400'000) {
      return Bad("\"latency_ms\" must be a number of milliseconds between 0 and 86400000");
    }
    call.latency = Duration(static_cast<int64_t>(it->get<double>() * 1e6));
  }
  if (auto it = j.find("outcome"); it != j.end() && !it->is_null()) {
    if (!it->is_string())
      return Bad("\"outcome\" must be a string such as \"ok\" or \"unavailable\"");
    call.outcome = ParseOutcome(it->get_ref<const std::string&>());
    if (!call.outcome) {
      return Bad("\"outcome\" is '" + it->get<std::string>() +
                 "'; use \"ok\", a status code name (\"unavailable\", \"resource_exhausted\", "
                 "...), \"error\", \"timeout\" or \"rate_limited\"");
    }
  }
  return call;
}

std::string FormatTraceLine(const TraceCall& call) {
  Json j = Json::object();
  j["ts"] = FormatRfc3339(call.time_ns);
  if (!call.conversation.empty()) j["conversation"] = call.conversation;
  if (!call.agent.empty()) j["agent"] = call.agent;
  j["tool"] = call.tool;
  j["args"] = Json::parse(call.args.ToJson(), nullptr, false);
  if (call.cost) j["cost"] = *call.cost;
  if (call.latency)
    j["latency_ms"] = std::chrono::duration<double, std::milli>(*call.latency).count();
  if (call.outcome) {
    j["outcome"] =
        *call.outcome == StatusCode::kOk ? std::string("ok") : Lower(StatusCodeName(*call.outcome));
  }
  if (!call.intent.empty()) j["intent"] = call.intent;
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

VectorCallSource::VectorCallSource(std::vector<TraceCall> calls) : calls_(std::move(calls)) {
  std::stable_sort(calls_.begin(), calls_.end(),
                   [](const TraceCall& a, const TraceCall& b) { return a.time_ns < b.time_ns; });
}

std::optional<TraceCall> VectorCallSource::Next() {
  if (next_ == calls_.size()) return std::nullopt;
  return std::move(calls_[next_++]);
}

TraceReader::TraceReader(std::istream* in, std::string name, TraceReaderOptions options)
    : in_(in), name_(std::move(name)), options_(options) {}

Result<std::unique_ptr<TraceReader>> TraceReader::Open(const std::string& path,
                                                       TraceReaderOptions options) {
  auto file = std::make_unique<std::ifstream>(path);
  if (!*file) {
    return Status(StatusCode::kNotFound, "trace '" + path + "' cannot be opened for reading",
                  Guard::kCodec);
  }
  auto reader = std::make_unique<TraceReader>(file.get(), path, options);
  reader->owned_ = std::move(file);
  return reader;
}

void TraceReader::Malformed(uint64_t line, std::string message) {
  ++malformed_;
  if (errors_.size() < options_.max_kept_errors) errors_.push_back({line, message});
  if (options_.on_error == OnError::kFail && status_.ok()) {
    status_ = Bad(name_ + " line " + std::to_string(line) + ": " + message +
                  " (use --on-error skip to replay the other lines)");
  }
}

void TraceReader::Fill() {
  while (!eof_ && status_.ok() && window_.size() <= options_.reorder_window) {
    if (!std::getline(*in_, line_buffer_)) {
      eof_ = true;
      break;
    }
    ++lines_;
    std::string_view line = line_buffer_;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    size_t first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos) continue;  // Blank lines are allowed.
    Result<TraceCall> call = ParseTraceLine(line);
    if (!call.ok()) {
      Malformed(lines_, std::string(call.status().message()));
      continue;
    }
    if (call->time_ns < last_time_ns_) {
      Malformed(lines_, "\"ts\" " + FormatRfc3339(call->time_ns) +
                            " is earlier than calls already replayed (more than " +
                            std::to_string(options_.reorder_window) +
                            " lines out of order); sort the trace by time");
      continue;
    }
    call->line = lines_;
    window_.push(std::move(call).value());
  }
}

std::optional<TraceCall> TraceReader::Next() {
  Fill();
  if (!status_.ok() || window_.empty()) return std::nullopt;
  TraceCall call = window_.top();
  window_.pop();
  last_time_ns_ = call.time_ns;
  ++calls_;
  return call;
}

}  // namespace toolops
