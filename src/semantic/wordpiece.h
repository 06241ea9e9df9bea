// src/semantic/wordpiece.h
//
// WordPieceTokenizer: the BERT tokenizer of a HuggingFace tokenizer.json
// (normalizer "BertNormalizer", pre-tokenizer "BertPreTokenizer", model
// "WordPiece"), reimplemented so that the embedder needs no Python. It must
// give exactly the ids the reference library gives; the tests compare it on
// thousands of sentences (testdata/embedder/tokens.jsonl).
//
// Special tokens ("added_tokens" of the file, such as [CLS] or [MASK]) that
// occur verbatim in the raw text become their ids; the text around them is
// tokenised on its own.
//
// Normalisation, in the reference's order:
//   1. clean text: drop NUL, U+FFFD and "other" characters (Unicode Cc, Cf,
//      Co, Cs, but not unassigned ones; tab, newline and carriage return are
//      whitespace); every whitespace character becomes a space;
//   2. Chinese characters (the CJK ideograph blocks) get a space on each side;
//   3. strip accents: canonical decomposition (NFD), then drop nonspacing
//      marks (Mn);
//   4. lowercase (full Unicode lowercase mapping).
// Pre-tokenisation splits on whitespace and isolates every punctuation
// character (ASCII punctuation and Unicode P*). WordPiece then splits each
// word greedily into the longest vocabulary pieces, continuation pieces
// carrying the "##" prefix; a word that cannot be split, or is longer than
// max_input_chars_per_word characters, becomes the unknown token.
//
// Written by hand: no C++ implementation of HuggingFace's tokenizers is
// packaged for Debian. utf8proc supplies the Unicode tables.
//
// Immutable after Load; Encode is safe to call from many threads at once.

#ifndef TOOLOPS_SEMANTIC_WORDPIECE_H_
#define TOOLOPS_SEMANTIC_WORDPIECE_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "toolops/status.h"

namespace toolops {

class WordPieceTokenizer {
 public:
  // Reads a tokenizer.json. InvalidArgument naming the file and the field for
  // anything this class does not implement (another model or normaliser).
  static Result<WordPieceTokenizer> FromJson(std::string_view json, std::string_view source);
  static Result<WordPieceTokenizer> Load(const std::string& path);

  // The ids of `text`'s tokens, without special tokens ([CLS], [SEP]).
  std::vector<int32_t> Encode(std::string_view text) const;

  // The normalised text (steps 1 to 4), for tests and explanations.
  std::string Normalize(std::string_view text) const;

  size_t vocab_size() const { return vocab_size_; }
  int32_t unk_id() const { return unk_id_; }
  // The integer median of the vocabulary strings' lengths in code points
  // ("##" included), which Model2Vec uses to cut long texts.
  size_t median_token_length() const { return median_token_length_; }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  struct Eq {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const { return a == b; }
  };

  void EncodeSegment(std::string_view text, std::vector<int32_t>* ids) const;
  void Pretokenize(const std::string& normalized, std::vector<std::string_view>* words) const;
  void WordPiece(std::string_view word, std::vector<int32_t>* ids) const;

  std::unordered_map<std::string, int32_t, Hash, Eq> vocab_;
  size_t vocab_size_ = 0;
  int32_t unk_id_ = 0;
  std::string prefix_ = "##";
  size_t max_chars_ = 100;
  size_t median_token_length_ = 0;
  // Special tokens matched verbatim in the raw text, longest first.
  std::vector<std::pair<std::string, int32_t>> specials_;
  std::array<bool, 256> special_first_{};  // First bytes of the special tokens.
  bool clean_text_ = true;
  bool chinese_chars_ = true;
  bool strip_accents_ = true;
  bool lowercase_ = true;
};

}  // namespace toolops

#endif  // TOOLOPS_SEMANTIC_WORDPIECE_H_
