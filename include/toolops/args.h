// include/toolops/args.h
//
// Canonical argument encoding: the bytes a cache key is built from.
//
// ArgWriter appends argument values to a caller-owned string in a binary form
// with the two properties the cache relies on:
//   - equal calls give equal bytes: map entries in any order, 1 and 1.0, -0.0
//     and 0, every NaN, and (per TextNormalization) equivalent spellings of
//     the same text all encode alike;
//   - different calls never give equal bytes: every value is self-delimiting
//     (a type tag, then a fixed-size or length-prefixed payload), so a
//     sequence of values decodes back in exactly one way.
//
// Byte format, version kArgEncodingVersion. "varint" is unsigned LEB128 in its
// shortest form. Nothing depends on the host's byte order.
//
//   value          bytes
//   null           00
//   false / true   01 / 02
//   integer        03 varint(zigzag(v))   every integral number in int64 range,
//                                         whatever its C++ type (1, 1u, 1.0)
//   big unsigned   04 varint(v)           integral numbers in (INT64_MAX, 2^64)
//   double         05 8 bytes, big-endian IEEE-754 bits; only values that are
//                                         not integers in the ranges above;
//                                         every NaN as 7ff8000000000000
//   text           06 varint(n) n bytes   after normalisation
//   invalid text   07 varint(n) n bytes   a string that is not UTF-8 when a
//                                         normalisation is asked: raw bytes
//   list           08 varint(n) n values
//   map            09 varint(n) n entries, entry = varint(k) k key bytes value;
//                                         sorted by key bytes, keys unique
//
// Map keys are written as given: normalisation applies to string values only,
// so that two fields whose names differ only in case never merge.
//
// Value is a dynamic JSON-like value for language bindings; it encodes with
// the same rules, so Value(1.0) and the C++ int 1 give the same bytes.
//
// An ArgWriter is used by one thread at a time. Value is a plain value type:
// distinct objects may be used from different threads, and const methods of
// one object may run concurrently.

#ifndef TOOLOPS_ARGS_H_
#define TOOLOPS_ARGS_H_

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "toolops/policy.h"
#include "toolops/status.h"

namespace toolops {

// Changes whenever the byte format changes. Mix it into keys that outlive the
// process so that bytes written by an older format are never read as a match.
inline constexpr uint8_t kArgEncodingVersion = 1;

// The first byte of every encoded value (see the table above).
enum class ArgTag : uint8_t {
  kNull = 0x00,
  kFalse = 0x01,
  kTrue = 0x02,
  kInt = 0x03,
  kBigUInt = 0x04,
  kDouble = 0x05,
  kText = 0x06,
  kInvalidText = 0x07,
  kList = 0x08,
  kMap = 0x09,
  kBinary = 0x0A,
};

// Returns `text` normalised per `normalization`. kNone returns the bytes
// unchanged; so does every mode when `text` is not valid UTF-8. Pure ASCII
// never reaches utf8proc. Thread-safe.
std::string NormalizeText(std::string_view text, TextNormalization normalization);

namespace args_internal {

// A stack of trivially copyable values, contiguous like a vector, that keeps
// its first N elements inside the object and moves to the heap beyond them.
template <typename T, size_t N>
class SmallStack {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  SmallStack() = default;
  SmallStack(const SmallStack&) = delete;
  SmallStack& operator=(const SmallStack&) = delete;
  ~SmallStack() {
    if (data_ != inline_) delete[] data_;
  }

  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  T* data() { return data_; }
  T& back() { return data_[size_ - 1]; }
  void push_back(const T& value) {
    if (size_ == capacity_) Grow();
    data_[size_++] = value;
  }
  void pop_back() { --size_; }
  // Drops the elements from `size` on. REQUIRES: size <= size().
  void shrink(size_t size) { size_ = size; }

