// src/runner/semantic_tool_test.cc
//
// Wrapped tools with a semantic cache (cache.semantic), on a toy embedder
// whose similarities are easy to reason about (a bag of hashed words: the
// same words in another order embed identically; one word in four changed
// gives 0.75): reuse across wordings, the threshold, the guard, partitions
// and scopes that never mix, expiry, and policy errors at wrap time. The
// bundled model is tested in src/semantic.

#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <cmath>
#include <string>

#include "toolops/embedder.h"
#include "toolops/environment.h"
#include "toolops/tool.h"

namespace toolops {
namespace {

using std::chrono::minutes;

class BagOfWords : public Embedder {
 public:
  Result<std::vector<float>> Embed(std::string_view text) const override {
    std::vector<float> v(64, 0.0f);
    std::string word;
    auto flush = [&] {
      if (!word.empty()) v[std::hash<std::string>()(word) % 64] += 1.0f;
      word.clear();
    };
    for (char c : text) {
      if (std::isalnum(static_cast<unsigned char>(c)) || c == '\'') {
        word.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
      } else {
        flush();
      }
    }
    flush();
    double norm = 0;
    for (float x : v) norm += x * x;
    if (norm > 0) {
      for (float& x : v) x = static_cast<float>(x / std::sqrt(norm));
    }
    return v;
  }
  size_t dims() const override { return 64; }
  const std::string& model_id() const override { return id_; }

 private:
  std::string id_ = "bag-of-words";
};

class SemanticToolTest : public ::testing::Test {
 protected:
  SemanticToolTest() {
    registry_.Register("memory", std::shared_ptr<Store>(NewMemoryStore({}).value().release()));
    env_.clock = &clock_;
    env_.stores = &registry_;
    env_.embedder = &embedder_;
  }

  ToolPolicy Policy(double threshold = 0.9, bool guard = true) {
    ToolPolicy policy;
    policy.cache.ttl = minutes(10);
    policy.cache.semantic.params = {"query"};
    policy.cache.semantic.threshold = threshold;
    policy.cache.semantic.guard = guard;
    return policy;
  }

  auto Search(ToolPolicy policy) {
    return Readonly(
        {"search", "1", {"query"}}, policy,
        [this](const std::string& q) {
          ++calls_;
          return "answer to: " + q;
        },
        env_);
  }

  FakeClock clock_;
  StoreRegistry registry_;
  BagOfWords embedder_;
  Environment env_;
  std::atomic<int> calls_{0};
};

TEST_F(SemanticToolTest, TheSameQuestionInOtherWordsReusesTheAnswer) {
  auto search = Search(Policy());
  EXPECT_EQ(search("weather in Paris tomorrow"), "answer to: weather in Paris tomorrow");
  EXPECT_EQ(search("Tomorrow: weather in Paris?"), "answer to: weather in Paris tomorrow");
  EXPECT_EQ(calls_.load(), 1);
  EXPECT_EQ(search.stats()[Counter::kSemanticHit], 1u);
  // The reused answer is now also under the new wording's exact key.
  EXPECT_EQ(search("Tomorrow: weather in Paris?"), "answer to: weather in Paris tomorrow");
  EXPECT_EQ(search.stats()[Counter::kFreshHit], 1u);
  EXPECT_EQ(search.stats().saved(), 2u);
}

TEST_F(SemanticToolTest, BelowTheThresholdIsAMiss) {
  auto search = Search(Policy(0.9));
  search("weather in Paris tomorrow");
  search("weather in Paris today");  // Three words of four: 0.75.
  EXPECT_EQ(calls_.load(), 2);
  EXPECT_EQ(search.stats()[Counter::kSemanticHit], 0u);
}

TEST_F(SemanticToolTest, TheGuardRefusesAnotherCityAboveTheThreshold) {
  auto guarded = Search(Policy(0.7, /*guard=*/true));
  EXPECT_EQ(guarded("weather in Paris tomorrow"), "answer to: weather in Paris tomorrow");
  EXPECT_EQ(guarded("weather in Lyon tomorrow"), "answer to: weather in Lyon tomorrow");
  EXPECT_EQ(calls_.load(), 2);
  EXPECT_EQ(guarded.stats()[Counter::kGuardRefusals], 1u);

  // Without the guard the same threshold serves Paris's answer for Lyon:
  // the failure the guard exists for.
  ToolPolicy unguarded_policy = Policy(0.7, /*guard=*/false);
  auto unguarded = Readonly(
      {"search_unguarded", "1", {"query"}}, unguarded_policy,
      [](const std::string& q) { return "answer to: " + q; }, env_);
  unguarded("weather in Paris tomorrow");
  EXPECT_EQ(unguarded("weather in Lyon tomorrow"), "answer to: weather in Paris tomorrow");
}

TEST_F(SemanticToolTest, ExactArgumentsAndScopesPartitionTheIndex) {
  ToolPolicy policy = Policy();
  policy.scope_param = "user";
  auto news = Readonly(
      {"news", "1", {"user", "query", "country"}}, policy,
      [this](const std::string& user, const std::string& q, const std::string& country) {
        ++calls_;
        return user + "/" + country + ": " + q;
      },
      env_);
  EXPECT_EQ(news("ann", "latest election results", "fr"), "ann/fr: latest election results");
  EXPECT_EQ(news("ann", "election results latest", "fr"), "ann/fr: latest election results");
  EXPECT_EQ(news("ann", "election results latest", "de"), "ann/de: election results latest");
  EXPECT_EQ(news("bob", "latest election results", "fr"), "bob/fr: latest election results");
  EXPECT_EQ(calls_.load(), 3);
}

TEST_F(SemanticToolTest, AnExpiredAnswerIsNeverReused) {
  auto search = Search(Policy());
  search("weather in Paris tomorrow");
  clock_.Advance(minutes(11));
  EXPECT_EQ(search("tomorrow weather in Paris"), "answer to: tomorrow weather in Paris");
  EXPECT_EQ(calls_.load(), 2);
}

TEST_F(SemanticToolTest, BadSemanticPoliciesFailWhenWrapping) {
  auto wrap = [&](ToolPolicy policy) {
    return MakeTool(
               {"t", "1", {"query", "limit"}}, policy, [](const std::string& q, int) { return q; },
               env_)
        .status();
  };
  ToolPolicy undeclared = Policy();
  undeclared.cache.semantic.params = {"question"};
  EXPECT_NE(wrap(undeclared).message().find("cache.semantic.params"), std::string::npos);
  ToolPolicy not_text = Policy();
  not_text.cache.semantic.params = {"limit"};
  Status s = wrap(not_text);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("not a text parameter"), std::string::npos) << s.ToString();
  ToolPolicy sensitive = Policy();
  sensitive.sensitive_params = {"query"};
  EXPECT_NE(wrap(sensitive).message().find("not a key parameter"), std::string::npos);
  ToolPolicy threshold = Policy(1.5);
  EXPECT_NE(wrap(threshold).message().find("cache.semantic.threshold"), std::string::npos);
}

}  // namespace
}  // namespace toolops
