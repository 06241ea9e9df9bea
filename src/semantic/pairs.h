// src/semantic/pairs.h
//
// Labelled question pairs (question1,question2,is_duplicate CSV, the format
// of ../shared/data/paraphrase_pairs_qqp.csv), for calibrating and testing
// the semantic cache.

#ifndef TOOLOPS_SEMANTIC_PAIRS_H_
#define TOOLOPS_SEMANTIC_PAIRS_H_

#include <string>
#include <vector>

#include "toolops/status.h"

namespace toolops {

struct LabelledPair {
  std::string first;
  std::string second;
  bool same = false;  // The two ask the same thing.
};

// Reads a CSV with a header line and rows "question1,question2,label"
// (fields may be quoted, with "" for a quote; label 1 means the same).
// NotFound when the file cannot be opened; InvalidArgument naming the first
// line with fewer than three fields.
Result<std::vector<LabelledPair>> ReadPairsCsv(const std::string& path);

}  // namespace toolops

#endif  // TOOLOPS_SEMANTIC_PAIRS_H_
