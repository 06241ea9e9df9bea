// src/store/memory_store.cc
//
// The in-memory store. Each shard holds, under its own mutex:
//
//   nodes   One malloc per entry: a 48-byte Node header followed by the key
//           bytes. The value is a Bytes sharing the caller's buffer.
//   table   Open addressing with linear probing. A slot is one word: the node
//           pointer, with 4 bits of the hash in its low bits (nodes are
//           16-byte aligned), so most non-matching probes never touch a node.
//           Load factor at most 0.8; grown by half, but never past the size
//           the shard's entry bound needs.
//   heap    A binary min-heap of {stale_until, node}; each node knows its
//           position, so an entry is removed in O(log n) and expired entries
//           are found at the top without scanning. stale_until lives only
//           here (the node reaches it through its heap index).
//   lists   Intrusive doubly linked recency lists: one list under kLru; the
//           window, probation and protected segments under kTinyLfu.
//   sketch  Under kTinyLfu, a count-min sketch of 4-bit counters (4 bytes per
//           entry of the bound) that estimates how often each key was looked
//           up, halved periodically so that old popularity fades.
//
// Bytes per entry, beyond key and value bytes, for a full store of 24-byte
// keys and 100-byte values (measured by bench/memory_store_bench.cc): node 56
// (48 header + 8 malloc header), table 10, heap 16, sketch 4, value buffer 28
// (8-byte Bytes header + 8 malloc header + 12 rounding): 114.

#include "store/memory_store.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <utility>

#include "base/hash.h"
#include "base/mutex.h"
#include "toolops/stats.h"

namespace toolops {
namespace {

constexpr size_t kMaxShards = size_t{1} << 16;
// The shard of a key is taken from these bits of the mixed hash; the table
// uses the low 32 bits and the slot tag bits 32-35, so the three never overlap.
constexpr int kShardShift = 40;
// A default shard count is lowered until each shard gets at least this much,
// so that small stores are not split into shards too small to rank entries.
constexpr size_t kMinEntriesPerDefaultShard = 128;
constexpr size_t kMinBytesPerDefaultShard = size_t{1} << 20;
// Table and heap positions are 32-bit.
constexpr size_t kMaxEntriesPerShard = size_t{1} << 31;
constexpr size_t kMaxKeySize = (size_t{1} << 30) - 1;

constexpr uint32_t kNoSlot = UINT32_MAX;
constexpr uint32_t kMinSlots = 16;
constexpr uint32_t kMinHeapCapacity = 16;
constexpr size_t kMinSketchCapacity = 256;
constexpr uintptr_t kTagMask = 15;
static_assert(alignof(std::max_align_t) >= 16,
              "slot tags live in the low 4 bits of malloc'd node pointers");

// Which recency list a node is on. Under kLru every node is on kWindow,
// which is then simply the LRU list.
enum Segment : uint32_t { kWindow = 0, kProbation = 1, kProtected = 2 };
constexpr int kSegments = 3;

constexpr uint32_t kKeySizeMask = (uint32_t{1} << 30) - 1;

// One entry: this header, then key_size() bytes of key in the same
// allocation. Owned by its shard; freed with FreeNodes().
struct Node {
  Node* prev;  // Toward the most recently used end; null at the head.
  Node* next;  // Toward the least recently used end; null at the tail.
  Bytes value;
  int64_t fresh_ns;
  uint64_t hash;  // MixHash of the KeyRef hash the entry was stored under.
  uint32_t heap_index;
  uint32_t key_size_and_segment;  // Key size in the low 30 bits, Segment above.

  size_t key_size() const { return key_size_and_segment & kKeySizeMask; }
  Segment segment() const { return static_cast<Segment>(key_size_and_segment >> 30); }
  void set_segment(Segment s) {
    key_size_and_segment = (key_size_and_segment & kKeySizeMask) | (uint32_t{s} << 30);
  }
  const char* key_data() const { return reinterpret_cast<const char*>(this + 1); }
  std::string_view key() const { return std::string_view(key_data(), key_size()); }
  // What the entry counts against the byte bound.
  size_t charge() const { return key_size() + value.size(); }
};
static_assert(sizeof(Node) == 48, "a node header is meant to cost 48 bytes");

// Allocates a node holding a copy of `key`, with an empty value. Null if
// memory ran out.
Node* NewNode(std::string_view key, uint64_t hash) {
  void* memory = std::malloc(sizeof(Node) + key.size());
  if (memory == nullptr) return nullptr;
  Node* node =
      new (memory) Node{nullptr, nullptr, Bytes(), 0, hash, 0, static_cast<uint32_t>(key.size())};
  if (!key.empty()) std::memcpy(reinterpret_cast<char*>(node + 1), key.data(), key.size());
  return node;
}

// Frees a chain of nodes linked through `next`.
void FreeNodes(Node* node) {
  while (node != nullptr) {
    Node* next = node->next;
    node->~Node();
    std::free(node);
    node = next;
  }
}

// Spreads the caller's hash over all 64 bits, so that shard, slot, tag and
// sketch positions stay independent even for a weak HashBytes.
uint64_t MixHash(uint64_t h) { return Mix64(h); }

int64_t ToNs(TimePoint t) {
  return std::chrono::duration_cast<Duration>(t.time_since_epoch()).count();
}

TimePoint FromNs(int64_t ns) {
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(Duration(ns)));
}

// Maps a 32-bit hash onto [0, n) without a division.
uint32_t ScaleToRange(uint32_t hash, uint32_t n) {
  return static_cast<uint32_t>((uint64_t{hash} * n) >> 32);
}

// A count-min sketch of 4-bit saturating counters: how often each key was
// looked up, approximately. Counters sit in 64-byte blocks; a key's four
// counters (one per row) are in one block, so an update touches one cache
// line. After 10 increments per key of capacity every counter is halved.
// Not synchronised: the owning shard's mutex guards it.
class FrequencySketch {
 public:
  FrequencySketch() = default;
  ~FrequencySketch() { std::free(words_); }
  FrequencySketch(const FrequencySketch&) = delete;
  FrequencySketch& operator=(const FrequencySketch&) = delete;

