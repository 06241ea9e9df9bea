// src/engine/args_test.cc

#include "toolops/args.h"

#include <gtest/gtest.h>
#include <utf8proc.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <list>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace args_test_user {

// A user type that gets its encoding through the ADL hook.
struct Point {
  int x;
  int y;
};

void ToolopsEncode(toolops::ArgWriter& writer, const Point& point) {
  writer.BeginList(2);
  writer.Int(point.x);
  writer.Int(point.y);
  writer.EndList();
}

enum class Units : uint8_t { kMetric = 1, kImperial = 2 };

}  // namespace args_test_user

namespace toolops {
namespace {

using args_test_user::Point;
using args_test_user::Units;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// The encoding of `values` as top-level values. Fails the test if the writer
// reports an error.
template <typename... Ts>
std::string EncodeWith(TextNormalization normalization, const Ts&... values) {
  std::string out;
  ArgWriter writer(&out, normalization);
  EncodeArgs(writer, values...);
  const Status status = writer.Finish();
  EXPECT_TRUE(status.ok()) << status.ToString();
  return out;
}

template <typename... Ts>
std::string Encode(const Ts&... values) {
  return EncodeWith(TextNormalization::kNone, values...);
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

double NaNWithPayload(uint64_t payload, bool negative) {
  uint64_t bits = 0x7ff0000000000000ull | (payload & 0x000fffffffffffffull);
  if (negative) bits |= 0x8000000000000000ull;
  return std::bit_cast<double>(bits);
}

// ---------------------------------------------------------------------------
// A decoder for the documented format, written from the table in args.h. It
// accepts only canonical input (shortest varints, sorted unique map keys), so
// a successful round trip shows that the bytes determine the value.

std::optional<uint64_t> ReadVarint(std::string_view in, size_t* pos) {
  uint64_t value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*pos >= in.size()) return std::nullopt;
    const auto byte = static_cast<unsigned char>(in[(*pos)++]);
    value |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      if (byte == 0 && shift > 0) return std::nullopt;  // Not the shortest form.
      return value;
    }
  }
  return std::nullopt;
}

std::optional<std::string> ReadBytes(std::string_view in, size_t* pos) {
  const std::optional<uint64_t> size = ReadVarint(in, pos);
  if (!size || *size > in.size() - *pos) return std::nullopt;
  std::string bytes(in.substr(*pos, *size));
  *pos += *size;
  return bytes;
}

