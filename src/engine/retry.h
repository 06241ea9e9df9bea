// src/engine/retry.h
//
// The retry schedule of one call: whether a failed attempt is tried again,
// after how long, and, when it is not, which status the call fails with and
// why. Pure decisions: nothing here sleeps; the runner waits the returned
// delay on its own clock.
//
// Both functions are safe for concurrent use when `random` and `budget` are
// (SeededRandom, DefaultRandom() and RetryBudget are).

#ifndef TOOLOPS_ENGINE_RETRY_H_
#define TOOLOPS_ENGINE_RETRY_H_

#include <string_view>

#include "engine/retry_budget.h"
#include "toolops/clock.h"
#include "toolops/policy.h"
#include "toolops/status.h"

namespace toolops {

// Full-jitter exponential backoff: the wait before retry `retry_number` (the
// retry after attempt n is retry n; values below 1 count as 1) is uniform over
// the whole nanoseconds in [0, cap], cap = min(max_backoff, initial_backoff *
// multiplier^(retry_number - 1)). The exponent is computed in floating point
// and clamped, so a large retry_number yields max_backoff, never an overflow.
// REQUIRES: `policy` validated (multiplier >= 1, 0 <= initial <= max backoff).
Duration BackoffDelay(const RetryPolicy& policy, int retry_number, Random& random);

struct RetryDecision {
  // Whether to start another attempt.
  bool retry = false;
  // When retry is true: the wait before the next attempt.
  Duration delay{};
  // When retry is false: the status the call fails with. Either the error as
  // the tool gave it, with context added when a ToolOps rule ended the
  // retries, or a status of the guard that stopped them (kDeadline,
  // kRetryBudget) whose message includes the last error.
  Status final_status;
};

// Decides what follows attempt number `attempts_made` (>= 1) of a call to
// `tool` that failed with `error`. The rules, first match wins:
//
//  1. error is OK, or its code is not in policy.retry_on: no retry; the call
//     fails with `error` unchanged.
//  2. attempts_made >= max_attempts: no retry; `error`, with "tool 'x' failed
//     after N attempts" in front when there were retries.
//  3. delay = BackoffDelay(policy, attempts_made). If honor_retry_after and
//     the error carries a Retry-After hint: a hint above max_retry_after ends
//     the retries (the error, with context naming both values); otherwise
//     delay = max(delay, hint).
//  4. deadline != TimePoint::max() and now + delay >= deadline: no retry;
//     DEADLINE_EXCEEDED from guard kDeadline naming the wait, the time left
//     and the last error.
//  5. budget != nullptr and budget->TryAcquireRetry() refuses: no retry;
//     RESOURCE_EXHAUSTED from guard kRetryBudget naming the window's counts
//     and the last error. The budget is asked last, so a retry that another
//     rule refuses never spends it.
//  6. Otherwise retry after `delay`.
//
// `budget` may be null (no budget) and is not owned. Never blocks.
RetryDecision DecideRetry(std::string_view tool, const RetryPolicy& policy, const Status& error,
                          int attempts_made, TimePoint now, TimePoint deadline, RetryBudget* budget,
                          Random& random);

}  // namespace toolops

#endif  // TOOLOPS_ENGINE_RETRY_H_