  // Resizes for about `capacity` distinct keys and clears every counter.
  // Returns false, keeping the old counters, if memory ran out.
  bool Reset(size_t capacity) {
    size_t blocks = std::max<size_t>(1, (capacity + kKeysPerBlock - 1) / kKeysPerBlock);
    void* memory = std::aligned_alloc(kBlockBytes, blocks * kBlockBytes);
    if (memory == nullptr) return false;
    std::memset(memory, 0, blocks * kBlockBytes);
    std::free(words_);
    words_ = static_cast<uint64_t*>(memory);
    blocks_ = static_cast<uint32_t>(blocks);
    capacity_ = capacity;
    sample_size_ = 10 * std::max<size_t>(capacity, 1);
    additions_ = 0;
    return true;
  }

  size_t capacity() const { return capacity_; }

  struct Cells {
    uint64_t* word[4];
    unsigned shift[4];
  };

  // Row r owns words 2r and 2r+1 of the block; the hash picks one of them and
  // one of its 16 counters. REQUIRES: the sketch has counters (Reset succeeded).
  Cells Locate(uint64_t hash) const {
    uint64_t h = (hash ^ (hash >> 31)) * 0x9e3779b97f4a7c15ULL;
    h ^= h >> 29;
    uint64_t* block =
        words_ + size_t{ScaleToRange(static_cast<uint32_t>(h >> 32), blocks_)} * kWordsPerBlock;
    Cells cells;
    for (int row = 0; row < kRows; ++row) {
      cells.word[row] = block + 2 * row + ((h >> row) & 1);
      cells.shift[row] = static_cast<unsigned>(((h >> (4 + 4 * row)) & 15) * 4);
    }
    return cells;
  }

  bool empty() const { return words_ == nullptr; }

  // Starts loading counters located earlier, to be used shortly.
  static void Prefetch(const Cells& cells) { __builtin_prefetch(cells.word[0], 1); }

  // Counts one occurrence of `hash` (conservative update: only the counters
  // at the current minimum grow, which keeps overestimates small).
  void Increment(uint64_t hash) {
    if (words_ == nullptr) return;
    Increment(Locate(hash));
  }
  void Increment(const Cells& cells) {
    unsigned counts[kRows];
    unsigned least = 15;
    for (int row = 0; row < kRows; ++row) {
      counts[row] = (*cells.word[row] >> cells.shift[row]) & 15;
      least = std::min(least, counts[row]);
    }
    if (least == 15) return;
    for (int row = 0; row < kRows; ++row) {
      if (counts[row] == least) *cells.word[row] += uint64_t{1} << cells.shift[row];
    }
    if (++additions_ >= sample_size_) Halve();
  }

  // The estimated count of `hash`, 0 to 15.
  unsigned Frequency(uint64_t hash) const {
    if (words_ == nullptr) return 0;
    Cells cells = Locate(hash);
    unsigned least = 15;
    for (int row = 0; row < kRows; ++row) {
      least = std::min<unsigned>(least, (*cells.word[row] >> cells.shift[row]) & 15);
    }
    return least;
  }

 private:
  static constexpr int kRows = 4;
  static constexpr size_t kBlockBytes = 64;
  static constexpr size_t kWordsPerBlock = kBlockBytes / sizeof(uint64_t);
  // 128 counters per block, 8 per key of capacity (2 per row).
  static constexpr size_t kKeysPerBlock = 16;

  void Halve() {
    for (size_t i = 0; i < size_t{blocks_} * kWordsPerBlock; ++i) {
      words_[i] = (words_[i] >> 1) & 0x7777777777777777ULL;
    }
    additions_ /= 2;
  }

  uint64_t* words_ = nullptr;
  uint32_t blocks_ = 0;
  size_t capacity_ = 0;
  size_t sample_size_ = 0;
  size_t additions_ = 0;
};

struct NodeList {
  Node* head = nullptr;  // Most recently used.
  Node* tail = nullptr;  // Least recently used.
  size_t entries = 0;
  size_t bytes = 0;
};

struct ExpirySlot {
  int64_t stale_ns;
  Node* node;
};

// One shard's share of the bounds, and its segment sizes under kTinyLfu.
struct ShardLimits {
  EvictionPolicy policy = EvictionPolicy::kLru;
  size_t max_entries = 0;
  size_t max_bytes = 0;
  size_t window_entries = 0;
  size_t window_bytes = 0;
  size_t protected_entries = 0;
  size_t protected_bytes = 0;
};

ShardLimits LimitsFor(const MemoryStoreOptions& options, size_t shard_count) {
  ShardLimits limits;
  limits.policy = options.eviction;
  limits.max_entries = options.max_entries / shard_count;
  limits.max_bytes = options.max_bytes / shard_count;
  // Window TinyLFU: 1% of the shard is the admission window, the rest is
  // the main segment, of which 80% is protected.
  limits.window_entries = std::max<size_t>(1, limits.max_entries / 100);
  limits.window_bytes = std::max<size_t>(1, limits.max_bytes / 100);
  size_t main_entries = limits.max_entries - std::min(limits.max_entries, limits.window_entries);
  size_t main_bytes = limits.max_bytes - std::min(limits.max_bytes, limits.window_bytes);
  limits.protected_entries = main_entries * 8 / 10;
  limits.protected_bytes = main_bytes * 8 / 10;
  return limits;
}

size_t DefaultShardCount(const MemoryStoreOptions& options) {
  size_t cores = std::max(1u, std::thread::hardware_concurrency());
  size_t shards = std::max<size_t>(8, std::bit_ceil(4 * cores));
  shards = std::min(shards, kMaxShards);
  while (shards > 1 && (options.max_entries / shards < kMinEntriesPerDefaultShard ||
                        options.max_bytes / shards < kMinBytesPerDefaultShard)) {
    shards /= 2;
  }
  return shards;
}

}  // namespace

// One independently locked part of the store. Every member but mu_ and
// limits_ is guarded by mu_; limits_ is set by Init before the store is
// shared and never changes after.
class alignas(64) MemoryShard {
 public:
  MemoryShard() = default;
  ~MemoryShard();
  MemoryShard(const MemoryShard&) = delete;
  MemoryShard& operator=(const MemoryShard&) = delete;

