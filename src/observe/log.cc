// src/observe/log.cc

#include "toolops/log.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>

#include "toolops/secrets.h"
#include "toolops/tracing.h"

namespace toolops {
namespace {

std::mutex& SinkMutex() {
  static std::mutex mu;
  return mu;
}

std::shared_ptr<const LogSink>& SinkSlot() {
  static std::shared_ptr<const LogSink> sink;
  return sink;
}

// -1: not set (see SetLogLevel).
std::atomic<int> min_level{-1};
std::atomic<bool> configured{false};

int64_t UnixNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void WriteLine(FILE* out, std::string line) {
  static std::mutex mu;
  line.push_back('\n');
  std::lock_guard lock(mu);
  std::fwrite(line.data(), 1, line.size(), out);
  std::fflush(out);
}

// The environment's choice, once, unless the program chose first.
void ConfigureOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (configured.load()) return;
    Status s = ConfigureLoggingFromEnv();
    if (!s.ok()) {
      WriteLine(stderr, "toolops warning log.config: " + std::string(s.message()) +
                            "; logging stays text at level warning");
    }
  });
}

}  // namespace

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "unknown";
}

Result<LogLevel> ParseLogLevel(std::string_view name) {
  std::string n(name);
  for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (n == "debug") return LogLevel::kDebug;
  if (n == "info") return LogLevel::kInfo;
  if (n == "warning" || n == "warn") return LogLevel::kWarning;
  if (n == "error") return LogLevel::kError;
  return Status(
      StatusCode::kInvalidArgument,
      "log level '" + std::string(name) + "' is unknown; use debug, info, warning or error");
}

void SetLogSink(LogSink sink) {
  configured.store(true);
  std::shared_ptr<const LogSink> next;
  if (sink) next = std::make_shared<const LogSink>(std::move(sink));
  std::lock_guard lock(SinkMutex());
  SinkSlot() = std::move(next);
}

void SetLogLevel(LogLevel level) {
  configured.store(true);
  min_level.store(static_cast<int>(level));
}

void ClearLogLevel() {
  configured.store(true);
  min_level.store(-1);
}

void Log(LogLevel level, std::string_view event, std::string_view message) {
  Log(level, event, message, LogFields{});
}

void Log(LogLevel level, std::string_view event, std::string_view message,
         const LogFields& fields) {
  ConfigureOnce();
  int min = min_level.load(std::memory_order_relaxed);
  if (min >= 0 && static_cast<int>(level) < min) return;
  std::shared_ptr<const LogSink> sink;
  {
    std::lock_guard lock(SinkMutex());
    sink = SinkSlot();
  }
  LogRecord record{level, event, message, fields.tool, fields.store};
  if (sink) {
    (*sink)(record);
    return;
  }
  if (min < 0 && level < LogLevel::kWarning) return;
  std::string line = "toolops " + std::string(LogLevelName(level)) + " " + std::string(event);
  if (!fields.tool.empty()) line += " tool=" + std::string(fields.tool);
  if (!fields.store.empty()) line += " store=" + std::string(fields.store);
  line += ": " + MaskSecretsInText(message);
  WriteLine(stderr, std::move(line));
}

std::string FormatJsonLogLine(const LogRecord& record, int64_t unix_ns) {
  std::time_t seconds = static_cast<std::time_t>(unix_ns / 1'000'000'000);
  int millis = static_cast<int>((unix_ns / 1'000'000) % 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char time[40];
  std::snprintf(time, sizeof(time), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
  std::string out = "{\"time\": \"";
  out += time;
  out += "\", \"level\": ";
  internal::AppendJsonString(&out, LogLevelName(record.level));
  out += ", \"event\": ";
  internal::AppendJsonString(&out, record.event);
  out += ", \"message\": ";
  internal::AppendJsonString(&out, MaskSecretsInText(record.message));
  if (!record.tool.empty()) {
    out += ", \"tool\": ";
    internal::AppendJsonString(&out, record.tool);
  }
  if (!record.store.empty()) {
    out += ", \"store\": ";
    internal::AppendJsonString(&out, record.store);
  }
  out += "}";
  return out;
}

LogSink JsonLogSink(FILE* out) {
  return [out](const LogRecord& record) { WriteLine(out, FormatJsonLogLine(record, UnixNowNs())); };
}

Status ConfigureLoggingFromEnv() {
  const char* format = std::getenv("TOOLOPS_LOG_FORMAT");
  const char* level = std::getenv("TOOLOPS_LOG_LEVEL");
  bool json = false;
  if (format != nullptr && *format != '\0') {
    std::string f(format);
    for (char& c : f) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (f == "json") {
      json = true;
    } else if (f != "text") {
      return Status(StatusCode::kInvalidArgument,
                    "TOOLOPS_LOG_FORMAT is '" + std::string(format) + "'; use json or text");
    }
  }
  std::optional<LogLevel> parsed;
  if (level != nullptr && *level != '\0') {
    Result<LogLevel> l = ParseLogLevel(level);
    if (!l.ok()) {
      return Status(StatusCode::kInvalidArgument,
                    "TOOLOPS_LOG_LEVEL: " + std::string(l.status().message()));
    }
    parsed = l.value();
  }
  if (json) {
    SetLogSink(JsonLogSink(stderr));
    if (!parsed) parsed = LogLevel::kInfo;
  }
  if (parsed) SetLogLevel(*parsed);
  configured.store(true);
  return Status();
}

}  // namespace toolops
