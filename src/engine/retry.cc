// src/engine/retry.cc

#include "engine/retry.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>

#include "base/format.h"

namespace toolops {
namespace {

std::string FormatNumber(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.3g", value);
  return buffer;
}

std::string ToolName(std::string_view tool) { return "tool '" + std::string(tool) + "'"; }

bool Retryable(const RetryPolicy& policy, StatusCode code) {
  return std::find(policy.retry_on.begin(), policy.retry_on.end(), code) != policy.retry_on.end();
}

RetryDecision FailWith(Status status) {
  RetryDecision decision;
  decision.final_status = std::move(status);
  return decision;
}

}  // namespace

Duration BackoffDelay(const RetryPolicy& policy, int retry_number, Random& random) {
  const int64_t initial = policy.initial_backoff.count();
  const int64_t max = policy.max_backoff.count();
  if (initial <= 0 || max <= 0) return Duration::zero();

  // The cap, in floating point so that multiplier^(n - 1) cannot overflow; a
  // value that is infinite or not below max (NaN compares false) is max.
  const int exponent = std::max(retry_number, 1) - 1;
  const double grown = static_cast<double>(initial) * std::pow(policy.multiplier, exponent);
  const int64_t cap =
      grown < static_cast<double>(max) ? std::min(static_cast<int64_t>(grown), max) : max;

  // Uniform over the cap + 1 whole nanoseconds 0..cap. The product can round
  // up to cap + 1 for caps beyond 2^53ns (about 104 days), hence the clamp.
  const double scaled = random.Uniform() * (static_cast<double>(cap) + 1.0);
  if (!(scaled < static_cast<double>(cap))) return Duration(cap);
  return Duration(static_cast<int64_t>(scaled));
}

RetryDecision DecideRetry(std::string_view tool, const RetryPolicy& policy, const Status& error,
                          int attempts_made, TimePoint now, TimePoint deadline, RetryBudget* budget,
                          Random& random) {
  // 1. Only classified, retryable errors are tried again.
  if (error.ok() || !Retryable(policy, error.code())) return FailWith(error);

  // 2. Attempts.
  if (attempts_made >= policy.max_attempts) {
    if (attempts_made <= 1) return FailWith(error);
    return FailWith(error.WithContext(ToolName(tool) + " failed after " +
                                      std::to_string(attempts_made) + " attempts"));
  }

  // 3. Backoff, and the tool's own Retry-After hint.
  Duration delay = BackoffDelay(policy, attempts_made, random);
  const Duration hint = error.retry_after();
  if (policy.honor_retry_after && hint > Duration::zero()) {
    if (hint > policy.max_retry_after) {
      return FailWith(error.WithContext(
          ToolName(tool) + " asked to retry after " + FormatDuration(hint) +
          ", more than retry.max_retry_after (" + FormatDuration(policy.max_retry_after) +
          "); not retrying after attempt " + std::to_string(attempts_made)));
    }
    delay = std::max(delay, hint);
  }

  // 4. The deadline over all attempts. Compared as "delay >= time left" so
  // that now + delay cannot overflow.
  if (deadline != TimePoint::max() && delay >= deadline - now) {
    return FailWith(Status(StatusCode::kDeadlineExceeded,
                           ToolName(tool) + ": attempt " + std::to_string(attempts_made + 1) +
                               " could not start before the deadline (it would wait " +
                               FormatDuration(delay) + ", " +
                               FormatDuration(std::max(Duration::zero(), deadline - now)) +
                               " left) (last error: " + error.ToString() + ")",
                           Guard::kDeadline));
  }

  // 5. The tool's retry budget, spent only by a retry that will happen.
  if (budget != nullptr) {
    RetryBudget::Usage usage;
    if (!budget->TryAcquireRetry(&usage)) {
      return FailWith(Status(
          StatusCode::kResourceExhausted,
          "retry budget exhausted for " + ToolName(tool) + ": " + std::to_string(usage.retries) +
              " retries for " + std::to_string(usage.calls) + " calls in the last " +
              FormatDuration(budget->window()) + " (allowed " + FormatNumber(budget->ratio()) +
              " per call + " + FormatNumber(budget->floor()) + " = " + FormatNumber(usage.allowed) +
              ") (last error: " + error.ToString() + ")",
          Guard::kRetryBudget));
    }
  }

  // 6. Retry.
  RetryDecision decision;
  decision.retry = true;
  decision.delay = delay;
  return decision;
}

}  // namespace toolops
