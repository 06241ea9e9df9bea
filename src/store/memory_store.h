// src/store/memory_store.h
//
// MemoryStore: the in-memory Store returned by NewMemoryStore(). Callers use
// the Store interface; this header exists so that tests and benchmarks can
// reach the few extras below (shard count, invariant checks).
//
// The store is split into a power-of-two number of shards, each with its own
// mutex, table, expiry heap, eviction lists and frequency sketch; a key's
// shard is chosen from its hash. Nothing is shared between shards on Get or
// Put. Safe for concurrent use.

#ifndef TOOLOPS_STORE_MEMORY_STORE_H_
#define TOOLOPS_STORE_MEMORY_STORE_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "toolops/stats.h"
#include "toolops/status.h"
#include "toolops/store.h"

namespace toolops {

class MemoryShard;
struct FrontCache;
struct FrontSlot;

class MemoryStore final : public Store {
 public:
  // At most this many expired entries are dropped by one Put (and one by a
  // Get), so that no call pays for a large batch of expirations.
  static constexpr size_t kExpiriesPerPut = 8;
  static constexpr size_t kExpiriesPerGet = 1;

  // Validates `options` and builds the store. Returns InvalidArgument for
  // zero bounds, too many shards, or bounds too small to give every shard
  // room for one entry.
  static Result<std::unique_ptr<MemoryStore>> Create(const MemoryStoreOptions& options);

  ~MemoryStore() override;
  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

  // A hit shares the stored value buffer (no copy) and counts as a use of
  // the entry for eviction. An entry found expired is removed.
  //
  // Each thread keeps a front cache of 256 recently hit entries (8-way set
  // associative by hash; values up to 4 KiB, keys up to 256 bytes). A repeated hit is served from
  // it without the shard lock while the shard has removed or replaced nothing since; it is reported
  // to the shard's recency and frequency in batches of 128 or more, skipped while the shard is busy
  // (the hits counter is exact). Otherwise takes one shard lock; allocates only to remember a new
  // key in the front cache. A front-cache hit hands out its reference from
  // the slot's spares (SpareRefs), without an atomic operation.
  //
  // Memory: a thread pins at most 256 values (up to 4 KiB each, about 1 MiB)
  // that the store may already have evicted, until it hits other keys or
  // exits.
  std::optional<StoredValue> Get(const KeyRef& key, TimePoint now) override;
  bool GetFresh(const KeyRef& key, TimePoint now, Bytes* out) override;
  // Also returns ResourceExhausted (guard kStore) when memory for the entry
  // cannot be allocated. A refused Put removes any older entry for the key,
  // so that a Get never returns a value older than the latest Put attempt.
  // An entry whose stale_until is not after `now` is not stored (and also
  // removes any older entry); that Put returns OK.
  Status Put(const KeyRef& key, const StoredValue& value, TimePoint now) override;
  // Removes the entry for `key`; not counted as an eviction.
  bool Erase(const KeyRef& key) override;
  // O(entries): walks every shard under its lock. Meant for rare admin use.
  size_t EraseByPrefix(std::string_view prefix) override;
  // Sums the per-shard counters, locking one shard at a time: the figures
  // are each exact for their shard but not a snapshot of the whole store.
  StoreStats Stats() const override;
  // The name given in the options.
  std::string_view name() const override { return name_; }

  // The number of shards, a power of two.
  size_t shard_count() const { return shard_count_; }
  // The largest key-plus-value size a Put accepts (the per-shard byte bound).
  size_t max_entry_bytes() const { return max_entry_bytes_; }

  // Walks every structure of every shard (O(entries)) and returns Internal
  // with a description of the first inconsistency found. For tests.
  Status CheckInvariants() const;

 private:
  MemoryStore(const MemoryStoreOptions& options, size_t shard_count);

  MemoryShard& ShardFor(uint64_t mixed_hash) const;
  // This thread's front-cache slot holding this store's current entry for
  // `key`, if it is servable at now_ns (fresh, or at least not stale); the
  // hit is counted. Null otherwise.
  FrontSlot* FrontHit(FrontCache& cache, const KeyRef& key, uint64_t hash, MemoryShard& shard,
                      int64_t now_ns, bool fresh_only);

  const std::string name_;
  // Unique for the life of the process: tells this store's entries apart in
  // the per-thread front caches.
  const uint64_t id_;
  const size_t shard_count_;
  // Hits served by front caches, one stripe per thread (see stats.h).
  struct alignas(64) FrontHits {
    std::atomic<uint64_t> value{0};
  };
  std::array<FrontHits, internal::kStripes> front_hits_;
  const size_t max_entry_bytes_;
  std::unique_ptr<MemoryShard[]> shards_;
};

}  // namespace toolops

#endif  // TOOLOPS_STORE_MEMORY_STORE_H_
