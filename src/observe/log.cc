// src/observe/log.cc

#include "toolops/log.h"

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

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

void SetLogSink(LogSink sink) {
  std::shared_ptr<const LogSink> next;
  if (sink) next = std::make_shared<const LogSink>(std::move(sink));
  std::lock_guard lock(SinkMutex());
  SinkSlot() = std::move(next);
}

void Log(LogLevel level, std::string_view event, std::string_view message) {
  std::shared_ptr<const LogSink> sink;
  {
    std::lock_guard lock(SinkMutex());
    sink = SinkSlot();
  }
  if (sink) {
    (*sink)(LogRecord{level, event, message});
    return;
  }
  if (level < LogLevel::kWarning) return;
  std::string line = "toolops " + std::string(LogLevelName(level)) + " " + std::string(event) +
                     ": " + std::string(message) + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace toolops
