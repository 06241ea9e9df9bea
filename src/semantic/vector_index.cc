// src/semantic/vector_index.cc

#include "semantic/vector_index.h"

// hnswlib's prefetch hints read the link list one entry past its end (the
// next candidate's id, to prefetch it). Harmless on hardware, but
// AddressSanitizer reports the read, so sanitized builds go without the
// hints. Distances are ours (Int8Space), so nothing else changes.
#if defined(__SANITIZE_ADDRESS__)
#define NO_MANUAL_VECTORIZATION
#endif
#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <mutex>
#include <queue>

namespace toolops {
namespace {

using Int8Vector = std::vector<int8_t>;

Int8Vector Quantize(const std::vector<float>& v, size_t dims) {
  Int8Vector q(dims, 0);
  for (size_t i = 0; i < dims && i < v.size(); ++i) {
    float x = std::round(v[i] * 127.0f);
    q[i] = static_cast<int8_t>(std::clamp(x, -127.0f, 127.0f));
  }
  return q;
}

int32_t DotInt8(const int8_t* a, const int8_t* b, size_t n) {
  int32_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum += static_cast<int32_t>(a[i]) * b[i];
  return sum;
}

constexpr float kScale = 1.0f / (127.0f * 127.0f);

// hnswlib's view of int8 vectors: distance = 1 - cosine.
class Int8Space : public hnswlib::SpaceInterface<float> {
 public:
  explicit Int8Space(size_t dims) : dims_(dims) {}
  size_t get_data_size() override { return dims_; }
  hnswlib::DISTFUNC<float> get_dist_func() override { return &Distance; }
  void* get_dist_func_param() override { return &dims_; }

 private:
  static float Distance(const void* a, const void* b, const void* param) {
    size_t n = *static_cast<const size_t*>(param);
    return 1.0f - static_cast<float>(
                      DotInt8(static_cast<const int8_t*>(a), static_cast<const int8_t*>(b), n)) *
                      kScale;
  }
  size_t dims_;
};

}  // namespace

class VectorIndex::Partition {
 public:
  explicit Partition(const VectorIndexOptions& options) : o_(options), space_(options.dims) {}

  mutable std::shared_mutex mu;

  void Insert(uint64_t id, const Int8Vector& q, TimePoint expires, std::string payload) {
    if (auto it = slot_of_.find(id); it != slot_of_.end()) Remove(it->second);
    if (live_ >= o_.max_per_partition) MakeRoom();
    uint32_t slot = static_cast<uint32_t>(slots_.size());
    slots_.push_back(Slot{id, expires, std::move(payload), true});
    slot_of_[id] = slot;
    order_.push_back(slot);
    ++live_;
    if (graph_ != nullptr) {
      // The graph keeps the only copy of the vector; its internal ids follow
      // the slots (points are added in slot order and never replaced).
      if (slot >= graph_->max_elements_) graph_->resizeIndex(GraphCapacity(slot + 1));
      graph_->addPoint(q.data(), slot);
    } else {
      vectors_.insert(vectors_.end(), q.begin(), q.end());
    }
    if (graph_ == nullptr && live_ > o_.hnsw_threshold) {
      Rebuild();
    }
    if (dead_ > 64 && dead_ > live_) Rebuild();
  }

  bool Erase(uint64_t id) {
    auto it = slot_of_.find(id);
    if (it == slot_of_.end()) return false;
    Remove(it->second);
    if (dead_ > 64 && dead_ > live_) Rebuild();
    return true;
  }

  std::vector<Match> Search(const Int8Vector& q, size_t k, float min_similarity,
                            TimePoint now) const {
    std::vector<Match> out;
    if (k == 0 || live_ == 0) return out;
    if (graph_ != nullptr) {
      // Ask for more than k: expired entries are still in the graph.
      size_t want = std::min(live_, k * 2 + 8);
      auto found = graph_->searchKnn(q.data(), want);
      while (!found.empty()) {
        auto [distance, slot] = found.top();
        found.pop();
        const Slot& s = slots_[slot];
        float similarity = 1.0f - distance;
        if (s.alive && now < s.expires && similarity >= min_similarity) {
          out.push_back(Match{s.id, similarity, s.payload});
        }
      }
    } else {
      for (uint32_t slot = 0; slot < slots_.size(); ++slot) {
        const Slot& s = slots_[slot];
        if (!s.alive || now >= s.expires) continue;
        float similarity = static_cast<float>(DotInt8(q.data(), VectorAt(slot), o_.dims)) * kScale;
        if (similarity >= min_similarity) out.push_back(Match{s.id, similarity, s.payload});
      }
    }
    std::sort(out.begin(), out.end(), [](const Match& a, const Match& b) {
      return a.similarity > b.similarity || (a.similarity == b.similarity && a.id < b.id);
    });
    if (out.size() > k) out.resize(k);
    return out;
  }

  size_t Purge(TimePoint now) {
    size_t dropped = 0;
    for (uint32_t slot = 0; slot < slots_.size(); ++slot) {
      if (slots_[slot].alive && now >= slots_[slot].expires) {
        Remove(slot);
        ++dropped;
      }
    }
    if (dead_ > 64 && dead_ > live_) Rebuild();
    return dropped;
  }

  size_t live() const { return live_; }

 private:
  struct Slot {
    uint64_t id;
    TimePoint expires;
    std::string payload;
    bool alive;
  };

  // Room for `n` points and a quarter more: each growth copies the graph, and
  // a doubling would leave up to half of its memory unused.
  static size_t GraphCapacity(size_t n) { return std::max<size_t>(64, n + n / 4); }

