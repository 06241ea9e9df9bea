// src/engine/breaker.h
//
// CircuitBreaker: fails calls to a tool fast while the tool is failing, so
// that an outage costs neither waiting nor money, and lets a few probe calls
// through now and then to find out whether it has recovered.
//
// States:
//  - Closed: every call goes through. Outcomes are kept in a window, either
//    the last window_size calls (count-based) or the calls of the last
//    window_duration (time-based, in buckets; see below). Once the window
//    holds minimum_calls outcomes (for count-based windows, at most
//    window_size), it opens when failures / calls >= failure_rate_threshold
//    or slow calls / calls >= slow_call_rate_threshold. A slow call is one
//    whose latency exceeds slow_call_duration; a slow failure counts as both.
//  - Open: every call is rejected until open_wait has passed since opening;
//    then the next TryAcquire moves to half-open.
//  - Half-open: half_open_probes calls are let through in all, the rest are
//    rejected. After each probe's verdict, it opens again (with a fresh
//    open_wait) as soon as failed probes / half_open_probes or slow probes /
//    half_open_probes reaches its threshold: more verdicts could only raise
//    those shares, so waiting would not change the outcome. When every probe
//    has a verdict and neither threshold is reached, it closes with an empty
//    window. A probe reported with OnIgnored gives its slot to another probe.
//    A probe never reported at all keeps its slot for good: the breaker then
//    stays half-open, rejecting, until Reset(). There is no probe timeout;
//    runners must report every permit (a cancelled call with OnIgnored).
//
// Every state change empties the window and starts a new generation. A permit
// carries the generation it was issued in; outcomes reported with an older
// one are ignored, so a slow call admitted before the breaker opened cannot
// close it, and a call admitted while closed cannot count as a probe.
//
// The time-based window is a ring of N = clamp(window_duration / 1s, 1, 60)
// buckets of window_duration / N each; a bucket leaves the window as a whole,
// so the window spans between (N - 1) / N and all of window_duration.
//
// A disabled policy (enabled = false) yields a breaker that ignores outcomes
// and so stays closed unless forced open.
//
// Safe for concurrent use. state(), and TryAcquire() while closed, are one
// atomic load; other operations take a mutex for a short hold that
// allocates only on a state change (messages are built after unlocking). A
// few calls that read "closed" just before the breaker opens still go
// through; their outcomes are ignored.

#ifndef TOOLOPS_ENGINE_BREAKER_H_
#define TOOLOPS_ENGINE_BREAKER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/mutex.h"
#include "toolops/clock.h"
#include "toolops/policy.h"
#include "toolops/status.h"

namespace toolops {

enum class BreakerState : uint8_t { kClosed, kOpen, kHalfOpen };

// "closed", "open", "half-open".
std::string_view BreakerStateName(BreakerState state);

// The answer to CircuitBreaker::TryAcquire.
struct BreakerPermit {
  // Whether the call may go upstream. If so, report its outcome with exactly
  // one of OnSuccess, OnFailure or OnIgnored, passing `generation`.
  bool allowed = false;
  // The state the decision was taken in.
  BreakerState state = BreakerState::kClosed;
  // When !allowed: UNAVAILABLE from guard kBreaker. The message names the
  // tool, the state, why the breaker opened and when it lets a probe through;
  // retry_after is the rest of the open wait (zero when unknown: half-open
  // with all probes out, or forced open).
  Status rejection;
  // The generation the permit belongs to.
  uint64_t generation = 0;
};

class CircuitBreaker {
 public:
  // Called on every state change with the old state, the new one and why.
  using Listener = std::function<void(BreakerState from, BreakerState to, std::string_view reason)>;

  // `tool` names the tool in messages. `policy` is copied (REQUIRES:
  // validated). `clock` is not owned and must outlive the breaker.
  CircuitBreaker(std::string tool, const BreakerPolicy& policy, Clock* clock);
  ~CircuitBreaker();

  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;

  // Asks to start one upstream call. Closed: allowed. Open: rejected until
  // open_wait has passed, then half-open. Half-open: allowed while fewer than
  // half_open_probes probes are out or decided; rejected otherwise. Never
  // blocks (beyond the short mutex hold when not closed).
  BreakerPermit TryAcquire() TOOLOPS_EXCLUDES(mu_);

  // Report the outcome of a permitted call. `generation` is the permit's;
  // outcomes of an older generation are ignored. The runner decides between
  // success and failure from policy.failure_codes; `latency` decides whether
  // the call was slow.
  void OnSuccess(uint64_t generation, Duration latency) TOOLOPS_EXCLUDES(mu_);
  void OnFailure(uint64_t generation, Duration latency) TOOLOPS_EXCLUDES(mu_);
  // The permitted call ended without a verdict on the tool (cancelled, or an
  // error that is not the tool's fault): nothing is recorded, and a half-open
  // probe slot is freed.
  void OnIgnored(uint64_t generation) TOOLOPS_EXCLUDES(mu_);

