// src/engine/args.cc
//
// The canonical argument encoding (see include/toolops/args.h for the byte
// format), Unicode normalisation through utf8proc, and Value.

#include "toolops/args.h"

#include <utf8proc.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <vector>

namespace toolops {
namespace {

// The bit pattern every NaN is written with (the quiet NaN with no payload).
constexpr uint64_t kCanonicalNaN = 0x7ff8000000000000ull;

// A number reduced to its canonical form: two numbers are equal as arguments
// exactly when their forms are equal.
struct CanonicalNumber {
  ArgTag tag;     // kInt, kBigUInt or kDouble.
  uint64_t bits;  // The int64 as two's complement, the uint64, or the double's bits.

  friend bool operator==(const CanonicalNumber&, const CanonicalNumber&) = default;
};

CanonicalNumber Canonical(double value) {
  // Range checks come first: casting an out-of-range double is undefined.
  if (value >= -0x1p63 && value < 0x1p63) {
    const auto i = static_cast<int64_t>(value);
    if (static_cast<double>(i) == value) return {ArgTag::kInt, static_cast<uint64_t>(i)};
  } else if (value >= 0x1p63 && value < 0x1p64) {
    // Every double this large is an integer.
    const auto u = static_cast<uint64_t>(value);
    return {ArgTag::kBigUInt, u};
  }
  return {ArgTag::kDouble, std::isnan(value) ? kCanonicalNaN : std::bit_cast<uint64_t>(value)};
}

bool IsAscii(std::string_view text) {
  const char* p = text.data();
  size_t n = text.size();
  uint64_t any = 0;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    any |= word;
  }
  for (; n > 0; ++p, --n) any |= static_cast<unsigned char>(*p);
  return (any & 0x8080808080808080ull) == 0;
}

// Writes `text` (ASCII) to dst[0, text.size()) with A-Z lowered, which is
// what NFKC casefolding does to ASCII. Eight bytes at a time: every byte is
// below 0x80, so adding a constant below 0x80 to each never carries into the
// next, and the top bit of each sum says whether the byte passed a bound.
void LowerAscii(std::string_view text, char* dst) {
  constexpr uint64_t kOnes = 0x0101010101010101ull;
  const char* src = text.data();
  size_t n = text.size();
  for (; n >= 8; src += 8, dst += 8, n -= 8) {
    uint64_t word;
    std::memcpy(&word, src, 8);
    const uint64_t at_least_a = word + (0x80 - 'A') * kOnes;
    const uint64_t above_z = word + (0x7f - 'Z') * kOnes;
    const uint64_t upper = at_least_a & ~above_z & (0x80 * kOnes);
    word |= upper >> 2;  // 0x80 >> 2 is 0x20, the case bit.
    std::memcpy(dst, &word, 8);
  }
  for (; n > 0; ++src, ++dst, --n) {
    const char c = *src;
    *dst = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
  }
}

utf8proc_option_t Utf8procOptions(TextNormalization normalization) {
  const int base = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
  switch (normalization) {
    case TextNormalization::kNone:
    case TextNormalization::kNfc:
      return static_cast<utf8proc_option_t>(base);
    case TextNormalization::kNfkc:
      return static_cast<utf8proc_option_t>(base | UTF8PROC_COMPAT);
    case TextNormalization::kNfkcCasefold:
      return static_cast<utf8proc_option_t>(base | UTF8PROC_COMPAT | UTF8PROC_CASEFOLD);
  }
  return static_cast<utf8proc_option_t>(base);
}

// Text normalised by utf8proc with the options of one TextNormalization: the
// steps of utf8proc_map (decompose, then compose and re-encode in place), but
// into a buffer on the stack for short text, which spares utf8proc_map's
// counting pass and its two heap allocations.
class NormalizedText {
 public:
  // REQUIRES: normalization is not kNone.
  NormalizedText(std::string_view text, TextNormalization normalization) {
    const utf8proc_option_t options = Utf8procOptions(normalization);
    const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
    const auto size = static_cast<utf8proc_ssize_t>(text.size());
    utf8proc_int32_t* buffer = small_;
    utf8proc_ssize_t count =
        utf8proc_decompose(bytes, size, buffer, static_cast<utf8proc_ssize_t>(kSmall), options);
    if (count > static_cast<utf8proc_ssize_t>(kSmall)) {
      large_.resize(static_cast<size_t>(count));
      buffer = large_.data();
      count = utf8proc_decompose(bytes, size, buffer, count, options);
    }
    // Re-encoding writes UTF-8 over the code points it has read: a code point
    // never takes more than its four bytes.
    size_ = count < 0 ? count : utf8proc_reencode(buffer, count, options);
    data_ = reinterpret_cast<const char*>(buffer);
  }
  NormalizedText(const NormalizedText&) = delete;
  NormalizedText& operator=(const NormalizedText&) = delete;

