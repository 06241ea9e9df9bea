// src/engine/limiter.h
//
// ConcurrencyLimiter: a bulkhead that caps the upstream calls of one tool
// running at once (LimitPolicy::max_concurrent; zero means unlimited). A call
// holds a slot from a successful TryAcquire, an Enqueue grant or an OK from
// AcquireBlocking until it calls Release exactly once.
//
// Waiters are served first come, first served: Release hands the slot
// straight to the oldest waiter (the slot never becomes free in between, so a
// newcomer's TryAcquire cannot jump the queue). Async runners wait with
// Enqueue/Cancel; blocking runners use AcquireBlocking, built on them.
//
// Safe for concurrent use. Every operation takes one mutex for a short hold;
// grant callbacks run after it is released. Only AcquireBlocking blocks.

#ifndef TOOLOPS_ENGINE_LIMITER_H_
#define TOOLOPS_ENGINE_LIMITER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "base/mutex.h"
#include "toolops/clock.h"
#include "toolops/policy.h"
#include "toolops/status.h"

namespace toolops {

class ConcurrencyLimiter {
 public:
  // Identifies a waiter; 0 means "granted at once, nothing to wait for".
  using Ticket = uint64_t;

  // `tool` names the tool in messages. Reads max_concurrent from `policy`
  // (REQUIRES: validated, so not negative); max_wait is the runner's to use.
  ConcurrencyLimiter(std::string tool, const LimitPolicy& policy);
  // REQUIRES: no thread uses the limiter any more. Waiters still queued are
  // dropped without their callbacks being called.
  ~ConcurrencyLimiter() = default;

  ConcurrencyLimiter(const ConcurrencyLimiter&) = delete;
  ConcurrencyLimiter& operator=(const ConcurrencyLimiter&) = delete;

  // Takes a slot if one is free and returns true; false otherwise. Never
  // blocks. Always true when unlimited.
  bool TryAcquire() TOOLOPS_EXCLUDES(mu_);

  // Gives back a held slot: to the oldest waiter if there is one (its
  // callback runs on this thread, after the lock is released), else to the
  // pool. REQUIRES: the caller holds a slot.
  void Release() TOOLOPS_EXCLUDES(mu_);

  // Takes a slot now if one is free and returns 0 (the callback is then
  // neither stored nor called). Otherwise queues `on_granted` and returns a
  // ticket; once a slot is handed over, `on_granted` is called exactly once,
  // with no lock held, on the releasing thread, possibly before Enqueue has
  // returned. From then on the waiter holds the slot. The callback must not
  // throw; it may call the limiter.
  Ticket Enqueue(std::function<void()> on_granted) TOOLOPS_EXCLUDES(mu_);

  // Withdraws a waiter. True: it was still queued and is removed; its
  // callback will never be called. False: it was already granted (or the
  // ticket is 0 or unknown); the caller owns the slot and must Release it.
  bool Cancel(Ticket ticket) TOOLOPS_EXCLUDES(mu_);

  // Waits up to `max_wait` of `clock`'s time (Clock::WaitFor: real time for
  // the real and fake clocks) for a slot. Returns OK holding a slot, or
  // RESOURCE_EXHAUSTED from guard kLimiter (see RejectionStatus). A zero or
  // negative max_wait only tries once.
  Status AcquireBlocking(Duration max_wait, Clock* clock = RealClock()) TOOLOPS_EXCLUDES(mu_);

  // The status of a call refused after waiting `waited`, e.g. "tool 'x' has 8
  // of 8 upstream calls running; waited 50ms".
  Status RejectionStatus(Duration waited) const TOOLOPS_EXCLUDES(mu_);

  // For stats and tests: slots held, and waiters queued.
  int in_use() const TOOLOPS_EXCLUDES(mu_);
  int waiting() const TOOLOPS_EXCLUDES(mu_);
  // The configured limit; 0 means unlimited.
  int max_concurrent() const { return max_concurrent_; }

 private:
  bool unlimited() const { return max_concurrent_ == 0; }

  // Constant after construction.
  const std::string tool_;
  const int max_concurrent_;

  mutable Mutex mu_;
  int in_use_ TOOLOPS_GUARDED_BY(mu_) = 0;
  // Waiters by ticket; tickets grow, so the first entry is the oldest.
  std::map<Ticket, std::function<void()>> waiters_ TOOLOPS_GUARDED_BY(mu_);
  Ticket next_ticket_ TOOLOPS_GUARDED_BY(mu_) = 1;
};

}  // namespace toolops

#endif  // TOOLOPS_ENGINE_LIMITER_H_
