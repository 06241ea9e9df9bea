// src/store/envelope_test.cc
//
// The out-of-process format: envelope layout and round trips, refusal of
// every kind of damaged input (including thousands of random mutations), and
// the key digest layout.

#include "store/envelope.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstdio>
#include <cstring>

#include <chrono>
#include <cstdint>
#include <limits>
#include <random>
#include <string>

#include "toolops/bytes.h"
#include "toolops/clock.h"
#include "toolops/store.h"

namespace toolops {
namespace {

using std::chrono::seconds;

// An arbitrary wall-clock instant (November 2023) used as "now".
constexpr int64_t kUnixNow = 1'700'000'000'000'000'000;

StoredValue ValueAt(const FakeClock& clock, std::string_view payload, Duration fresh = seconds(60),
                    Duration stale = seconds(90)) {
  return StoredValue{Bytes::Copy(payload), clock.Now() + fresh, clock.Now() + stale};
}

std::string Encode(const StoredValue& v, const FakeClock& clock) {
  return EncodeEnvelope(v, clock, kUnixNow).ToString();
}

int64_t ReadI64(const std::string& s, size_t offset) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<unsigned char>(s[offset + i])} << (8 * i);
  return static_cast<int64_t>(v);
}

// Rewrites the checksum of a (modified) envelope so that only the other
// checks can refuse it.
void Reseal(std::string* envelope, uint8_t version = kEnvelopeVersion) {
  size_t body = envelope->size() - kEnvelopeChecksumBytes;
  unsigned char sum[kEnvelopeChecksumBytes];
  ASSERT_TRUE(EnvelopeChecksum(version, std::string_view(*envelope).substr(0, body), sum));
  std::memcpy(envelope->data() + body, sum, kEnvelopeChecksumBytes);
}