 private:
  void Grow() {
    T* bigger = new T[2 * capacity_];
    std::copy(data_, data_ + size_, bigger);
    if (data_ != inline_) delete[] data_;
    data_ = bigger;
    capacity_ *= 2;
  }

  T inline_[N];
  T* data_ = inline_;
  size_t size_ = 0;
  size_t capacity_ = N;
};

}  // namespace args_internal

// Appends the canonical encoding of values to a string.
//
// Scalars are single calls. A list is BeginList(n), n values, EndList(). A map
// is BeginMap(n), then n times Key(k) followed by one value, then EndMap();
// entries may come in any order. Misuse (a wrong count, a value without a key,
// an unclosed list) and duplicate map keys do not throw: the first such error
// is kept and returned by Finish(). After an error the bytes written are
// meaningless and must not be used as a key.
//
// Cost: nothing is allocated beyond the growth of *out, except for lists and
// maps nested more than 8 deep, maps with more than 16 entries open at once,
// and a map whose entries arrive out of key order with more than 32 entries or
// 512 bytes (it is sorted in EndMap()), and non-ASCII text longer than 128
// code points under a normalisation. Normalising non-ASCII text goes through
// utf8proc and costs about half a microsecond for a short string; ASCII never
// does. The writer object is about 700 bytes: keep it on the stack.
class ArgWriter {
 public:
  // Appends to *out, which must outlive the writer. Existing content is kept.
  explicit ArgWriter(std::string* out, TextNormalization normalization = TextNormalization::kNone)
      : out_(out), normalization_(normalization) {}
  ArgWriter(const ArgWriter&) = delete;
  ArgWriter& operator=(const ArgWriter&) = delete;

  TextNormalization normalization() const { return normalization_; }

  void Null() {
    if (!frames_.empty()) EnterChild();
    out_->push_back(static_cast<char>(ArgTag::kNull));
  }
  void Bool(bool value) {
    if (!frames_.empty()) EnterChild();
    out_->push_back(static_cast<char>(value ? ArgTag::kTrue : ArgTag::kFalse));
  }
  void Int(int64_t value) {
    if (!frames_.empty()) EnterChild();
    AppendHeader(ArgTag::kInt,
                 (static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63));
  }
  // Values up to INT64_MAX encode exactly as Int().
  void UInt(uint64_t value) {
    if (value <= static_cast<uint64_t>(INT64_MAX)) return Int(static_cast<int64_t>(value));
    if (!frames_.empty()) EnterChild();
    AppendHeader(ArgTag::kBigUInt, value);
  }
  // An integral value in int64 or uint64 range encodes as Int() or UInt() of
  // that value (so -0.0 is 0); every NaN encodes alike; +inf and -inf differ.
  void Double(double value);
  // Text, normalised per normalization(). Under a normalisation, bytes that
  // are not valid UTF-8 are kept as they are under a tag of their own.
  void String(std::string_view text) {
    if (normalization_ != TextNormalization::kNone) return NormalizedString(text);
    if (!frames_.empty()) EnterChild();
    AppendTagged(ArgTag::kText, text);
  }

  // Opaque bytes (never normalised), distinct from any text with the same
  // bytes: for callers whose arguments may be byte strings (Python bytes).
  void Binary(std::string_view bytes) {
    if (!frames_.empty()) EnterChild();
    AppendTagged(ArgTag::kBinary, bytes);
  }

  // Opens a list of exactly `count` values.
  void BeginList(size_t count);
  void EndList();
  // Opens a map of exactly `count` entries.
  void BeginMap(size_t count);
  // Starts a map entry; the next value written is its value. The key is
  // written as given (not normalised). Keys must be unique within a map.
  void Key(std::string_view key);
  void EndMap();

  // False once an error has been recorded.
  bool ok() const { return error_ == nullptr; }
  // Checks that every list and map was closed and returns the first error:
  // InvalidArgument (guard kCodec) for duplicate map keys, Internal for misuse
  // of the Begin/Key/End calls, ResourceExhausted for a string too large to
  // normalise. OK when the bytes may be used as a key.
  Status Finish() {
    if (frames_.empty() && error_ == nullptr) return Status();
    return FinishWithError();
  }

