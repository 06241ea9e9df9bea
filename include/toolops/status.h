// include/toolops/status.h
//
// Status and Result<T>: how every ToolOps operation reports failure.
//
// A Status carries a code that tells the caller what to do next (retry with
// backoff, give up, fix the input), the guard that produced it (the upstream
// tool itself, the circuit breaker, the concurrency limiter, ...), a message
// for humans, and an optional retry-after hint from the tool. Retry and
// breaker logic decide on codes, never on message text.
//
// Status and Result<T> are values; copies share one immutable error record,
// so handing the same error to a thousand coalesced waiters costs a refcount
// each. Safe to copy and read from many threads.

#ifndef TOOLOPS_STATUS_H_
#define TOOLOPS_STATUS_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace toolops {

// Codes follow the widely used canonical set so that they map one to one onto
// gRPC and HTTP conventions. What a caller should do is in the comment.
enum class StatusCode : uint8_t {
  kOk = 0,
  kCancelled = 1,           // The caller gave up. Do not retry.
  kUnknown = 2,             // An error with no classification. Not retried by default.
  kInvalidArgument = 3,     // Bad input. Fix the call; never retry.
  kDeadlineExceeded = 4,    // Ran out of time. Retry only if time remains.
  kNotFound = 5,            // Definitive answer from the tool. Do not retry.
  kAlreadyExists = 6,       // Do not retry.
  kPermissionDenied = 7,    // Do not retry.
  kResourceExhausted = 8,   // Rate limited or a local limit. Retry after backoff.
  kFailedPrecondition = 9,  // System not in a state to do this. Do not retry as is.
  kAborted = 10,            // Conflict; retry at a higher level.
  kOutOfRange = 11,         // Do not retry.
  kUnimplemented = 12,      // Do not retry.
  kInternal = 13,           // A bug somewhere. Do not retry.
  kUnavailable = 14,        // Transient. Retry with backoff.
  kDataLoss = 15,           // Do not retry.
  kUnauthenticated = 16,    // Do not retry.
};

// Which part of ToolOps (or the tool itself) produced a status.
enum class Guard : uint8_t {
  kNone = 0,        // Not an error, or origin not known.
  kUpstream,        // The wrapped tool returned or threw this error.
  kPolicy,          // A policy or a call was refused as invalid.
  kBreaker,         // The circuit breaker is open (or half-open and full).
  kLimiter,         // The concurrency limit was reached.
  kRetryBudget,     // A retry was needed but the tool's retry budget is spent.
  kAttemptTimeout,  // One attempt took longer than the per-attempt timeout.
  kDeadline,        // The overall deadline over all attempts passed.
  kCoalescing,      // Waiting for another caller's in-flight call failed.
  kStore,           // A cache store failed (stores never fail a call by themselves).
  kCodec,           // A value could not be encoded or decoded.
};

std::string_view StatusCodeName(StatusCode code);
std::string_view GuardName(Guard guard);

// True for codes where trying the same call again may succeed.
bool IsTransient(StatusCode code);

class [[nodiscard]] Status {
 public:
  // The OK status. Costs one null pointer.
  Status() = default;
  Status(StatusCode code, std::string message, Guard guard = Guard::kUpstream,
         std::chrono::nanoseconds retry_after = std::chrono::nanoseconds::zero());

  static Status Ok() { return Status(); }

  bool ok() const { return rep_ == nullptr; }
  StatusCode code() const { return rep_ ? rep_->code : StatusCode::kOk; }
  Guard guard() const { return rep_ ? rep_->guard : Guard::kNone; }
  std::string_view message() const { return rep_ ? std::string_view(rep_->message) : ""; }
  // A hint from the tool (for example an HTTP Retry-After header); zero if none.
  std::chrono::nanoseconds retry_after() const {
    return rep_ ? rep_->retry_after : std::chrono::nanoseconds::zero();
  }

  // "UNAVAILABLE [breaker]: message".
  std::string ToString() const;

  // A copy with the message prefixed by `context` and ": ".
  Status WithContext(std::string_view context) const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code() == b.code() && a.guard() == b.guard() && a.message() == b.message();
  }

 private:
  struct Rep {
    StatusCode code;
    Guard guard;
    std::chrono::nanoseconds retry_after;
    std::string message;
  };
  std::shared_ptr<const Rep> rep_;
};

// Convenience constructors for errors raised by tools themselves.
Status UnavailableError(std::string message,
                        std::chrono::nanoseconds retry_after = std::chrono::nanoseconds::zero());
Status InvalidArgumentError(std::string message);
Status ResourceExhaustedError(
    std::string message, std::chrono::nanoseconds retry_after = std::chrono::nanoseconds::zero());
Status InternalError(std::string message);
Status NotFoundError(std::string message);

// The exception thrown by the same-signature form of a wrapped tool, and the
// one a tool may throw to report a classified error. Exceptions are used only
// at this edge; inside the library errors are Status values.
// The error a Result holds when it was (wrongly) built from an OK status.
// Built once; copies share it.
const Status& MisuseStatus();

class ToolError : public std::runtime_error {
 public:
  explicit ToolError(Status status);
  const Status& status() const { return status_; }

 private:
  Status status_;
};

// A value of type T or an error Status. REQUIRES: the status given is not OK.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    if (status_.ok()) status_ = MisuseStatus();
  }

  bool ok() const { return value_.has_value(); }
  // OK when a value is held.
  const Status& status() const { return status_; }

  // REQUIRES: ok().
  const T& value() const& { return *value_; }
  T& value() & { return *value_; }
  T&& value() && { return std::move(*value_); }
  const T& operator*() const& { return *value_; }
  T& operator*() & { return *value_; }
  const T* operator->() const { return &*value_; }
  T* operator->() { return &*value_; }

  // The value, or throws ToolError with the status.
  T ValueOrThrow() && {
    if (!ok()) throw ToolError(status_);
    return std::move(*value_);
  }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace toolops

#endif  // TOOLOPS_STATUS_H_