TEST(EnvelopeTest, LayoutIsAsDocumented) {
  FakeClock clock;
  std::string e = Encode(ValueAt(clock, "hello"), clock);

  ASSERT_EQ(e.size(), kEnvelopeOverheadBytes + 5);
  EXPECT_EQ(e.substr(0, 4), "TOE1");
  EXPECT_EQ(e[4], 2);                               // version
  EXPECT_EQ(e[5], 0);                               // flags
  EXPECT_EQ(e.substr(6, 2), std::string(2, '\0'));  // reserved
  EXPECT_EQ(ReadI64(e, 8), kUnixNow + 60'000'000'000);
  EXPECT_EQ(ReadI64(e, 16), kUnixNow + 90'000'000'000);
  EXPECT_EQ(e.substr(24, 4), std::string("\x05\0\0\0", 4));
  EXPECT_EQ(e.substr(28, 5), "hello");
  std::string checksum;
  for (size_t i = 33; i < e.size(); ++i) {
    static constexpr char kHex[] = "0123456789abcdef";
    checksum += kHex[static_cast<unsigned char>(e[i]) >> 4];
    checksum += kHex[static_cast<unsigned char>(e[i]) & 15];
  }
  // XXH3-128 of the 33 bytes before it, big-endian (high half first).
  XXH128_hash_t h = XXH3_128bits(e.data(), 33);
  char expected[33];
  std::snprintf(expected, sizeof expected, "%016llx%016llx",
                static_cast<unsigned long long>(h.high64), static_cast<unsigned long long>(h.low64));
  EXPECT_EQ(checksum, expected);
}

TEST(EnvelopeTest, VersionOneWithSha256ChecksumIsStillRead) {
  FakeClock clock;
  std::string e = Encode(ValueAt(clock, "written by version 1"), clock);
  e[4] = 1;
  std::string checksum;
  Reseal(&e, kEnvelopeVersionSha256);
  EXPECT_EQ(e.substr(e.size() - 16),
            [&] {
              std::string hex = Sha256Hex(std::string_view(e).substr(0, e.size() - 16), 16);
              std::string raw;
              for (size_t i = 0; i < 16; ++i) {
                raw.push_back(static_cast<char>(std::stoi(hex.substr(2 * i, 2), nullptr, 16)));
              }
              return raw;
            }());
  EnvelopeResult r = DecodeEnvelope(e, clock, kUnixNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value->value.view(), "written by version 1");
  // A version 1 envelope sealed with the version 2 checksum is damaged.
  Reseal(&e, kEnvelopeVersion);
  EXPECT_FALSE(DecodeEnvelope(e, clock, kUnixNow).ok());
}

TEST(EnvelopeTest, RoundTripKeepsPayloadAndInstants) {
  FakeClock clock;
  for (std::string payload :
       {std::string(), std::string("x"), std::string(100'000, '\xff'), std::string("a\0b\0c", 5)}) {
    StoredValue v = ValueAt(clock, payload);
    EnvelopeResult r = DecodeEnvelope(Encode(v, clock), clock, kUnixNow);
    ASSERT_TRUE(r.ok()) << EnvelopeErrorName(r.error);
    EXPECT_EQ(r.value->value.view(), payload);
    EXPECT_EQ(r.value->fresh_until, v.fresh_until);
    EXPECT_EQ(r.value->stale_until, v.stale_until);
  }
}

TEST(EnvelopeTest, InstantsKeepTheirRemainingTimeInAnotherProcess) {
  // The writer and the reader have unrelated steady clocks; only the wall
  // clock is shared. The reader reads 20 s of wall time later.
  FakeClock writer;
  FakeClock reader;
  reader.Advance(seconds(12345));
  StoredValue v = ValueAt(writer, "v", seconds(60), seconds(90));
  std::string e = EncodeEnvelope(v, writer, kUnixNow).ToString();

  EnvelopeResult r = DecodeEnvelope(e, reader, kUnixNow + 20'000'000'000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value->fresh_until - reader.Now(), seconds(40));
  EXPECT_EQ(r.value->stale_until - reader.Now(), seconds(70));
}

TEST(EnvelopeTest, ExtremeInstantsSaturateInsteadOfOverflowing) {
  FakeClock clock;
  StoredValue v{Bytes::Copy("v"), TimePoint::min(), TimePoint::max()};
  std::string e = Encode(v, clock);
  EXPECT_EQ(ReadI64(e, 8), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(ReadI64(e, 16), std::numeric_limits<int64_t>::max());
  EnvelopeResult r = DecodeEnvelope(e, clock, kUnixNow);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value->fresh_until, TimePoint::min());
  EXPECT_EQ(r.value->stale_until, TimePoint::max());
}

TEST(EnvelopeTest, RefusesEachKindOfBadInputWithItsReason) {
  FakeClock clock;
  const std::string good = Encode(ValueAt(clock, "payload"), clock);
  struct Case {
    std::string name;
    std::string raw;
    EnvelopeError want;
  };
  std::string flipped_payload = good;
  flipped_payload[30] ^= 0x01;
  std::string flipped_time = good;
  flipped_time[9] ^= 0x40;
  std::string flipped_checksum = good;
  flipped_checksum.back() ^= 0x80;
  std::string longer_length = good;
  longer_length[24] += 1;
  std::string shorter_length = good;
  shorter_length[24] -= 1;
  std::string newer_version = good;
  newer_version[4] = 3;
  std::string flag_set = good;
  flag_set[5] = 1;
  Reseal(&flag_set);
  std::string reserved_set = good;
  reserved_set[7] = 1;
  Reseal(&reserved_set);
  std::string flag_set_unsealed = good;
  flag_set_unsealed[5] = 1;

  const Case cases[] = {
      {"empty", "", EnvelopeError::kTruncated},
      {"magic only", "TOE", EnvelopeError::kTruncated},
      {"header cut", good.substr(0, 20), EnvelopeError::kTruncated},
      {"checksum cut", good.substr(0, good.size() - 1), EnvelopeError::kTruncated},
      {"payload cut", good.substr(0, 30), EnvelopeError::kTruncated},
      {"length says more", longer_length, EnvelopeError::kTruncated},
      {"length says less", shorter_length, EnvelopeError::kCorrupt},
      {"trailing byte", good + "x", EnvelopeError::kCorrupt},
      {"payload bit", flipped_payload, EnvelopeError::kCorrupt},
      {"time bit", flipped_time, EnvelopeError::kCorrupt},
      {"checksum bit", flipped_checksum, EnvelopeError::kCorrupt},
      {"flag without reseal", flag_set_unsealed, EnvelopeError::kCorrupt},
      {"text", "hello world", EnvelopeError::kForeign},
      {"one byte", "x", EnvelopeError::kForeign},
      {"zip", std::string("PK\x03\x04\x14\0\0\0", 8), EnvelopeError::kForeign},
      {"lower-case magic", "toe1" + good.substr(4), EnvelopeError::kForeign},
      {"newer version", newer_version, EnvelopeError::kUnsupportedVersion},
      {"unknown flag", flag_set, EnvelopeError::kUnsupportedVersion},
      {"reserved bits", reserved_set, EnvelopeError::kUnsupportedVersion},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EnvelopeResult r = DecodeEnvelope(c.raw, clock, kUnixNow);
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(EnvelopeErrorName(r.error), EnvelopeErrorName(c.want));
  }
}

TEST(EnvelopeTest, RandomMutationsNeverDecodeToAWrongValue) {
  FakeClock clock;
  std::mt19937_64 rng(20240501);
  auto byte = [&] { return static_cast<char>(rng() & 0xff); };
  auto below = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  int refused = 0;
  int unchanged = 0;
  for (int i = 0; i < 20'000; ++i) {
    std::string payload(below(300), '\0');
    for (char& c : payload) c = byte();
    StoredValue v = ValueAt(clock, payload, seconds(below(1000)), seconds(1000 + below(1000)));
    const std::string good = Encode(v, clock);

    std::string bad = good;
    switch (i % 6) {
      case 0:  // Flip 1 to 3 bits.
        for (size_t k = 0, n = 1 + below(3); k < n; ++k) bad[below(bad.size())] ^= 1 << below(8);
        break;
      case 1:  // Overwrite one byte with any value (sometimes the same).
        bad[below(bad.size())] = byte();
        break;
      case 2:  // Truncate.
        bad.resize(below(bad.size()));
        break;
      case 3:  // Append.
        for (size_t k = 0, n = 1 + below(8); k < n; ++k) bad.push_back(byte());
        break;
      case 4:  // Remove a range.
        bad.erase(below(bad.size()), 1 + below(16));
        break;
      case 5:  // Insert a range.
        bad.insert(below(bad.size() + 1), std::string(1 + below(16), byte()));
        break;
    }

    EnvelopeResult r = DecodeEnvelope(bad, clock, kUnixNow);
    if (!r.ok()) {
      ++refused;
      continue;
    }
    // Only an input equal to the original may decode, and then exactly.
    ASSERT_EQ(bad, good) << "mutation " << i << " decoded";
    EXPECT_EQ(r.value->value.view(), payload);
    EXPECT_EQ(r.value->fresh_until, v.fresh_until);
    EXPECT_EQ(r.value->stale_until, v.stale_until);
    ++unchanged;
  }
  EXPECT_GT(refused, 19'000);
  EXPECT_LT(unchanged, 1'000);  // Same-value overwrites, roughly 1 in 256 of case 1.
}

TEST(EnvelopeTest, RandomBytesAreRefused) {
  FakeClock clock;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 10'000; ++i) {
    std::string raw(rng() % 200, '\0');
    for (char& c : raw) c = static_cast<char>(rng() & 0xff);
    // Half of them get past the magic and version checks, to reach the
    // length and checksum checks.
    if (i % 2 == 1 && raw.size() >= 5) raw.replace(0, 5, std::string("TOE1\x01", 5));
    EXPECT_FALSE(DecodeEnvelope(raw, clock, kUnixNow).ok()) << "input " << i;
  }
}

TEST(EnvelopeTest, EncodeReadsTheSystemClockByDefault) {
  FakeClock clock;
  int64_t before = UnixNowNanos();
  std::string e = EncodeEnvelope(ValueAt(clock, "v", seconds(60)), clock).ToString();
  int64_t after = UnixNowNanos();
  EXPECT_GE(ReadI64(e, 8), before + 60'000'000'000);
  EXPECT_LE(ReadI64(e, 8), after + 60'000'000'000);
  EnvelopeResult r = DecodeEnvelope(e, clock);
  ASSERT_TRUE(r.ok());
  // Wall time passed between the two reads; never more than a second here.
  EXPECT_LE(r.value->fresh_until, clock.Now() + seconds(60));
  EXPECT_GT(r.value->fresh_until, clock.Now() + seconds(59));
}

TEST(EnvelopeDigestTest, Sha256MatchesTheStandardVector) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abc", 8), "ba7816bf8f01cfea");
}

TEST(EnvelopeDigestTest, KeyDigestLayoutIsNamespaceToolAndKey) {
  std::string prefix(
      "web_search\0"
      "1\0",
      13);
  std::string key = prefix + "\x05weather in Paris";
  std::string digest = StoreKeyDigest("toolops", key);

  EXPECT_EQ(digest, "toolops:" + Sha256Hex(prefix, 8) + ":" + Sha256Hex(key));
  EXPECT_EQ(digest.size(), 7 + 1 + 16 + 1 + 64);
  EXPECT_TRUE(digest.starts_with(StoreToolDigest("toolops", prefix) + ":"));
  EXPECT_EQ(digest.find("Paris"), std::string::npos);
  for (char c : digest.substr(8))
    EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == ':');
}

TEST(EnvelopeDigestTest, ToolComponentGroupsOneToolVersion) {
  std::string v1(
      "search\0"
      "1\0",
      9);
  std::string v2(
      "search\0"
      "2\0",
      9);
  auto tool_part = [](const std::string& digest) { return digest.substr(0, digest.rfind(':')); };
  std::string a = StoreKeyDigest("ns", v1 + "a");
  std::string b = StoreKeyDigest("ns", v1 + "b");
  std::string c = StoreKeyDigest("ns", v2 + "a");
  EXPECT_NE(a, b);
  EXPECT_EQ(tool_part(a), tool_part(b));
  EXPECT_NE(tool_part(a), tool_part(c));
  EXPECT_NE(StoreKeyDigest("other", v1 + "a"), a);
  // A key without a tool prefix groups under the empty prefix.
  EXPECT_EQ(tool_part(StoreKeyDigest("ns", "plain key")), StoreToolDigest("ns", ""));
}

TEST(EnvelopeDigestTest, ToolPrefixRecognition) {
  EXPECT_EQ(ToolPrefixOf(std::string("a\0"
                                     "1\0rest\0",
                                     9)),
            std::string("a\0"
                        "1\0",
                        4));
  EXPECT_EQ(ToolPrefixOf("no nul"), "");
  EXPECT_EQ(ToolPrefixOf(std::string("one\0nul", 7)), "");

  EXPECT_TRUE(
      IsToolPrefix(std::string("a\0"
                               "1\0",
                               4)));
  EXPECT_TRUE(IsToolPrefix(std::string("\0\0", 2)));
  EXPECT_FALSE(IsToolPrefix(""));
  EXPECT_FALSE(IsToolPrefix("search"));
  EXPECT_FALSE(IsToolPrefix(std::string("a\0", 2)));
  EXPECT_FALSE(
      IsToolPrefix(std::string("a\0"
                               "1\0x",
                               5)));
  EXPECT_FALSE(
      IsToolPrefix(std::string("a\0"
                               "1\0x\0",
                               6)));
}

}  // namespace
}  // namespace toolops
