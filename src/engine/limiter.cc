// src/engine/limiter.cc

#include "engine/limiter.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <utility>

namespace toolops {
namespace {

// Longest real-time wait handed to the condition variable, so that a huge
// max_wait cannot overflow the wake-up time point. About 27 years.
constexpr Duration kLongestWait = std::chrono::hours(24 * 10'000);

std::string FormatWait(Duration d) {
  using std::chrono::duration_cast;
  if (d < std::chrono::seconds(10)) {
    return std::to_string(duration_cast<std::chrono::milliseconds>(d).count()) + "ms";
  }
  return std::to_string(duration_cast<std::chrono::seconds>(d).count()) + "s";
}

}  // namespace

ConcurrencyLimiter::ConcurrencyLimiter(std::string tool, const LimitPolicy& policy)
    : tool_(std::move(tool)), max_concurrent_(std::max(policy.max_concurrent, 0)) {}

bool ConcurrencyLimiter::TryAcquire() {
  MutexLock lock(&mu_);
  // While anyone waits, no slot is free: Release hands slots to waiters.
  if (!unlimited() && in_use_ >= max_concurrent_) return false;
  ++in_use_;
  return true;
}

void ConcurrencyLimiter::Release() {
  std::function<void()> granted;
  {
    MutexLock lock(&mu_);
    assert(in_use_ > 0 && "Release without a held slot");
    if (waiters_.empty()) {
      if (in_use_ > 0) --in_use_;
      return;
    }
    // The slot passes to the oldest waiter; in_use_ does not change.
    auto oldest = waiters_.begin();
    granted = std::move(oldest->second);
    waiters_.erase(oldest);
  }
  if (granted) granted();
}

ConcurrencyLimiter::Ticket ConcurrencyLimiter::Enqueue(std::function<void()> on_granted) {
  MutexLock lock(&mu_);
  if (unlimited() || in_use_ < max_concurrent_) {
    ++in_use_;
    return 0;
  }
  const Ticket ticket = next_ticket_++;
  waiters_.emplace(ticket, std::move(on_granted));
  return ticket;
}

bool ConcurrencyLimiter::Cancel(Ticket ticket) {
  if (ticket == 0) return false;
  std::function<void()> dropped;  // Destroyed after unlocking: it may own anything.
  MutexLock lock(&mu_);
  auto it = waiters_.find(ticket);
  if (it == waiters_.end()) return false;
  dropped = std::move(it->second);
  waiters_.erase(it);
  return true;
}

Status ConcurrencyLimiter::AcquireBlocking(Duration max_wait, Clock* clock) {
  if (max_wait <= Duration::zero()) {
    if (TryAcquire()) return Status();
    return RejectionStatus(Duration::zero());
  }

  // Shared with the grant callback, which may run after this function has
  // returned (when the grant races with the timeout).
  struct Wait {
    std::mutex mu;
    std::condition_variable granted_cv;
    bool granted = false;
  };
  auto wait = std::make_shared<Wait>();
  const TimePoint start = clock->Now();
  const Ticket ticket = Enqueue([wait] {
    {
      std::lock_guard<std::mutex> lock(wait->mu);
      wait->granted = true;
    }
    wait->granted_cv.notify_one();
  });
  if (ticket == 0) return Status();

  {
    std::unique_lock<std::mutex> lock(wait->mu);
    if (clock->WaitFor(lock, wait->granted_cv, std::min(max_wait, kLongestWait),
                       [&wait] { return wait->granted; })) {
      return Status();
    }
  }
  // Timed out. A grant may have landed since; then the slot is ours.
  if (!Cancel(ticket)) return Status();
  return RejectionStatus(clock->Now() - start);
}

Status ConcurrencyLimiter::RejectionStatus(Duration waited) const {
  const int running = in_use();
  std::string message = "tool '" + tool_ + "' has " + std::to_string(running) + " of " +
                        std::to_string(max_concurrent_) + " upstream calls running; ";
  message += waited > Duration::zero() ? "waited " + FormatWait(waited)
                                       : std::string("rejected without waiting");
  return Status(StatusCode::kResourceExhausted, std::move(message), Guard::kLimiter);
}

int ConcurrencyLimiter::in_use() const {
  MutexLock lock(&mu_);
  return in_use_;
}

int ConcurrencyLimiter::waiting() const {
  MutexLock lock(&mu_);
  return static_cast<int>(waiters_.size());
}

}  // namespace toolops
