// src/engine/breaker.cc

#include "engine/breaker.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <utility>
#include <vector>

#include "base/format.h"

namespace toolops {
namespace {

constexpr uint64_t kStateBits = 2;
constexpr uint64_t kStateMask = (uint64_t{1} << kStateBits) - 1;
// Most buckets in a time-based window; buckets are 1s unless that exceeds it.
constexpr int64_t kMaxTimeBuckets = 60;

uint64_t Pack(uint64_t generation, BreakerState state) {
  return generation << kStateBits | static_cast<uint64_t>(state);
}
BreakerState StateOf(uint64_t packed) { return static_cast<BreakerState>(packed & kStateMask); }
uint64_t GenerationOf(uint64_t packed) { return packed >> kStateBits; }

// 0.625 -> "62.5%", 0.5 -> "50%".
std::string FormatPercent(double share) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.3g%%", share * 100.0);
  return buffer;
}

}  // namespace

std::string_view BreakerStateName(BreakerState state) {
  switch (state) {
    case BreakerState::kClosed:
      return "closed";
    case BreakerState::kOpen:
      return "open";
    case BreakerState::kHalfOpen:
      return "half-open";
  }
  return "unknown";
}

// The outcomes seen while closed: a ring of the last window_size outcomes, or
// a ring of time buckets. Not thread-safe; the breaker guards it with mu_.
class CircuitBreaker::Window {
 public:
  struct Counts {
    int64_t calls = 0;
    int64_t failures = 0;
    int64_t slow = 0;
  };

  Window(const BreakerPolicy& policy, TimePoint origin)
      : time_based_(policy.window == BreakerWindow::kTimeBased), origin_(origin) {
    if (time_based_) {
      const int64_t seconds =
          std::chrono::duration_cast<std::chrono::seconds>(policy.window_duration).count();
      const int64_t buckets = std::clamp<int64_t>(seconds, 1, kMaxTimeBuckets);
      bucket_width_ = std::max(Duration(1), policy.window_duration / buckets);
      buckets_.resize(static_cast<size_t>(buckets));
    } else {
      ring_.resize(static_cast<size_t>(std::max(policy.window_size, 1)));
    }
  }

  void Record(bool failure, bool slow, TimePoint now) {
    if (time_based_) {
      const int64_t epoch = EpochAt(now);
      newest_epoch_ = epoch;
      Bucket& bucket = buckets_[static_cast<size_t>(epoch) % buckets_.size()];
      if (bucket.epoch != epoch) bucket = Bucket{epoch, 0, 0, 0};
      ++bucket.calls;
      bucket.failures += failure;
      bucket.slow += slow;
      return;
    }
    const uint8_t outcome =
        static_cast<uint8_t>((failure ? kFailureBit : 0) | (slow ? kSlowBit : 0));
    if (size_ == static_cast<int64_t>(ring_.size())) {
      const uint8_t evicted = ring_[next_];
      failures_ -= (evicted & kFailureBit) != 0;
      slow_ -= (evicted & kSlowBit) != 0;
    } else {
      ++size_;
    }
    ring_[next_] = outcome;
    next_ = (next_ + 1) % ring_.size();
    failures_ += failure;
    slow_ += slow;
  }

  Counts Read(TimePoint now) const {
    if (!time_based_) return Counts{size_, failures_, slow_};
    const int64_t epoch = EpochAt(now);
    const int64_t oldest = epoch - static_cast<int64_t>(buckets_.size());
    Counts counts;
    for (const Bucket& bucket : buckets_) {
      if (bucket.epoch > oldest && bucket.epoch <= epoch) {
        counts.calls += bucket.calls;
        counts.failures += bucket.failures;
        counts.slow += bucket.slow;
      }
    }
    return counts;
  }

  void Clear() {
    std::fill(ring_.begin(), ring_.end(), uint8_t{0});
    next_ = 0;
    size_ = failures_ = slow_ = 0;
    std::fill(buckets_.begin(), buckets_.end(), Bucket{});
  }

