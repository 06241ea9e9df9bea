// include/toolops/stats_publisher.h
//
// Per-process statistics shared through a store, so that `toolops stats
// --store` can sum the counters of every live process of a fleet:
//
//   auto publisher = toolops::StatsPublisher::Start(store, std::chrono::seconds(10)).value();
//   ...
//   for (const std::string& text : toolops::ReadPublishedStats(*store).value()) ...
//
// A StatsBoard is the store's side (SQLite, Redis and PostgreSQL have one); a
// StatsPublisher sends this process's metrics to it now and then. A
// snapshot is the Prometheus text of the process (the names of the metrics
// contract, as served at GET /metrics), so snapshots and endpoints are read
// and summed alike. All functions are safe for concurrent use.

#ifndef TOOLOPS_STATS_PUBLISHER_H_
#define TOOLOPS_STATS_PUBLISHER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "toolops/clock.h"
#include "toolops/status.h"
#include "toolops/store.h"

namespace toolops {

// Snapshots of each process's statistics, kept in a shared store. A process
// replaces its own snapshot now and then; a snapshot not replaced within its
// TTL is dropped, so processes that died leave the sum. Snapshots are opaque
// text to the store. Each call is one exchange with the store, bounded by
// its timeouts. Implemented by the Redis store (one hash per namespace,
// expiry on the server's clock), and by the PostgreSQL and SQLite stores
// (rows of the entry table under a tool id of their own, expiring like
// entries; with SQLite, the processes of one host sharing its file).
class StatsBoard {
 public:
  virtual ~StatsBoard() = default;

  // Replaces the snapshot of `process` (an id unique to the process) with
  // `snapshot`, to be dropped `ttl` from now. Unavailable when the store
  // is down or failed.
  virtual Status Publish(std::string_view process, std::string_view snapshot, Duration ttl) = 0;

  // The snapshot of every process whose last one has not expired, in no
  // particular order. Unavailable when the store is down or failed.
  virtual Result<std::vector<std::string>> Snapshots() = 0;
};

// The store's StatsBoard, or null when it has none (memory).
StatsBoard* StatsBoardOf(Store& store);

// Publishes this process's metrics to a store's StatsBoard: every
// `interval` a background thread replaces this process's snapshot with
// PublishedStatsText(), which lives 3 intervals. A publication that fails
// (the store is down) is counted and tried again at the next interval;
// calls never wait for it.
class StatsPublisher {
 public:
  // InvalidArgument when the store has no StatsBoard or the interval is not
  // positive. Publishes once before returning (a failure of that first
  // publication does not fail Start). `store` is kept alive by the publisher.
  static Result<std::unique_ptr<StatsPublisher>> Start(std::shared_ptr<Store> store,
                                                       Duration interval);
  // Stops the thread; the last snapshot stays until it expires.
  ~StatsPublisher();
  StatsPublisher(const StatsPublisher&) = delete;
  StatsPublisher& operator=(const StatsPublisher&) = delete;

  // Publishes now, on the calling thread. Blocks for one store exchange.
  Status PublishNow();
  // "host:pid:random": this publisher's snapshot's name in the store.
  const std::string& process_id() const;
  const Store& store() const;
  Duration interval() const;
  uint64_t published() const;
  uint64_t failures() const;

  class Impl;

 private:
  explicit StatsPublisher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// What StatsPublisher sends: PrometheusText() without its comment lines and
// without series whose value is 0 (the breaker's state excepted, so that a
// tool not yet called still appears).
std::string PublishedStatsText();

// The snapshots that live processes published to `store`. InvalidArgument
// when the store has no StatsBoard; Unavailable when it cannot be read.
Result<std::vector<std::string>> ReadPublishedStats(Store& store);

}  // namespace toolops

#endif  // TOOLOPS_STATS_PUBLISHER_H_
