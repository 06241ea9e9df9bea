// src/cli/calibrate_test.cc
//
// The calibration behind `toolops calibrate`: the pairs readers, the cache
// protocol's counting, the choice of threshold and the report formats.

#include "cli/calibrate.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "processes.h"

namespace toolops {
namespace {

using testing::TempDir;

std::string WriteFile(const TempDir& dir, const std::string& name, const std::string& text) {
  std::string path = dir.path() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

const Embedder& BundledEmbedder() {
  static const Embedder* embedder = [] {
    auto loaded = LoadStaticEmbedder(DefaultModelDirectory());
    EXPECT_TRUE(loaded.ok()) << loaded.status().ToString();
    return loaded.ok() ? std::move(loaded).value().release() : nullptr;
  }();
  return *embedder;
}

TEST(PairsTest, ReadsTheJsonFormatOfEquivalentPairs) {
  TempDir dir;
  std::string path = WriteFile(dir, "pairs.json",
                               R"([{"origin": "a b", "similar": "b a"},
                                   {"origin": "c", "similar": "d \"e\""}])");
  Result<std::vector<LabelledPair>> pairs = ReadPairs(path);
  ASSERT_TRUE(pairs.ok()) << pairs.status().ToString();
  ASSERT_EQ(pairs->size(), 2u);
  EXPECT_EQ((*pairs)[1].first, "c");
  EXPECT_EQ((*pairs)[1].second, "d \"e\"");
  EXPECT_TRUE((*pairs)[0].same);
  EXPECT_TRUE((*pairs)[1].same);

  std::string bad =
      WriteFile(dir, "bad.json", R"([{"origin": "a", "similar": "b"}, {"origin": 3}])");
  Result<std::vector<LabelledPair>> refused = ReadPairs(bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("element 1"), std::string_view::npos)
      << refused.status().ToString();
  EXPECT_FALSE(ReadPairs(WriteFile(dir, "junk.json", "{not json")).ok());
  EXPECT_EQ(ReadPairs(dir.path() + "/missing.json").status().code(), StatusCode::kNotFound);

  // Anything else is read as CSV.
  std::string csv = WriteFile(dir, "pairs.csv", "q1,q2,dup\n\"x, y\",z,1\nu,v,0\n");
  Result<std::vector<LabelledPair>> rows = ReadPairs(csv);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].first, "x, y");
  EXPECT_TRUE((*rows)[0].same);
  EXPECT_FALSE((*rows)[1].same);
}

// A hit on its own pair's entry when the pair asks the same thing is
// correct; a hit on another pair's entry is wrong, whatever the labels.
TEST(CalibrateTest, CountsCorrectAndWrongHitsAsTheCacheProtocolSays) {
  std::vector<LabelledPair> pairs = {
      {"What is the capital of France?", "What is the capital of France?", true},
      {"How do I bake sourdough bread at home?", "What is the capital of France?", false},
      {"Which rivers flow through Germany?", "Best way to learn the violin as an adult?", false},
  };
  CalibrateOptions options;
  options.from = 0.95;
  options.to = 0.99;
  options.step = 0.02;
  options.precision = 0.5;
  Result<Calibration> c = Calibrate(pairs, BundledEmbedder(), options);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->pairs, 3u);
  EXPECT_EQ(c->same_pairs, 1u);
  ASSERT_EQ(c->plain.size(), 3u);  // 0.95, 0.97, 0.99
  EXPECT_DOUBLE_EQ(c->plain[2].threshold, 0.99);
  for (const ProtocolPoint& p : c->plain) {
    // The first pair hits its own entry; the second pair's lookup (the same
    // text) hits the first pair's entry: one correct, one wrong.
    EXPECT_EQ(p.hits, 2u) << p.threshold;
    EXPECT_EQ(p.correct, 1u) << p.threshold;
    EXPECT_DOUBLE_EQ(p.precision(), 0.5);
    EXPECT_DOUBLE_EQ(p.recall(), 1.0);
  }
  ASSERT_TRUE(c->plain_choice.has_value());
  EXPECT_DOUBLE_EQ(c->plain_choice->threshold, 0.95);  // Lowest among equals.

  options.precision = 0.9;
  c = Calibrate(pairs, BundledEmbedder(), options);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->plain_choice.has_value());
  EXPECT_NE(FormatCalibrationTable(*c, options).find("no threshold in 0.950..0.990 reaches it"),
            std::string::npos);
}

TEST(CalibrateTest, ChoosesTheHighestRecallAtTheRequestedPrecision) {
  auto point = [](double t, size_t hits, size_t correct) {
    ProtocolPoint p{t};
    p.hits = hits;
    p.correct = correct;
    p.same_pairs = 100;
    return p;
  };
  std::vector<ProtocolPoint> curve = {point(0.80, 90, 60), point(0.85, 70, 68), point(0.90, 50, 49),
                                      point(0.95, 0, 0)};
  std::optional<ProtocolPoint> chosen = ChooseThreshold(curve, 0.97);
  ASSERT_TRUE(chosen.has_value());
  EXPECT_DOUBLE_EQ(chosen->threshold, 0.85);  // 97.1% precision, the most recall.
  EXPECT_DOUBLE_EQ(ChooseThreshold(curve, 0.98)->threshold, 0.90);
  EXPECT_FALSE(ChooseThreshold(curve, 0.99).has_value());  // No hits is no answer.
}

TEST(CalibrateTest, RefusesOptionsOutOfRangeNamingThem) {
  auto message = [](CalibrateOptions o) {
    return std::string(ValidateCalibrateOptions(o).message());
  };
  CalibrateOptions o;
  EXPECT_TRUE(ValidateCalibrateOptions(o).ok());
  o.precision = 1.5;
  EXPECT_NE(message(o).find("--precision"), std::string::npos);
  o = CalibrateOptions();
  o.to = 0.4;
  EXPECT_NE(message(o).find("--to"), std::string::npos);
  o = CalibrateOptions();
  o.step = 0;
  EXPECT_NE(message(o).find("--step"), std::string::npos);
  o = CalibrateOptions();
  o.candidates = 0;
  EXPECT_NE(message(o).find("--candidates"), std::string::npos);
  EXPECT_FALSE(Calibrate({}, BundledEmbedder(), CalibrateOptions()).ok());
}

TEST(CalibrateTest, JsonReportCarriesBothCurvesAndChoices) {
  std::vector<LabelledPair> pairs = {
      {"weather in Paris tomorrow", "weather in Paris tomorrow", true},
      {"price of a flight to Lyon", "how tall is the Eiffel tower", false},
  };
  CalibrateOptions options;
  options.from = 0.9;
  options.to = 0.99;
  options.step = 0.03;
  Result<Calibration> c = Calibrate(pairs, BundledEmbedder(), options);
  ASSERT_TRUE(c.ok());
  nlohmann::json doc = nlohmann::json::parse(FormatCalibrationJson(*c, options));
  EXPECT_EQ(doc["pairs"], 2);
  EXPECT_EQ(doc["plain"]["curve"].size(), 4u);  // 0.90, 0.93, 0.96, 0.99
  EXPECT_EQ(doc["guarded"]["curve"].size(), 4u);
  EXPECT_EQ(doc["guarded"]["curve"][0]["correct"], 1);
  EXPECT_EQ(doc["guarded"]["curve"][0]["wrong"], 0);
  EXPECT_DOUBLE_EQ(doc["guarded"]["choice"]["threshold"].get<double>(), 0.9);
}

}  // namespace
}  // namespace toolops