 private:
  struct Frame {
    size_t declared;    // Values (list) or entries (map) announced.
    size_t seen;        // Values or keys written so far.
    size_t first_mark;  // Map: index in marks_ of this map's first entry.
    bool is_map;
    bool awaiting_value;  // Map: Key() was written, its value not yet.
  };
  // Where one map entry starts in *out_, and where its key bytes are.
  struct Mark {
    size_t entry_begin;
    size_t key_begin;
    size_t key_size;
  };

  // Accounts for a value written inside the innermost open list or map.
  void EnterChild();
  void NormalizedString(std::string_view text);
  // Puts the current map's entries in key order; flags duplicate keys.
  void SortEntries(size_t first_mark);
  Status FinishWithError();
  // Records the first error. `message` must be a string literal.
  void Fail(StatusCode code, const char* message);

  // Appends `number` as a varint. The one-byte case uses push_back, which is
  // inline and stores straight into the string (a local buffer handed to
  // append() costs a store-forwarding stall when read back at once).
  void AppendVarint(uint64_t number) {
    if (number < 0x80) {
      out_->push_back(static_cast<char>(number));
      return;
    }
    char buf[10];
    size_t n = 0;
    for (; number >= 0x80; number >>= 7) buf[n++] = static_cast<char>(number | 0x80);
    buf[n++] = static_cast<char>(number);
    out_->append(buf, n);
  }

  // Appends a tag byte followed by `number` as a varint.
  void AppendHeader(ArgTag tag, uint64_t number) {
    out_->push_back(static_cast<char>(tag));
    AppendVarint(number);
  }

  // Appends a tag, the size of `bytes` as a varint and the bytes.
  void AppendTagged(ArgTag tag, std::string_view bytes) {
    AppendHeader(tag, bytes.size());
    out_->append(bytes.data(), bytes.size());
  }

