// include/toolops/clock.h
//
// Time and randomness, injected everywhere so that backoff, TTL and breaker
// rules are tested deterministically and without sleeping.
//
// Clock: a source of monotonic time that can also block the calling thread,
// for a time or for an event with a time limit. RealClock() is
// std::chrono::steady_clock. FakeClock moves only when told to (or when a
// thread "sleeps" on it, which advances it at once).
//
// Random: a thread-safe source of 64-bit random numbers. SeededRandom gives a
// reproducible stream; DefaultRandom() is seeded from std::random_device.
//
// All classes here are safe for concurrent use.

#ifndef TOOLOPS_CLOCK_H_
#define TOOLOPS_CLOCK_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>

#include "toolops/function_ref.h"

namespace toolops {

using Duration = std::chrono::nanoseconds;
using TimePoint = std::chrono::steady_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
  // The same clock read cheaply, possibly lagging Now() by a few
  // milliseconds (one kernel tick). Used for freshness checks on the cache-hit
  // path, where an entry served a tick past its TTL does no harm and a precise
  // read would cost as much as the rest of the hit.
  virtual TimePoint NowCoarse() const { return Now(); }
  // Blocks the calling thread for `d` of this clock's time.
  virtual void SleepFor(Duration d) = 0;
  // Waits on `cv` (with `lock` held, as std::condition_variable::wait_for
  // does) until `ready()` holds or `d` of this clock's time has passed;
  // returns ready(). Whoever makes ready() true does so holding the lock and
  // then notifies `cv`; `ready` reads only what the lock guards. The default
  // waits `d` of real time (FakeClock too); a clock whose time moves by other
  // rules (the replay's trace time) overrides it.
  virtual bool WaitFor(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, Duration d,
                       FunctionRef<bool()> ready);
};

// The process-wide steady clock. Never null; lives for the whole program.
Clock* RealClock();

// Reads the wall clock as Unix nanoseconds. Stores that keep entries outside
// the process write instants as wall-clock time; tests pass one that moves
// with a FakeClock. Must be safe to call from many threads at once.
using UnixClock = std::function<int64_t()>;

// A clock for tests. Starts at an arbitrary fixed point; Advance() moves it.
// SleepFor(d) advances the clock by d and returns at once, so code that
// sleeps between retries runs instantly and deterministically.
class FakeClock final : public Clock {
 public:
  FakeClock();
  TimePoint Now() const override;
  void SleepFor(Duration d) override;
  void Advance(Duration d);
  // Total time ever spent in SleepFor, for asserting on backoff schedules.
  Duration slept() const { return Duration(slept_ns_.load(std::memory_order_relaxed)); }

 private:
  std::atomic<int64_t> now_ns_;
  std::atomic<int64_t> slept_ns_{0};
};

class Random {
 public:
  virtual ~Random() = default;
  virtual uint64_t Next() = 0;
  // Uniform in [0, 1).
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
};

// A reproducible, lock-free stream (SplitMix64 over an atomic counter).
class SeededRandom final : public Random {
 public:
  explicit SeededRandom(uint64_t seed) : state_(seed) {}
  uint64_t Next() override;

 private:
  std::atomic<uint64_t> state_;
};

// The process-wide default source, seeded from std::random_device. Never null.
Random* DefaultRandom();

}  // namespace toolops

#endif  // TOOLOPS_CLOCK_H_