  // The current state: one atomic load.
  BreakerState state() const;
  // State changes since construction.
  uint64_t transitions() const { return transitions_.load(std::memory_order_relaxed); }

  // Installs (or, with an empty function, removes) the listener. It is called
  // with no lock held, one call at a time, in the order of the changes; a
  // change made while another thread is calling the listener is delivered by
  // that thread. It may call this breaker. It must not throw.
  void SetListener(Listener listener) TOOLOPS_EXCLUDES(mu_);

  // For operators. ForceOpen opens the breaker and keeps it open, sending no
  // probes, until Reset(). Reset closes it with an empty window.
  void ForceOpen() TOOLOPS_EXCLUDES(mu_);
  void Reset() TOOLOPS_EXCLUDES(mu_);

  // Another process's breaker for this tool opened until `until` (converted
  // to this clock): a closed or half-open breaker opens until then, with a
  // reason that starts with kPeerReasonPrefix (so that a listener sharing
  // the state does not announce it again). An open breaker is left alone.
  // Returns whether it opened.
  bool OpenFromPeer(TimePoint until, std::string_view reason) TOOLOPS_EXCLUDES(mu_);
  static constexpr std::string_view kPeerReasonPrefix = "opened by another process: ";
  // When the breaker's open wait ends (meaningful while open).
  TimePoint open_until() const TOOLOPS_EXCLUDES(mu_);

 private:
  class Window;  // The closed-state outcome window; defined in breaker.cc.

  // What a rejection message needs, copied under the lock and formatted after.
  struct RejectionFacts {
    BreakerState state = BreakerState::kOpen;
    std::shared_ptr<const std::string> open_reason;
    bool forced_open = false;
    Duration open_remaining{};
  };

  struct Transition {
    BreakerState from;
    BreakerState to;
    std::string reason;
  };

  void Record(uint64_t generation, bool failure, Duration latency) TOOLOPS_EXCLUDES(mu_);
  // Sets the state, starts a generation, empties the window and the probe
  // counts, and queues the change for the listener. Returns whether a change
  // was queued.
  bool TransitionLocked(BreakerState to, std::string reason, TimePoint now) TOOLOPS_REQUIRES(mu_);
  // Opens the breaker if the half-open probes' verdicts reach a threshold,
  // closes it when all are in; returns whether a change was queued.
  bool DecideHalfOpenLocked(TimePoint now) TOOLOPS_REQUIRES(mu_);
  // Calls the listener for queued changes unless another thread already is.
  void DeliverTransitions() TOOLOPS_EXCLUDES(mu_);
  Status Rejection(const RejectionFacts& facts) const;

  // Constant after construction.
  const std::string tool_;
  const BreakerPolicy policy_;
  Clock* const clock_;

  // State and generation packed as generation << 2 | state, so that the
  // unlocked fast path reads a consistent pair. Written only under mu_.
  std::atomic<uint64_t> packed_{0};
  std::atomic<uint64_t> transitions_{0};

  mutable Mutex mu_;
  BreakerState state_ TOOLOPS_GUARDED_BY(mu_) = BreakerState::kClosed;
  uint64_t generation_ TOOLOPS_GUARDED_BY(mu_) = 0;
  const std::unique_ptr<Window> window_ TOOLOPS_PT_GUARDED_BY(mu_);
  // Why it last opened, for rejections.
  std::shared_ptr<const std::string> open_reason_ TOOLOPS_GUARDED_BY(mu_);
  TimePoint open_until_ TOOLOPS_GUARDED_BY(mu_);
  bool forced_open_ TOOLOPS_GUARDED_BY(mu_) = false;
  // Half-open probes: let through and not yet reported, and verdicts so far.
  int probes_in_flight_ TOOLOPS_GUARDED_BY(mu_) = 0;
  int probe_verdicts_ TOOLOPS_GUARDED_BY(mu_) = 0;
  int probe_failures_ TOOLOPS_GUARDED_BY(mu_) = 0;
  int probe_slow_ TOOLOPS_GUARDED_BY(mu_) = 0;
  // Listener delivery.
  std::shared_ptr<const Listener> listener_ TOOLOPS_GUARDED_BY(mu_);
  std::deque<Transition> pending_ TOOLOPS_GUARDED_BY(mu_);
  bool delivering_ TOOLOPS_GUARDED_BY(mu_) = false;
};

}  // namespace toolops

#endif  // TOOLOPS_ENGINE_BREAKER_H_