  // Called once, before the shard is used by any other thread.
  void Init(const ShardLimits& limits) { limits_ = limits; }

  // On a hit, also sets *version to the shard's version at the time of the
  // read (see version()).
  std::optional<StoredValue> Get(std::string_view key, uint64_t hash, int64_t now_ns,
                                 uint64_t* version) TOOLOPS_EXCLUDES(mu_);
  // Changes whenever an entry of this shard is removed or replaced (not when
  // one is added): an entry read at version v is still the current one while
  // version() == v. Lets the per-thread front cache serve a hit without the
  // lock.
  uint64_t version() const { return version_.load(std::memory_order_acquire); }
  // Counts `n` hits served from a front cache as uses of the entry (recency
  // and frequency), if it is still there. (The hits themselves are counted
  // by the store, per thread.)
  // Returns false, recording nothing, when the shard lock is busy.
  bool RecordHits(std::string_view key, uint64_t hash, uint32_t n) TOOLOPS_EXCLUDES(mu_);
  // Takes ownership of `node` (key and hash set). Returns false only if the
  // table or heap could not grow; the node is freed either way.
  bool Put(Node* node, const Bytes& value, int64_t fresh_ns, int64_t stale_ns, int64_t now_ns)
      TOOLOPS_EXCLUDES(mu_);
  bool Erase(std::string_view key, uint64_t hash) TOOLOPS_EXCLUDES(mu_);
  // Erases `key` and counts a refused Put.
  void Reject(std::string_view key, uint64_t hash) TOOLOPS_EXCLUDES(mu_);
  size_t EraseByPrefix(std::string_view prefix) TOOLOPS_EXCLUDES(mu_);
  void AddStats(StoreStats* stats) const TOOLOPS_EXCLUDES(mu_);
  Status CheckInvariants() const TOOLOPS_EXCLUDES(mu_);

 private:
  // Table.
  uint32_t Home(uint64_t hash) const TOOLOPS_REQUIRES(mu_) {
    return ScaleToRange(static_cast<uint32_t>(hash), slot_count_);
  }
  uint32_t NextSlot(uint32_t i) const TOOLOPS_REQUIRES(mu_) {
    return i + 1 == slot_count_ ? 0 : i + 1;
  }
  // How many steps the probe from `home` takes to reach slot `i`.
  uint32_t ProbeDistance(uint32_t home, uint32_t i) const TOOLOPS_REQUIRES(mu_) {
    return i >= home ? i - home : i + (slot_count_ - home);
  }
  static uintptr_t Tag(uint64_t hash) { return (hash >> 32) & kTagMask; }
  static Node* NodeAt(uintptr_t slot) { return reinterpret_cast<Node*>(slot & ~kTagMask); }
  uint32_t FindSlot(std::string_view key, uint64_t hash) const TOOLOPS_REQUIRES(mu_);
  // The slot of a node known to be in the table.
  uint32_t SlotOf(const Node* node) const TOOLOPS_REQUIRES(mu_);
  void PlaceInTable(Node* node) TOOLOPS_REQUIRES(mu_);
  void EraseSlot(uint32_t slot) TOOLOPS_REQUIRES(mu_);
  bool ResizeTable(uint32_t slot_count) TOOLOPS_REQUIRES(mu_);
  // Makes room in the table, heap and sketch for one more entry.
  bool ReserveForInsert() TOOLOPS_REQUIRES(mu_);

  // Expiry heap.
  void HeapPlace(uint32_t i, ExpirySlot slot) TOOLOPS_REQUIRES(mu_) {
    heap_[i] = slot;
    slot.node->heap_index = i;
  }
  void SiftUp(uint32_t i) TOOLOPS_REQUIRES(mu_);
  void SiftDown(uint32_t i) TOOLOPS_REQUIRES(mu_);
  void HeapRemove(uint32_t i) TOOLOPS_REQUIRES(mu_);
  void HeapUpdate(uint32_t i, int64_t stale_ns) TOOLOPS_REQUIRES(mu_);

  // Recency lists.
  void PushFront(Segment segment, Node* node, size_t charge) TOOLOPS_REQUIRES(mu_);
  void Unlink(Node* node, size_t charge) TOOLOPS_REQUIRES(mu_);
  void MoveToFront(Node* node) TOOLOPS_REQUIRES(mu_);
  void MoveTo(Segment segment, Node* node) TOOLOPS_REQUIRES(mu_);

  // Entry life cycle. Removed nodes are chained onto *garbage (through
  // next) and freed by the caller once the lock is released.
  void Insert(Node* node, int64_t stale_ns) TOOLOPS_REQUIRES(mu_);
  void Remove(Node* node, uint32_t slot, Node** garbage) TOOLOPS_REQUIRES(mu_);
  void OnAccess(Node* node) TOOLOPS_REQUIRES(mu_);
  void ExpireSome(int64_t now_ns, size_t budget, Node** garbage) TOOLOPS_REQUIRES(mu_);
  bool OverBounds() const TOOLOPS_REQUIRES(mu_) {
    return entries_ > limits_.max_entries || bytes_ > limits_.max_bytes;
  }
  void EvictToBounds(Node** garbage) TOOLOPS_REQUIRES(mu_);
  void Evict(Node* node, Node** garbage) TOOLOPS_REQUIRES(mu_);

  // On its own cache line: read by every front-cache hit, written only when
  // an entry is removed or replaced.
  alignas(64) std::atomic<uint64_t> version_{0};
  alignas(64) mutable Mutex mu_;
  ShardLimits limits_;

  uintptr_t* slots_ TOOLOPS_GUARDED_BY(mu_) = nullptr;
  uint32_t slot_count_ TOOLOPS_GUARDED_BY(mu_) = 0;
  ExpirySlot* heap_ TOOLOPS_GUARDED_BY(mu_) = nullptr;
  uint32_t heap_size_ TOOLOPS_GUARDED_BY(mu_) = 0;
  uint32_t heap_capacity_ TOOLOPS_GUARDED_BY(mu_) = 0;
  NodeList lists_[kSegments] TOOLOPS_GUARDED_BY(mu_);
  FrequencySketch sketch_ TOOLOPS_GUARDED_BY(mu_);