  bool ok() const { return size_ >= 0; }
  // A utf8proc error code (negative) when !ok().
  utf8proc_ssize_t error() const { return size_; }
  // REQUIRES: ok().
  std::string_view view() const { return std::string_view(data_, static_cast<size_t>(size_)); }

 private:
  static constexpr size_t kSmall = 128;

  utf8proc_int32_t small_[kSmall];
  std::vector<utf8proc_int32_t> large_;
  const char* data_ = nullptr;
  utf8proc_ssize_t size_ = 0;
};

}  // namespace

std::string NormalizeText(std::string_view text, TextNormalization normalization) {
  if (normalization == TextNormalization::kNone) return std::string(text);
  std::string out;
  if (IsAscii(text)) {
    out.assign(text);
    if (normalization == TextNormalization::kNfkcCasefold) LowerAscii(text, out.data());
    return out;
  }
  NormalizedText normalized(text, normalization);
  // Invalid UTF-8 (or text too large for utf8proc): the bytes as given.
  if (!normalized.ok()) return std::string(text);
  return std::string(normalized.view());
}

// ---------------------------------------------------------------------------
// ArgWriter

void ArgWriter::Double(double value) {
  const CanonicalNumber number = Canonical(value);
  if (number.tag == ArgTag::kInt) return Int(static_cast<int64_t>(number.bits));
  if (number.tag == ArgTag::kBigUInt) return UInt(number.bits);
  if (!frames_.empty()) EnterChild();
  char buf[9];
  buf[0] = static_cast<char>(ArgTag::kDouble);
  for (int i = 0; i < 8; ++i) buf[1 + i] = static_cast<char>(number.bits >> (56 - 8 * i));
  out_->append(buf, sizeof(buf));
}

void ArgWriter::NormalizedString(std::string_view text) {
  if (!frames_.empty()) EnterChild();

  // ASCII is already in NFC and NFKC; casefolding only lowers A-Z.
  if (IsAscii(text)) {
    if (normalization_ == TextNormalization::kNfkcCasefold) {
      AppendHeader(ArgTag::kText, text.size());
      const size_t start = out_->size();
      out_->resize(start + text.size());
      LowerAscii(text, out_->data() + start);
    } else {
      AppendTagged(ArgTag::kText, text);
    }
    return;
  }

  NormalizedText normalized(text, normalization_);
  if (normalized.ok()) {
    AppendTagged(ArgTag::kText, normalized.view());
    return;
  }
  if (normalized.error() == UTF8PROC_ERROR_INVALIDUTF8) {
    // Not text: keep the bytes under their own tag, which valid text never
    // uses, so no normalised string can produce the same encoding.
    AppendTagged(ArgTag::kInvalidText, text);
    return;
  }
  // utf8proc's only other error here: more code points than it can count.
  Fail(StatusCode::kResourceExhausted, "a string is too large to normalise");
}

void ArgWriter::BeginList(size_t count) {
  if (!frames_.empty()) EnterChild();
  AppendHeader(ArgTag::kList, count);
  frames_.push_back(Frame{count, 0, 0, /*is_map=*/false, /*awaiting_value=*/false});
}

void ArgWriter::EndList() {
  if (frames_.empty() || frames_.back().is_map) {
    return Fail(StatusCode::kInternal, "EndList() without an open list");
  }
  const Frame frame = frames_.back();
  frames_.pop_back();
  if (frame.seen != frame.declared) {
    Fail(StatusCode::kInternal, "a list got a different number of values than BeginList() said");
  }
}

void ArgWriter::BeginMap(size_t count) {
  if (!frames_.empty()) EnterChild();
  AppendHeader(ArgTag::kMap, count);
  frames_.push_back(Frame{count, 0, marks_.size(), /*is_map=*/true, /*awaiting_value=*/false});
}

void ArgWriter::Key(std::string_view key) {
  if (frames_.empty() || !frames_.back().is_map || frames_.back().awaiting_value) {
    return Fail(StatusCode::kInternal, "Key() outside a map or twice in a row");
  }
  Frame& frame = frames_.back();
  ++frame.seen;
  frame.awaiting_value = true;
  const size_t entry_begin = out_->size();
  // The key is a varint length and the bytes: its position says it is a key.
  AppendVarint(key.size());
  marks_.push_back(Mark{entry_begin, out_->size(), key.size()});
  out_->append(key.data(), key.size());
}