  std::string* const out_;
  const TextNormalization normalization_;
  args_internal::SmallStack<Frame, 8> frames_;
  args_internal::SmallStack<Mark, 16> marks_;
  // The first error, kept as a code and a static message so that a writer
  // that never fails never touches a Status.
  StatusCode error_code_ = StatusCode::kOk;
  const char* error_ = nullptr;
};

// How a C++ type is encoded. Specialised below for the standard types; a user
// type gets an encoding by declaring, in its own namespace,
//
//   void ToolopsEncode(toolops::ArgWriter& writer, const MyType& value);
//
// which is found by argument-dependent lookup. It should write exactly one
// value (wrap several fields in a list or a map). Enumerations without such a
// hook encode as their underlying integer. Any other type fails to compile.
template <typename T>
struct ArgCodec;

// Encodes `value` as one value, by ArgCodec of its type without cv and ref.
template <typename T>
void EncodeArg(ArgWriter& writer, const T& value) {
  ArgCodec<std::remove_cvref_t<T>>::Encode(writer, value);
}

// Encodes each argument as one top-level value, in order.
template <typename... Ts>
void EncodeArgs(ArgWriter& writer, const Ts&... values) {
  (EncodeArg(writer, values), ...);
}

namespace args_internal {

// Blocks ordinary lookup from finding anything but ADL candidates.
void ToolopsEncode() = delete;

template <typename T>
concept HasEncodeHook = requires(ArgWriter& writer, const T& value) {
  ToolopsEncode(writer, value);
};

template <typename T>
inline constexpr bool kNoEncoding = false;

template <typename T>
inline constexpr bool kIsOptional = false;
template <typename T>
inline constexpr bool kIsOptional<std::optional<T>> = true;

template <typename K>
concept StringLikeKey = std::is_convertible_v<const K&, std::string_view>;

template <typename Map>
void EncodeMap(ArgWriter& writer, const Map& map) {
  static_assert(StringLikeKey<std::remove_cvref_t<decltype(std::begin(map)->first)>>,
                "toolops: only maps with string keys (std::string, std::string_view, const "
                "char*) have an argument encoding");
  writer.BeginMap(map.size());
  for (const auto& [key, value] : map) {
    writer.Key(std::string_view(key));
    EncodeArg(writer, value);
  }
  writer.EndMap();
}

template <typename Range>
void EncodeList(ArgWriter& writer, const Range& range, size_t size) {
  writer.BeginList(size);
  // ArgCodec of the element type, so that proxies (std::vector<bool>) convert.
  using Element = std::remove_cvref_t<decltype(*std::begin(range))>;
  using Target = std::conditional_t<std::is_same_v<Range, std::vector<bool>>, bool, Element>;
  for (const auto& element : range) ArgCodec<Target>::Encode(writer, element);
  writer.EndList();
}

}  // namespace args_internal

// User types (through the ToolopsEncode hook) and enumerations.
template <typename T>
struct ArgCodec {
  static void Encode(ArgWriter& writer, const T& value) {
    if constexpr (args_internal::HasEncodeHook<T>) {
      ToolopsEncode(writer, value);
    } else if constexpr (std::is_enum_v<T>) {
      EncodeArg(writer, static_cast<std::underlying_type_t<T>>(value));
    } else {
      static_assert(args_internal::kNoEncoding<T>,
                    "toolops: this type has no argument encoding. Declare "
                    "`void ToolopsEncode(toolops::ArgWriter&, const T&)` in the namespace of T "
                    "(found by argument-dependent lookup), or specialise toolops::ArgCodec<T>.");
    }
  }
};

template <>
struct ArgCodec<bool> {
  static void Encode(ArgWriter& writer, const bool& value) { writer.Bool(value); }
};

// Every integral type, char types included: a char encodes as its number.
template <typename T>
requires std::is_integral_v<T>
struct ArgCodec<T> {
  static void Encode(ArgWriter& writer, const T& value) {
    if constexpr (std::is_signed_v<T>) {
      writer.Int(static_cast<int64_t>(value));
    } else {
      writer.UInt(static_cast<uint64_t>(value));
    }
  }
};

// float widens exactly, so 0.5f == 0.5 but 0.1f != 0.1. long double has no
// encoding (it would have to round).
template <>
struct ArgCodec<float> {
  static void Encode(ArgWriter& writer, const float& value) { writer.Double(value); }
};
template <>
struct ArgCodec<double> {
  static void Encode(ArgWriter& writer, const double& value) { writer.Double(value); }
};

template <>
struct ArgCodec<std::nullptr_t> {
  static void Encode(ArgWriter& writer, const std::nullptr_t&) { writer.Null(); }
};

template <>
struct ArgCodec<std::string> {
  static void Encode(ArgWriter& writer, const std::string& value) { writer.String(value); }
};
template <>
struct ArgCodec<std::string_view> {
  static void Encode(ArgWriter& writer, const std::string_view& value) { writer.String(value); }
};
// A null pointer encodes as null.
template <>
struct ArgCodec<const char*> {
  static void Encode(ArgWriter& writer, const char* const& value) {
    if (value == nullptr) return writer.Null();
    writer.String(value);
  }
};
template <>
struct ArgCodec<char*> {
  static void Encode(ArgWriter& writer, char* const& value) {
    ArgCodec<const char*>::Encode(writer, value);
  }
};
// A char array holds text up to its first NUL (or all N chars if it has
// none), like the const char* it decays to; a literal "ab" is the text "ab".
template <size_t N>
struct ArgCodec<char[N]> {
  static void Encode(ArgWriter& writer, const char (&value)[N]) {
    const void* nul = std::memchr(value, '\0', N);
    writer.String(std::string_view(
        value, nul ? static_cast<size_t>(static_cast<const char*>(nul) - value) : N));
  }
};

// Other arrays are lists.
template <typename T, size_t N>
struct ArgCodec<T[N]> {
  static void Encode(ArgWriter& writer, const T (&value)[N]) {
    args_internal::EncodeList(writer, value, N);
  }
};

// An empty optional is null, so it cannot be told from a null value;
// std::optional<std::optional<T>> is refused because its two empty states
// would share one encoding.
template <typename T>
struct ArgCodec<std::optional<T>> {
  static_assert(!args_internal::kIsOptional<std::remove_cv_t<T>>,
                "toolops: std::optional<std::optional<T>> has no argument encoding (both of "
                "its empty states would encode as null)");
  static void Encode(ArgWriter& writer, const std::optional<T>& value) {
    if (!value) return writer.Null();
    EncodeArg(writer, *value);
  }
};

template <typename T, typename A>
struct ArgCodec<std::vector<T, A>> {
  static void Encode(ArgWriter& writer, const std::vector<T, A>& value) {
    args_internal::EncodeList(writer, value, value.size());
  }
};
template <typename T, size_t N>
struct ArgCodec<std::array<T, N>> {
  static void Encode(ArgWriter& writer, const std::array<T, N>& value) {
    args_internal::EncodeList(writer, value, N);
  }
};
template <typename T, typename A>
struct ArgCodec<std::list<T, A>> {
  static void Encode(ArgWriter& writer, const std::list<T, A>& value) {
    args_internal::EncodeList(writer, value, value.size());
  }
};

// A pair or a tuple is a list of its members.
template <typename A, typename B>
struct ArgCodec<std::pair<A, B>> {
  static void Encode(ArgWriter& writer, const std::pair<A, B>& value) {
    writer.BeginList(2);
    EncodeArg(writer, value.first);
    EncodeArg(writer, value.second);
    writer.EndList();
  }
};
template <typename... Ts>
struct ArgCodec<std::tuple<Ts...>> {
  static void Encode(ArgWriter& writer, const std::tuple<Ts...>& value) {
    writer.BeginList(sizeof...(Ts));
    std::apply([&writer](const auto&... member) { (EncodeArg(writer, member), ...); }, value);
    writer.EndList();
  }
};

// Maps with string-like keys; the encoding does not depend on entry order.
template <typename K, typename V, typename C, typename A>
struct ArgCodec<std::map<K, V, C, A>> {
  static void Encode(ArgWriter& writer, const std::map<K, V, C, A>& value) {
    args_internal::EncodeMap(writer, value);
  }
};
template <typename K, typename V, typename H, typename E, typename A>
struct ArgCodec<std::unordered_map<K, V, H, E, A>> {
  static void Encode(ArgWriter& writer, const std::unordered_map<K, V, H, E, A>& value) {
    args_internal::EncodeMap(writer, value);
  }
};

// A dynamic value: null, bool, integer, double, string, list or map with
// string keys. Cheap to build from C++ values:
//
//   Value args = Value::Map{{"city", "Paris"}, {"days", 3},
//                           {"fields", Value::List{"temp", "wind"}}};
//
// Integers are held as int64 when they fit, otherwise as uint64; a double
// stays a double (Value(1.0).kind() is kDouble) but compares and encodes
// equal to the integer 1. A map keeps its entries sorted by key bytes with
// unique keys.
class Value {
 public:
  enum class Kind : uint8_t { kNull, kBool, kInt, kUInt, kDouble, kString, kList, kMap };
  using List = std::vector<Value>;
  using Map = std::vector<std::pair<std::string, Value>>;

