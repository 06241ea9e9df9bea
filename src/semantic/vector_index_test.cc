// src/semantic/vector_index_test.cc
//
// The vector index: exact search in small partitions, the HNSW graph in
// large ones (recall against a scan), partitions that never mix, expiry,
// erasure, the bound per partition, and concurrent inserts and searches.

#include "semantic/vector_index.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>
#include <thread>

namespace toolops {
namespace {

using std::chrono::seconds;

std::vector<float> Unit(std::vector<float> v) {
  double norm = 0;
  for (float x : v) norm += static_cast<double>(x) * x;
  for (float& x : v) x = static_cast<float>(x / std::sqrt(norm));
  return v;
}

std::vector<float> RandomUnit(std::mt19937_64& rng, size_t dims) {
  std::normal_distribution<float> normal;
  std::vector<float> v(dims);
  for (float& x : v) x = normal(rng);
  return Unit(v);
}

// `v` moved a little in a random direction, still unit length.
std::vector<float> Near(const std::vector<float>& v, std::mt19937_64& rng, float noise) {
  std::normal_distribution<float> normal(0, noise);
  std::vector<float> out = v;
  for (float& x : out) x += normal(rng);
  return Unit(out);
}

TimePoint Now() { return RealClock()->Now(); }

TEST(VectorIndexTest, FindsTheMostSimilarAboveTheThresholdBestFirst) {
  VectorIndex index(VectorIndexOptions{.dims = 3});
  TimePoint later = Now() + seconds(60);
  index.Insert("p", 1, Unit({1, 0, 0}), later);
  index.Insert("p", 2, Unit({1, 1, 0}), later);
  index.Insert("p", 3, Unit({0, 0, 1}), later);
  auto found = index.Search("p", Unit({1, 0.1f, 0}), 5, 0.5f, Now());
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].id, 1u);
  EXPECT_EQ(found[1].id, 2u);
  EXPECT_NEAR(found[0].similarity, 0.995f, 0.01f);
  EXPECT_TRUE(index.Search("p", Unit({0, 1, 0}), 5, 0.9f, Now()).empty());
}

TEST(VectorIndexTest, PartitionsNeverMix) {
  VectorIndex index(VectorIndexOptions{.dims = 2});
  TimePoint later = Now() + seconds(60);
  index.Insert("weather|fr", 1, Unit({1, 0}), later);
  index.Insert("weather|de", 2, Unit({1, 0}), later);
  auto found = index.Search("weather|fr", Unit({1, 0}), 5, 0.0f, Now());
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].id, 1u);
  EXPECT_TRUE(index.Search("weather|it", Unit({1, 0}), 5, 0.0f, Now()).empty());
  EXPECT_EQ(index.partitions(), 2u);
}

TEST(VectorIndexTest, ExpiredErasedAndReplacedEntries) {
  VectorIndex index(VectorIndexOptions{.dims = 2});
  TimePoint now = Now();
  index.Insert("p", 1, Unit({1, 0}), now + seconds(10));
  index.Insert("p", 2, Unit({1, 0.1f}), now + seconds(100));
  EXPECT_EQ(index.Search("p", Unit({1, 0}), 5, 0.0f, now + seconds(20)).size(), 1u);
  EXPECT_EQ(index.Purge(now + seconds(20)), 1u);
  EXPECT_EQ(index.size(), 1u);
  EXPECT_TRUE(index.Erase("p", 2));
  EXPECT_FALSE(index.Erase("p", 2));
  EXPECT_TRUE(index.Search("p", Unit({1, 0}), 5, 0.0f, now).empty());
  // Inserting an id again replaces its vector.
  index.Insert("p", 3, Unit({1, 0}), now + seconds(100));
  index.Insert("p", 3, Unit({0, 1}), now + seconds(100));
  EXPECT_EQ(index.size(), 1u);
  EXPECT_TRUE(index.Search("p", Unit({1, 0}), 5, 0.5f, now).empty());
  EXPECT_EQ(index.Search("p", Unit({0, 1}), 5, 0.5f, now).size(), 1u);
}

TEST(VectorIndexTest, AFullPartitionDropsItsOldestEntries) {
  VectorIndex index(VectorIndexOptions{.dims = 8, .max_per_partition = 100});
  std::mt19937_64 rng(7);
  TimePoint later = Now() + seconds(60);
  std::vector<std::vector<float>> vectors;
  for (uint64_t id = 0; id < 250; ++id) {
    vectors.push_back(RandomUnit(rng, 8));
    index.Insert("p", id, vectors.back(), later);
  }
  EXPECT_EQ(index.size(), 100u);
  // The newest are there, the oldest are not.
  EXPECT_EQ(index.Search("p", vectors[249], 1, 0.99f, Now()).at(0).id, 249u);
  for (const auto& m : index.Search("p", vectors[0], 100, -1.0f, Now())) EXPECT_GE(m.id, 150u);
}

TEST(VectorIndexTest, GraphSearchFindsWhatAScanFinds) {
  constexpr size_t kDims = 64;
  constexpr int kEntries = 5000;
  VectorIndex graph(VectorIndexOptions{.dims = kDims, .hnsw_threshold = 256});
  VectorIndex scan(VectorIndexOptions{.dims = kDims, .hnsw_threshold = 1'000'000});
  std::mt19937_64 rng(11);
  std::vector<std::vector<float>> vectors;
  TimePoint later = Now() + seconds(600);
  for (int i = 0; i < kEntries; ++i) {
    vectors.push_back(RandomUnit(rng, kDims));
    graph.Insert("p", i, vectors.back(), later);
    scan.Insert("p", i, vectors.back(), later);
  }
  // Erase a tenth: the graph must not return them.
  for (int i = 0; i < kEntries; i += 10) {
    graph.Erase("p", i);
    scan.Erase("p", i);
  }
  int agree = 0;
  int erased_returned = 0;
  constexpr int kQueries = 500;
  for (int q = 0; q < kQueries; ++q) {
    std::vector<float> query = Near(vectors[rng() % kEntries], rng, 0.05f);
    auto g = graph.Search("p", query, 1, -1.0f, Now());
    auto s = scan.Search("p", query, 1, -1.0f, Now());
    ASSERT_EQ(s.size(), 1u);
    if (!g.empty() && g[0].id == s[0].id) ++agree;
    if (!g.empty() && g[0].id % 10 == 0) ++erased_returned;
  }
  EXPECT_GE(agree, kQueries * 95 / 100);
  EXPECT_EQ(erased_returned, 0);
}

TEST(VectorIndexTest, ConcurrentInsertsAndSearches) {
  VectorIndex index(
      VectorIndexOptions{.dims = 32, .max_per_partition = 2000, .hnsw_threshold = 300});
  std::atomic<int> self_found{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int i = 0; i < 400; ++i) {
        std::vector<float> v = RandomUnit(rng, 32);
        std::string partition = "p" + std::to_string(i % 3);
        uint64_t id = static_cast<uint64_t>(t) * 100'000 + i;
        index.Insert(partition, id, v, Now() + seconds(60));
        auto found = index.Search(partition, v, 1, 0.9f, Now());
        if (!found.empty() && found[0].id == id) ++self_found;
        if (i % 50 == 0) index.Erase(partition, id);
      }
    });
  }
  for (auto& t : threads) t.join();
  // An entry is found by its own vector right after it was inserted (the
  // graph is approximate: nearly always).
  EXPECT_GE(self_found.load(), 8 * 400 * 95 / 100);
  EXPECT_LE(index.size(), 8u * 400u);
}

}  // namespace
}  // namespace toolops
