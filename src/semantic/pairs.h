// src/semantic/pairs.h
//
// Labelled question pairs, for calibrating and testing the semantic cache:
// question1,question2,is_duplicate CSV (../shared/data/paraphrase_pairs_qqp.csv)
// or a JSON array of equivalent origin/similar pairs
// (../shared/data/paraphrase_pairs_docs.json).

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

// Reads a JSON array of {"origin": ..., "similar": ...} objects (the format
// of ../shared/data/paraphrase_pairs_docs.json): every pair means the same.
// NotFound when the file cannot be opened; InvalidArgument for bad JSON or
// an element without the two strings (naming its index).
Result<std::vector<LabelledPair>> ReadPairsJson(const std::string& path);

// ReadPairsJson for a path ending in .json, ReadPairsCsv otherwise.
Result<std::vector<LabelledPair>> ReadPairs(const std::string& path);

}  // namespace toolops

#endif  // TOOLOPS_SEMANTIC_PAIRS_H_
