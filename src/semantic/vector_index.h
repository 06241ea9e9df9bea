// src/semantic/vector_index.h
//
// VectorIndex: the nearest cached questions to a new one, within one
// partition (a tool, its version, the scope and the structured arguments:
// an answer never crosses partitions). Vectors are unit length and kept as
// int8 (one byte per dimension, x * 127 rounded), once: in the partition's
// scan array while it is small, then inside its graph. bench/semantic_bench.cc
// measures the bytes per entry (vector, graph links, bookkeeping) at a
// million entries.
//
// A partition is searched exactly (a scan) while it is small, and through an
// HNSW graph (hnswlib) once it holds more than `hnsw_threshold` entries.
// Each partition holds at most `max_per_partition` entries: past it, the
// oldest leave. Entries expire at their own instant
// (never returned after it) and are dropped by Purge or when room is needed.
// Erased entries leave the graph at the next rebuild (when as many are
// erased as live).
//
// Similarities are computed on the int8 vectors: within about 0.01 of the
// float cosine for the models we ship.
//
// Safe for concurrent use: one reader-writer lock per partition, so searches
// run in parallel and an insert blocks only its own partition.

#ifndef TOOLOPS_SEMANTIC_VECTOR_INDEX_H_
#define TOOLOPS_SEMANTIC_VECTOR_INDEX_H_

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "toolops/clock.h"

namespace toolops {

struct VectorIndexOptions {
  size_t dims = 0;
  size_t max_per_partition = 100'000;
  // Partitions larger than this are searched through a graph.
  size_t hnsw_threshold = 1024;
  // HNSW parameters: links per node, candidate list while building and while
  // searching.
  size_t m = 16;
  size_t ef_construction = 128;
  size_t ef_search = 96;
};

class VectorIndex {
 public:
  explicit VectorIndex(VectorIndexOptions options);
  ~VectorIndex();

  // Adds `id` (or replaces its vector, expiry and payload) in `partition`.
  // `vector` must have dims() values. The payload travels with the entry
  // (the semantic cache keeps the exact key and the question there).
  void Insert(std::string_view partition, uint64_t id, const std::vector<float>& vector,
              TimePoint expires, std::string payload = {});
  // Removes `id` from `partition`; whether it was there.
  bool Erase(std::string_view partition, uint64_t id);

  struct Match {
    uint64_t id;
    float similarity;  // Cosine, from the int8 vectors.
    std::string payload;
  };
  // The (at most) `k` entries of `partition` most similar to `query`, with
  // similarity at least `min_similarity`, not expired at `now`; best first.
  std::vector<Match> Search(std::string_view partition, const std::vector<float>& query, size_t k,
                            float min_similarity, TimePoint now) const;

  // Drops every expired entry; returns how many.
  size_t Purge(TimePoint now);

  size_t size() const;
  size_t partitions() const;
  size_t dims() const { return options_.dims; }

 private:
  class Partition;

  Partition* Find(std::string_view partition) const;
  Partition& FindOrCreate(std::string_view partition);

  const VectorIndexOptions options_;
  mutable std::shared_mutex mu_;  // Guards the map, not the partitions.
  std::unordered_map<std::string, std::unique_ptr<Partition>> partitions_;
};

}  // namespace toolops

#endif  // TOOLOPS_SEMANTIC_VECTOR_INDEX_H_