std::optional<Value> Decode(std::string_view in, size_t* pos) {
  if (*pos >= in.size()) return std::nullopt;
  const auto tag = static_cast<ArgTag>(in[(*pos)++]);
  switch (tag) {
    case ArgTag::kNull:
      return Value();
    case ArgTag::kFalse:
      return Value(false);
    case ArgTag::kTrue:
      return Value(true);
    case ArgTag::kInt: {
      const std::optional<uint64_t> zigzag = ReadVarint(in, pos);
      if (!zigzag) return std::nullopt;
      return Value(static_cast<int64_t>((*zigzag >> 1) ^ (0 - (*zigzag & 1))));
    }
    case ArgTag::kBigUInt: {
      const std::optional<uint64_t> value = ReadVarint(in, pos);
      if (!value || *value <= static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
      return Value(*value);
    }
    case ArgTag::kDouble: {
      if (in.size() - *pos < 8) return std::nullopt;
      uint64_t bits = 0;
      for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<unsigned char>(in[(*pos)++]);
      return Value(std::bit_cast<double>(bits));
    }
    case ArgTag::kText:
    case ArgTag::kInvalidText: {
      std::optional<std::string> text = ReadBytes(in, pos);
      if (!text) return std::nullopt;
      return Value(std::move(*text));
    }
    case ArgTag::kList: {
      const std::optional<uint64_t> count = ReadVarint(in, pos);
      if (!count) return std::nullopt;
      Value list = Value::List{};
      for (uint64_t i = 0; i < *count; ++i) {
        std::optional<Value> item = Decode(in, pos);
        if (!item) return std::nullopt;
        list.Append(std::move(*item));
      }
      return list;
    }
    case ArgTag::kMap: {
      const std::optional<uint64_t> count = ReadVarint(in, pos);
      if (!count) return std::nullopt;
      Value map = Value::Map{};
      std::optional<std::string> previous;
      for (uint64_t i = 0; i < *count; ++i) {
        std::optional<std::string> key = ReadBytes(in, pos);
        if (!key || (previous && !(*previous < *key))) return std::nullopt;
        std::optional<Value> item = Decode(in, pos);
        if (!item) return std::nullopt;
        previous = key;
        map.Set(std::move(*key), std::move(*item));
      }
      return map;
    }
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Structural equality written independently of the library: numbers by exact
// mathematical value (all NaNs alike), maps as sets of entries.

struct ExactNumber {
  bool is_nan = false;
  bool is_integer = false;
  __int128 integer = 0;
  double other = 0;
};

ExactNumber ExactOf(const Value& value) {
  ExactNumber n;
  if (value.kind() == Value::Kind::kInt) {
    n.is_integer = true;
    n.integer = value.int_value();
  } else if (value.kind() == Value::Kind::kUInt) {
    n.is_integer = true;
    n.integer = value.uint_value();
  } else {
    const double d = value.double_value();
    if (std::isnan(d)) {
      n.is_nan = true;
    } else if (std::isfinite(d) && std::trunc(d) == d && std::fabs(d) < 0x1p100) {
      n.is_integer = true;
      n.integer = static_cast<__int128>(d);
    } else {
      n.other = d;
    }
  }
  return n;
}

bool IsNumber(const Value& value) {
  return value.kind() == Value::Kind::kInt || value.kind() == Value::Kind::kUInt ||
         value.kind() == Value::Kind::kDouble;
}

bool SameArgument(const Value& a, const Value& b) {
  if (IsNumber(a) && IsNumber(b)) {
    const ExactNumber x = ExactOf(a);
    const ExactNumber y = ExactOf(b);
    if (x.is_nan || y.is_nan) return x.is_nan && y.is_nan;
    if (x.is_integer || y.is_integer) {
      return x.is_integer && y.is_integer && x.integer == y.integer;
    }
    return x.other == y.other;
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kNull:
      return true;
    case Value::Kind::kBool:
      return a.bool_value() == b.bool_value();
    case Value::Kind::kString:
      return a.string_value() == b.string_value();
    case Value::Kind::kList:
      if (a.list().size() != b.list().size()) return false;
      for (size_t i = 0; i < a.list().size(); ++i) {
        if (!SameArgument(a.list()[i], b.list()[i])) return false;
      }
      return true;
    case Value::Kind::kMap:
      if (a.map().size() != b.map().size()) return false;
      for (const auto& [key, item] : a.map()) {
        const Value* other = b.Find(key);
        if (other == nullptr || !SameArgument(item, *other)) return false;
      }
      return true;
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------

TEST(ArgWriterTest, BytesMatchTheDocumentedFormat) {
  struct Case {
    const char* name;
    std::string bytes;
    const char* hex;
  };
  const Case cases[] = {
      {"null", Encode(nullptr), "00"},
      {"false", Encode(false), "01"},
      {"true", Encode(true), "02"},
      {"zero", Encode(0), "0300"},
      {"one", Encode(1), "0302"},
      {"minus one", Encode(-1), "0301"},
      {"two-byte varint", Encode(64), "038001"},
      {"int64 min", Encode(INT64_MIN), "03ffffffffffffffffff01"},
      {"big unsigned", Encode(uint64_t{1} << 63), "0480808080808080808001"},
      {"half", Encode(0.5), "053fe0000000000000"},
      {"NaN", Encode(kNaN), "057ff8000000000000"},
      {"minus infinity", Encode(-kInf), "05fff0000000000000"},
      {"text", Encode("ab"), "06026162"},
      {"empty text", Encode(""), "0600"},
      {"list", Encode(std::tuple(1, "a")), "08020302060161"},
      {"empty list", Encode(std::vector<int>{}), "0800"},
      {"map, sorted by key", Encode(std::unordered_map<std::string, int>{{"b", 1}, {"a", -1}}),
       "09020161030101620302"},
      {"invalid text", EncodeWith(TextNormalization::kNfc, "\xff"), "0701ff"},
      {"two values", Encode(true, false), "0201"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(Hex(c.bytes), c.hex);
  }
}

TEST(ArgWriterTest, EqualCallsShareEncoding) {
  using Strings = std::map<std::string, int>;
  const auto kNfc = TextNormalization::kNfc;
  const auto kNfkc = TextNormalization::kNfkc;
  const auto kFold = TextNormalization::kNfkcCasefold;
  char buffer[16] = "paris";
  const char unterminated[2] = {'h', 'i'};
  const int numbers[2] = {1, 2};
  struct Case {
    const char* name;
    std::string a;
    std::string b;
  };
  const Case cases[] = {
      {"1 and 1.0", Encode(1), Encode(1.0)},
      {"-0.0 and 0", Encode(-0.0), Encode(0)},
      {"0.0 and -0.0", Encode(0.0), Encode(-0.0)},
      {"-3 and -3.0", Encode(-3), Encode(-3.0)},
      {"NaN and -NaN", Encode(kNaN), Encode(-kNaN)},
      {"NaN and a NaN with a payload", Encode(kNaN), Encode(NaNWithPayload(12345, true))},
      {"NaN and float NaN", Encode(kNaN), Encode(std::numeric_limits<float>::quiet_NaN())},
      {"1.5f and 1.5", Encode(1.5f), Encode(1.5)},
      {"unsigned 5 and 5", Encode(5u), Encode(int64_t{5})},
      {"uint8 and int64", Encode(uint8_t{200}), Encode(int64_t{200})},
      {"2^63 as double and as uint64", Encode(0x1p63), Encode(uint64_t{1} << 63)},
      {"-2^63 as double and as int64", Encode(-0x1p63), Encode(INT64_MIN)},
      {"2^53 as double and as int", Encode(0x1p53), Encode(int64_t{1} << 53)},
      {"big double and uint64", Encode(18446744073709549568.0),
       Encode(uint64_t{18446744073709549568u})},
      {"literal and std::string", Encode("paris"), Encode(std::string("paris"))},
      {"literal and string_view", Encode("paris"), Encode(std::string_view("paris"))},
      {"char buffer and literal", Encode(buffer), Encode("paris")},
      {"unterminated char array", Encode(unterminated), Encode("hi")},
      {"int array and vector", Encode(numbers), Encode(std::vector<int>{1, 2})},
      {"null const char* and null", Encode(static_cast<const char*>(nullptr)), Encode(nullptr)},
      {"nullopt and null", Encode(std::optional<int>()), Encode(nullptr)},
      {"optional and its value", Encode(std::optional<int>(7)), Encode(7)},
      {"pair, tuple, vector, array, list", Encode(std::pair(1, 2)), Encode(std::tuple(1, 2))},
      {"vector and array", Encode(std::vector<int>{1, 2}), Encode(std::array<int, 2>{1, 2})},
      {"list and vector", Encode(std::list<double>{1.0, 2.0}), Encode(std::vector<int>{1, 2})},
      {"vector<bool> and tuple", Encode(std::vector<bool>{true, false}),
       Encode(std::tuple(true, false))},
      {"char is its number", Encode('a'), Encode(97)},
      {"map order", Encode(Strings{{"b", 2}, {"a", 1}}),
       Encode(std::unordered_map<std::string_view, double>{{"a", 1.0}, {"b", 2.0}})},
      {"map key types", Encode(std::map<std::string_view, int>{{"k", 1}}),
       Encode(std::map<const char*, int>{{"k", 1}})},
      {"nested maps in lists", Encode(std::vector<Strings>{{{"y", 1}, {"x", 2}}}),
       Encode(std::tuple(std::unordered_map<std::string, int>{{"x", 2}, {"y", 1}}))},
      {"NFC composed and decomposed", EncodeWith(kNfc, "caf\xC3\xA9"),
       EncodeWith(kNfc, "cafe\xCC\x81")},
      {"NFC Kelvin sign is K", EncodeWith(kNfc, "\xE2\x84\xAA"), EncodeWith(kNfc, "K")},
      {"NFKC full-width", EncodeWith(kNfkc, "\xEF\xBC\xA1\xEF\xBC\xA2\xEF\xBC\xA3\xEF\xBC\x91"),
       EncodeWith(kNfkc, "ABC1")},
      {"casefold ASCII", EncodeWith(kFold, "Paris"), EncodeWith(kFold, "PARIS")},
      {"casefold non-ASCII", EncodeWith(kFold, "\xC3\x89T\xC3\x89"),
       EncodeWith(kFold, "e\xCC\x81t\xC3\xA9")},
      {"casefold sharp s",
       EncodeWith(kFold,
                  "Stra\xC3\x9F"
                  "e"),
       EncodeWith(kFold, "STRASSE")},
      {"normalised strings inside maps",
       EncodeWith(kFold, Strings{{"q", 1}}, std::vector<std::string>{"ABC"}),
       EncodeWith(kFold, Strings{{"q", 1}}, std::vector<std::string>{"abc"})},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(Hex(c.a), Hex(c.b));
  }
}

TEST(ArgWriterTest, DifferentCallsNeverShareEncoding) {
  using Strings = std::map<std::string, int>;
  using Ints = std::vector<int>;
  using Nested = std::vector<Ints>;
  const auto kNfc = TextNormalization::kNfc;
  struct Case {
    const char* name;
    std::string a;
    std::string b;
  };
  const Case cases[] = {
      {"(a, bc) and (ab, c)", Encode("a", "bc"), Encode("ab", "c")},
      {"(\"\", a) and (a, \"\")", Encode("", "a"), Encode("a", "")},
      {"empty string and nothing", Encode(""), Encode()},
      {"empty string and null", Encode(""), Encode(nullptr)},
      {"two empty strings and one", Encode("", ""), Encode("")},
      {"string holding an encoding and two strings",
       Encode(std::string("a\x06\x01"
                          "b")),
       Encode("a", "b")},
      {"zero byte and empty", Encode(std::string("\0", 1)), Encode("")},
      {"zero inside", Encode(std::string("a\0b", 3)), Encode("a", "b")},
      {"tag bytes as text", Encode(std::string("\x03\x02", 2)), Encode(1)},
      {"int 1 and string 1", Encode(1), Encode("1")},
      {"true and 1", Encode(true), Encode(1)},
      {"false and 0", Encode(false), Encode(0)},
      {"false and null", Encode(false), Encode(nullptr)},
      {"null and 0", Encode(nullptr), Encode(0)},
      {"[1] and 1", Encode(Ints{1}), Encode(1)},
      {"[] and null", Encode(Ints{}), Encode(nullptr)},
      {"[] and {}", Encode(Ints{}), Encode(Strings{})},
      {"[[]] and []", Encode(Nested{{}}), Encode(Ints{})},
      {"[[], []] and [[]]", Encode(Nested{{}, {}}), Encode(Nested{{}})},
      {"[[],[]] and [[[]]]", Encode(Nested{{}, {}}), Encode(std::vector<Nested>{{{}}})},
      {"[[1,2],[3]] and [[1],[2,3]]", Encode(Nested{{1, 2}, {3}}), Encode(Nested{{1}, {2, 3}})},
      {"[1,2] and (1, 2)", Encode(Ints{1, 2}), Encode(1, 2)},
      {"[1],[2] and [1,2]", Encode(Ints{1}, Ints{2}), Encode(Ints{1, 2})},
      {"[\"a\",\"b\"] and [\"ab\"]", Encode(std::vector<std::string>{"a", "b"}),
       Encode(std::vector<std::string>{"ab"})},
      {"{a:1} and [a,1]", Encode(Strings{{"a", 1}}), Encode(std::tuple("a", 1))},
      {"{a:1,b:2} and {a:2,b:1}", Encode(Strings{{"a", 1}, {"b", 2}}),
       Encode(Strings{{"a", 2}, {"b", 1}})},
      {"{a:b} and {b:a}", Encode(std::map<std::string, std::string>{{"a", "b"}}),
       Encode(std::map<std::string, std::string>{{"b", "a"}})},
      {"{ab:1} and {a:1}", Encode(Strings{{"ab", 1}}), Encode(Strings{{"a", 1}})},
      {"{a:[]} and {a:null}", Encode(std::map<std::string, Ints>{{"a", {}}}),
       Encode(std::map<std::string, std::nullptr_t>{{"a", nullptr}})},
      {"{} and null", Encode(Strings{}), Encode(nullptr)},
      {"0 and 0.5", Encode(0), Encode(0.5)},
      {"0.1f and 0.1", Encode(0.1f), Encode(0.1)},
      {"inf and -inf", Encode(kInf), Encode(-kInf)},
      {"NaN and inf", Encode(kNaN), Encode(kInf)},
      {"-1 and uint64 max", Encode(-1), Encode(UINT64_MAX)},
      {"int64 min and 2^63", Encode(INT64_MIN), Encode(uint64_t{1} << 63)},
      {"int64 max and uint64 max", Encode(INT64_MAX), Encode(UINT64_MAX)},
      {"2^53+1 and 2^53 as double", Encode((int64_t{1} << 53) + 1), Encode(0x1p53)},
      {"2^64 as double and uint64 max", Encode(0x1p64), Encode(UINT64_MAX)},
      {"63 and 64 (varint boundary)", Encode(63), Encode(64)},
      {"long strings differing in length", Encode(std::string(200, 'a')),
       Encode(std::string(201, 'a'))},
      {"long string split", Encode(std::string(200, 'a'), std::string(100, 'a')),
       Encode(std::string(100, 'a'), std::string(200, 'a'))},
      {"NFC keeps case", EncodeWith(kNfc, "Paris"), EncodeWith(kNfc, "PARIS")},
      {"NFC keeps full-width", EncodeWith(kNfc, "\xEF\xBC\xA1"), EncodeWith(kNfc, "A")},
      {"kNone keeps decomposition", Encode("caf\xC3\xA9"), Encode("cafe\xCC\x81")},
      {"map keys are not casefolded",
       EncodeWith(TextNormalization::kNfkcCasefold, Strings{{"ID", 1}}),
       EncodeWith(TextNormalization::kNfkcCasefold, Strings{{"id", 1}})},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_NE(Hex(c.a), Hex(c.b));
  }
}

TEST(ArgWriterTest, BinaryNeverSharesAnEncodingWithTextOfTheSameBytes) {
  std::string text, binary;
  ArgWriter t(&text);
  t.String("abc");
  ASSERT_TRUE(t.Finish().ok());
  ArgWriter b(&binary);
  b.Binary("abc");
  ASSERT_TRUE(b.Finish().ok());
  EXPECT_NE(text, binary);
  EXPECT_EQ(binary, std::string("\x0a\x03" "abc"));
}

TEST(ArgWriterTest, LongStringsUseMultiByteLengths) {
  const std::string text(300, 'x');
  const std::string bytes = Encode(text);
  ASSERT_EQ(bytes.size(), 1u + 2u + 300u);
  EXPECT_EQ(Hex(bytes.substr(0, 3)), "06ac02");
}

TEST(ArgWriterTest, AppendsAfterExistingContentAndSortsNestedMaps) {
  std::string out = "prefix";
  ArgWriter writer(&out);
  writer.BeginMap(2);
  writer.Key("z");
  writer.BeginMap(2);
  writer.Key("b");
  writer.Int(2);
  writer.Key("a");
  writer.Int(1);
  writer.EndMap();
  writer.Key("y");
  writer.String("v");
  writer.EndMap();
  ASSERT_TRUE(writer.Finish().ok());

  const std::string expected =
      "prefix" + Encode(Value::Map{{"y", "v"}, {"z", Value::Map{{"a", 1}, {"b", 2}}}});
  EXPECT_EQ(Hex(out), Hex(expected));
  EXPECT_EQ(
      Hex(out.substr(6)),
      Hex(Encode(std::map<std::string, Value>{{"z", Value::Map{{"b", 2}, {"a", 1}}}, {"y", "v"}})));
}

// Deep nesting, many open map entries and large unsorted maps go past the
// writer's inline buffers; the bytes must not change.
TEST(ArgWriterTest, LargeAndDeepValuesEncodeLikeSmallOnes) {
  std::map<std::string, std::string> sorted;
  std::unordered_map<std::string, std::string> unordered;
  for (int i = 0; i < 200; ++i) {
    const std::string key = "key" + std::to_string(i * 7919 % 1000);
    sorted[key] = std::string(static_cast<size_t>(i % 5), 'v');
    unordered[key] = sorted[key];
  }
  EXPECT_EQ(Hex(Encode(unordered)), Hex(Encode(sorted)));

  // Three levels of 12-entry maps, written in reverse key order: 36 entries
  // open at once at the deepest point.
  std::map<std::string, std::map<std::string, std::map<std::string, int>>> nested;
  for (int a = 0; a < 12; ++a) {
    for (int b = 0; b < 12; ++b) {
      for (int c = 0; c < 12; ++c) {
        nested["a" + std::to_string(a)]["b" + std::to_string(b)]["c" + std::to_string(c)] = c;
      }
    }
  }
  std::string reversed;
  ArgWriter writer(&reversed);
  writer.BeginMap(nested.size());
  for (auto a = nested.rbegin(); a != nested.rend(); ++a) {
    writer.Key(a->first);
    writer.BeginMap(a->second.size());
    for (auto b = a->second.rbegin(); b != a->second.rend(); ++b) {
      writer.Key(b->first);
      writer.BeginMap(b->second.size());
      for (auto c = b->second.rbegin(); c != b->second.rend(); ++c) {
        writer.Key(c->first);
        writer.Int(c->second);
      }
      writer.EndMap();
    }
    writer.EndMap();
  }
  writer.EndMap();
  ASSERT_TRUE(writer.Finish().ok());
  EXPECT_EQ(Hex(reversed), Hex(Encode(nested)));

  // Forty levels of single-element lists, then of single-entry maps.
  Value deep_list = 1;
  Value deep_map = 1;
  std::string expected_list;
  std::string expected_map;
  for (int i = 0; i < 40; ++i) {
    deep_list = Value::List{std::move(deep_list)};
    deep_map = Value::Map{{"k", std::move(deep_map)}};
    expected_list += "\x08\x01";
    expected_map += "\x09\x01\x01k";
  }
  EXPECT_EQ(Hex(Encode(deep_list)), Hex(expected_list + Encode(1)));
  EXPECT_EQ(Hex(Encode(deep_map)), Hex(expected_map + Encode(1)));
}

TEST(ArgWriterTest, MisuseIsReportedByFinish) {
  struct Case {
    const char* name;
    void (*write)(ArgWriter&);
    StatusCode code;
  };
  const Case cases[] = {
      {"duplicate map key",
       [](ArgWriter& w) {
         w.BeginMap(2);
         w.Key("a");
         w.Int(1);
         w.Key("a");
         w.Int(2);
         w.EndMap();
       },
       StatusCode::kInvalidArgument},
      {"list shorter than announced",
       [](ArgWriter& w) {
         w.BeginList(2);
         w.Int(1);
         w.EndList();
       },
       StatusCode::kInternal},
      {"list longer than announced",
       [](ArgWriter& w) {
         w.BeginList(1);
         w.Int(1);
         w.Int(2);
         w.EndList();
       },
       StatusCode::kInternal},
      {"map value without key",
       [](ArgWriter& w) {
         w.BeginMap(1);
         w.Int(1);
         w.EndMap();
       },
       StatusCode::kInternal},
      {"map key without value",
       [](ArgWriter& w) {
         w.BeginMap(1);
         w.Key("a");
         w.EndMap();
       },
       StatusCode::kInternal},
      {"key outside a map", [](ArgWriter& w) { w.Key("a"); }, StatusCode::kInternal},
      {"unclosed list", [](ArgWriter& w) { w.BeginList(0); }, StatusCode::kInternal},
      {"EndMap closing a list",
       [](ArgWriter& w) {
         w.BeginList(0);
         w.EndMap();
       },
       StatusCode::kInternal},
      {"EndList with nothing open", [](ArgWriter& w) { w.EndList(); }, StatusCode::kInternal},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::string out;
    ArgWriter writer(&out);
    c.write(writer);
    const Status status = writer.Finish();
    EXPECT_EQ(status.code(), c.code) << status.ToString();
    EXPECT_EQ(status.guard(), Guard::kCodec);
  }
}

TEST(NormalizeTextTest, AppliesTheRequestedForm) {
  using N = TextNormalization;
  struct Case {
    N normalization;
    std::string input;
    std::string expected;
  };
  const Case cases[] = {
      {N::kNone, "cafe\xCC\x81", "cafe\xCC\x81"},
      {N::kNone, "PARIS", "PARIS"},
      {N::kNone, "\xff\xfe", "\xff\xfe"},
      {N::kNfc, "cafe\xCC\x81", "caf\xC3\xA9"},
      {N::kNfc, "caf\xC3\xA9", "caf\xC3\xA9"},
      {N::kNfc, "PARIS", "PARIS"},
      {N::kNfc, "\xEF\xBC\xA1", "\xEF\xBC\xA1"},
      {N::kNfkc, "\xEF\xBC\xA1\xEF\xBC\xA2\xEF\xBC\xA3\xEF\xBC\x91", "ABC1"},
      {N::kNfkc, "\xEF\xAC\x81", "fi"},  // The "fi" ligature.
      {N::kNfkcCasefold, "PARIS", "paris"},
      {N::kNfkcCasefold, "Paris", "paris"},
      {N::kNfkcCasefold, "\xEF\xBC\xA1\xEF\xBC\xA2", "ab"},
      {N::kNfkcCasefold, "\xC3\x89T\xC3\x89", "\xC3\xA9t\xC3\xA9"},
      {N::kNfkcCasefold,
       "Stra\xC3\x9F"
       "e",
       "strasse"},
      {N::kNfkcCasefold, std::string("A\0B", 3), std::string("a\0b", 3)},
      {N::kNfc, std::string("e\0\xCC\x81", 4), std::string("e\0\xCC\x81", 4)},
      {N::kNfc, "\xff", "\xff"},
      {N::kNfkcCasefold, "", ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(Hex(c.input));
    EXPECT_EQ(Hex(NormalizeText(c.input, c.normalization)), Hex(c.expected));
  }
}

std::string ByUtf8procMap(std::string_view text, int options) {
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t size = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                             static_cast<utf8proc_ssize_t>(text.size()), &out,
                                             static_cast<utf8proc_option_t>(options));
  std::string result =
      size < 0 ? std::string(text)
               : std::string(reinterpret_cast<const char*>(out), static_cast<size_t>(size));
  std::free(out);
  return result;
}

std::string Repeat(std::string_view text, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += text;
  return out;
}

// NormalizeText follows utf8proc_map with the documented options, also for
// text whose code points overflow its stack buffer (some expand: U+FDFA
// becomes 18 code points under NFKC).
TEST(NormalizeTextTest, MatchesUtf8procMap) {
  const int kNfc = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
  const int kNfkc = kNfc | UTF8PROC_COMPAT;
  const int kFold = kNfkc | UTF8PROC_CASEFOLD;
  const std::string texts[] = {
      "cafe\xCC\x81",
      "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4",  // Hangul syllables.
      "\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB",  // The same as conjoining jamo.
      "\xEF\xB7\xBA",                          // U+FDFA.
      Repeat("cafe\xCC\x81 ", 60),
      Repeat("\xEF\xB7\xBA", 12),
      Repeat("\xC3\x89"
             "COLE \xEF\xAC\x81",
             40),
      Repeat("\xEF\xB7\xBA", 12) + "\xff",
      "\xCE\x91\xCC\x93\xCC\x81\xCD\x85",  // Alpha with three marks, reordered.
  };
  for (const std::string& text : texts) {
    SCOPED_TRACE(Hex(text));
    EXPECT_EQ(Hex(NormalizeText(text, TextNormalization::kNfc)), Hex(ByUtf8procMap(text, kNfc)));
    EXPECT_EQ(Hex(NormalizeText(text, TextNormalization::kNfkc)), Hex(ByUtf8procMap(text, kNfkc)));
    EXPECT_EQ(Hex(NormalizeText(text, TextNormalization::kNfkcCasefold)),
              Hex(ByUtf8procMap(text, kFold)));
  }
}

// The ASCII fast path must give what utf8proc gives. A non-ASCII suffix that
// interacts with no ASCII character sends the whole string through utf8proc.
TEST(NormalizeTextTest, AsciiFastPathAgreesWithUtf8proc) {
  const std::string suffix = "\xC3\xA9";  // U+00E9, the same in every form used here.
  for (TextNormalization n :
       {TextNormalization::kNfc, TextNormalization::kNfkc, TextNormalization::kNfkcCasefold}) {
    std::string all;
    for (int c = 0; c < 128; ++c) {
      const std::string one(1, static_cast<char>(c));
      all += one;
      SCOPED_TRACE(c);
      EXPECT_EQ(NormalizeText(one + suffix, n), NormalizeText(one, n) + suffix);
    }
    // Every start offset, so that each character sits in every lane of the
    // eight-byte steps; short and long strings take different writer paths.
    for (size_t shift = 0; shift < 8; ++shift) {
      for (size_t size : {size_t{7}, size_t{62}, size_t{63}, all.size() - shift}) {
        const std::string text = all.substr(shift, size);
        const std::string by_utf8proc = NormalizeText(text + suffix, n);
        const std::string expected = by_utf8proc.substr(0, by_utf8proc.size() - suffix.size());
        SCOPED_TRACE(Hex(text));
        EXPECT_EQ(NormalizeText(text, n), expected);
        EXPECT_EQ(Hex(EncodeWith(n, text)), Hex(Encode(expected)));
      }
    }
  }
}

TEST(ArgWriterTest, InvalidUtf8DoesNotCrashOrCollide) {
  const std::string invalid[] = {
      "\xff",              // Never valid.
      "\xC3",              // Truncated sequence.
      "\xC0\x80",          // Overlong NUL.
      "\xED\xA0\x80",      // A UTF-16 surrogate.
      "\xF4\x90\x80\x80",  // Above U+10FFFF.
      "a\xFF"
      "b",                // Valid text around a bad byte.
      "caf\xC3\xA9\x80",  // A stray continuation byte.
      "\xE2\x84",         // Kelvin sign, cut short.
  };
  // What the invalid strings might be mistaken for.
  const std::string valid[] = {
      "",
      "\xEF\xBF\xBD",
      std::string("\0", 1),
      "a",
      "ab",
      "a\xEF\xBF\xBD"
      "b",
      "caf\xC3\xA9",
      "K",
  };
  for (TextNormalization n : {TextNormalization::kNone, TextNormalization::kNfc,
                              TextNormalization::kNfkc, TextNormalization::kNfkcCasefold}) {
    SCOPED_TRACE(static_cast<int>(n));
    std::map<std::string, std::string> seen;  // Encoding to the input that made it.
    auto add = [&](const std::string& input) {
      const std::string bytes = EncodeWith(n, input);
      auto [it, inserted] = seen.emplace(bytes, input);
      EXPECT_TRUE(inserted) << Hex(input) << " collides with " << Hex(it->second);
    };
    for (const std::string& s : invalid) {
      add(s);
      // Raw bytes are kept as they are, and tagged apart under a normalisation.
      const std::string bytes = EncodeWith(n, s);
      EXPECT_EQ(bytes.substr(2), s);
      EXPECT_EQ(static_cast<ArgTag>(bytes[0]),
                n == TextNormalization::kNone ? ArgTag::kText : ArgTag::kInvalidText);
      EXPECT_EQ(NormalizeText(s, n), s);
    }
    for (const std::string& s : valid) add(s);
  }
}

TEST(ArgCodecTest, UserTypeThroughAdlHook) {
  EXPECT_EQ(Hex(Encode(Point{1, 2})), Hex(Encode(std::vector<int>{1, 2})));
  EXPECT_EQ(Hex(Encode(std::vector<Point>{{1, 2}, {3, 4}})),
            Hex(Encode(std::vector<std::vector<int>>{{1, 2}, {3, 4}})));
  EXPECT_EQ(Hex(Encode(std::optional<Point>())), Hex(Encode(nullptr)));
  EXPECT_EQ(Hex(Encode(std::map<std::string, Point>{{"from", {0, 0}}, {"to", {5, -5}}})),
            Hex(Encode(Value::Map{{"to", Value::List{5, -5}}, {"from", Value::List{0, 0}}})));
  EXPECT_NE(Encode(Point{1, 2}), Encode(Point{2, 1}));
  // Enumerations without a hook encode as their number.
  EXPECT_EQ(Hex(Encode(Units::kImperial)), Hex(Encode(2)));
}

TEST(ValueTest, ValueMatchesTypedEncoding) {
  struct Case {
    const char* name;
    Value value;
    std::string typed;
  };
  const Case cases[] = {
      {"int", Value(1), Encode(1)},
      {"double 1.0", Value(1.0), Encode(1)},
      {"-0.0", Value(-0.0), Encode(0)},
      {"NaN", Value(-kNaN), Encode(kNaN)},
      {"uint64 max", Value(UINT64_MAX), Encode(UINT64_MAX)},
      {"small unsigned", Value(7u), Encode(7)},
      {"bool", Value(true), Encode(true)},
      {"null", Value(), Encode(nullptr)},
      {"null pointer", Value(static_cast<const char*>(nullptr)), Encode(nullptr)},
      {"string", Value("paris"), Encode(std::string("paris"))},
      {"list as tuple", Value::List{1, "a", true, nullptr},
       Encode(std::tuple(1, "a", true, nullptr))},
      {"map as std::map", Value::Map{{"b", 2}, {"a", 1}},
       Encode(std::map<std::string, int>{{"a", 1}, {"b", 2}})},
      {"nested", Value::Map{{"ids", Value::List{1, 2}}, {"q", "x"}},
       Encode(std::map<std::string, Value>{{"q", "x"}, {"ids", Value::List{1.0, 2.0}}})},
      {"map of lists", Value::Map{{"a", Value::List{}}, {"b", Value::List{3}}},
       Encode(std::unordered_map<std::string, std::vector<int>>{{"b", {3}}, {"a", {}}})},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(Hex(Encode(c.value)), Hex(c.typed));
  }
  // Normalisation applies to strings inside Values as well.
  EXPECT_EQ(EncodeWith(TextNormalization::kNfkcCasefold, Value::List{"PARIS"}),
            EncodeWith(TextNormalization::kNfkcCasefold, std::vector<std::string>{"paris"}));
}

TEST(ValueTest, BuildsAndReadsValues) {
  Value map = Value::Map{{"b", 1}, {"a", "x"}, {"b", 2}};  // The last "b" wins.
  ASSERT_EQ(map.kind(), Value::Kind::kMap);
  ASSERT_EQ(map.map().size(), 2u);
  EXPECT_EQ(map.map()[0].first, "a");
  EXPECT_EQ(map.Find("b")->int_value(), 2);
  EXPECT_EQ(map.Find("c"), nullptr);
  map.Set("c", Value::List{});
  map.Set("a", false);
  EXPECT_EQ(map.ToJson(), R"({"a":false,"b":2,"c":[]})");
  Value list = Value::List{};
  list.Append(1.5);
  list.Append("s");
  EXPECT_EQ(list.list().size(), 2u);
  EXPECT_EQ(list.list()[1].string_value(), "s");

  EXPECT_EQ(Value(uint64_t{5}).kind(), Value::Kind::kInt);
  EXPECT_EQ(Value(UINT64_MAX).kind(), Value::Kind::kUInt);
  EXPECT_EQ(Value(1.0).kind(), Value::Kind::kDouble);
  EXPECT_EQ(Value('a').int_value(), 97);
  EXPECT_TRUE(Value().is_null());
  EXPECT_TRUE(Value(1) == Value(1.0));
  EXPECT_TRUE(Value(kNaN) == Value(-kNaN));
  EXPECT_FALSE(Value(1) == Value("1"));
  EXPECT_FALSE(Value(true) == Value(1));
  EXPECT_FALSE(Value(Value::List{}) == Value());
}

TEST(ValueTest, ToJsonEscapes) {
  struct Case {
    Value value;
    std::string json;
  };
  const Case cases[] = {
      {Value(), "null"},
      {Value(true), "true"},
      {Value(-12), "-12"},
      {Value(INT64_MIN), "-9223372036854775808"},
      {Value(UINT64_MAX), "18446744073709551615"},
      {Value(1.0), "1.0"},
      {Value(-0.0), "-0.0"},
      {Value(0.1), "0.1"},
      {Value(1e300), "1e+300"},
      {Value(kNaN), "\"NaN\""},
      {Value(-kInf), "\"-Infinity\""},
      {Value("plain"), "\"plain\""},
      {Value("q\"b\\s/"), R"("q\"b\\s/")"},
      {Value("\n\r\t\b\f"), R"("\n\r\t\b\f")"},
      {Value(std::string("\0\x01\x1f\x7f", 4)), "\"\\u0000\\u0001\\u001f\x7f\""},
      {Value("caf\xC3\xA9 \xF0\x9F\x98\x80"), "\"caf\xC3\xA9 \xF0\x9F\x98\x80\""},
      {Value("a\xFF"
             "b\xC0\x80"),
       "\"a\xEF\xBF\xBD"
       "b\xEF\xBF\xBD\xEF\xBF\xBD\""},
      {Value::List{}, "[]"},
      {Value::Map{}, "{}"},
      {Value::List{1, "a", nullptr, Value::List{}}, R"([1,"a",null,[]])"},
      {Value::Map{{"z\"", 1}, {"a", Value::Map{{"k", 2.5}}}}, R"({"a":{"k":2.5},"z\"":1})"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.json);
    EXPECT_EQ(c.value.ToJson(), c.json);
  }
}

// ---------------------------------------------------------------------------
// Randomised properties.

class RandomValues {
 public:
  explicit RandomValues(uint64_t seed) : rng_(seed) {}

  // A value of depth at most `depth`, drawn from small pools so that equal
  // values (and near misses) come up often.
  Value Next(int depth) {
    switch (Pick(depth > 0 ? 9 : 7)) {
      case 0:
        return Value();
      case 1:
        return Value(Pick(2) == 1);
      case 2: {
        static const int64_t kInts[] = {
            0,         1,        -1, 2, 63, 64, -64, -65, int64_t{1} << 53, (int64_t{1} << 53) + 1,
            INT64_MIN, INT64_MAX};
        return Value(kInts[Pick(std::size(kInts))]);
      }
      case 3: {
        static const uint64_t kUInts[] = {0, 1, uint64_t{1} << 63, (uint64_t{1} << 63) + 1,
                                          UINT64_MAX};
        return Value(kUInts[Pick(std::size(kUInts))]);
      }
      case 4: {
        static const double kDoubles[] = {
            0.0,   -0.0,   0.5,    -0.5,    1.0,    2.0,   kNaN,   kInf,
            -kInf, 0x1p53, 0x1p63, -0x1p63, 0x1p64, 1e300, 5e-324, 18446744073709549568.0};
        return Value(kDoubles[Pick(std::size(kDoubles))]);
      }
      case 5:
      case 6: {
        static const std::string kStrings[] = {
            "", "a", "b", "ab", std::string("\0", 1), "\x06", "\x03\x02", "caf\xC3\xA9", "\xff"};
        return Value(kStrings[Pick(std::size(kStrings))]);
      }
      case 7: {
        Value list = Value::List{};
        for (size_t i = Pick(4); i > 0; --i) list.Append(Next(depth - 1));
        return list;
      }
      default: {
        static const std::string kKeys[] = {"", "a", "b", "ab", std::string("\0", 1)};
        Value::Map entries;
        for (size_t i = Pick(4); i > 0; --i) {
          entries.emplace_back(kKeys[Pick(std::size(kKeys))], Next(depth - 1));
        }
        return Value(std::move(entries));
      }
    }
  }

  // An equal value built differently: numbers through other C++ types or
  // other bit patterns.
  Value Respell(const Value& value) {
    switch (value.kind()) {
      case Value::Kind::kInt: {
        const int64_t i = value.int_value();
        const double d = static_cast<double>(i);
        if (d != 0x1p63 && static_cast<int64_t>(d) == i && Pick(2) == 0) return Value(d);
        if (i >= 0 && Pick(2) == 0) return Value(static_cast<uint64_t>(i));
        return Value(i);
      }
      case Value::Kind::kUInt: {
        const uint64_t u = value.uint_value();
        const double d = static_cast<double>(u);
        if (d < 0x1p64 && static_cast<uint64_t>(d) == u) return Value(d);
        return Value(u);
      }
      case Value::Kind::kDouble: {
        const double d = value.double_value();
        if (std::isnan(d)) return Value(NaNWithPayload(rng_() | 1, Pick(2) == 1));
        if (d == 0) return Value(Pick(2) == 0 ? 0.0 : -0.0);
        if (d >= -0x1p63 && d < 0x1p63 && std::trunc(d) == d) {
          return Value(static_cast<int64_t>(d));
        }
        if (d >= 0x1p63 && d < 0x1p64) return Value(static_cast<uint64_t>(d));
        return Value(d);
      }
      case Value::Kind::kList: {
        Value list = Value::List{};
        for (const Value& item : value.list()) list.Append(Respell(item));
        return list;
      }
      case Value::Kind::kMap: {
        Value::Map entries;
        for (const auto& [key, item] : value.map()) entries.emplace_back(key, Respell(item));
        std::shuffle(entries.begin(), entries.end(), rng_);
        return Value(std::move(entries));
      }
      default:
        return value;
    }
  }

  // Writes `value` with every map's entries in a random order.
  void WriteShuffled(const Value& value, ArgWriter& writer) {
    if (value.kind() == Value::Kind::kList) {
      writer.BeginList(value.list().size());
      for (const Value& item : value.list()) WriteShuffled(item, writer);
      writer.EndList();
    } else if (value.kind() == Value::Kind::kMap) {
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& entry : value.map()) entries.push_back(&entry);
      std::shuffle(entries.begin(), entries.end(), rng_);
      writer.BeginMap(entries.size());
      for (const auto* entry : entries) {
        writer.Key(entry->first);
        WriteShuffled(entry->second, writer);
      }
      writer.EndMap();
    } else {
      value.Encode(writer);
    }
  }

 private:
  size_t Pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }

  std::mt19937_64 rng_;
};

TEST(ArgsPropertyTest, RandomValuesEncodeDeterministicallyAndInjectively) {
  RandomValues random(20240611);
  std::map<std::string, Value> by_encoding;
  std::map<std::string, std::pair<Value, Value>> pairs_by_encoding;
  Value previous;
  int repeats = 0;
  constexpr int kRounds = 20000;
  for (int round = 0; round < kRounds; ++round) {
    const Value value = random.Next(3);
    const std::string bytes = Encode(value);
    SCOPED_TRACE(value.ToJson());

    // Deterministic, and the same for equal values built differently.
    ASSERT_EQ(Encode(value), bytes);
    const Value respelled = random.Respell(value);
    ASSERT_TRUE(SameArgument(value, respelled)) << respelled.ToJson();
    ASSERT_TRUE(value == respelled) << respelled.ToJson();
    ASSERT_EQ(Hex(Encode(respelled)), Hex(bytes)) << respelled.ToJson();
    std::string shuffled;
    ArgWriter writer(&shuffled);
    random.WriteShuffled(value, writer);
    ASSERT_TRUE(writer.Finish().ok());
    ASSERT_EQ(Hex(shuffled), Hex(bytes));

    // The bytes decode back to the value and nothing else.
    size_t pos = 0;
    const std::optional<Value> decoded = Decode(bytes, &pos);
    ASSERT_TRUE(decoded.has_value()) << Hex(bytes);
    ASSERT_EQ(pos, bytes.size());
    ASSERT_TRUE(SameArgument(*decoded, value)) << decoded->ToJson();

    // Different values never share bytes, alone or in a two-value sequence.
    auto [it, inserted] = by_encoding.emplace(bytes, value);
    if (!inserted) {
      ++repeats;
      ASSERT_TRUE(SameArgument(it->second, value)) << it->second.ToJson();
    }
    const std::string pair_bytes = Encode(previous, value);
    auto [pair_it, pair_inserted] =
        pairs_by_encoding.emplace(pair_bytes, std::pair(previous, value));
    if (!pair_inserted) {
      ASSERT_TRUE(SameArgument(pair_it->second.first, previous) &&
                  SameArgument(pair_it->second.second, value));
    }

    // operator== agrees with the independent comparison and with the bytes.
    ASSERT_EQ(value == previous, SameArgument(value, previous)) << previous.ToJson();
    ASSERT_EQ(value == previous, Encode(previous) == bytes) << previous.ToJson();
    previous = value;
  }
  // The pools are small on purpose: many values repeat, which exercises the
  // "equal values share bytes" side as well.
  EXPECT_GT(repeats, kRounds / 2);
  EXPECT_GT(by_encoding.size(), static_cast<size_t>(kRounds / 10));
}

}  // namespace
}  // namespace toolops