  const int8_t* VectorAt(uint32_t slot) const {
    if (graph_ != nullptr)
      return reinterpret_cast<const int8_t*>(graph_->getDataByInternalId(slot));
    return vectors_.data() + size_t{slot} * o_.dims;
  }

  void Remove(uint32_t slot) {
    Slot& s = slots_[slot];
    if (!s.alive) return;
    s.alive = false;
    std::string().swap(s.payload);
    slot_of_.erase(s.id);
    --live_;
    ++dead_;
    if (graph_ != nullptr) graph_->markDelete(slot);
  }

  // Full: the oldest entries leave (with one TTL per tool, also the first to
  // expire; Purge drops expired ones in between).
  void MakeRoom() {
    while (live_ >= o_.max_per_partition && !order_.empty()) {
      uint32_t oldest = order_.front();
      order_.pop_front();
      Remove(oldest);
    }
  }

  // Compacts the slots (dropping dead ones) and rebuilds the graph when the
  // partition is large enough to need one.
  void Rebuild() {
    std::vector<Slot> slots;
    Int8Vector vectors;
    std::unordered_map<uint64_t, uint32_t> slot_of;
    std::vector<uint32_t> remap(slots_.size(), UINT32_MAX);
    slots.reserve(live_);
    vectors.reserve(live_ * o_.dims);
    for (uint32_t slot = 0; slot < slots_.size(); ++slot) {
      if (!slots_[slot].alive) continue;
      remap[slot] = static_cast<uint32_t>(slots.size());
      slot_of[slots_[slot].id] = static_cast<uint32_t>(slots.size());
      slots.push_back(std::move(slots_[slot]));
      vectors.insert(vectors.end(), VectorAt(slot), VectorAt(slot) + o_.dims);
    }
    std::deque<uint32_t> order;
    for (uint32_t slot : order_) {
      if (slot < remap.size() && remap[slot] != UINT32_MAX) order.push_back(remap[slot]);
    }
    slots_.swap(slots);
    slot_of_.swap(slot_of);
    order_.swap(order);
    dead_ = 0;
    graph_.reset();
    if (live_ > o_.hnsw_threshold) {
      graph_ = std::make_unique<hnswlib::HierarchicalNSW<float>>(
          &space_, GraphCapacity(live_), o_.m, o_.ef_construction, /*seed=*/100);
      graph_->setEf(o_.ef_search);
      for (uint32_t slot = 0; slot < slots_.size(); ++slot) {
        graph_->addPoint(vectors.data() + size_t{slot} * o_.dims, slot);
      }
      Int8Vector().swap(vectors_);  // The graph holds the vectors now.
    } else {
      vectors_.swap(vectors);
    }
  }

  const VectorIndexOptions& o_;
  Int8Space space_;
  std::vector<Slot> slots_;
  Int8Vector vectors_;
  std::unordered_map<uint64_t, uint32_t> slot_of_;
  std::deque<uint32_t> order_;  // Slots in insertion order (dead ones skipped).
  size_t live_ = 0;
  size_t dead_ = 0;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> graph_;
};

VectorIndex::VectorIndex(VectorIndexOptions options) : options_(options) {}
VectorIndex::~VectorIndex() = default;

VectorIndex::Partition* VectorIndex::Find(std::string_view partition) const {
  std::shared_lock lock(mu_);
  auto it = partitions_.find(std::string(partition));
  return it == partitions_.end() ? nullptr : it->second.get();
}

VectorIndex::Partition& VectorIndex::FindOrCreate(std::string_view partition) {
  if (Partition* p = Find(partition)) return *p;
  std::unique_lock lock(mu_);
  auto [it, inserted] = partitions_.try_emplace(std::string(partition));
  if (inserted) it->second = std::make_unique<Partition>(options_);
  return *it->second;
}

void VectorIndex::Insert(std::string_view partition, uint64_t id, const std::vector<float>& vector,
                         TimePoint expires, std::string payload) {
  Int8Vector q = Quantize(vector, options_.dims);
  Partition& p = FindOrCreate(partition);
  std::unique_lock lock(p.mu);
  p.Insert(id, q, expires, std::move(payload));
}

bool VectorIndex::Erase(std::string_view partition, uint64_t id) {
  Partition* p = Find(partition);
  if (p == nullptr) return false;
  std::unique_lock lock(p->mu);
  return p->Erase(id);
}

std::vector<VectorIndex::Match> VectorIndex::Search(std::string_view partition,
                                                    const std::vector<float>& query, size_t k,
                                                    float min_similarity, TimePoint now) const {
  Partition* p = Find(partition);
  if (p == nullptr) return {};
  Int8Vector q = Quantize(query, options_.dims);
  std::shared_lock lock(p->mu);
  return p->Search(q, k, min_similarity, now);
}

size_t VectorIndex::Purge(TimePoint now) {
  std::vector<Partition*> all;
  {
    std::shared_lock lock(mu_);
    for (auto& [name, p] : partitions_) all.push_back(p.get());
  }
  size_t dropped = 0;
  for (Partition* p : all) {
    std::unique_lock lock(p->mu);
    dropped += p->Purge(now);
  }
  return dropped;
}

size_t VectorIndex::size() const {
  std::shared_lock lock(mu_);
  size_t n = 0;
  for (auto& [name, p] : partitions_) {
    std::shared_lock plock(p->mu);
    n += p->live();
  }
  return n;
}

size_t VectorIndex::partitions() const {
  std::shared_lock lock(mu_);
  return partitions_.size();
}

}  // namespace toolops
