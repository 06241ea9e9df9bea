// src/engine/flight.cc

#include "engine/flight.h"

#include <algorithm>

namespace toolops {

std::optional<Result<Bytes>> Flight::WaitFor(Duration timeout) {
  std::unique_lock<Mutex> lock(mu_);
  auto is_done = [this] { return done_.load(std::memory_order_relaxed); };
  if (timeout == Duration::max()) {
    cv_.wait(lock, is_done);
  } else if (!cv_.wait_for(lock, timeout, is_done)) {
    return std::nullopt;
  }
  return *result_;
}

uint64_t Flight::Subscribe(Callback callback) {
  MutexLock lock(&mu_);
  if (done_.load(std::memory_order_relaxed)) return 0;
  uint64_t id = next_id_++;
  callbacks_.emplace_back(id, std::move(callback));
  return id;
}

bool Flight::Unsubscribe(uint64_t id) {
  MutexLock lock(&mu_);
  auto it = std::find_if(callbacks_.begin(), callbacks_.end(),
                         [id](const auto& entry) { return entry.first == id; });
  if (it == callbacks_.end()) return false;
  callbacks_.erase(it);
  return true;
}

void Flight::Complete(Result<Bytes> result) {
  std::vector<std::pair<uint64_t, Callback>> callbacks;
  {
    MutexLock lock(&mu_);
    result_.emplace(std::move(result));
    done_.store(true, std::memory_order_release);
    callbacks.swap(callbacks_);
  }
  cv_.notify_all();
  // Callbacks run outside the lock: one may subscribe elsewhere or finish a
  // coroutine that touches this flight again.
  for (auto& [id, callback] : callbacks) callback(*result_);
}

FlightTable::FlightTable(size_t max_flights)
    : max_flights_(max_flights), shards_(std::make_unique<Shard[]>(kShards)) {}

FlightTable::Joined FlightTable::JoinOrLead(const KeyRef& key) {
  Shard& shard = ShardFor(key);
  MutexLock lock(&shard.mu);
  auto it = shard.flights.find(std::string(key.bytes));
  if (it != shard.flights.end()) return Joined{it->second, false};
  // The bound is checked with a relaxed counter: under a race it may be
  // passed by at most one flight per shard, which keeps it a bound.
  if (size_.load(std::memory_order_relaxed) >= max_flights_) return Joined{};
  auto flight = std::make_shared<Flight>();
  shard.flights.emplace(std::string(key.bytes), flight);
  size_.fetch_add(1, std::memory_order_relaxed);
  return Joined{std::move(flight), true};
}

void FlightTable::Finish(const KeyRef& key, const std::shared_ptr<Flight>& flight,
                         Result<Bytes> result) {
  {
    Shard& shard = ShardFor(key);
    MutexLock lock(&shard.mu);
    auto it = shard.flights.find(std::string(key.bytes));
    if (it != shard.flights.end() && it->second == flight) {
      shard.flights.erase(it);
      size_.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  flight->Complete(std::move(result));
}

}  // namespace toolops