  // Null.
  Value() = default;
  Value(std::nullptr_t) {}  // NOLINT: implicit by design, as for every constructor here
  Value(bool value) : rep_(std::in_place_type<bool>, value) {}  // NOLINT
  // Any integral type but bool; a char is its number.
  template <typename T>
  requires(std::is_integral_v<T> && !std::is_same_v<T, bool>) Value(T value) {  // NOLINT
    if constexpr (std::is_signed_v<T>) {
      rep_.template emplace<int64_t>(static_cast<int64_t>(value));
    } else if (static_cast<uint64_t>(value) <= static_cast<uint64_t>(INT64_MAX)) {
      rep_.template emplace<int64_t>(static_cast<int64_t>(value));
    } else {
      rep_.template emplace<uint64_t>(static_cast<uint64_t>(value));
    }
  }
  Value(double value) : rep_(std::in_place_type<double>, value) {}                       // NOLINT
  Value(float value) : rep_(std::in_place_type<double>, value) {}                        // NOLINT
  Value(std::string value) : rep_(std::in_place_type<std::string>, std::move(value)) {}  // NOLINT
  Value(std::string_view value) : rep_(std::in_place_type<std::string>, value) {}        // NOLINT
  // A null pointer gives null.
  Value(const char* value) {  // NOLINT
    if (value != nullptr) rep_.emplace<std::string>(value);
  }
  Value(List items) : rep_(std::in_place_type<List>, std::move(items)) {}  // NOLINT
  // Sorts the entries by key; when a key repeats, the last entry wins.
  Value(Map entries);  // NOLINT

