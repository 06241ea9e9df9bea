// src/semantic/wordpiece.cc

#include "semantic/wordpiece.h"

#include <utf8proc.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace toolops {
namespace {

using Json = nlohmann::json;

Status Bad(std::string_view source, std::string_view what) {
  return Status(StatusCode::kInvalidArgument,
                "tokenizer '" + std::string(source) + "': " + std::string(what), Guard::kCodec);
}

// Rust's char::is_whitespace (the Unicode White_Space property).
bool IsWhitespace(int32_t c) {
  switch (c) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

// General category "Other" as the reference tokenizer's tables have it (Cc,
// Cf, Co, Cs; unassigned code points are kept), except tab, newline and
// carriage return, which count as whitespace.
bool IsControl(int32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CS:
      return true;
    default:
      return false;
  }
}

bool IsChinese(int32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// ASCII punctuation, or a Unicode punctuation category.
bool IsPunctuation(int32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
      (c >= 123 && c <= 126)) {
    return true;
  }
  switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
      return true;
    default:
      return false;
  }
}

void AppendUtf8(int32_t c, std::string* out) {
  utf8proc_uint8_t buffer[4];
  utf8proc_ssize_t n = utf8proc_encode_char(c, buffer);
  out->append(reinterpret_cast<const char*>(buffer), static_cast<size_t>(n));
}

// The code points of `text`; invalid bytes become U+FFFD (which cleaning
// then drops, as the reference drops it).
std::vector<int32_t> Decode(std::string_view text) {
  std::vector<int32_t> out;
  out.reserve(text.size());
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(text.size());
  while (left > 0) {
    utf8proc_int32_t c = 0;
    utf8proc_ssize_t n = utf8proc_iterate(p, left, &c);
    if (n <= 0) {
      out.push_back(0xFFFD);
      n = 1;
    } else {
      out.push_back(c);
    }
    p += n;
    left -= n;
  }
  return out;
}

}  // namespace

Result<WordPieceTokenizer> WordPieceTokenizer::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status(StatusCode::kNotFound, "tokenizer '" + path + "': cannot open the file",
                  Guard::kCodec);
  }
  std::stringstream content;
  content << in.rdbuf();
  return FromJson(content.str(), path);
}