  size_t entries_ TOOLOPS_GUARDED_BY(mu_) = 0;
  size_t bytes_ TOOLOPS_GUARDED_BY(mu_) = 0;
  uint64_t hits_ TOOLOPS_GUARDED_BY(mu_) = 0;
  uint64_t misses_ TOOLOPS_GUARDED_BY(mu_) = 0;
  uint64_t evictions_ TOOLOPS_GUARDED_BY(mu_) = 0;
  uint64_t expirations_ TOOLOPS_GUARDED_BY(mu_) = 0;
  uint64_t rejected_ TOOLOPS_GUARDED_BY(mu_) = 0;
};

MemoryShard::~MemoryShard() {
  MutexLock lock(&mu_);
  for (NodeList& list : lists_) {
    Node* node = list.head;
    list = NodeList();
    FreeNodes(node);
  }
  std::free(slots_);
  std::free(heap_);
}

// ---- Table ----

uint32_t MemoryShard::FindSlot(std::string_view key, uint64_t hash) const {
  if (slot_count_ == 0) return kNoSlot;
  uintptr_t tag = Tag(hash);
  for (uint32_t i = Home(hash);; i = NextSlot(i)) {
    uintptr_t slot = slots_[i];
    if (slot == 0) return kNoSlot;
    if ((slot & kTagMask) == tag) {
      const Node* node = NodeAt(slot);
      // The full key decides; the hash only filters.
      if (node->hash == hash && node->key() == key) return i;
    }
  }
}

uint32_t MemoryShard::SlotOf(const Node* node) const {
  uint32_t i = Home(node->hash);
  while (NodeAt(slots_[i]) != node) i = NextSlot(i);
  return i;
}

void MemoryShard::PlaceInTable(Node* node) {
  uint32_t i = Home(node->hash);
  while (slots_[i] != 0) i = NextSlot(i);
  slots_[i] = reinterpret_cast<uintptr_t>(node) | Tag(node->hash);
}

void MemoryShard::EraseSlot(uint32_t hole) {
  // Backward-shift deletion: pull later members of the probe run into the
  // hole when the hole lies on their path, so no tombstones are needed.
  uint32_t i = hole;
  for (uint32_t j = NextSlot(i); slots_[j] != 0; j = NextSlot(j)) {
    uint32_t home = Home(NodeAt(slots_[j])->hash);
    if (ProbeDistance(home, i) <= ProbeDistance(home, j)) {
      slots_[i] = slots_[j];
      i = j;
    }
  }
  slots_[i] = 0;
}

bool MemoryShard::ResizeTable(uint32_t slot_count) {
  auto* grown = static_cast<uintptr_t*>(std::calloc(slot_count, sizeof(uintptr_t)));
  if (grown == nullptr) return false;
  uintptr_t* old = std::exchange(slots_, grown);
  uint32_t old_count = std::exchange(slot_count_, slot_count);
  for (uint32_t i = 0; i < old_count; ++i) {
    if (old[i] != 0) PlaceInTable(NodeAt(old[i]));
  }
  std::free(old);
  return true;
}

bool MemoryShard::ReserveForInsert() {
  // The table keeps its load factor at or below 0.8 and stops growing at the
  // size that holds the entry bound (plus the one entry a Put adds before it
  // evicts). Table and heap grow by modest factors (1.5 and 1.25) so that a
  // store filled well below its bound does not carry much empty space.
  size_t needed = entries_ + 1;
  if (needed * 5 > size_t{slot_count_} * 4) {
    size_t largest = limits_.max_entries + limits_.max_entries / 4 + 2;
    size_t grown =
        std::min(largest, std::max<size_t>(kMinSlots, size_t{slot_count_} + slot_count_ / 2));
    if (!ResizeTable(static_cast<uint32_t>(grown))) return false;
  }
  if (heap_size_ == heap_capacity_) {
    size_t largest = limits_.max_entries + 1;
    size_t grown =
        std::min(largest, std::max<size_t>(kMinHeapCapacity, heap_capacity_ + heap_capacity_ / 4));
    void* memory = std::realloc(heap_, grown * sizeof(ExpirySlot));
    if (memory == nullptr) return false;
    heap_ = static_cast<ExpirySlot*>(memory);
    heap_capacity_ = static_cast<uint32_t>(grown);
  }
  if (limits_.policy == EvictionPolicy::kTinyLfu && entries_ >= sketch_.capacity() &&
      sketch_.capacity() < limits_.max_entries) {
    // The sketch grows with the shard (losing its counts, which refill
    // quickly); on allocation failure the smaller one stays in use.
    size_t grown = std::max(kMinSketchCapacity, 2 * sketch_.capacity());
    (void)sketch_.Reset(std::min(limits_.max_entries, grown));
  }
  return true;
}

// ---- Expiry heap ----

void MemoryShard::SiftUp(uint32_t i) {
  ExpirySlot moving = heap_[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (heap_[parent].stale_ns <= moving.stale_ns) break;
    HeapPlace(i, heap_[parent]);
    i = parent;
  }
  HeapPlace(i, moving);
}

void MemoryShard::SiftDown(uint32_t i) {
  ExpirySlot moving = heap_[i];
  for (;;) {
    uint32_t child = 2 * i + 1;
    if (child >= heap_size_) break;
    if (child + 1 < heap_size_ && heap_[child + 1].stale_ns < heap_[child].stale_ns) ++child;
    if (moving.stale_ns <= heap_[child].stale_ns) break;
    HeapPlace(i, heap_[child]);
    i = child;
  }
  HeapPlace(i, moving);
}

void MemoryShard::HeapRemove(uint32_t i) {
  --heap_size_;
  if (i == heap_size_) return;
  HeapPlace(i, heap_[heap_size_]);
  HeapUpdate(i, heap_[i].stale_ns);
}

void MemoryShard::HeapUpdate(uint32_t i, int64_t stale_ns) {
  heap_[i].stale_ns = stale_ns;
  if (i > 0 && heap_[(i - 1) / 2].stale_ns > stale_ns) {
    SiftUp(i);
  } else {
    SiftDown(i);
  }
}

