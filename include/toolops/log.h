// include/toolops/log.h
//
// The library's few log lines: notable events only (a store going down and
// coming back, a lease lost), never one per call. Each record has a level, a
// stable event name ("store.down") and a message for people. By default
// records of level kWarning and above go to stderr as one line each; a sink
// set here receives every record instead (tests, or a JSON logger).
//
// Messages never hold argument values or keys: they name tools, stores and
// endpoints only.

#ifndef TOOLOPS_LOG_H_
#define TOOLOPS_LOG_H_

#include <functional>
#include <string_view>

namespace toolops {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

std::string_view LogLevelName(LogLevel level);

struct LogRecord {
  LogLevel level;
  std::string_view event;
  std::string_view message;
};

using LogSink = std::function<void(const LogRecord&)>;

// Replaces the process's sink; an empty sink restores the stderr default.
// Safe to call at any time; a record being written concurrently goes to the
// old or the new sink.
void SetLogSink(LogSink sink);

void Log(LogLevel level, std::string_view event, std::string_view message);

}  // namespace toolops

#endif  // TOOLOPS_LOG_H_
