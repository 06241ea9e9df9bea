// src/semantic/guard_test.cc
//
// The match guard: what it refuses and why, and what it does on the QQP
// paraphrase pairs of ../shared/data (how many true paraphrases it refuses,
// how many near misses it stops).

#include "semantic/guard.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "semantic/pairs.h"

namespace toolops {
namespace {

TEST(MatchGuardTest, AcceptsTheSameQuestionInOtherWords) {
  MatchGuard guard;
  EXPECT_TRUE(guard.Check("weather in Paris tomorrow", "tomorrow's Paris forecast").accept);
  EXPECT_TRUE(guard.Check("What is the capital of France?", "france capital city").accept);
  EXPECT_TRUE(guard.Check("How do I learn Python?", "Best way to learn python").accept);
  EXPECT_TRUE(guard.Check("price of 3 apples", "how much do three apples cost").accept);
}

TEST(MatchGuardTest, RefusesOtherNumbersUnitsNegationsAndNames) {
  MatchGuard guard;
  GuardVerdict years = guard.Check("GDP of Spain in 2008", "GDP of Spain in 2010");
  EXPECT_FALSE(years.accept);
  EXPECT_EQ(years.reason, "numbers differ (2008 / 2010)");
  EXPECT_FALSE(guard.Check("convert 1,000 USD to EUR", "convert 100 USD to EUR").accept);
  EXPECT_TRUE(guard.Check("convert 1,000 USD to EUR", "convert 1000 usd to eur").accept);
  GuardVerdict units = guard.Check("how long is 10 km", "how long is 10 miles");
  EXPECT_FALSE(units.accept);
  EXPECT_NE(units.reason.find("units"), std::string::npos);
  GuardVerdict negated = guard.Check("Is coffee bad for you?", "Is coffee not bad for you?");
  EXPECT_FALSE(negated.accept);
  EXPECT_NE(negated.reason.find("negation"), std::string::npos);
  EXPECT_FALSE(guard.Check("why doesn't my code compile", "why does my code compile").accept);
  GuardVerdict city = guard.Check("weather in Paris tomorrow", "weather in Lyon tomorrow");
  EXPECT_FALSE(city.accept);
  EXPECT_EQ(city.reason, "name 'paris' is only in the query");
  EXPECT_FALSE(guard.Check("weather in paris tomorrow", "weather in Lyon tomorrow").accept);
  EXPECT_FALSE(guard.Check("Paris weather", "Lyon weather").accept);
  EXPECT_FALSE(guard.Check("Who is Obama's wife?", "Who is Trump's wife?").accept);
}

// A capital at a sentence's start is weak evidence of a name: it refuses only
// against another such word in its place.
TEST(MatchGuardTest, SentenceInitialCapitalsRefuseOnlyAgainstAnotherName) {
  MatchGuard guard;
  GuardVerdict swapped = guard.Check("Paris weather tomorrow", "Lyon weather tomorrow");
  EXPECT_FALSE(swapped.accept);
  EXPECT_EQ(swapped.reason, "names differ (paris / lyon)");
  EXPECT_TRUE(
      guard.Check("Version 2.10.0 does not have it.", "No, it doesn't exist in version 2.10.0.")
          .accept);
  EXPECT_TRUE(
      guard.Check("Furthermore, it can load sharded files.", "It can also load sharded files.")
          .accept);
  // Inside a sentence a capital still counts on its own.
  EXPECT_FALSE(guard.Check("hotels near Paris", "hotels near the station").accept);
}

// Writing that is not meaning: a typographic apostrophe, "e.g.", a
// connective opening a later sentence.
TEST(MatchGuardTest, ReadsApostrophesAbbreviationsAndConnectives) {
  MatchGuard guard;
  // "don\u2019t" negates like "don't" (and is not a name "Don").
  EXPECT_TRUE(
      guard.Check("Don\u2019t forget the storage options.", "Do not forget the storage options.")
          .accept);
  EXPECT_FALSE(guard.Check("I don\u2019t like tea", "I like tea").accept);
  // A short unit abbreviation counts after a number only.
  EXPECT_TRUE(guard.Check("split the data (e.g. train, test)", "split the data into train and test")
                  .accept);
  EXPECT_TRUE(guard.Check("an ml platform for projects", "a machine learning platform").accept);
  GuardVerdict grams = guard.Check("add 10 g of salt", "add 10 kg of salt");
  EXPECT_FALSE(grams.accept);
  EXPECT_EQ(grams.reason, "units differ (g / kg)");
  EXPECT_FALSE(guard.Check("how far is 5km", "how far is 5 miles").accept);
  // Connectives opening a sentence are not names.
  EXPECT_TRUE(guard
                  .Check("Install jax first. Afterwards, set the format to jax.",
                         "Install jax first. Then set the format to jax.")
                  .accept);
}

TEST(MatchGuardTest, RefusesOtherLanguagesColoursDaysAndMonths) {
  MatchGuard guard;
  EXPECT_FALSE(
      guard.Check("Which are the best books to learn C?", "Which are the best books to learn C++?")
          .accept);
  EXPECT_FALSE(guard.Check("how to parse json in c#", "how to parse json in c").accept);
  EXPECT_TRUE(guard.Check("best books to learn C++", "good books for learning C++").accept);
  GuardVerdict colour = guard.Check("What are full grown red heeler mixes like?",
                                    "What are full grown blue heeler mixes like?");
  EXPECT_FALSE(colour.accept);
  EXPECT_EQ(colour.reason, "kinds differ (red / blue)");
  EXPECT_FALSE(guard.Check("museums open on monday", "museums open on sunday").accept);
  EXPECT_FALSE(guard.Check("rainfall in june", "rainfall in july").accept);
  EXPECT_TRUE(guard.Check("museums open on monday", "which museums are open monday").accept);
}

TEST(MatchGuardTest, RefusesOppositesAndSwappedNames) {
  MatchGuard guard;
  GuardVerdict weight = guard.Check("How do I gain weight fast?", "How do I lose weight fast?");
  EXPECT_FALSE(weight.accept);
  EXPECT_EQ(weight.reason, "opposites differ (gain / lose)");
  EXPECT_FALSE(guard.Check("should I buy bitcoin now", "should I sell bitcoin now").accept);
  // The same words, the names swapped: identical to a static embedding.
  GuardVerdict swapped =
      guard.Check("Why do Poles dislike Russians?", "Why do Russians dislike Poles?");
  EXPECT_FALSE(swapped.accept);
  EXPECT_NE(swapped.reason.find("order"), std::string::npos);
  // Other words around the same names in another order are a paraphrase.
  EXPECT_TRUE(guard
                  .Check("The Hub Python Library manages repositories",
                         "The Python Library for the Hub lets you manage repositories")
                  .accept);
}

TEST(MatchGuardTest, OnQuoraPairsItStopsNearMissesMoreThanParaphrases) {
  Result<std::vector<LabelledPair>> pairs =
      ReadPairsCsv(std::string(TOOLOPS_SOURCE_DIR) + "/../shared/data/paraphrase_pairs_qqp.csv");
  if (!pairs.ok()) pairs = ReadPairsCsv("/work/shared/data/paraphrase_pairs_qqp.csv");
  ASSERT_TRUE(pairs.ok()) << pairs.status().ToString();
  MatchGuard guard;
  int positives = 0, negatives = 0, positives_refused = 0, negatives_refused = 0;
  for (const LabelledPair& pair : *pairs) {
    bool refused = !guard.Check(pair.first, pair.second).accept;
    if (pair.same) {
      ++positives;
      positives_refused += refused;
    } else {
      ++negatives;
      negatives_refused += refused;
    }
  }
  double pos_rate = 1.0 * positives_refused / positives;
  double neg_rate = 1.0 * negatives_refused / negatives;
  std::printf("figure: guard on %d QQP paraphrases refuses %.1f%%; on %d near misses, %.1f%%\n",
              positives, 100 * pos_rate, negatives, 100 * neg_rate);
  EXPECT_GT(positives, 4000);
  EXPECT_GT(negatives, 4000);
  // Refusing near misses far more often than paraphrases is what makes it a
  // guard and not noise (QQP labels are noisy: some "paraphrases" ask for
  // other years or amounts, and refusing those is right).
  EXPECT_GT(neg_rate, 1.5 * pos_rate);
}

}  // namespace
}  // namespace toolops