// ---- Recency lists ----

void MemoryShard::PushFront(Segment segment, Node* node, size_t charge) {
  NodeList& list = lists_[segment];
  node->set_segment(segment);
  node->prev = nullptr;
  node->next = list.head;
  if (list.head != nullptr) {
    list.head->prev = node;
  } else {
    list.tail = node;
  }
  list.head = node;
  ++list.entries;
  list.bytes += charge;
}

void MemoryShard::Unlink(Node* node, size_t charge) {
  NodeList& list = lists_[node->segment()];
  if (node->prev != nullptr) {
    node->prev->next = node->next;
  } else {
    list.head = node->next;
  }
  if (node->next != nullptr) {
    node->next->prev = node->prev;
  } else {
    list.tail = node->prev;
  }
  --list.entries;
  list.bytes -= charge;
}

void MemoryShard::MoveToFront(Node* node) {
  NodeList& list = lists_[node->segment()];
  if (list.head == node) return;
  // Not the head, so prev is set.
  node->prev->next = node->next;
  if (node->next != nullptr) {
    node->next->prev = node->prev;
  } else {
    list.tail = node->prev;
  }
  node->prev = nullptr;
  node->next = list.head;
  list.head->prev = node;
  list.head = node;
}

void MemoryShard::MoveTo(Segment segment, Node* node) {
  size_t charge = node->charge();
  Unlink(node, charge);
  PushFront(segment, node, charge);
}

// ---- Entry life cycle ----

void MemoryShard::Insert(Node* node, int64_t stale_ns) {
  PlaceInTable(node);
  uint32_t i = heap_size_++;
  HeapPlace(i, ExpirySlot{stale_ns, node});
  SiftUp(i);
  size_t charge = node->charge();
  // New entries enter the window (under kLru, the one list).
  PushFront(kWindow, node, charge);
  ++entries_;
  bytes_ += charge;
}

void MemoryShard::Remove(Node* node, uint32_t slot, Node** garbage) {
  version_.fetch_add(1, std::memory_order_release);
  size_t charge = node->charge();
  Unlink(node, charge);
  EraseSlot(slot);
  HeapRemove(node->heap_index);
  --entries_;
  bytes_ -= charge;
  node->next = *garbage;
  *garbage = node;
}

void MemoryShard::OnAccess(Node* node) {
  if (limits_.policy == EvictionPolicy::kLru || node->segment() != kProbation) {
    MoveToFront(node);
    return;
  }
  // A second use while on probation earns protection; the protected
  // segment's least recent entries go back to probation to make room.
  MoveTo(kProtected, node);
  NodeList& protected_list = lists_[kProtected];
  while (protected_list.entries > 1 && (protected_list.entries > limits_.protected_entries ||
                                        protected_list.bytes > limits_.protected_bytes)) {
    MoveTo(kProbation, protected_list.tail);
  }
}

void MemoryShard::ExpireSome(int64_t now_ns, size_t budget, Node** garbage) {
  for (size_t n = 0; n < budget && heap_size_ > 0 && heap_[0].stale_ns <= now_ns; ++n) {
    Node* node = heap_[0].node;
    Remove(node, SlotOf(node), garbage);
    ++expirations_;
  }
}

void MemoryShard::Evict(Node* node, Node** garbage) {
  Remove(node, SlotOf(node), garbage);
  ++evictions_;
}

void MemoryShard::EvictToBounds(Node** garbage) {
  if (limits_.policy == EvictionPolicy::kLru) {
    while (OverBounds()) Evict(lists_[kWindow].tail, garbage);
    return;
  }
  // Window TinyLFU. Entries leaving the window join probation while there is
  // room; once the shard is full, the window's oldest entry (the candidate)
  // enters only if it has been looked up more often than the entry the main
  // segment would give up (the victim). Otherwise the candidate goes.
  NodeList& window = lists_[kWindow];
  while (window.entries > limits_.window_entries || window.bytes > limits_.window_bytes) {
    Node* candidate = window.tail;
    if (!OverBounds()) {
      MoveTo(kProbation, candidate);
      continue;
    }
    Node* victim = lists_[kProbation].tail;
    if (victim == nullptr) victim = lists_[kProtected].tail;
    if (victim == nullptr) {
      Evict(candidate, garbage);
    } else if (sketch_.Frequency(candidate->hash) > sketch_.Frequency(victim->hash)) {
      Evict(victim, garbage);
    } else {
      Evict(candidate, garbage);
    }
  }
  // The window is within its share; anything still over the bounds (a large
  // value, a replaced entry that grew) comes out of main, then the window.
  while (OverBounds()) {
    Node* victim = lists_[kProbation].tail;
    if (victim == nullptr) victim = lists_[kProtected].tail;
    if (victim == nullptr) victim = window.tail;
    Evict(victim, garbage);
  }
}

// ---- Operations ----

std::optional<StoredValue> MemoryShard::Get(std::string_view key, uint64_t hash, int64_t now_ns,
                                            uint64_t* version) {
  std::optional<StoredValue> found;
  Node* garbage = nullptr;
  {
    MutexLock lock(&mu_);
    // The loads below mostly miss the cache and depend only on the hash or
    // on the node, so they are started together and overlap, rather than
    // one by one behind the locked instructions (the refcount increment).
    // The sketch's counters are located once, prefetched, and updated last.
    bool count_frequency = limits_.policy == EvictionPolicy::kTinyLfu && !sketch_.empty();
    FrequencySketch::Cells cells;
    if (count_frequency) {
      cells = sketch_.Locate(hash);
      FrequencySketch::Prefetch(cells);
    }
    if (heap_size_ > 0 && heap_[0].stale_ns <= now_ns) {
      ExpireSome(now_ns, MemoryStore::kExpiriesPerGet, &garbage);
    }
    uint32_t slot = FindSlot(key, hash);
    if (slot == kNoSlot) {
      ++misses_;
    } else {
      Node* node = NodeAt(slots_[slot]);
      __builtin_prefetch(node->value.data(), 1);  // The refcount sits just before the data.
      __builtin_prefetch(node->prev, 1);
      __builtin_prefetch(node->next, 1);
      int64_t stale_ns = heap_[node->heap_index].stale_ns;
      if (stale_ns <= now_ns) {
        Remove(node, slot, &garbage);
        ++expirations_;
        ++misses_;
      } else {
        ++hits_;
        OnAccess(node);
        found.emplace(StoredValue{node->value, FromNs(node->fresh_ns), FromNs(stale_ns)});
        *version = version_.load(std::memory_order_relaxed);  // Written only under mu_.
      }
    }
    if (count_frequency) sketch_.Increment(cells);
  }
  FreeNodes(garbage);
  return found;
}

