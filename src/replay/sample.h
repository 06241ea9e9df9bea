// src/replay/sample.h
//
// The bundled sample: a generator of realistic multi-agent traces, the same
// for the same seed. Conversations arrive at random; each has several
// sub-agents (planner, researcher, ...) that call a few tools with costs:
//
//   web_search   {query}                 questions from the QQP duplicate pairs
//   docs_search  {question, product}     questions from the documentation pairs
//   crm_lookup   {customer_id}           structured, matched exactly
//   stock_quote  {symbol}                structured, matched exactly
//
// Intents are drawn with Zipf-like popularity (a conversation also keeps
// coming back to its own few topics); an intent is worded in its main form
// or, some of the time, in its paraphrase from the pair. Some steps are
// bursts: several agents of one conversation ask the same thing at once.
// One stretch of the trace (by default 40% to 45% of its expected length) is
// an outage of web_search: 95% of its calls there were observed failing
// fast. Elsewhere 0.2% of calls fail at random.
//
// Intents come from pairs marked as the same question; pairs that share a
// wording, or half their content words, with an intent already chosen are
// left out (LoadSampleData), so that two labels never mean the same.
//
// The generator streams: memory holds the intents and the conversations
// in progress, not the trace. Used by one thread.

#ifndef TOOLOPS_REPLAY_SAMPLE_H_
#define TOOLOPS_REPLAY_SAMPLE_H_

#include <cstdint>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include "replay/replay.h"
#include "replay/trace.h"
#include "toolops/status.h"

namespace toolops {

struct SampleIntent {
  std::string id;
  // The main wording first, then its paraphrases.
  std::vector<std::string> wordings;
};

// Wordings for the free-text tools.
struct SampleData {
  std::vector<SampleIntent> search;  // web_search
  std::vector<SampleIntent> docs;    // docs_search
};

// Reads paraphrase_pairs_qqp.csv (duplicate pairs) and
// paraphrase_pairs_docs.json from `dir`. A pair whose wording (ignoring case
// and surrounding spaces) was already used by another pair is left out, so
// that two intents never share a wording. NotFound naming the files.
Result<SampleData> LoadSampleData(const std::string& dir);

// The data directory: `flag` when given, else $TOOLOPS_DATA_DIR, else
// ../shared/data beside the repository (from the binary's location or the
// working directory), else /work/shared/data. Empty when none holds the files.
std::string FindSampleDataDir(const std::string& flag);

struct SampleOptions {
  uint64_t calls = 100'000;
  uint64_t seed = 1;
  // Mean calls per second of trace time (the trace lasts calls / rate).
  double calls_per_second = 20;
  // Zipf exponent of intent popularity.
  double zipf = 1.1;
  // Intents per free-text tool (at most what the data holds), customers and
  // symbols of the structured tools.
  size_t search_intents = 2000;
  size_t docs_intents = 600;
  size_t customers = 3000;
  size_t symbols = 60;
  // Share of calls worded as a paraphrase instead of the main wording.
  double paraphrase_share = 0.15;
  // Share of conversation steps that are bursts (several agents at once).
  double burst_share = 0.08;
  // The outage of web_search, as fractions of the trace's expected length
  // (calls / calls_per_second); from == to: none.
  double outage_from = 0.40;
  double outage_to = 0.45;
  // The first call's time (Unix ns): 2025-06-02T09:00:00Z.
  int64_t start_ns = 1'748'854'800'000'000'000;
};

// InvalidArgument naming the option out of range.
Status ValidateSampleOptions(const SampleOptions& options);

// The simulated tools of the sample (costs, latency models), for replays of
// sample traces whose lines lack observations.
Simulation SampleSimulation();

class SampleGenerator final : public CallSource {
 public:
  // REQUIRES: ValidateSampleOptions(options).ok() and data has intents for
  // both free-text tools.
  SampleGenerator(std::shared_ptr<const SampleData> data, SampleOptions options);
  ~SampleGenerator() override;
  std::optional<TraceCall> Next() override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace toolops

#endif  // TOOLOPS_REPLAY_SAMPLE_H_
