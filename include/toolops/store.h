// include/toolops/store.h
//
// Store: where cached tool results live. A store maps a key (the full
// canonical bytes of a call) to an immutable value with its freshness times.
// Stores never decide freshness themselves beyond dropping entries whose
// stale_until has passed; the engine reads fresh_until and stale_until.
//
// Every Store implementation is safe for concurrent use.

#ifndef TOOLOPS_STORE_H_
#define TOOLOPS_STORE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "toolops/bytes.h"
#include "toolops/clock.h"
#include "toolops/status.h"

namespace toolops {

// A key and its precomputed HashBytes(bytes), so that the hash is computed
// once per call and shared by the store and the flight table. The bytes are
// borrowed: they must outlive the call that receives the KeyRef.
struct KeyRef {
  std::string_view bytes;
  uint64_t hash;

  static KeyRef Of(std::string_view bytes) { return KeyRef{bytes, HashBytes(bytes)}; }
};

struct StoredValue {
  Bytes value;
  // Until this instant the value is fresh.
  TimePoint fresh_until;
  // Until this instant the value may still be served stale (by
  // stale-while-revalidate or stale-if-error). Never before fresh_until.
  TimePoint stale_until;
};

struct StoreStats {
  uint64_t entries = 0;
  // Key and value bytes held (not counting bookkeeping).
  uint64_t bytes = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions = 0;    // Dropped to stay within the bounds.
  uint64_t expirations = 0;  // Dropped because stale_until passed.
  uint64_t rejected = 0;     // Puts refused (value too large for the store).
};

class FlightCoordinator;
class BreakerBus;
class SemanticBus;

class Store {
 public:
  virtual ~Store() = default;

  // The entry for `key` if one exists and `now` is before its stale_until.
  // Never blocks on I/O for the memory store.
  virtual std::optional<StoredValue> Get(const KeyRef& key, TimePoint now) = 0;

  // The hit path, tried before Get(): true, with *out set and the hit
  // counted, when the store can hand out a value of `key` that is fresh at
  // `now` without any lock or I/O. False says nothing about the key and counts
  // nothing; the caller then asks Get(). Stores without such a path (the
  // default) always return false.
  virtual bool GetFresh(const KeyRef& key, TimePoint now, Bytes* out) {
    (void)key;
    (void)now;
    (void)out;
    return false;
  }

  // Inserts or replaces the entry for `key`. Returns ResourceExhausted (guard
  // kStore) if the entry can never fit in this store.
  virtual Status Put(const KeyRef& key, const StoredValue& value, TimePoint now) = 0;

  // Removes the entry for `key`; returns whether one was there.
  virtual bool Erase(const KeyRef& key) = 0;

  // Removes every entry whose key starts with `prefix` (every entry when the
  // prefix is empty). Returns how many were removed.
  virtual size_t EraseByPrefix(std::string_view prefix) = 0;

  virtual StoreStats Stats() const = 0;
  virtual std::string_view name() const = 0;

  // Coalescing across processes, for stores shared by several processes that
  // can offer it (Redis); null for the others. Owned by the store.
  virtual FlightCoordinator* coordinator() { return nullptr; }

  // Circuit-breaker state shared between processes, for stores that can
  // carry it (Redis); null for the others. Owned by the store.
  virtual BreakerBus* breaker_bus() { return nullptr; }

  // Semantic cache entries shared between processes, for stores that can
  // carry them (Redis); null for the others. Owned by the store.
  virtual SemanticBus* semantic_bus() { return nullptr; }
};

// Semantic cache entries shared between processes. Each process keeps its own
// vector index; what one process learns (a question, its vector and the key of
// its answer) reaches the indexes of the others through the store, and a
// process that starts later reads the entries already there. Entries are
// opaque bytes to the store. Nothing here ever blocks a call: shares are
// queued and sent by the store's own thread, and handlers run on it.
class SemanticBus {
 public:
  virtual ~SemanticBus() = default;

  // Shares `entry` of `tool_id` until `expires_unix_ns` (wall clock).
  virtual void Share(std::string_view tool_id, std::string entry, int64_t expires_unix_ns) = 0;