bool MemoryShard::RecordHits(std::string_view key, uint64_t hash, uint32_t n) {
  // A report is worth less than the wait for a busy lock: skip it and let
  // the front cache try again after more hits.
  if (!mu_.TryLock()) return false;
  uint32_t slot = FindSlot(key, hash);
  if (slot != kNoSlot) {
    OnAccess(NodeAt(slots_[slot]));
    if (limits_.policy == EvictionPolicy::kTinyLfu) {
      // The sketch's 4-bit counters saturate at 15; a few increments carry
      // the popularity without a long loop under the lock.
      for (uint32_t i = 0; i < std::min<uint32_t>(n, 4); ++i) sketch_.Increment(hash);
    }
  }
  mu_.Unlock();
  return true;
}

bool MemoryShard::Put(Node* node, const Bytes& value, int64_t fresh_ns, int64_t stale_ns,
                      int64_t now_ns) {
  bool stored = true;
  Node* garbage = nullptr;
  Bytes replaced;  // The old value of a replaced entry, released after the lock.
  {
    MutexLock lock(&mu_);
    ExpireSome(now_ns, MemoryStore::kExpiriesPerPut, &garbage);
    uint32_t slot = FindSlot(node->key(), node->hash);
    if (slot != kNoSlot) {
      // Replace in place; the new node was only needed for a new key.
      Node* existing = NodeAt(slots_[slot]);
      version_.fetch_add(1, std::memory_order_release);
      size_t old_charge = existing->charge();
      Unlink(existing, old_charge);
      replaced = std::exchange(existing->value, value);
      size_t new_charge = existing->charge();
      PushFront(existing->segment(), existing, new_charge);
      bytes_ = bytes_ - old_charge + new_charge;
      existing->fresh_ns = fresh_ns;
      HeapUpdate(existing->heap_index, stale_ns);
      OnAccess(existing);
      node->next = garbage;
      garbage = node;
    } else if (ReserveForInsert()) {
      node->value = value;
      node->fresh_ns = fresh_ns;
      Insert(node, stale_ns);
    } else {
      stored = false;
      node->next = garbage;
      garbage = node;
    }
    EvictToBounds(&garbage);
  }
  FreeNodes(garbage);
  return stored;
}

bool MemoryShard::Erase(std::string_view key, uint64_t hash) {
  Node* garbage = nullptr;
  {
    MutexLock lock(&mu_);
    uint32_t slot = FindSlot(key, hash);
    if (slot != kNoSlot) Remove(NodeAt(slots_[slot]), slot, &garbage);
  }
  FreeNodes(garbage);
  return garbage != nullptr;
}

void MemoryShard::Reject(std::string_view key, uint64_t hash) {
  Node* garbage = nullptr;
  {
    MutexLock lock(&mu_);
    ++rejected_;
    uint32_t slot = FindSlot(key, hash);
    if (slot != kNoSlot) Remove(NodeAt(slots_[slot]), slot, &garbage);
  }
  FreeNodes(garbage);
}

size_t MemoryShard::EraseByPrefix(std::string_view prefix) {
  size_t removed = 0;
  Node* garbage = nullptr;
  {
    MutexLock lock(&mu_);
    for (NodeList& list : lists_) {
      Node* node = list.head;
      while (node != nullptr) {
        Node* next = node->next;  // Remove() reuses node->next.
        if (node->key().starts_with(prefix)) {
          Remove(node, SlotOf(node), &garbage);
          ++removed;
        }
        node = next;
      }
    }
  }
  FreeNodes(garbage);
  return removed;
}

void MemoryShard::AddStats(StoreStats* stats) const {
  MutexLock lock(&mu_);
  stats->entries += entries_;
  stats->bytes += bytes_;
  stats->hits += hits_;
  stats->misses += misses_;
  stats->evictions += evictions_;
  stats->expirations += expirations_;
  stats->rejected += rejected_;
}

Status MemoryShard::CheckInvariants() const {
  MutexLock lock(&mu_);
  auto fail = [](std::string what) { return InternalError("memory store shard: " + what); };
  size_t entries = 0;
  size_t bytes = 0;
  for (int s = 0; s < kSegments; ++s) {
    const NodeList& list = lists_[s];
    if (limits_.policy == EvictionPolicy::kLru && s != kWindow && list.head != nullptr) {
      return fail("LRU entry outside the LRU list");
    }
    size_t list_entries = 0;
    size_t list_bytes = 0;
    const Node* prev = nullptr;
    for (const Node* node = list.head; node != nullptr; prev = node, node = node->next) {
      if (node->prev != prev) return fail("broken prev link");
      if (node->segment() != static_cast<Segment>(s)) return fail("node on the wrong list");
      ++list_entries;
      list_bytes += node->charge();
      if (node->heap_index >= heap_size_ || heap_[node->heap_index].node != node) {
        return fail("node not at its heap index");
      }
      uint32_t slot = Home(node->hash);
      uint32_t probes = 0;
      while (NodeAt(slots_[slot]) != node && probes++ < slot_count_) slot = NextSlot(slot);
      if (NodeAt(slots_[slot]) != node) return fail("node missing from the table");
      for (uint32_t i = Home(node->hash); i != slot; i = NextSlot(i)) {
        if (slots_[i] == 0) return fail("empty slot inside a probe run");
      }
      if (FindSlot(node->key(), node->hash) != slot) return fail("key found at another slot");
    }
    if (list.tail != prev) return fail("tail is not the last node");
    if (list_entries != list.entries || list_bytes != list.bytes) return fail("list totals");
    entries += list_entries;
    bytes += list_bytes;
  }
  if (entries != entries_ || bytes != bytes_) return fail("shard totals");
  if (heap_size_ != entries_) return fail("heap size");
  for (uint32_t i = 1; i < heap_size_; ++i) {
    if (heap_[(i - 1) / 2].stale_ns > heap_[i].stale_ns) return fail("heap order");
  }
  size_t used = 0;
  for (uint32_t i = 0; i < slot_count_; ++i) {
    if (slots_[i] == 0) continue;
    ++used;
    if ((slots_[i] & kTagMask) != Tag(NodeAt(slots_[i])->hash)) return fail("slot tag");
  }
  if (used != entries_) return fail("table count");
  if (entries_ > limits_.max_entries) return fail("entry bound exceeded");
  if (bytes_ > limits_.max_bytes) return fail("byte bound exceeded");
  if (limits_.policy == EvictionPolicy::kTinyLfu) {
    const NodeList& window = lists_[kWindow];
    if (window.entries > limits_.window_entries || window.bytes > limits_.window_bytes) {
      return fail("window over its share");
    }
    if (lists_[kProtected].entries > std::max<size_t>(1, limits_.protected_entries)) {
      return fail("protected segment over its share");
    }
  }
  return Status::Ok();
}

