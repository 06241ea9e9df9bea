// src/base/status.cc

#include "toolops/status.h"

#include <string>

namespace toolops {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kCancelled:
      return "CANCELLED";
    case StatusCode::kUnknown:
      return "UNKNOWN";
    case StatusCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case StatusCode::kDeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    case StatusCode::kNotFound:
      return "NOT_FOUND";
    case StatusCode::kAlreadyExists:
      return "ALREADY_EXISTS";
    case StatusCode::kPermissionDenied:
      return "PERMISSION_DENIED";
    case StatusCode::kResourceExhausted:
      return "RESOURCE_EXHAUSTED";
    case StatusCode::kFailedPrecondition:
      return "FAILED_PRECONDITION";
    case StatusCode::kAborted:
      return "ABORTED";
    case StatusCode::kOutOfRange:
      return "OUT_OF_RANGE";
    case StatusCode::kUnimplemented:
      return "UNIMPLEMENTED";
    case StatusCode::kInternal:
      return "INTERNAL";
    case StatusCode::kUnavailable:
      return "UNAVAILABLE";
    case StatusCode::kDataLoss:
      return "DATA_LOSS";
    case StatusCode::kUnauthenticated:
      return "UNAUTHENTICATED";
  }
  return "UNKNOWN";
}

std::string_view GuardName(Guard guard) {
  switch (guard) {
    case Guard::kNone:
      return "none";
    case Guard::kUpstream:
      return "upstream";
    case Guard::kPolicy:
      return "policy";
    case Guard::kBreaker:
      return "breaker";
    case Guard::kLimiter:
      return "limiter";
    case Guard::kRetryBudget:
      return "retry_budget";
    case Guard::kAttemptTimeout:
      return "attempt_timeout";
    case Guard::kDeadline:
      return "deadline";
    case Guard::kCoalescing:
      return "coalescing";
    case Guard::kStore:
      return "store";
    case Guard::kCodec:
      return "codec";
  }
  return "none";
}

bool IsTransient(StatusCode code) {
  return code == StatusCode::kUnavailable || code == StatusCode::kDeadlineExceeded ||
         code == StatusCode::kResourceExhausted || code == StatusCode::kAborted;
}

Status::Status(StatusCode code, std::string message, Guard guard,
               std::chrono::nanoseconds retry_after) {
  if (code == StatusCode::kOk) return;  // An OK status carries nothing.
  rep_ = std::make_shared<const Rep>(Rep{code, guard, retry_after, std::move(message)});
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string out(StatusCodeName(code()));
  out += " [";
  out += GuardName(guard());
  out += "]: ";
  out += message();
  return out;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string message(context);
  message += ": ";
  message += rep_->message;
  return Status(rep_->code, std::move(message), rep_->guard, rep_->retry_after);
}

Status UnavailableError(std::string message, std::chrono::nanoseconds retry_after) {
  return Status(StatusCode::kUnavailable, std::move(message), Guard::kUpstream, retry_after);
}
Status InvalidArgumentError(std::string message) {
  return Status(StatusCode::kInvalidArgument, std::move(message), Guard::kUpstream);
}
Status ResourceExhaustedError(std::string message, std::chrono::nanoseconds retry_after) {
  return Status(StatusCode::kResourceExhausted, std::move(message), Guard::kUpstream, retry_after);
}
Status InternalError(std::string message) {
  return Status(StatusCode::kInternal, std::move(message), Guard::kUpstream);
}
Status NotFoundError(std::string message) {
  return Status(StatusCode::kNotFound, std::move(message), Guard::kUpstream);
}

const Status& MisuseStatus() {
  static const Status* status =
      new Status(StatusCode::kInternal, "Result built from an OK status", Guard::kNone);
  return *status;
}

ToolError::ToolError(Status status)
    : std::runtime_error(status.ToString()), status_(std::move(status)) {}

}  // namespace toolops