void ArgWriter::EndMap() {
  if (frames_.empty() || !frames_.back().is_map) {
    return Fail(StatusCode::kInternal, "EndMap() without an open map");
  }
  const Frame frame = frames_.back();
  frames_.pop_back();
  if (frame.awaiting_value) Fail(StatusCode::kInternal, "a map key has no value");
  if (frame.seen != frame.declared) {
    Fail(StatusCode::kInternal, "a map got a different number of entries than BeginMap() said");
  }
  SortEntries(frame.first_mark);
  marks_.shrink(frame.first_mark);
}

void ArgWriter::EnterChild() {
  Frame& frame = frames_.back();
  if (!frame.is_map) {
    ++frame.seen;
  } else if (frame.awaiting_value) {
    frame.awaiting_value = false;
  } else {
    Fail(StatusCode::kInternal, "a map value was written without Key() before it");
  }
}

void ArgWriter::SortEntries(size_t first_mark) {
  const size_t n = marks_.size() - first_mark;
  if (n < 2) return;
  const Mark* marks = marks_.data() + first_mark;
  auto key = [this, marks](size_t i) {
    return std::string_view(out_->data() + marks[i].key_begin, marks[i].key_size);
  };

  // Entries that already arrive in strict key order (std::map, Value) need
  // no work.
  bool sorted = true;
  for (size_t i = 1; i < n && sorted; ++i) sorted = key(i - 1) < key(i);
  if (sorted) return;

  // Small maps sort in stack buffers; larger ones allocate.
  size_t small_order[32];
  std::vector<size_t> large_order;
  size_t* order = small_order;
  if (n > std::size(small_order)) {
    large_order.resize(n);
    order = large_order.data();
  }
  std::iota(order, order + n, size_t{0});
  std::sort(order, order + n, [&key](size_t a, size_t b) { return key(a) < key(b); });
  for (size_t i = 1; i < n; ++i) {
    // The key itself is left out of the message: it may be user data.
    if (key(order[i - 1]) == key(order[i])) {
      return Fail(StatusCode::kInvalidArgument, "a map has the same key twice");
    }
  }

  // Entries are contiguous: entry i ends where entry i + 1 begins. Sorting
  // keeps the total length, so offsets held by enclosing maps stay valid.
  const size_t begin = marks[0].entry_begin;
  const size_t end = out_->size();
  char small_bytes[512];
  std::string large_bytes;
  char* sorted_bytes = small_bytes;
  if (end - begin > sizeof(small_bytes)) {
    large_bytes.resize(end - begin);
    sorted_bytes = large_bytes.data();
  }
  char* next = sorted_bytes;
  for (size_t k = 0; k < n; ++k) {
    const size_t i = order[k];
    const size_t entry_end = i + 1 < n ? marks[i + 1].entry_begin : end;
    std::memcpy(next, out_->data() + marks[i].entry_begin, entry_end - marks[i].entry_begin);
    next += entry_end - marks[i].entry_begin;
  }
  std::memcpy(out_->data() + begin, sorted_bytes, end - begin);
}

Status ArgWriter::FinishWithError() {
  if (!frames_.empty()) Fail(StatusCode::kInternal, "a list or map was not closed");
  return Status(error_code_, error_, Guard::kCodec);
}

void ArgWriter::Fail(StatusCode code, const char* message) {
  if (error_ != nullptr) return;
  error_code_ = code;
  error_ = message;
}

// ---------------------------------------------------------------------------
// Value

namespace {

bool IsNumber(Value::Kind kind) {
  return kind == Value::Kind::kInt || kind == Value::Kind::kUInt || kind == Value::Kind::kDouble;
}

CanonicalNumber Canonical(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kInt:
      return {ArgTag::kInt, static_cast<uint64_t>(value.int_value())};
    case Value::Kind::kUInt:
      // The constructors hold uint64 only above INT64_MAX.
      return {ArgTag::kBigUInt, value.uint_value()};
    default:
      return Canonical(value.double_value());
  }
}

bool KeyLess(const std::pair<std::string, Value>& a, const std::pair<std::string, Value>& b) {
  return a.first < b.first;
}

void AppendJsonString(std::string_view text, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      utf8proc_int32_t code_point;
      const utf8proc_ssize_t n =
          utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + i),
                           static_cast<utf8proc_ssize_t>(text.size() - i), &code_point);
      if (n <= 0) {
        out->append("\xEF\xBF\xBD");  // U+FFFD for one byte that is not UTF-8.
        ++i;
      } else {
        out->append(text.data() + i, static_cast<size_t>(n));
        i += static_cast<size_t>(n);
      }
      continue;
    }
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xf]);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out->push_back('"');
}