// ---- MemoryStore ----

Result<std::unique_ptr<MemoryStore>> MemoryStore::Create(const MemoryStoreOptions& options) {
  if (options.max_entries == 0 || options.max_bytes == 0) {
    return InvalidArgumentError("memory store: max_entries and max_bytes must be positive");
  }
  if (options.eviction != EvictionPolicy::kLru && options.eviction != EvictionPolicy::kTinyLfu) {
    return InvalidArgumentError("memory store: unknown eviction policy");
  }
  if (options.shards > kMaxShards) {
    return InvalidArgumentError("memory store: at most " + std::to_string(kMaxShards) + " shards");
  }
  size_t shards = options.shards == 0 ? DefaultShardCount(options) : std::bit_ceil(options.shards);
  if (options.max_entries < shards || options.max_bytes < shards) {
    return InvalidArgumentError("memory store: max_entries and max_bytes must be at least the " +
                                std::to_string(shards) + " shards");
  }
  if (options.max_entries / shards > kMaxEntriesPerShard) {
    return InvalidArgumentError("memory store: more than " + std::to_string(kMaxEntriesPerShard) +
                                " entries per shard; use more shards");
  }
  return std::unique_ptr<MemoryStore>(new MemoryStore(options, shards));
}

// The per-thread front cache: a few recently hit entries of any memory store,
// direct-mapped by hash. A slot is valid while its store's shard still has
// the version it was read at, so a hit here returns exactly what the shard
// would, without its lock and without writing any line another thread reads.
struct FrontSlot {
  uint64_t store_id = 0;  // 0: empty. Store ids are never reused.
  uint64_t hash = 0;
  uint64_t version = 0;
  int64_t fresh_ns = 0;
  int64_t stale_ns = 0;
  uint32_t pending_hits = 0;  // Hits not yet reported to the shard.
  uint32_t last_use = 0;      // The thread's use counter at its last hit or fill.
  std::string key;
  Bytes value;
  // Spare references to value's buffer, so that a hit hands one out (and
  // gets it back when the caller drops it on this thread) without an atomic
  // operation. Declared after value: given back before value lets go.
  SpareRefs spare;
};
constexpr size_t kFrontSlots = 256;
// Larger entries are not kept, so that a thread pins at most
// kFrontSlots * (kFrontMaxKey + kFrontMaxValue) bytes (about 1 MiB).
constexpr size_t kFrontMaxValue = 4 << 10;
constexpr size_t kFrontMaxKey = 256;
// Hits are reported to the shard in batches of (at least) this many.
constexpr uint32_t kFrontReportEvery = 128;

// Eight ways per set: a key may sit in any slot of its set, so the hot keys
// of a thread rarely outnumber the ways of a set (with four ways, 64 hot keys
// overfill some set in about one process in five, and the keys of that set
// then miss on every call). A fill replaces the least recently used way; a hit
// only stamps its slot (slots never move: moving one copies its key).
constexpr size_t kFrontWays = 8;

struct FrontCache {
  // The hash of each slot (0 when empty), a set's eight in one cache line:
  // a probe reads that line and then only the slot whose hash matches.
  alignas(64) std::array<uint64_t, kFrontSlots> tags{};
  std::array<FrontSlot, kFrontSlots> slots;
  uint32_t uses = 0;
};

namespace {

std::atomic<uint64_t> next_store_id{1};

FrontCache& ThreadFront() {
  thread_local FrontCache cache;
  return cache;
}

// The index of the first slot of the set for `hash`.
size_t FrontSetFor(uint64_t hash) {
  return ((hash >> 40) & (kFrontSlots / kFrontWays - 1)) * kFrontWays;
}

}  // namespace

MemoryStore::MemoryStore(const MemoryStoreOptions& options, size_t shard_count)
    : name_(options.name),
      id_(next_store_id.fetch_add(1, std::memory_order_relaxed)),
      shard_count_(shard_count),
      max_entry_bytes_(options.max_bytes / shard_count),
      shards_(new MemoryShard[shard_count]) {
  ShardLimits limits = LimitsFor(options, shard_count);
  for (size_t i = 0; i < shard_count_; ++i) shards_[i].Init(limits);
}

MemoryStore::~MemoryStore() = default;

MemoryShard& MemoryStore::ShardFor(uint64_t mixed_hash) const {
  return shards_[(mixed_hash >> kShardShift) & (shard_count_ - 1)];
}