  // "the last 100 calls" or "the last 60s (40 calls)".
  std::string Span(int64_t calls) const {
    if (!time_based_) return "the last " + std::to_string(calls) + " calls";
    return "the last " + FormatDuration(bucket_width_ * static_cast<int64_t>(buckets_.size())) +
           " (" + std::to_string(calls) + " calls)";
  }

  // Calls needed before a decision: minimum_calls, but no more than a
  // count-based window can hold.
  int64_t DecisionMinimum(const BreakerPolicy& policy) const {
    if (time_based_) return policy.minimum_calls;
    return std::min<int64_t>(policy.minimum_calls, static_cast<int64_t>(ring_.size()));
  }

 private:
  static constexpr uint8_t kFailureBit = 1;
  static constexpr uint8_t kSlowBit = 2;

  struct Bucket {
    int64_t epoch = -1;  // Bucket number since origin_; -1 when unused.
    int64_t calls = 0;
    int64_t failures = 0;
    int64_t slow = 0;
  };

  // The bucket number of `now`, never below one already written: a thread
  // that read the clock late counts into the newest bucket.
  int64_t EpochAt(TimePoint now) const {
    const int64_t epoch = now <= origin_ ? 0 : (now - origin_) / bucket_width_;
    return std::max(epoch, newest_epoch_);
  }

  const bool time_based_;
  const TimePoint origin_;

  // Count-based.
  std::vector<uint8_t> ring_;
  size_t next_ = 0;
  int64_t size_ = 0;
  int64_t failures_ = 0;
  int64_t slow_ = 0;

  // Time-based.
  Duration bucket_width_{1};
  std::vector<Bucket> buckets_;
  int64_t newest_epoch_ = 0;
};

CircuitBreaker::CircuitBreaker(std::string tool, const BreakerPolicy& policy, Clock* clock)
    : tool_(std::move(tool)),
      policy_(policy),
      clock_(clock),
      window_(std::make_unique<Window>(policy, clock->Now())) {}

CircuitBreaker::~CircuitBreaker() = default;

BreakerState CircuitBreaker::state() const {
  return StateOf(packed_.load(std::memory_order_acquire));
}

BreakerPermit CircuitBreaker::TryAcquire() {
  // Fast path: closed is one atomic load and no allocation.
  const uint64_t packed = packed_.load(std::memory_order_acquire);
  if (StateOf(packed) == BreakerState::kClosed) {
    return BreakerPermit{true, BreakerState::kClosed, Status(), GenerationOf(packed)};
  }

  const TimePoint now = clock_->Now();
  BreakerPermit permit;
  RejectionFacts facts;
  bool changed = false;
  {
    MutexLock lock(&mu_);
    if (state_ == BreakerState::kOpen && !forced_open_ && now >= open_until_) {
      changed = TransitionLocked(
          BreakerState::kHalfOpen,
          "open wait of " + FormatDuration(policy_.open_wait) + " passed; letting " +
              std::to_string(policy_.half_open_probes) + " probe calls through",
          now);
    }
    permit.state = state_;
    permit.generation = generation_;
    switch (state_) {
      case BreakerState::kClosed:
        permit.allowed = true;
        break;
      case BreakerState::kHalfOpen:
        if (probes_in_flight_ + probe_verdicts_ < policy_.half_open_probes) {
          ++probes_in_flight_;
          permit.allowed = true;
        }
        break;
      case BreakerState::kOpen:
        break;
    }
    if (!permit.allowed) {
      facts.state = state_;
      facts.open_reason = open_reason_;
      facts.forced_open = forced_open_;
      facts.open_remaining = std::max(Duration::zero(), open_until_ - now);
    }
  }
  if (changed) DeliverTransitions();
  if (!permit.allowed) permit.rejection = Rejection(facts);
  return permit;
}

