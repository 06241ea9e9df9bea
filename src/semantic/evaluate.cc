// src/semantic/evaluate.cc

#include "semantic/evaluate.h"

#include <algorithm>
#include <chrono>

#include "semantic/guard.h"
#include "semantic/vector_index.h"

namespace toolops {

std::vector<ProtocolPoint> EvaluateCacheProtocol(const std::vector<LabelledPair>& pairs,
                                                 const Embedder& embedder,
                                                 const std::vector<double>& thresholds, bool guard,
                                                 size_t candidates, std::vector<WrongHit>* wrong,
                                                 std::vector<double>* lookup_micros) {
  // One index holds every first question (id = pair index); the lookups ask
  // for the best few candidates once, at the lowest threshold, and each
  // threshold then keeps those above it.
  VectorIndexOptions options;
  options.dims = embedder.dims();
  options.max_per_partition = pairs.size() + 1;
  VectorIndex index(options);
  TimePoint forever = TimePoint::max();
  for (size_t i = 0; i < pairs.size(); ++i) {
    Result<std::vector<float>> v = embedder.Embed(pairs[i].first);
    if (v.ok()) index.Insert("", i, *v, forever);
  }
  double lowest =
      thresholds.empty() ? 1.0 : *std::min_element(thresholds.begin(), thresholds.end());
  MatchGuard checker;
  std::vector<ProtocolPoint> points;
  for (double t : thresholds) points.push_back(ProtocolPoint{t});
  for (ProtocolPoint& p : points) {
    for (const LabelledPair& pair : pairs) p.same_pairs += pair.same;
  }
  TimePoint now{};  // Entries never expire here.
  for (size_t i = 0; i < pairs.size(); ++i) {
    auto started = std::chrono::steady_clock::now();
    Result<std::vector<float>> v = embedder.Embed(pairs[i].second);
    if (!v.ok()) continue;
    std::vector<VectorIndex::Match> matches =
        index.Search("", *v, candidates, static_cast<float>(lowest), now);
    // The guard's verdict on each candidate, computed once.
    std::vector<bool> accepted(matches.size(), true);
    if (guard) {
      for (size_t m = 0; m < matches.size(); ++m) {
        accepted[m] = checker.Check(pairs[i].second, pairs[matches[m].id].first).accept;
      }
    }
    if (lookup_micros != nullptr) {
      lookup_micros->push_back(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - started)
              .count());
    }
    if (wrong != nullptr) {
      for (size_t m = 0; m < matches.size(); ++m) {
        if (!accepted[m]) continue;
        size_t id = matches[m].id;
        if (id != i || !pairs[i].same) {
          bool identical = id != i && (pairs[id].first == pairs[i].second ||
                                       (pairs[i].same && pairs[id].first == pairs[i].first));
          wrong->push_back(WrongHit{i, id, matches[m].similarity, identical});
        }
        break;
      }
    }
    for (ProtocolPoint& p : points) {
      for (size_t m = 0; m < matches.size(); ++m) {
        if (matches[m].similarity < p.threshold) break;  // Best first.
        if (!accepted[m]) continue;
        ++p.hits;
        const LabelledPair& entry = pairs[matches[m].id];
        if (matches[m].id == i) {
          p.correct += pairs[i].same;
        } else if (entry.first == pairs[i].second ||
                   (pairs[i].same && entry.first == pairs[i].first)) {
          ++p.identical;
        }
        break;
      }
    }
  }
  return points;
}

}  // namespace toolops