void AppendJsonDouble(double value, std::string* out) {
  if (std::isnan(value)) {
    out->append("\"NaN\"");
    return;
  }
  if (std::isinf(value)) {
    out->append(value > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    return;
  }
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  // The shortest form that reads back exactly always fits in 64 chars.
  out->append(buf, end);
  // Keep a double visible as one: 1.0, not 1.
  if (std::find_if(buf, end, [](char c) { return c == '.' || c == 'e'; }) == end) {
    out->append(".0");
  }
}

void AppendJson(const Value& value, std::string* out) {
  switch (value.kind()) {
    case Value::Kind::kNull:
      out->append("null");
      return;
    case Value::Kind::kBool:
      out->append(value.bool_value() ? "true" : "false");
      return;
    case Value::Kind::kInt:
      out->append(std::to_string(value.int_value()));
      return;
    case Value::Kind::kUInt:
      out->append(std::to_string(value.uint_value()));
      return;
    case Value::Kind::kDouble:
      AppendJsonDouble(value.double_value(), out);
      return;
    case Value::Kind::kString:
      AppendJsonString(value.string_value(), out);
      return;
    case Value::Kind::kList: {
      out->push_back('[');
      bool first = true;
      for (const Value& item : value.list()) {
        if (!first) out->push_back(',');
        first = false;
        AppendJson(item, out);
      }
      out->push_back(']');
      return;
    }
    case Value::Kind::kMap: {
      out->push_back('{');
      bool first = true;
      for (const auto& [key, item] : value.map()) {
        if (!first) out->push_back(',');
        first = false;
        AppendJsonString(key, out);
        out->push_back(':');
        AppendJson(item, out);
      }
      out->push_back('}');
      return;
    }
  }
}

}  // namespace

Value::Value(Map entries) {
  // Stable, so that among equal keys the last one given stays last.
  std::stable_sort(entries.begin(), entries.end(), KeyLess);
  Map unique;
  unique.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i + 1 < entries.size() && entries[i].first == entries[i + 1].first) continue;
    unique.push_back(std::move(entries[i]));
  }
  rep_.emplace<Map>(std::move(unique));
}

const Value* Value::Find(std::string_view key) const {
  const Map& entries = map();
  auto it = std::lower_bound(entries.begin(), entries.end(), key,
                             [](const auto& entry, std::string_view k) { return entry.first < k; });
  return it != entries.end() && it->first == key ? &it->second : nullptr;
}

void Value::Append(Value item) {
  if (kind() != Kind::kList) std::abort();  // A caller bug: see REQUIRES.
  std::get<List>(rep_).push_back(std::move(item));
}

void Value::Set(std::string key, Value value) {
  if (kind() != Kind::kMap) std::abort();  // A caller bug: see REQUIRES.
  Map& entries = std::get<Map>(rep_);
  auto it =
      std::lower_bound(entries.begin(), entries.end(), key,
                       [](const auto& entry, const std::string& k) { return entry.first < k; });
  if (it != entries.end() && it->first == key) {
    it->second = std::move(value);
  } else {
    entries.emplace(it, std::move(key), std::move(value));
  }
}

void Value::Encode(ArgWriter& writer) const {
  switch (kind()) {
    case Kind::kNull:
      return writer.Null();
    case Kind::kBool:
      return writer.Bool(bool_value());
    case Kind::kInt:
      return writer.Int(int_value());
    case Kind::kUInt:
      return writer.UInt(uint_value());
    case Kind::kDouble:
      return writer.Double(double_value());
    case Kind::kString:
      return writer.String(string_value());
    case Kind::kList:
      writer.BeginList(list().size());
      for (const Value& item : list()) item.Encode(writer);
      return writer.EndList();
    case Kind::kMap:
      writer.BeginMap(map().size());
      for (const auto& [key, item] : map()) {
        writer.Key(key);
        item.Encode(writer);
      }
      return writer.EndMap();
  }
}

std::string Value::ToJson() const {
  std::string out;
  AppendJson(*this, &out);
  return out;
}

bool operator==(const Value& a, const Value& b) {
  if (IsNumber(a.kind()) && IsNumber(b.kind())) return Canonical(a) == Canonical(b);
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kNull:
      return true;
    case Value::Kind::kBool:
      return a.bool_value() == b.bool_value();
    case Value::Kind::kString:
      return a.string_value() == b.string_value();
    case Value::Kind::kList:
      return a.list() == b.list();
    case Value::Kind::kMap:
      // Both sorted with unique keys, so equal sets are equal sequences.
      return a.map() == b.map();
    default:
      return false;  // Numbers were handled above.
  }
}

}  // namespace toolops
