// examples/calibrate_pairs.cc
//
// Sweeps the semantic cache's threshold over labelled question pairs and
// prints, for each threshold, the share of true paraphrases that would be
// served from the cache (recall) and the share of non-paraphrases that
// would get a wrong answer (false hits), with and without the match guard.
//
//   build/calibrate_pairs [pairs.csv]   (question1,question2,is_duplicate;
//                                        default ../shared/data/paraphrase_pairs_qqp.csv)
//
// The embedder is the bundled model (or $TOOLOPS_MODEL_DIR).

#include <cstdio>
#include <string>
#include <vector>

#include "semantic/evaluate.h"
#include "semantic/guard.h"
#include "semantic/pairs.h"
#include "toolops/embedder.h"

int main(int argc, char** argv) {
  std::string path = argc > 1 ? argv[1] : "../shared/data/paraphrase_pairs_qqp.csv";
  auto read = toolops::ReadPairsCsv(path);
  if (!read.ok()) {
    std::fprintf(stderr, "%s\n", read.status().ToString().c_str());
    return 2;
  }
  auto embedder = toolops::LoadStaticEmbedder(toolops::DefaultModelDirectory());
  if (!embedder.ok()) {
    std::fprintf(stderr, "%s\n", embedder.status().ToString().c_str());
    return 2;
  }
  toolops::MatchGuard guard;
  struct Pair {
    float similarity;
    bool duplicate;
    bool guard_accepts;
  };
  std::vector<Pair> pairs;
  for (const toolops::LabelledPair& pair : *read) {
    std::vector<float> a = *(*embedder)->Embed(pair.first);
    std::vector<float> b = *(*embedder)->Embed(pair.second);
    double dot = 0;
    for (size_t i = 0; i < a.size(); ++i) dot += static_cast<double>(a[i]) * b[i];
    pairs.push_back(
        Pair{static_cast<float>(dot), pair.same, guard.Check(pair.first, pair.second).accept});
  }
  size_t positives = 0;
  for (const Pair& p : pairs) positives += p.duplicate;
  size_t negatives = pairs.size() - positives;
  std::printf("%zu pairs (%zu paraphrases, %zu not) from %s\n", pairs.size(), positives, negatives,
              path.c_str());
  std::printf("threshold  recall  false-hits | with guard: recall  false-hits  wrong/served\n");
  for (int t = 80; t <= 99; t += 1) {
    float threshold = t / 100.0f;
    size_t tp = 0, fp = 0, tp_g = 0, fp_g = 0;
    for (const Pair& p : pairs) {
      if (p.similarity < threshold) continue;
      (p.duplicate ? tp : fp)++;
      if (p.guard_accepts) (p.duplicate ? tp_g : fp_g)++;
    }
    std::printf("  %.2f     %5.1f%%  %5.1f%%     |             %5.1f%%  %5.1f%%      %5.1f%%\n",
                threshold, 100.0 * tp / positives, 100.0 * fp / negatives, 100.0 * tp_g / positives,
                100.0 * fp_g / negatives, tp_g + fp_g == 0 ? 0.0 : 100.0 * fp_g / (tp_g + fp_g));
  }

  // The cache protocol: store every first question, look up every second.
  std::vector<double> thresholds;
  for (int t = 80; t <= 99; ++t) thresholds.push_back(t / 100.0);
  auto plain = toolops::EvaluateCacheProtocol(*read, **embedder, thresholds, /*guard=*/false);
  auto guarded = toolops::EvaluateCacheProtocol(*read, **embedder, thresholds, /*guard=*/true);
  std::printf("\ncache protocol (store each first question, look up each second):\n");
  std::printf("threshold  precision  recall | with guard: precision  recall\n");
  for (size_t i = 0; i < thresholds.size(); ++i) {
    std::printf("  %.2f      %6.1f%%  %6.1f%% |              %6.1f%%  %6.1f%%\n", thresholds[i],
                100 * plain[i].precision(), 100 * plain[i].recall(), 100 * guarded[i].precision(),
                100 * guarded[i].recall());
  }
  return 0;
}
