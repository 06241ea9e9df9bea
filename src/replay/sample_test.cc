// src/replay/sample_test.cc

#include "replay/sample.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <gtest/gtest.h>

namespace toolops {
namespace {

std::shared_ptr<const SampleData> SyntheticData() {
  auto data = std::make_shared<SampleData>();
  for (int i = 0; i < 300; ++i) {
    data->search.push_back(
        {"search-" + std::to_string(i),
         {"question number " + std::to_string(i), "the question numbered " + std::to_string(i)}});
  }
  for (int i = 0; i < 100; ++i) {
    data->docs.push_back(
        {"docs-" + std::to_string(i),
         {"how do I use feature " + std::to_string(i), "using feature " + std::to_string(i)}});
  }
  return data;
}

std::vector<TraceCall> Generate(SampleOptions options,
                                std::shared_ptr<const SampleData> data = SyntheticData()) {
  SampleGenerator generator(std::move(data), options);
  std::vector<TraceCall> calls;
  while (auto call = generator.Next()) calls.push_back(std::move(*call));
  return calls;
}

TEST(SampleTest, SameSeedSameTraceOtherSeedOtherTrace) {
  SampleOptions options;
  options.calls = 3000;
  std::vector<TraceCall> a = Generate(options);
  std::vector<TraceCall> b = Generate(options);
  options.seed = 2;
  std::vector<TraceCall> c = Generate(options);
  ASSERT_EQ(a.size(), 3000u);
  ASSERT_EQ(b.size(), 3000u);
  size_t differ = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(FormatTraceLine(a[i]), FormatTraceLine(b[i])) << "call " << i;
    differ += FormatTraceLine(a[i]) != FormatTraceLine(c[i]);
  }
  EXPECT_GT(differ, 2900u);
}

TEST(SampleTest, CallsComeInTimeOrderWithEveryField) {
  SampleOptions options;
  options.calls = 5000;
  std::vector<TraceCall> calls = Generate(options);
  std::set<std::string> tools;
  for (size_t i = 0; i < calls.size(); ++i) {
    if (i > 0) EXPECT_GE(calls[i].time_ns, calls[i - 1].time_ns);
    EXPECT_FALSE(calls[i].conversation.empty());
    EXPECT_FALSE(calls[i].agent.empty());
    EXPECT_FALSE(calls[i].intent.empty());
    EXPECT_TRUE(calls[i].cost && calls[i].latency && calls[i].outcome);
    tools.insert(calls[i].tool);
    // Every line survives the trace format.
    EXPECT_TRUE(ParseTraceLine(FormatTraceLine(calls[i])).ok());
  }
  EXPECT_EQ(tools,
            (std::set<std::string>{"web_search", "docs_search", "crm_lookup", "stock_quote"}));
  // The trace lasts about calls / rate.
  double seconds = (calls.back().time_ns - calls.front().time_ns) / 1e9;
  EXPECT_GT(seconds, 5000 / options.calls_per_second * 0.7);
  EXPECT_LT(seconds, 5000 / options.calls_per_second * 1.3);
}

TEST(SampleTest, IntentPopularityIsZipfLike) {
  SampleOptions options;
  options.calls = 40000;
  options.search_intents = 300;
  std::map<std::string, int> counts;
  for (const TraceCall& call : Generate(options)) {
    if (call.tool == "web_search") ++counts[call.intent];
  }
  std::vector<int> sorted;
  for (const auto& [intent, n] : counts) sorted.push_back(n);
  std::sort(sorted.rbegin(), sorted.rend());
  ASSERT_GT(sorted.size(), 100u);
  // Frequency falls with rank about as 1/rank^s: the most popular intent is
  // asked far more than the tenth, which is asked far more than the
  // hundredth; log-log slope between ranks 1..100 near -1.
  EXPECT_GT(sorted[0], 4 * sorted[9]);
  EXPECT_GT(sorted[9], 4 * sorted[99]);
  double slope = (std::log(sorted[99]) - std::log(sorted[1])) / (std::log(100.0) - std::log(2.0));
  EXPECT_LT(slope, -0.7);
  EXPECT_GT(slope, -1.6);
}

TEST(SampleTest, BurstsAreSeveralAgentsOfOneConversationAskingAtOnce) {
  SampleOptions options;
  options.calls = 20000;
  std::vector<TraceCall> calls = Generate(options);
  // Group calls of one conversation and intent that start within 40 ms.
  std::map<std::pair<std::string, std::string>, std::vector<const TraceCall*>> by_key;
  for (const TraceCall& call : calls) by_key[{call.conversation, call.intent}].push_back(&call);
  size_t bursts = 0;
  for (const auto& [key, list] : by_key) {
    for (size_t i = 1; i < list.size(); ++i) {
      if (list[i]->time_ns - list[i - 1]->time_ns < 40'000'000 &&
          list[i]->agent != list[i - 1]->agent) {
        ++bursts;
        break;
      }
    }
  }
  // About burst_share of steps (some 1,000 steps here) are bursts.
  EXPECT_GT(bursts, 300u);
  options.burst_share = 0;
  size_t none = 0;
  std::vector<TraceCall> quiet = Generate(options);
  for (size_t i = 1; i < quiet.size(); ++i) {
    none += quiet[i].conversation == quiet[i - 1].conversation &&
            quiet[i].time_ns - quiet[i - 1].time_ns < 40'000'000;
  }
  EXPECT_EQ(none, 0u);
}

TEST(SampleTest, OneToolFailsDuringTheOutage) {
  SampleOptions options;
  options.calls = 20000;
  std::vector<TraceCall> calls = Generate(options);
  const int64_t start = calls.front().time_ns;
  // The outage is placed on the expected length (calls / rate).
  const double length = options.calls / options.calls_per_second * 1e9;
  int inside = 0, inside_failed = 0, outside = 0, outside_failed = 0, others_failed = 0, others = 0;
  for (const TraceCall& call : calls) {
    double at = (call.time_ns - start) / length;
    bool failed = *call.outcome != StatusCode::kOk;
    if (call.tool != "web_search") {
      ++others;
      others_failed += failed;
    } else if (at > 0.41 && at < 0.44) {
      ++inside;
      inside_failed += failed;
    } else if (at < 0.39 || at > 0.46) {
      ++outside;
      outside_failed += failed;
    }
  }
  ASSERT_GT(inside, 100);
  EXPECT_GT(inside_failed, inside * 0.9);
  EXPECT_LT(outside_failed, outside * 0.01);
  EXPECT_LT(others_failed, others * 0.01);
}

TEST(SampleTest, ParaphrasesAreDrawnFromTheIntentsWordings) {
  SampleOptions options;
  options.calls = 10000;
  std::map<std::string, std::set<std::string>> wordings;
  size_t main = 0, other = 0;
  for (const TraceCall& call : Generate(options)) {
    if (call.tool != "web_search") continue;
    std::string q = call.args.Find("query")->string_value();
    wordings[call.intent].insert(q);
    (q.rfind("question number", 0) == 0 ? main : other)++;
  }
  double share = double(other) / (main + other);
  EXPECT_NEAR(share, options.paraphrase_share, 0.03);
  for (const auto& [intent, set] : wordings) EXPECT_LE(set.size(), 2u) << intent;
}

TEST(SampleTest, RealDataIntentsNeverShareAWording) {
  std::string dir = FindSampleDataDir("");
  if (dir.empty()) GTEST_SKIP() << "no paraphrase data (../shared/data)";
  Result<SampleData> data = LoadSampleData(dir);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  EXPECT_GT(data->search.size(), 2000u);
  EXPECT_GT(data->docs.size(), 300u);
  std::set<std::string> seen;
  for (const auto* list : {&data->search, &data->docs}) {
    for (const SampleIntent& intent : *list) {
      for (const std::string& w : intent.wordings) EXPECT_TRUE(seen.insert(w).second) << w;
    }
  }
}

TEST(SampleTest, OptionsAreChecked) {
  SampleOptions options;
  options.calls = 0;
  EXPECT_FALSE(ValidateSampleOptions(options).ok());
  options = SampleOptions();
  options.outage_from = 0.6;
  options.outage_to = 0.5;
  EXPECT_FALSE(ValidateSampleOptions(options).ok());
  EXPECT_TRUE(ValidateSampleOptions(SampleOptions()).ok());
}

}  // namespace
}  // namespace toolops
