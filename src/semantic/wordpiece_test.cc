// src/semantic/wordpiece_test.cc
//
// The WordPiece tokenizer: hand-made cases on a tiny vocabulary, and the
// bundled model's tokenizer against the reference library's ids for every
// sentence of testdata/embedder/tokens.jsonl (made by scripts/make_model.py).

#include "semantic/wordpiece.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "toolops/embedder.h"

namespace toolops {
namespace {

constexpr char kTinyTokenizer[] = R"({
  "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                 "strip_accents": null, "lowercase": true},
  "pre_tokenizer": {"type": "BertPreTokenizer"},
  "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 10,
            "vocab": {"[UNK]": 0, "un": 1, "##aff": 2, "##able": 3, "hello": 4, ",": 5, "!": 6,
                      "cafe": 7, "中": 8, "国": 9, "a": 10, "##b": 11}}
})";

WordPieceTokenizer Tiny() {
  Result<WordPieceTokenizer> t = WordPieceTokenizer::FromJson(kTinyTokenizer, "tiny");
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return std::move(t).value();
}

TEST(WordPieceTest, SplitsWordsIntoLongestPieces) {
  WordPieceTokenizer t = Tiny();
  EXPECT_EQ(t.Encode("Unaffable, HELLO!"), (std::vector<int32_t>{1, 2, 3, 5, 4, 6}));
  EXPECT_EQ(t.Encode("ab"), (std::vector<int32_t>{10, 11}));
}

TEST(WordPieceTest, NormalisesAccentsCaseWhitespaceAndChineseCharacters) {
  WordPieceTokenizer t = Tiny();
  EXPECT_EQ(t.Normalize("Café\tNAÏVE\u00a0x"), "cafe naive x");
  EXPECT_EQ(t.Encode("CAFÉ"), (std::vector<int32_t>{7}));
  EXPECT_EQ(t.Encode("中国"), (std::vector<int32_t>{8, 9}));
  // Control characters vanish; NUL too.
  EXPECT_EQ(t.Normalize(std::string("a\x01\x7f"
                                    "b\0c",
                                    6)),
            "abc");
}

TEST(WordPieceTest, UnknownAndOverlongWordsBecomeTheUnknownToken) {
  WordPieceTokenizer t = Tiny();
  EXPECT_EQ(t.Encode("unx"), (std::vector<int32_t>{0}));          // "un" then nothing for "x".
  EXPECT_EQ(t.Encode("abbbbbbbbbb"), (std::vector<int32_t>{0}));  // 11 characters > 10.
  EXPECT_EQ(t.Encode(""), (std::vector<int32_t>{}));
  EXPECT_EQ(t.Encode("   \n "), (std::vector<int32_t>{}));
  // Invalid UTF-8 never crashes; the bad bytes are dropped.
  EXPECT_EQ(t.Encode("hello\xff\xfe"), (std::vector<int32_t>{4}));
}

TEST(WordPieceTest, RejectsTokenizersItDoesNotImplement) {
  Result<WordPieceTokenizer> bpe = WordPieceTokenizer::FromJson(
      R"({"model": {"type": "BPE", "vocab": {}}, "normalizer": null})", "bpe.json");
  ASSERT_FALSE(bpe.ok());
  EXPECT_NE(bpe.status().message().find("model.type"), std::string::npos);
  EXPECT_NE(bpe.status().message().find("bpe.json"), std::string::npos);
  EXPECT_FALSE(WordPieceTokenizer::FromJson("not json", "x").ok());
  EXPECT_EQ(WordPieceTokenizer::Load("/nonexistent/tokenizer.json").status().code(),
            StatusCode::kNotFound);
}

TEST(WordPieceTest, MatchesTheReferenceTokenizerOnEverySentence) {
  std::string dir = DefaultModelDirectory();
  Result<WordPieceTokenizer> t = WordPieceTokenizer::Load(dir + "/tokenizer.json");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  std::ifstream in(std::string(TOOLOPS_SOURCE_DIR) + "/testdata/embedder/tokens.jsonl");
  ASSERT_TRUE(in) << "testdata/embedder/tokens.jsonl is missing";
  // The first lines are hand-written hard cases; the rest are data-set
  // sentences, which must all agree. One hard case may differ: a combining
  // mark assigned in Unicode 15 (U+1E08F), which utf8proc knows and the
  // reference's older tables treat as unassigned (kept, so its word becomes
  // [UNK]).
  constexpr int kHardCases = 161;
  std::string line;
  int lines = 0;
  int mismatches = 0;
  int dataset_mismatches = 0;
  std::string first_failures;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    nlohmann::json row = nlohmann::json::parse(line);
    std::string text = row["text"].get<std::string>();
    // raw_ids: the reference tokenizer's own output (no special tokens
    // added, no truncation, unknown tokens kept).
    std::vector<int32_t> expected = row["raw_ids"].get<std::vector<int32_t>>();
    std::vector<int32_t> got = t->Encode(text);
    ++lines;
    if (got != expected) {
      if (lines > kHardCases) ++dataset_mismatches;
      if (++mismatches <= 5) {
        first_failures += "\n  text: " + row["text"].dump() + "\n  want:";
        for (int32_t id : expected) first_failures += " " + std::to_string(id);
        first_failures += "\n  got: ";
        for (int32_t id : got) first_failures += " " + std::to_string(id);
      }
    }
  }
  std::printf(
      "figure: tokenizer identical to the reference on %d of %d sentences "
      "(data-set sentences differing: %d)\n",
      lines - mismatches, lines, dataset_mismatches);
  EXPECT_GE(lines, 1000);
  EXPECT_EQ(dataset_mismatches, 0) << first_failures;
  EXPECT_LE(mismatches, 1) << mismatches << " of " << lines << " differ" << first_failures;
}

}  // namespace
}  // namespace toolops
