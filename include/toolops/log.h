// include/toolops/log.h
//
// The library's few log lines: notable events only (a store going down and
// coming back, a lease lost), never one per call or per hit. Each record has
// a level, a stable event name ("store.down"), a message for people, and the
// tool and store it concerns when there is one. By default records of level
// kWarning and above go to stderr as one line of text each; JsonLogSink()
// writes JSON lines instead; a sink set here receives the records (tests,
// or the program's own logger).
//
// Messages never hold argument values or keys: they name tools, stores and
// endpoints only. As a second guard, the text and JSON sinks mask the values
// of secret-looking names in messages (api_key=..., "token": "...").
//
// The environment chooses the default sink at the first record, unless the
// program set one: TOOLOPS_LOG_FORMAT=json|text and
// TOOLOPS_LOG_LEVEL=debug|info|warning|error.

#ifndef TOOLOPS_LOG_H_
#define TOOLOPS_LOG_H_

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>

#include "toolops/status.h"

namespace toolops {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

std::string_view LogLevelName(LogLevel level);

struct LogRecord {
  LogLevel level;
  std::string_view event;
  std::string_view message;
  std::string_view tool;   // Empty when the record concerns no one tool.
  std::string_view store;  // Empty when the record concerns no store.
};

struct LogFields {
  std::string_view tool;
  std::string_view store;
};

using LogSink = std::function<void(const LogRecord&)>;

// Replaces the process's sink; an empty sink restores the stderr default.
// Safe to call at any time; a record being written concurrently goes to the
// old or the new sink.
void SetLogSink(LogSink sink);

void Log(LogLevel level, std::string_view event, std::string_view message);
void Log(LogLevel level, std::string_view event, std::string_view message, const LogFields& fields);

// Records below `level` are dropped before any sink. Until it is set, a sink
// set with SetLogSink receives every record and the stderr default prints
// kWarning and above.
void SetLogLevel(LogLevel level);
// Forgets the level SetLogLevel set: sinks receive every record again and
// the stderr default prints kWarning and above.
void ClearLogLevel();

// A sink writing one JSON object per line to `out` (not owned; must outlive
// the sink): {"time": RFC 3339 UTC, "level", "event", "message", "tool",
// "store"}, the last two only when set. Lines are written whole, under a
// lock.
LogSink JsonLogSink(FILE* out = stderr);
// The JSON line of one record (without the newline), at `unix_ns`.
std::string FormatJsonLogLine(const LogRecord& record, int64_t unix_ns);

// Reads TOOLOPS_LOG_FORMAT and TOOLOPS_LOG_LEVEL and sets the sink and
// level they ask for. InvalidArgument naming the variable for an unknown
// value (nothing is changed then).
Status ConfigureLoggingFromEnv();

// "debug", "info", "warning" (or "warn"), "error" (any case).
Result<LogLevel> ParseLogLevel(std::string_view name);

}  // namespace toolops

#endif  // TOOLOPS_LOG_H_