Status CircuitBreaker::Rejection(const RejectionFacts& facts) const {
  const std::string reason = facts.open_reason ? *facts.open_reason : "unknown";
  std::string message =
      "tool '" + tool_ + "' circuit breaker is " + std::string(BreakerStateName(facts.state));
  Duration retry_after = Duration::zero();
  if (facts.state == BreakerState::kHalfOpen) {
    message += " (it opened because " + reason + "): all " +
               std::to_string(policy_.half_open_probes) +
               " probe calls are taken; it decides once they finish";
  } else if (facts.forced_open) {
    message += ": " + reason + "; it stays open until reset";
  } else {
    message +=
        ": " + reason + "; it lets a probe call through in " + FormatDuration(facts.open_remaining);
    retry_after = facts.open_remaining;
  }
  return Status(StatusCode::kUnavailable, std::move(message), Guard::kBreaker, retry_after);
}

void CircuitBreaker::OnSuccess(uint64_t generation, Duration latency) {
  Record(generation, /*failure=*/false, latency);
}

void CircuitBreaker::OnFailure(uint64_t generation, Duration latency) {
  Record(generation, /*failure=*/true, latency);
}

void CircuitBreaker::OnIgnored(uint64_t generation) {
  // Only a probe of the current half-open generation has a slot to free.
  const uint64_t packed = packed_.load(std::memory_order_acquire);
  if (StateOf(packed) != BreakerState::kHalfOpen || GenerationOf(packed) != generation) return;
  MutexLock lock(&mu_);
  if (generation != generation_ || state_ != BreakerState::kHalfOpen) return;
  if (probes_in_flight_ > 0) --probes_in_flight_;
}

void CircuitBreaker::Record(uint64_t generation, bool failure, Duration latency) {
  if (!policy_.enabled) return;
  // A stale outcome is dropped without the lock.
  if (GenerationOf(packed_.load(std::memory_order_acquire)) != generation) return;
  const bool slow = latency > policy_.slow_call_duration;
  const TimePoint now = clock_->Now();
  bool changed = false;
  {
    MutexLock lock(&mu_);
    if (generation != generation_) return;
    switch (state_) {
      case BreakerState::kClosed: {
        window_->Record(failure, slow, now);
        const Window::Counts counts = window_->Read(now);
        if (counts.calls < window_->DecisionMinimum(policy_)) break;
        const double calls = static_cast<double>(counts.calls);
        const double failure_rate = static_cast<double>(counts.failures) / calls;
        const double slow_rate = static_cast<double>(counts.slow) / calls;
        if (failure_rate >= policy_.failure_rate_threshold) {
          changed = TransitionLocked(BreakerState::kOpen,
                                     "failure rate " + FormatPercent(failure_rate) +
                                         " >= " + FormatPercent(policy_.failure_rate_threshold) +
                                         " over " + window_->Span(counts.calls),
                                     now);
        } else if (slow_rate >= policy_.slow_call_rate_threshold) {
          changed = TransitionLocked(BreakerState::kOpen,
                                     "slow-call rate " + FormatPercent(slow_rate) +
                                         " >= " + FormatPercent(policy_.slow_call_rate_threshold) +
                                         " (calls slower than " +
                                         FormatDuration(policy_.slow_call_duration) + ") over " +
                                         window_->Span(counts.calls),
                                     now);
        }
        break;
      }
      case BreakerState::kHalfOpen:
        // More verdicts than permits would be a caller bug; ignore the extras.
        if (probes_in_flight_ == 0) break;
        --probes_in_flight_;
        ++probe_verdicts_;
        probe_failures_ += failure;
        probe_slow_ += slow;
        changed = DecideHalfOpenLocked(now);
        break;
      case BreakerState::kOpen:
        // No permit carries an open generation; nothing to record.
        break;
    }
  }
  if (changed) DeliverTransitions();
}

