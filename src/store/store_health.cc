// src/store/store_health.cc

#include "store/store_health.h"

#include <algorithm>
#include <utility>

#include "base/format.h"
#include "base/hash.h"
#include "toolops/log.h"

namespace toolops {

StoreHealth::StoreHealth(std::string store_name, Duration initial_backoff, Duration max_backoff,
                         Clock* clock)
    : name_(std::move(store_name)),
      initial_(initial_backoff),
      max_(std::max(max_backoff, initial_backoff)),
      clock_(clock),
      backoff_(initial_backoff),
      jitter_state_(Mix64(reinterpret_cast<uintptr_t>(this))) {}

bool StoreHealth::AllowWhileDown() {
  MutexLock lock(&mu_);
  if (!down_.load(std::memory_order_relaxed)) return true;
  if (!probing_ && clock_->Now() >= next_probe_) {
    probing_ = true;
    return true;
  }
  skipped_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void StoreHealth::Failed(const Status& error) {
  TimePoint now = clock_->Now();
  MutexLock lock(&mu_);
  ++failures_;
  if (!down_.load(std::memory_order_relaxed)) {
    down_.store(true, std::memory_order_relaxed);
    episodes_.fetch_add(1, std::memory_order_relaxed);
    episode_start_ = now;
    failures_ = 1;
    skipped_at_start_ = skipped_.load(std::memory_order_relaxed);
    backoff_ = initial_;
    Log(LogLevel::kWarning, "store.down",
        "store '" + name_ + "' failed: " + error.ToString() +
            "; calls go on without it, and it is tried again with backoff (up to " +
            FormatDuration(max_) + ")",
        LogFields{{}, name_});
  } else if (probing_) {
    backoff_ = std::min<Duration>(max_, backoff_ * 2);
  }
  probing_ = false;
  // Half to all of the backoff, so that many processes do not probe together.
  jitter_state_ = Mix64(jitter_state_ + 0x9e3779b97f4a7c15ull);
  double fraction = 0.5 + 0.5 * static_cast<double>(jitter_state_ >> 11) * 0x1.0p-53;
  next_probe_ = now + std::chrono::duration_cast<Duration>(backoff_ * fraction);
}

void StoreHealth::EndEpisode() {
  TimePoint now = clock_->Now();
  MutexLock lock(&mu_);
  if (!down_.load(std::memory_order_relaxed)) return;
  down_.store(false, std::memory_order_relaxed);
  probing_ = false;
  uint64_t skipped = skipped_.load(std::memory_order_relaxed) - skipped_at_start_;
  Log(LogLevel::kInfo, "store.up",
      "store '" + name_ + "' is reachable again after " + FormatDuration(now - episode_start_) +
          " (" + std::to_string(failures_) + " failed and " + std::to_string(skipped) +
          " skipped operations)",
      LogFields{{}, name_});
}

}  // namespace toolops
