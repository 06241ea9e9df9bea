// src/semantic/evaluate.h
//
// The cache protocol, which is how users meet the semantic cache: for a file
// of labelled pairs, every first question is stored as an entry with its own
// answer; then every second question is looked up. A hit on its own pair's
// entry when the pair asks the same thing is correct; any other hit is a
// wrong answer served. Reported: served-hit precision (correct / hits) and
// recall (correct / pairs that ask the same thing), per threshold.

#ifndef TOOLOPS_SEMANTIC_EVALUATE_H_
#define TOOLOPS_SEMANTIC_EVALUATE_H_

#include <vector>

#include "semantic/pairs.h"
#include "toolops/embedder.h"

namespace toolops {

struct ProtocolPoint {
  double threshold = 0;
  size_t hits = 0;
  size_t correct = 0;
  size_t same_pairs = 0;
  // Wrong hits (not counted in `correct`) on another pair's entry whose
  // question is the very text looked up, or the very text of the lookup's own
  // first question when its pair asks the same thing: the data set stores the
  // same question under several pairs, and an exact cache serves these too.
  size_t identical = 0;
  double precision() const { return hits == 0 ? 1.0 : static_cast<double>(correct) / hits; }
  // Precision when those identical-text hits count as right.
  double precision_identical_right() const {
    return hits == 0 ? 1.0 : static_cast<double>(correct + identical) / hits;
  }
  double recall() const {
    return same_pairs == 0 ? 0.0 : static_cast<double>(correct) / same_pairs;
  }
};

// A wrong hit served at the lowest threshold: lookup `pair` (its second
// question) was answered with the entry of pair `entry`.
struct WrongHit {
  size_t pair = 0;
  size_t entry = 0;
  float similarity = 0;
  bool identical = false;  // See ProtocolPoint::identical.
};

// Runs the protocol once per threshold (each lookup takes the best candidate
// at or above the threshold that the guard accepts, among `candidates`).
// Embeds every question once. `lookup_micros`, when given, receives the
// wall time of each lookup (embed, search, guard), as the cache spends it.
std::vector<ProtocolPoint> EvaluateCacheProtocol(const std::vector<LabelledPair>& pairs,
                                                 const Embedder& embedder,
                                                 const std::vector<double>& thresholds, bool guard,
                                                 size_t candidates = 4,
                                                 std::vector<WrongHit>* wrong = nullptr,
                                                 std::vector<double>* lookup_micros = nullptr);

}  // namespace toolops

#endif  // TOOLOPS_SEMANTIC_EVALUATE_H_