bool CircuitBreaker::DecideHalfOpenLocked(TimePoint now) {
  const int probes = policy_.half_open_probes;
  const double failure_share = static_cast<double>(probe_failures_) / probes;
  const double slow_share = static_cast<double>(probe_slow_) / probes;
  const std::string of_probes = " of " + std::to_string(probes) + " half-open probes ";
  if (failure_share >= policy_.failure_rate_threshold) {
    return TransitionLocked(BreakerState::kOpen,
                            std::to_string(probe_failures_) + of_probes + "failed (" +
                                FormatPercent(failure_share) +
                                " >= " + FormatPercent(policy_.failure_rate_threshold) + ")",
                            now);
  }
  if (slow_share >= policy_.slow_call_rate_threshold) {
    return TransitionLocked(BreakerState::kOpen,
                            std::to_string(probe_slow_) + of_probes + "were slower than " +
                                FormatDuration(policy_.slow_call_duration) + " (" +
                                FormatPercent(slow_share) +
                                " >= " + FormatPercent(policy_.slow_call_rate_threshold) + ")",
                            now);
  }
  if (probe_verdicts_ < probes) return false;
  return TransitionLocked(BreakerState::kClosed,
                          std::to_string(probes) +
                              " half-open probes finished: " + std::to_string(probe_failures_) +
                              " failed, " + std::to_string(probe_slow_) + " slow",
                          now);
}

bool CircuitBreaker::TransitionLocked(BreakerState to, std::string reason, TimePoint now) {
  const BreakerState from = state_;
  state_ = to;
  ++generation_;
  packed_.store(Pack(generation_, to), std::memory_order_release);
  transitions_.fetch_add(1, std::memory_order_relaxed);

  window_->Clear();
  probes_in_flight_ = probe_verdicts_ = probe_failures_ = probe_slow_ = 0;
  if (to == BreakerState::kOpen) {
    open_until_ = now + policy_.open_wait;
    open_reason_ = std::make_shared<const std::string>(reason);
  }

  if (listener_ == nullptr) return false;
  pending_.push_back(Transition{from, to, std::move(reason)});
  return true;
}

void CircuitBreaker::DeliverTransitions() {
  mu_.Lock();
  if (delivering_) {
    // The delivering thread will find our change in pending_.
    mu_.Unlock();
    return;
  }
  delivering_ = true;
  while (!pending_.empty()) {
    Transition transition = std::move(pending_.front());
    pending_.pop_front();
    std::shared_ptr<const Listener> listener = listener_;
    mu_.Unlock();
    if (listener != nullptr && *listener) {
      (*listener)(transition.from, transition.to, transition.reason);
    }
    mu_.Lock();
  }
  delivering_ = false;
  mu_.Unlock();
}

void CircuitBreaker::SetListener(Listener listener) {
  std::shared_ptr<const Listener> shared;
  if (listener) shared = std::make_shared<const Listener>(std::move(listener));
  MutexLock lock(&mu_);
  listener_ = std::move(shared);
}

void CircuitBreaker::ForceOpen() {
  const TimePoint now = clock_->Now();
  bool changed = false;
  {
    MutexLock lock(&mu_);
    forced_open_ = true;
    if (state_ != BreakerState::kOpen) {
      changed = TransitionLocked(BreakerState::kOpen, "forced open by an operator", now);
    } else {
      open_reason_ = std::make_shared<const std::string>("forced open by an operator");
    }
  }
  if (changed) DeliverTransitions();
}

bool CircuitBreaker::OpenFromPeer(TimePoint until, std::string_view reason) {
  const TimePoint now = clock_->Now();
  if (!policy_.enabled || until <= now) return false;
  bool changed = false;
  {
    MutexLock lock(&mu_);
    if (state_ == BreakerState::kOpen) return false;
    std::string why = std::string(kPeerReasonPrefix) + std::string(reason);
    changed = TransitionLocked(BreakerState::kOpen, why, now);
    open_until_ = until;
    if (!changed) return true;
  }
  DeliverTransitions();
  return true;
}

TimePoint CircuitBreaker::open_until() const {
  MutexLock lock(&mu_);
  return open_until_;
}

void CircuitBreaker::Reset() {
  const TimePoint now = clock_->Now();
  bool changed = false;
  {
    MutexLock lock(&mu_);
    forced_open_ = false;
    if (state_ != BreakerState::kClosed) {
      changed = TransitionLocked(BreakerState::kClosed, "reset by an operator", now);
    } else {
      window_->Clear();
    }
  }
  if (changed) DeliverTransitions();
}

}  // namespace toolops
