// src/cli/calibrate.h
//
// `toolops calibrate PAIRS`: runs the cache protocol (semantic/evaluate.h)
// over a threshold sweep, with and without the match guard, and picks the
// lowest threshold whose served-hit precision reaches the one asked for.

#ifndef TOOLOPS_CLI_CALIBRATE_H_
#define TOOLOPS_CLI_CALIBRATE_H_

#include <optional>
#include <string>
#include <vector>

#include "semantic/evaluate.h"
#include "semantic/pairs.h"
#include "toolops/embedder.h"
#include "toolops/policy.h"
#include "toolops/status.h"

namespace toolops {

struct CalibrateOptions {
  // Served-hit precision the chosen threshold must reach, in (0, 1].
  double precision = 0.97;
  // The sweep: from, to (inclusive) and step, all in (0, 1].
  double from = 0.50;
  double to = 0.99;
  double step = 0.01;
  // Candidates examined per lookup (SemanticPolicy::candidates).
  size_t candidates = SemanticPolicy{}.candidates;
  // How many of the most similar wrong hits (with the guard, at the lowest
  // threshold, identical texts left out) to list, so that one can see why.
  size_t show_wrong = 0;
};

struct WrongExample {
  std::string asked;   // The question looked up.
  std::string stored;  // The question whose answer it would get.
  float similarity = 0;
  bool same_pair = false;  // The entry is the lookup's own pair's (labelled not the same).
};

struct Calibration {
  size_t pairs = 0;
  size_t same_pairs = 0;
  std::vector<ProtocolPoint> plain;    // Threshold only.
  std::vector<ProtocolPoint> guarded;  // Threshold, then the match guard.
  // The point with the highest recall among those whose precision reaches
  // the target (the lowest such threshold on ties); none when no threshold of
  // the sweep reaches it.
  std::optional<ProtocolPoint> plain_choice;
  std::optional<ProtocolPoint> guarded_choice;
  std::vector<WrongExample> wrong;  // Most similar first.
  // Wall time of one lookup with the guard (embed, search, guard), in
  // microseconds: median and 99th percentile over the file's lookups.
  double lookup_p50_us = 0;
  double lookup_p99_us = 0;
};

// InvalidArgument naming the option that is out of range.
Status ValidateCalibrateOptions(const CalibrateOptions& options);

// The best point of `curve` for `precision` (see Calibration).
std::optional<ProtocolPoint> ChooseThreshold(const std::vector<ProtocolPoint>& curve,
                                             double precision);

Result<Calibration> Calibrate(const std::vector<LabelledPair>& pairs, const Embedder& embedder,
                              const CalibrateOptions& options);

// A table for people, or one JSON object for programs.
std::string FormatCalibrationTable(const Calibration& c, const CalibrateOptions& options);
std::string FormatCalibrationJson(const Calibration& c, const CalibrateOptions& options);

}  // namespace toolops

#endif  // TOOLOPS_CLI_CALIBRATE_H_