Result<WordPieceTokenizer> WordPieceTokenizer::FromJson(std::string_view text,
                                                        std::string_view source) {
  Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) return Bad(source, "is not a JSON object");
  WordPieceTokenizer t;

  const Json& model = json["model"];
  if (!model.is_object() || model.value("type", "") != "WordPiece") {
    return Bad(source, "model.type must be \"WordPiece\"");
  }
  const Json& vocab = model["vocab"];
  if (!vocab.is_object() || vocab.empty())
    return Bad(source, "model.vocab must be a non-empty object");
  int32_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer()) return Bad(source, "model.vocab values must be integers");
    int32_t id = it.value().get<int32_t>();
    if (id < 0) return Bad(source, "model.vocab holds a negative id");
    t.vocab_.emplace(it.key(), id);
    max_id = std::max(max_id, id);
  }
  t.vocab_size_ = static_cast<size_t>(max_id) + 1;
  std::string unk = model.value("unk_token", "[UNK]");
  auto unk_it = t.vocab_.find(unk);
  if (unk_it == t.vocab_.end())
    return Bad(source, "model.unk_token '" + unk + "' is not in the vocab");
  t.unk_id_ = unk_it->second;
  t.prefix_ = model.value("continuing_subword_prefix", "##");
  t.max_chars_ = model.value("max_input_chars_per_word", 100);
  std::vector<size_t> lengths;
  lengths.reserve(t.vocab_.size());
  for (const auto& [token, id] : t.vocab_) {
    size_t chars = 0;
    for (unsigned char c : token) chars += (c & 0xC0) != 0x80;
    lengths.push_back(chars);
  }
  std::sort(lengths.begin(), lengths.end());
  // Python's statistics.median of integers, then int(): the mean of the two
  // middle values for an even count, truncated.
  size_t n = lengths.size();
  t.median_token_length_ = n % 2 == 1 ? lengths[n / 2] : (lengths[n / 2 - 1] + lengths[n / 2]) / 2;

  if (const Json& added = json["added_tokens"]; added.is_array()) {
    for (const Json& token : added) {
      if (!token.is_object() || !token.value("special", false)) continue;
      std::string content = token.value("content", "");
      if (content.empty() || !token["id"].is_number_integer()) continue;
      t.specials_.emplace_back(content, token["id"].get<int32_t>());
    }
    std::sort(t.specials_.begin(), t.specials_.end(),
              [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    for (const auto& [content, id] : t.specials_) {
      t.special_first_[static_cast<unsigned char>(content[0])] = true;
    }
  }

  const Json& normalizer = json["normalizer"];
  if (!normalizer.is_object() || normalizer.value("type", "") != "BertNormalizer") {
    return Bad(source, "normalizer.type must be \"BertNormalizer\"");
  }
  t.clean_text_ = normalizer.value("clean_text", true);
  t.chinese_chars_ = normalizer.value("handle_chinese_chars", true);
  t.lowercase_ = normalizer.value("lowercase", true);
  const Json& strip = normalizer["strip_accents"];
  t.strip_accents_ = strip.is_boolean() ? strip.get<bool>() : t.lowercase_;

  const Json& pre = json["pre_tokenizer"];
  if (!pre.is_object() || pre.value("type", "") != "BertPreTokenizer") {
    return Bad(source, "pre_tokenizer.type must be \"BertPreTokenizer\"");
  }
  return t;
}

std::string WordPieceTokenizer::Normalize(std::string_view text) const {
  std::vector<int32_t> cps = Decode(text);
  std::vector<int32_t> out;
  out.reserve(cps.size() + 8);
  for (int32_t c : cps) {
    if (clean_text_) {
      if (c == 0 || c == 0xFFFD || IsControl(c)) continue;
      if (IsWhitespace(c)) c = ' ';
    }
    if (chinese_chars_ && IsChinese(c)) {
      out.push_back(' ');
      out.push_back(c);
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  if (strip_accents_ && !out.empty()) {
    // NFD of the whole text (decomposition and canonical ordering of marks),
    // then without nonspacing marks.
    std::string utf8;
    for (int32_t c : out) AppendUtf8(c, &utf8);
    std::vector<utf8proc_int32_t> nfd(out.size() * 4 + 16);
    utf8proc_ssize_t n =
        utf8proc_decompose(reinterpret_cast<const utf8proc_uint8_t*>(utf8.data()),
                           static_cast<utf8proc_ssize_t>(utf8.size()), nfd.data(),
                           static_cast<utf8proc_ssize_t>(nfd.size()), UTF8PROC_DECOMPOSE);
    if (n > static_cast<utf8proc_ssize_t>(nfd.size())) {
      nfd.resize(static_cast<size_t>(n));
      n = utf8proc_decompose(reinterpret_cast<const utf8proc_uint8_t*>(utf8.data()),
                             static_cast<utf8proc_ssize_t>(utf8.size()), nfd.data(), n,
                             UTF8PROC_DECOMPOSE);
    }
    if (n >= 0) {
      out.clear();
      for (utf8proc_ssize_t i = 0; i < n; ++i) {
        if (utf8proc_category(nfd[i]) != UTF8PROC_CATEGORY_MN) out.push_back(nfd[i]);
      }
    }
  }
  std::string result;
  result.reserve(out.size());
  for (int32_t c : out) {
    if (lowercase_) c = utf8proc_tolower(c);
    AppendUtf8(c, &result);
  }
  return result;
}

void WordPieceTokenizer::Pretokenize(const std::string& normalized,
                                     std::vector<std::string_view>* words) const {
  const auto* base = reinterpret_cast<const utf8proc_uint8_t*>(normalized.data());
  utf8proc_ssize_t size = static_cast<utf8proc_ssize_t>(normalized.size());
  utf8proc_ssize_t pos = 0;
  utf8proc_ssize_t word_start = -1;
  while (pos < size) {
    utf8proc_int32_t c = 0;
    utf8proc_ssize_t n = utf8proc_iterate(base + pos, size - pos, &c);
    if (n <= 0) n = 1;
    bool space = IsWhitespace(c);
    bool punct = !space && IsPunctuation(c);
    if (space || punct) {
      if (word_start >= 0) {
        words->emplace_back(normalized.data() + word_start, static_cast<size_t>(pos - word_start));
        word_start = -1;
      }
      if (punct) words->emplace_back(normalized.data() + pos, static_cast<size_t>(n));
    } else if (word_start < 0) {
      word_start = pos;
    }
    pos += n;
  }
  if (word_start >= 0) {
    words->emplace_back(normalized.data() + word_start, static_cast<size_t>(size - word_start));
  }
}

void WordPieceTokenizer::WordPiece(std::string_view word, std::vector<int32_t>* ids) const {
  // Character boundaries (byte offsets) of the word.
  std::vector<size_t> bounds;
  bounds.reserve(word.size() + 1);
  for (size_t i = 0; i < word.size(); ++i) {
    if ((static_cast<unsigned char>(word[i]) & 0xC0) != 0x80) bounds.push_back(i);
  }
  bounds.push_back(word.size());
  size_t chars = bounds.size() - 1;
  if (chars > max_chars_) {
    ids->push_back(unk_id_);
    return;
  }
  size_t first = ids->size();
  std::string piece;
  size_t start = 0;  // Index into bounds.
  while (start < chars) {
    size_t end = chars;
    int32_t found = -1;
    while (start < end) {
      std::string_view sub = word.substr(bounds[start], bounds[end] - bounds[start]);
      auto it =
          start > 0 ? (piece.assign(prefix_).append(sub), vocab_.find(piece)) : vocab_.find(sub);
      if (it != vocab_.end()) {
        found = it->second;
        break;
      }
      --end;
    }
    if (found < 0) {
      ids->resize(first);
      ids->push_back(unk_id_);
      return;
    }
    ids->push_back(found);
    start = end;
  }
}

void WordPieceTokenizer::EncodeSegment(std::string_view text, std::vector<int32_t>* ids) const {
  if (text.empty()) return;
  std::string normalized = Normalize(text);
  std::vector<std::string_view> words;
  Pretokenize(normalized, &words);
  for (std::string_view word : words) WordPiece(word, ids);
}

std::vector<int32_t> WordPieceTokenizer::Encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  size_t start = 0;
  size_t pos = 0;
  while (!specials_.empty() && pos < text.size()) {
    if (!special_first_[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    bool matched = false;
    for (const auto& [content, id] : specials_) {
      if (text.substr(pos).starts_with(content)) {
        EncodeSegment(text.substr(start, pos - start), &ids);
        ids.push_back(id);
        pos += content.size();
        start = pos;
        matched = true;
        break;
      }
    }
    if (!matched) ++pos;
  }
  EncodeSegment(text.substr(start), &ids);
  return ids;
}

}  // namespace toolops