// Inlined into each caller, where fresh_only is a constant: the probe is
// most of a hit, and a call would save and restore half the registers.
[[gnu::always_inline]] inline FrontSlot* MemoryStore::FrontHit(FrontCache& cache, const KeyRef& key,
                                                               uint64_t hash, MemoryShard& shard,
                                                               int64_t now_ns, bool fresh_only) {
  size_t base = FrontSetFor(hash);
  for (size_t way = 0; way < kFrontWays; ++way) {
    if (cache.tags[base + way] != hash) continue;
    FrontSlot& front = cache.slots[base + way];
    if (front.store_id == id_ && now_ns < (fresh_only ? front.fresh_ns : front.stale_ns) &&
        front.version == shard.version() && front.key == key.bytes) {
      const internal::StripeLease& lease = internal::CurrentStripe();
      internal::AddToStripe(front_hits_[lease.index].value, lease, 1);
      if (++front.pending_hits >= kFrontReportEvery &&
          shard.RecordHits(key.bytes, hash, front.pending_hits)) {
        front.pending_hits = 0;
      }
      front.last_use = ++cache.uses;
      return &front;
    }
  }
  return nullptr;
}

// Served from this thread's front cache only.
bool MemoryStore::GetFresh(const KeyRef& key, TimePoint now, Bytes* out) {
  uint64_t hash = MixHash(key.hash);
  MemoryShard& shard = ShardFor(hash);
  int64_t now_ns = ToNs(now);
  FrontCache& cache = ThreadFront();
  if (FrontSlot* front = FrontHit(cache, key, hash, shard, now_ns, /*fresh_only=*/true)) {
    *out = front->spare.Take(front->value);
    return true;
  }
  return false;  // Get() looks in the shard and fills the front cache.
}

std::optional<StoredValue> MemoryStore::Get(const KeyRef& key, TimePoint now) {
  uint64_t hash = MixHash(key.hash);
  MemoryShard& shard = ShardFor(hash);
  int64_t now_ns = ToNs(now);
  FrontCache& cache = ThreadFront();
  if (FrontSlot* front = FrontHit(cache, key, hash, shard, now_ns, /*fresh_only=*/false)) {
    return StoredValue{front->spare.Take(front->value), FromNs(front->fresh_ns),
                       FromNs(front->stale_ns)};
  }
  size_t base = FrontSetFor(hash);
  FrontSlot* set = &cache.slots[base];
  uint64_t version = 0;
  std::optional<StoredValue> found = shard.Get(key.bytes, hash, now_ns, &version);
  if (found && found->value.size() <= kFrontMaxValue && key.bytes.size() <= kFrontMaxKey) {
    // The new entry takes an empty way, else the least recently used one
    // (whose pending hits are reported first). Ages are differences of the
    // 32-bit use counter, so its wrapping is harmless.
    size_t victim = 0;
    for (size_t way = 0; way < kFrontWays; ++way) {
      if (set[way].store_id == 0) {
        victim = way;
        break;
      }
      if (cache.uses - set[way].last_use > cache.uses - set[victim].last_use) victim = way;
    }
    FrontSlot& front = set[victim];
    if (front.store_id == id_ && front.pending_hits > 0) {
      (void)ShardFor(front.hash).RecordHits(front.key, front.hash, front.pending_hits);
    }
    front.store_id = id_;
    front.hash = hash;
    cache.tags[base + victim] = hash;
    front.version = version;
    front.fresh_ns = ToNs(found->fresh_until);
    front.stale_ns = ToNs(found->stale_until);
    front.pending_hits = 0;
    front.last_use = ++cache.uses;
    front.key.assign(key.bytes);
    front.spare.Release();
    front.value = found->value;
  }
  return found;
}

Status MemoryStore::Put(const KeyRef& key, const StoredValue& value, TimePoint now) {
  uint64_t hash = MixHash(key.hash);
  MemoryShard& shard = ShardFor(hash);
  size_t size = key.bytes.size() + value.value.size();
  if (size > max_entry_bytes_ || key.bytes.size() > kMaxKeySize) {
    shard.Reject(key.bytes, hash);
    std::string message =
        size > max_entry_bytes_
            ? "entry of " + std::to_string(size) + " bytes (key and value) exceeds the limit of " +
                  std::to_string(max_entry_bytes_) + " bytes per entry (max_bytes over " +
                  std::to_string(shard_count_) + " shards)"
            : "key of " + std::to_string(key.bytes.size()) + " bytes exceeds the limit of " +
                  std::to_string(kMaxKeySize) + " bytes per key";
    return Status(StatusCode::kResourceExhausted, "memory store: " + message, Guard::kStore);
  }
  int64_t now_ns = ToNs(now);
  int64_t stale_ns = ToNs(value.stale_until);
  if (stale_ns <= now_ns) {
    // Already past serving: store nothing, but do not leave an older value.
    shard.Erase(key.bytes, hash);
    return Status::Ok();
  }
  Node* node = NewNode(key.bytes, hash);
  if (node == nullptr || !shard.Put(node, value.value, ToNs(value.fresh_until), stale_ns, now_ns)) {
    if (node == nullptr) shard.Erase(key.bytes, hash);
    return Status(StatusCode::kResourceExhausted, "memory store: out of memory", Guard::kStore);
  }
  return Status::Ok();
}

bool MemoryStore::Erase(const KeyRef& key) {
  uint64_t hash = MixHash(key.hash);
  return ShardFor(hash).Erase(key.bytes, hash);
}

size_t MemoryStore::EraseByPrefix(std::string_view prefix) {
  size_t removed = 0;
  for (size_t i = 0; i < shard_count_; ++i) removed += shards_[i].EraseByPrefix(prefix);
  return removed;
}

StoreStats MemoryStore::Stats() const {
  StoreStats stats;
  for (size_t i = 0; i < shard_count_; ++i) shards_[i].AddStats(&stats);
  for (const FrontHits& stripe : front_hits_)
    stats.hits += stripe.value.load(std::memory_order_relaxed);
  return stats;
}

Status MemoryStore::CheckInvariants() const {
  for (size_t i = 0; i < shard_count_; ++i) {
    Status status = shards_[i].CheckInvariants();
    if (!status.ok()) return status.WithContext("shard " + std::to_string(i));
  }
  return Status::Ok();
}

Result<std::unique_ptr<Store>> NewMemoryStore(const MemoryStoreOptions& options) {
  Result<std::unique_ptr<MemoryStore>> store = MemoryStore::Create(options);
  if (!store.ok()) return store.status();
  return std::unique_ptr<Store>(std::move(store).value());
}

}  // namespace toolops
