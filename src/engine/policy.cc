// src/engine/policy.cc
//
// Validation of tool specs and policies. Each check names the field, the value
// it found and what is allowed, so that the message alone tells the user what
// to change.

#include <algorithm>
#include <string>

#include "toolops/policy.h"

#include "base/format.h"

namespace toolops {
namespace {

Status Bad(const ToolSpec& spec, const std::string& what) {
  return Status(StatusCode::kInvalidArgument, "tool '" + spec.name + "': " + what, Guard::kPolicy);
}

bool Declared(const ToolSpec& spec, const std::string& name) {
  return std::find(spec.params.begin(), spec.params.end(), name) != spec.params.end();
}

}  // namespace

std::vector<StatusCode> DefaultRetryCodes() {
  return {StatusCode::kUnavailable, StatusCode::kDeadlineExceeded, StatusCode::kResourceExhausted,
          StatusCode::kAborted};
}

std::vector<StatusCode> DefaultBreakerFailureCodes() {
  return {StatusCode::kUnavailable, StatusCode::kDeadlineExceeded, StatusCode::kResourceExhausted,
          StatusCode::kInternal,    StatusCode::kUnknown,          StatusCode::kDataLoss,
          StatusCode::kAborted};
}

Status Validate(const ToolSpec& spec, const ToolPolicy& policy) {
  if (spec.name.empty()) {
    return Status(StatusCode::kInvalidArgument, "tool name is empty; give every tool a name",
                  Guard::kPolicy);
  }
  for (size_t i = 0; i < spec.params.size(); ++i) {
    if (spec.params[i].empty()) return Bad(spec, "parameter " + std::to_string(i) + " has no name");
    for (size_t j = 0; j < i; ++j) {
      if (spec.params[i] == spec.params[j]) {
        return Bad(spec, "parameter '" + spec.params[i] + "' is declared twice");
      }
    }
  }
  auto check_names = [&](const std::vector<std::string>& names, const char* field) -> Status {
    for (const std::string& name : names) {
      if (!Declared(spec, name)) {
        return Bad(spec, std::string(field) + " names '" + name +
                             "', which is not a declared parameter; declare the tool's "
                             "parameters in ToolSpec::params");
      }
    }
    return Status();
  };
  if (Status s = check_names(policy.sensitive_params, "sensitive_params"); !s.ok()) return s;
  if (!policy.scope_param.empty()) {
    if (Status s = check_names({policy.scope_param}, "scope_param"); !s.ok()) return s;
  }
  if (!(policy.cost_per_call >= 0)) {
    return Bad(spec, "cost_per_call is " + std::to_string(policy.cost_per_call) +
                         "; it must be zero or more");
  }

  // Cache.
  const CachePolicy& cache = policy.cache;
  bool caching = policy.kind == ToolKind::kReadonly && cache.enabled;
  if (caching) {
    if (cache.ttl <= Duration::zero()) {
      return Bad(spec, "cache.ttl is " + FormatDuration(cache.ttl) +
                           "; it must be positive (disable the cache with cache.enabled = false)");
    }
    if (cache.stale_while_revalidate < Duration::zero()) {
      return Bad(spec, "cache.stale_while_revalidate is " +
                           FormatDuration(cache.stale_while_revalidate) +
                           "; it must be zero (off) or positive");
    }
    if (cache.stale_if_error < Duration::zero()) {
      return Bad(spec, "cache.stale_if_error is " + FormatDuration(cache.stale_if_error) +
                           "; it must be zero (off) or positive");
    }
    if (cache.store.empty()) return Bad(spec, "cache.store is empty; name a registered store");
    if (cache.shared_store == cache.store) {
      return Bad(spec, "cache.shared_store names the same store as cache.store ('" + cache.store +
                           "'); name a store shared with other processes, or leave it empty");
    }
    if (cache.max_value_bytes == 0)
      return Bad(spec, "cache.max_value_bytes is 0; it must be positive");
    if (Status s = check_names(cache.key_params, "cache.key_params"); !s.ok()) return s;
    for (const std::string& name : cache.key_params) {
      if (std::find(policy.sensitive_params.begin(), policy.sensitive_params.end(), name) !=
          policy.sensitive_params.end()) {
        return Bad(spec, "parameter '" + name +
                             "' is both in cache.key_params and sensitive_params; a sensitive "
                             "value never enters a key");
      }
    }
    const SemanticPolicy& semantic = cache.semantic;
    if (Status s = check_names(semantic.params, "cache.semantic.params"); !s.ok()) return s;
    auto listed = [](const std::vector<std::string>& list, const std::string& name) {
      return std::find(list.begin(), list.end(), name) != list.end();
    };
    for (const std::string& name : semantic.params) {
      if (listed(policy.sensitive_params, name) || name == policy.scope_param ||
          (!cache.key_params.empty() && !listed(cache.key_params, name))) {
        return Bad(spec, "cache.semantic.params names '" + name +
                             "', which is not a key parameter (it is sensitive, the scope, or "
                             "outside cache.key_params); only key parameters are matched by "
                             "meaning");
      }
    }
    if (!semantic.params.empty()) {
      if (!(semantic.threshold > 0 && semantic.threshold <= 1)) {
        return Bad(spec, "cache.semantic.threshold is " + std::to_string(semantic.threshold) +
                             "; it must be in (0, 1]");
      }
      if (semantic.candidates == 0) return Bad(spec, "cache.semantic.candidates must be positive");
      if (semantic.max_per_partition == 0) {
        return Bad(spec, "cache.semantic.max_per_partition must be positive");
      }
    }
  }

  // Retries.
  const RetryPolicy& retry = policy.retry;
  if (retry.max_attempts < 1 || retry.max_attempts > 100) {
    return Bad(spec, "retry.max_attempts is " + std::to_string(retry.max_attempts) +
                         "; it must be between 1 (no retries) and 100");
  }
  if (retry.initial_backoff < Duration::zero()) {
    return Bad(spec, "retry.initial_backoff is " + FormatDuration(retry.initial_backoff) +
                         "; it must be zero or positive");
  }
  if (!(retry.multiplier >= 1.0 && retry.multiplier <= 100.0)) {
    return Bad(spec, "retry.multiplier is " + std::to_string(retry.multiplier) +
                         "; it must be between 1 and 100");
  }
  if (retry.max_backoff < retry.initial_backoff) {
    return Bad(spec, "retry.max_backoff (" + FormatDuration(retry.max_backoff) +
                         ") is below retry.initial_backoff (" +
                         FormatDuration(retry.initial_backoff) +
                         "); the cap must be at least the first wait");
  }
  if (!(retry.budget_ratio >= 0.0 && retry.budget_ratio <= 10.0)) {
    return Bad(spec, "retry.budget_ratio is " + std::to_string(retry.budget_ratio) +
                         "; it must be between 0 and 10 (0.2 allows 20% extra attempts)");
  }
  if (!(retry.budget_min_retries_per_second >= 0.0)) {
    return Bad(spec, "retry.budget_min_retries_per_second must be zero or more");
  }
  if (retry.budget_window < std::chrono::seconds(1)) {
    return Bad(spec, "retry.budget_window is " + FormatDuration(retry.budget_window) +
                         "; it must be at least 1s");
  }
  if (retry.max_retry_after < Duration::zero()) {
    return Bad(spec, "retry.max_retry_after must be zero or positive");
  }
  if (policy.kind == ToolKind::kSideEffect && !policy.idempotent && retry.max_attempts > 1) {
    return Bad(spec, "retry.max_attempts is " + std::to_string(retry.max_attempts) +
                         " on a side-effect tool that is not idempotent; a retry could do the "
                         "effect twice. Set idempotent = true or max_attempts = 1");
  }

  // Timeouts.
  const TimeoutPolicy& timeout = policy.timeout;
  if (timeout.attempt_timeout < Duration::zero()) {
    return Bad(spec, "timeout.attempt_timeout must be zero (off) or positive");
  }
  if (timeout.deadline < Duration::zero()) {
    return Bad(spec, "timeout.deadline must be zero (off) or positive");
  }

  // Breaker.
  const BreakerPolicy& breaker = policy.breaker;
  if (breaker.enabled) {
    if (breaker.window == BreakerWindow::kCountBased &&
        (breaker.window_size < 1 || breaker.window_size > 100'000)) {
      return Bad(spec, "breaker.window_size is " + std::to_string(breaker.window_size) +
                           "; it must be between 1 and 100000 calls");
    }
    if (breaker.window == BreakerWindow::kTimeBased &&
        (breaker.window_duration < std::chrono::seconds(1) ||
         breaker.window_duration > std::chrono::hours(1))) {
      return Bad(spec, "breaker.window_duration is " + FormatDuration(breaker.window_duration) +
                           "; it must be between 1s and 1h");
    }
    if (breaker.minimum_calls < 1) {
      return Bad(spec, "breaker.minimum_calls is " + std::to_string(breaker.minimum_calls) +
                           "; it must be at least 1");
    }
    if (!(breaker.failure_rate_threshold > 0.0 && breaker.failure_rate_threshold <= 1.0)) {
      return Bad(spec, "breaker.failure_rate_threshold is " +
                           std::to_string(breaker.failure_rate_threshold) +
                           "; it must be in (0, 1]");
    }
    if (!(breaker.slow_call_rate_threshold > 0.0 && breaker.slow_call_rate_threshold <= 1.0)) {
      return Bad(spec, "breaker.slow_call_rate_threshold is " +
                           std::to_string(breaker.slow_call_rate_threshold) +
                           "; it must be in (0, 1]");
    }
    if (breaker.slow_call_duration <= Duration::zero()) {
      return Bad(spec, "breaker.slow_call_duration must be positive");
    }
    if (breaker.open_wait <= Duration::zero()) {
      return Bad(spec, "breaker.open_wait is " + FormatDuration(breaker.open_wait) +
                           "; it must be positive");
    }
    if (breaker.half_open_probes < 1 || breaker.half_open_probes > 1000) {
      return Bad(spec, "breaker.half_open_probes is " + std::to_string(breaker.half_open_probes) +
                           "; it must be between 1 and 1000");
    }
  }

  // Limits.
  if (policy.limit.max_concurrent < 0) {
    return Bad(spec, "limit.max_concurrent is " + std::to_string(policy.limit.max_concurrent) +
                         "; it must be zero (unlimited) or positive");
  }
  if (policy.limit.max_wait < Duration::zero()) {
    return Bad(spec, "limit.max_wait must be zero (reject at once) or positive");
  }
  if (policy.coalesce.enabled && policy.coalesce.max_flights == 0) {
    return Bad(spec, "coalesce.max_flights is 0; it must be positive (or disable coalescing)");
  }
  return Status();
}

}  // namespace toolops
