// src/base/clock.cc

#include "toolops/clock.h"

#include <time.h>

#include <random>
#include <thread>

namespace toolops {
namespace {

class SteadyClock final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
  TimePoint NowCoarse() const override {
    // libstdc++'s steady_clock is CLOCK_MONOTONIC; the coarse variant reads the
    // same clock as of the last tick, without touching the time-stamp counter.
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return TimePoint(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
  }
  void SleepFor(Duration d) override {
    if (d > Duration::zero()) std::this_thread::sleep_for(d);
  }
};

// An arbitrary, recognisable starting point for fake time (about 11.6 days).
constexpr int64_t kFakeEpochNs = 1'000'000'000'000'000;

}  // namespace

bool Clock::WaitFor(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, Duration d,
                    FunctionRef<bool()> ready) {
  return cv.wait_for(lock, d, [&] { return ready(); });
}

Clock* RealClock() {
  static SteadyClock* clock = new SteadyClock();  // Never destroyed: used at exit.
  return clock;
}

FakeClock::FakeClock() : now_ns_(kFakeEpochNs) {}

TimePoint FakeClock::Now() const {
  return TimePoint(Duration(now_ns_.load(std::memory_order_acquire)));
}

void FakeClock::SleepFor(Duration d) {
  if (d <= Duration::zero()) return;
  slept_ns_.fetch_add(d.count(), std::memory_order_relaxed);
  Advance(d);
}

void FakeClock::Advance(Duration d) { now_ns_.fetch_add(d.count(), std::memory_order_acq_rel); }

uint64_t SeededRandom::Next() {
  uint64_t z =
      state_.fetch_add(0x9e3779b97f4a7c15ULL, std::memory_order_relaxed) + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

Random* DefaultRandom() {
  static SeededRandom* random = [] {
    std::random_device device;
    uint64_t seed = (static_cast<uint64_t>(device()) << 32) ^ device();
    return new SeededRandom(seed);
  }();
  return random;
}

}  // namespace toolops