  using EntryHandler = std::function<void(std::string_view entry, int64_t expires_unix_ns)>;
  // Calls `handler` for each entry another process shares for `tool_id`, and,
  // soon after, for each entry of `tool_id` already in the store and not
  // expired (again after the store comes back from an outage, so a handler
  // must accept an entry twice). Returns an id for Unfollow; after Unfollow
  // returns, the handler is not running and will not run again.
  virtual uint64_t Follow(std::string_view tool_id, EntryHandler handler) = 0;
  virtual void Unfollow(uint64_t follower) = 0;
};

// Breaker openings announced between processes: a tool that is down for one
// process is known to be down for all, until the opening process's open wait
// ends. Tools are named by an id the caller chooses (a digest of the tool's
// name and version). Nothing here ever blocks a call: announcements are
// queued and sent by the store's own thread, and handlers run on it.
class BreakerBus {
 public:
  virtual ~BreakerBus() = default;

  // `tool_id`'s breaker opened in this process until `open_until_unix_ns`
  // (wall clock) because of `reason`.
  virtual void AnnounceOpen(std::string_view tool_id, int64_t open_until_unix_ns,
                            std::string_view reason) = 0;

  using OpenHandler = std::function<void(int64_t open_until_unix_ns, std::string_view reason)>;
  // Calls `handler` whenever another process announces `tool_id` open, and
  // once soon after subscribing if it is open now. Returns an id for
  // Unsubscribe; after Unsubscribe returns, the handler is not running and
  // will not run again.
  virtual uint64_t Subscribe(std::string_view tool_id, OpenHandler handler) = 0;
  virtual void Unsubscribe(uint64_t subscription) = 0;
};

// One key's flight across processes: at most one process (the leader, holding
// a lease on the key) calls upstream while the others wait for its result.
// A lease has a TTL that the store renews while its holder lives, and a
// fencing token: a leader whose lease was lost (expired and taken over)
// cannot overwrite the result of a newer leader.
//
// Every method is bounded by the store's timeouts; none ever fails a call.
// When the store cannot coordinate, the caller goes on alone.
class FlightCoordinator {
 public:
  virtual ~FlightCoordinator() = default;

  enum class Role : uint8_t {
    kLeader,       // This process holds the lease: call upstream, then Complete.
    kFollower,     // Another process holds it: Wait.
    kUnavailable,  // The store cannot coordinate now: go on alone.
  };
  struct Lease {
    Role role = Role::kUnavailable;
    // The fencing token: this process's for kLeader, the holder's for
    // kFollower.
    uint64_t token = 0;
  };
  // Takes the lease on `key`, or reports who has it.
  virtual Lease Acquire(const KeyRef& key) = 0;

  // The leader's result. A value is written to the store (unless a newer
  // lease holder exists: then nothing is written and false is returned) and
  // followers are woken; an error is published for a short time so that the
  // followers waiting now share it instead of calling again. Releases the
  // lease in both cases.
  virtual bool Complete(const KeyRef& key, uint64_t token, const Result<StoredValue>& outcome,
                        TimePoint now) = 0;

  // Gives the lease up with no result (the value was already there, or it
  // cannot be stored); followers wake and look again.
  virtual void Release(const KeyRef& key, uint64_t token) = 0;

  struct WaitResult {
    enum Kind : uint8_t {
      kValue,        // The leader stored a value: `value`.
      kError,        // The leader failed: `error`.
      kLeaseGone,    // The lease ended with no result (leader died): Acquire again.
      kTimedOut,     // `until` passed first.
      kUnavailable,  // The store failed: go on alone.
    };
    Kind kind = kUnavailable;
    std::optional<StoredValue> value;
    Status error;
  };
  // Waits, as a follower of `lease` (what Acquire returned), for its leader
  // to finish or its lease to end, or until `until`. Woken by a notification
  // where the store has them.
  virtual WaitResult Wait(const KeyRef& key, const Lease& lease, TimePoint until) = 0;
};

enum class EvictionPolicy : uint8_t {
  kLru,      // Least recently used.
  kTinyLfu,  // Window TinyLFU: LRU window + frequency-filtered main segment.
};

struct MemoryStoreOptions {
  std::string name = "memory";
  // Bounds over the whole store (split evenly across shards). Both must be
  // positive.
  size_t max_entries = 100'000;
  size_t max_bytes = 256u << 20;
  // Number of independently locked shards; rounded up to a power of two.
  // Zero picks a default from the hardware concurrency.
  size_t shards = 0;
  EvictionPolicy eviction = EvictionPolicy::kTinyLfu;
};

// Creates an in-memory store. Returns InvalidArgument for bad options.
Result<std::unique_ptr<Store>> NewMemoryStore(const MemoryStoreOptions& options);

}  // namespace toolops

#endif  // TOOLOPS_STORE_H_