  Kind kind() const { return static_cast<Kind>(rep_.index()); }
  bool is_null() const { return kind() == Kind::kNull; }

  // Accessors. REQUIRES: kind() is the kind named.
  bool bool_value() const { return Get<bool>(); }
  int64_t int_value() const { return Get<int64_t>(); }
  uint64_t uint_value() const { return Get<uint64_t>(); }
  double double_value() const { return Get<double>(); }
  const std::string& string_value() const { return Get<std::string>(); }
  const List& list() const { return Get<List>(); }
  const Map& map() const { return Get<Map>(); }

  // The value under `key`, or nullptr. REQUIRES: kind() == kMap.
  const Value* Find(std::string_view key) const;
  // Adds `item` at the end. REQUIRES: kind() == kList.
  void Append(Value item);
  // Inserts or replaces the entry for `key`. REQUIRES: kind() == kMap.
  void Set(std::string key, Value value);

  // Writes this value as one value; the same bytes as the equivalent C++
  // value written through EncodeArg.
  void Encode(ArgWriter& writer) const;

  // Compact JSON, for logs and debugging: strings escaped, invalid UTF-8
  // replaced by U+FFFD, map keys in encoding order, an integral double
  // written with ".0". NaN and the infinities, which JSON lacks, are written
  // as the strings "NaN", "Infinity" and "-Infinity".
  std::string ToJson() const;

  // Equality as a cache key sees it, before text normalisation: numbers by
  // their value (1 == 1.0, -0.0 == 0, every NaN equals every NaN), strings by
  // bytes, lists in order, maps as sets of entries.
  friend bool operator==(const Value& a, const Value& b);

 private:
  template <typename T>
  const T& Get() const {
    const T* value = std::get_if<T>(&rep_);
    // Reading the wrong kind is a caller bug (see REQUIRES above): stop at
    // once rather than read through a null pointer.
    if (value == nullptr) std::abort();
    return *value;
  }

  // The alternatives are in Kind order.
  std::variant<std::monostate, bool, int64_t, uint64_t, double, std::string, List, Map> rep_;
};

template <>
struct ArgCodec<Value> {
  static void Encode(ArgWriter& writer, const Value& value) { value.Encode(writer); }
};
// Value::Map is a vector of pairs; it encodes as the map it stands for (a
// repeated key is an error here, as the Value constructor is not involved).
template <>
struct ArgCodec<Value::Map> {
  static void Encode(ArgWriter& writer, const Value::Map& value) {
    args_internal::EncodeMap(writer, value);
  }
};

}  // namespace toolops

#endif  // TOOLOPS_ARGS_H_
