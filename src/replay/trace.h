// src/replay/trace.h
//
// Traces of tool calls, the input of `toolops replay`: JSON Lines, one call
// per line (docs/TRACE_FORMAT.md). TraceReader streams a file in time order
// (a bounded reorder window absorbs small disorder), reports malformed lines
// by number and skips them or stops, as asked. Nothing is held per line once
// it has been handed out, so a trace of any length reads in bounded memory.
//
// A CallSource is anything that hands out calls in time order: a TraceReader
// or the sample generator (replay/sample.h). Sources are used by one thread.

#ifndef TOOLOPS_REPLAY_TRACE_H_
#define TOOLOPS_REPLAY_TRACE_H_

#include <cstdint>
#include <fstream>
#include <istream>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <vector>

#include "toolops/args.h"
#include "toolops/clock.h"
#include "toolops/status.h"

namespace toolops {

// One tool call of a trace.
struct TraceCall {
  // When the call was made, as Unix nanoseconds.
  int64_t time_ns = 0;
  std::string conversation;
  std::string agent;
  std::string tool;
  // The arguments: always a map (a JSON object).
  Value args = Value(Value::Map{});
  // Observed in production, when the trace has them.
  std::optional<double> cost;
  std::optional<Duration> latency;
  // The observed outcome: kOk, or the error code the tool returned.
  std::optional<StatusCode> outcome;
  // Ground truth: calls with the same label may share an answer. Empty: none.
  std::string intent;
  // Line number in the trace file (0 for generated calls).
  uint64_t line = 0;
};

// Parses one line. InvalidArgument says which field is missing or wrong.
Result<TraceCall> ParseTraceLine(std::string_view line);

// One JSON line for `call` (the inverse of ParseTraceLine), without the
// newline. Timestamps are written as RFC 3339 UTC with microseconds.
std::string FormatTraceLine(const TraceCall& call);

// "2025-06-02T09:00:00.250Z" (or with an offset "+02:00"), or nullopt.
std::optional<int64_t> ParseRfc3339(std::string_view text);
std::string FormatRfc3339(int64_t unix_ns);

// The outcome names of the trace format: "ok", a status code name in any
// case ("unavailable", "RESOURCE_EXHAUSTED"), or the aliases "error"
// (UNKNOWN), "timeout" (DEADLINE_EXCEEDED), "rate_limited"
// (RESOURCE_EXHAUSTED).
std::optional<StatusCode> ParseOutcome(std::string_view text);

class CallSource {
 public:
  virtual ~CallSource() = default;
  // The next call in time order (never earlier than the one before), or
  // nullopt at the end or on a fatal error (then status() says why).
  virtual std::optional<TraceCall> Next() = 0;
  virtual Status status() const { return Status(); }
};

// Calls held in memory (tests, small generated traces), sorted by time on
// construction (stable: equal times keep their order).
class VectorCallSource final : public CallSource {
 public:
  explicit VectorCallSource(std::vector<TraceCall> calls);
  std::optional<TraceCall> Next() override;

 private:
  std::vector<TraceCall> calls_;
  size_t next_ = 0;
};

enum class OnError : uint8_t {
  kSkip,  // Report malformed lines and go on.
  kFail,  // Stop at the first malformed line.
};

struct TraceReaderOptions {
  OnError on_error = OnError::kSkip;
  // Lines held to put slightly unordered timestamps in order. A line earlier
  // than a call already handed out is malformed ("out of order").
  size_t reorder_window = 4096;
  // Malformed lines whose message is kept (all are counted).
  size_t max_kept_errors = 20;
};

struct TraceLineError {
  uint64_t line = 0;
  std::string message;
};

class TraceReader final : public CallSource {
 public:
  // Reads `in`, which must outlive the reader. `name` names it in messages.
  TraceReader(std::istream* in, std::string name, TraceReaderOptions options = {});
  // Opens a file; NotFound naming it when it cannot be read.
  static Result<std::unique_ptr<TraceReader>> Open(const std::string& path,
                                                   TraceReaderOptions options = {});

  std::optional<TraceCall> Next() override;
  // InvalidArgument naming the line when on_error is kFail and a line was
  // malformed; OK otherwise.
  Status status() const override { return status_; }

  uint64_t lines() const { return lines_; }
  uint64_t calls() const { return calls_; }
  uint64_t malformed() const { return malformed_; }
  // The first max_kept_errors malformed lines.
  const std::vector<TraceLineError>& errors() const { return errors_; }

 private:
  struct Later {
    bool operator()(const TraceCall& a, const TraceCall& b) const {
      return a.time_ns != b.time_ns ? a.time_ns > b.time_ns : a.line > b.line;
    }
  };
  // Reads lines until the window is full or the input ends.
  void Fill();
  void Malformed(uint64_t line, std::string message);

  std::unique_ptr<std::ifstream> owned_;
  std::istream* in_;
  const std::string name_;
  const TraceReaderOptions options_;
  std::priority_queue<TraceCall, std::vector<TraceCall>, Later> window_;
  std::string line_buffer_;
  bool eof_ = false;
  Status status_;
  int64_t last_time_ns_ = INT64_MIN;
  uint64_t lines_ = 0;
  uint64_t calls_ = 0;
  uint64_t malformed_ = 0;
  std::vector<TraceLineError> errors_;
};

}  // namespace toolops

#endif  // TOOLOPS_REPLAY_TRACE_H_
