// src/store/envelope.cc
//
// Envelope encoding and key digests (layouts in envelope.h). SHA-256 comes
// from OpenSSL's EVP API; each thread reuses one digest context.

#include "store/envelope.h"

#include <openssl/evp.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <string>

namespace toolops {
namespace {

constexpr size_t kSha256Bytes = 32;
constexpr size_t kToolDigestBytes = 8;

constexpr size_t kVersionOffset = 4;
constexpr size_t kFlagsOffset = 5;
constexpr size_t kReservedOffset = 6;
constexpr size_t kFreshOffset = 8;
constexpr size_t kStaleOffset = 16;
constexpr size_t kLengthOffset = 24;
static_assert(kLengthOffset + 4 == kEnvelopeHeaderBytes);
static_assert(kEnvelopeChecksumBytes <= kSha256Bytes);

// One EVP digest context per thread, created on first use and freed when the
// thread ends.
class ThreadDigest {
 public:
  ThreadDigest() : ctx_(EVP_MD_CTX_new()) {}
  ~ThreadDigest() { EVP_MD_CTX_free(ctx_); }
  ThreadDigest(const ThreadDigest&) = delete;
  ThreadDigest& operator=(const ThreadDigest&) = delete;

  // SHA-256 of `data` into `out`. False if OpenSSL failed.
  bool Sha256(std::string_view data, unsigned char out[kSha256Bytes]) {
    const EVP_MD* md = Md();
    if (ctx_ == nullptr || md == nullptr) return false;
    unsigned int size = 0;
    return EVP_DigestInit_ex2(ctx_, md, nullptr) == 1 &&
           EVP_DigestUpdate(ctx_, data.data(), data.size()) == 1 &&
           EVP_DigestFinal_ex(ctx_, out, &size) == 1 && size == kSha256Bytes;
  }

 private:
  // Fetched once per process: an implicit fetch per digest costs a lookup.
  static const EVP_MD* Md() {
    static const EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return md;
  }

  EVP_MD_CTX* const ctx_;
};

bool Sha256(std::string_view data, unsigned char out[kSha256Bytes]) {
  thread_local ThreadDigest digest;
  return digest.Sha256(data, out);
}

void AppendHex(const unsigned char* bytes, size_t size, std::string* out) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (size_t i = 0; i < size; ++i) {
    out->push_back(kDigits[bytes[i] >> 4]);
    out->push_back(kDigits[bytes[i] & 15]);
  }
}

void PutU32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}

void PutI64(char* p, int64_t v) {
  uint64_t u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(u >> (8 * i));
}

uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

int64_t GetI64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return static_cast<int64_t>(v);
}

int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t sum;
  if (!__builtin_add_overflow(a, b, &sum)) return sum;
  return b > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
}

int64_t SaturatingSub(int64_t a, int64_t b) {
  int64_t difference;
  if (!__builtin_sub_overflow(a, b, &difference)) return difference;
  return b < 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
}

int64_t SteadyNanos(TimePoint tp) {
  return std::chrono::duration_cast<Duration>(tp.time_since_epoch()).count();
}

EnvelopeResult Refuse(EnvelopeError error) {
  EnvelopeResult result;
  result.error = error;
  return result;
}

}  // namespace

std::string_view EnvelopeErrorName(EnvelopeError error) {
  switch (error) {
    case EnvelopeError::kCorrupt:
      return "corrupt";
    case EnvelopeError::kTruncated:
      return "truncated";
    case EnvelopeError::kForeign:
      return "foreign";
    case EnvelopeError::kUnsupportedVersion:
      return "unsupported_version";
  }
  return "unknown";
}

int64_t UnixNowNanos() {
  return std::chrono::duration_cast<Duration>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t SteadyToUnixNanos(TimePoint tp, TimePoint steady_now, int64_t unix_now_ns) {
  if (tp == TimePoint::max()) return std::numeric_limits<int64_t>::max();
  if (tp == TimePoint::min()) return std::numeric_limits<int64_t>::min();
  return SaturatingAdd(unix_now_ns, SaturatingSub(SteadyNanos(tp), SteadyNanos(steady_now)));
}

TimePoint UnixNanosToSteady(int64_t unix_ns, TimePoint steady_now, int64_t unix_now_ns) {
  if (unix_ns == std::numeric_limits<int64_t>::max()) return TimePoint::max();
  if (unix_ns == std::numeric_limits<int64_t>::min()) return TimePoint::min();
  int64_t steady_ns = SaturatingAdd(SteadyNanos(steady_now), SaturatingSub(unix_ns, unix_now_ns));
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(Duration(steady_ns)));
}

Bytes EncodeEnvelope(const StoredValue& v, const Clock& clock, int64_t unix_now_ns) {
  const size_t n = v.value.size();
  if (n > kMaxEnvelopePayload) return Bytes();
  TimePoint steady_now = clock.Now();

  std::string out(kEnvelopeOverheadBytes + n, '\0');
  char* p = out.data();
  std::memcpy(p, kEnvelopeMagic, sizeof(kEnvelopeMagic));
  p[kVersionOffset] = static_cast<char>(kEnvelopeVersion);
  p[kFlagsOffset] = 0;
  p[kReservedOffset] = 0;
  p[kReservedOffset + 1] = 0;
  PutI64(p + kFreshOffset, SteadyToUnixNanos(v.fresh_until, steady_now, unix_now_ns));
  PutI64(p + kStaleOffset, SteadyToUnixNanos(v.stale_until, steady_now, unix_now_ns));
  PutU32(p + kLengthOffset, static_cast<uint32_t>(n));
  if (n > 0) std::memcpy(p + kEnvelopeHeaderBytes, v.value.data(), n);

  if (!EnvelopeChecksum(kEnvelopeVersion, std::string_view(p, kEnvelopeHeaderBytes + n),
                        reinterpret_cast<unsigned char*>(p + kEnvelopeHeaderBytes + n))) {
    return Bytes();
  }
  return Bytes::Copy(out);
}

Bytes EncodeEnvelope(const StoredValue& v, const Clock& clock) {
  return EncodeEnvelope(v, clock, UnixNowNanos());
}

EnvelopeResult DecodeEnvelope(std::string_view raw, const Clock& clock, int64_t unix_now_ns) {
  // Identity first: a short input that agrees with the magic so far is a cut
  // envelope; anything else is not ours.
  const std::string_view magic(kEnvelopeMagic, sizeof(kEnvelopeMagic));
  if (raw.size() < magic.size()) {
    return Refuse(magic.starts_with(raw) ? EnvelopeError::kTruncated : EnvelopeError::kForeign);
  }
  if (!raw.starts_with(magic)) return Refuse(EnvelopeError::kForeign);
  if (raw.size() <= kVersionOffset) return Refuse(EnvelopeError::kTruncated);
  const uint8_t version = static_cast<uint8_t>(raw[kVersionOffset]);
  if (version != kEnvelopeVersion && version != kEnvelopeVersionSha256) {
    return Refuse(EnvelopeError::kUnsupportedVersion);
  }

  // Size: exactly header, payload and checksum.
  if (raw.size() < kEnvelopeOverheadBytes) return Refuse(EnvelopeError::kTruncated);
  const size_t n = GetU32(raw.data() + kLengthOffset);
  const size_t expected = kEnvelopeOverheadBytes + n;
  if (raw.size() < expected) return Refuse(EnvelopeError::kTruncated);
  if (raw.size() > expected) return Refuse(EnvelopeError::kCorrupt);

  // Integrity, then what only an intact newer writer can have set.
  unsigned char sum[kEnvelopeChecksumBytes];
  if (!EnvelopeChecksum(version, raw.substr(0, kEnvelopeHeaderBytes + n), sum) ||
      std::memcmp(sum, raw.data() + kEnvelopeHeaderBytes + n, kEnvelopeChecksumBytes) != 0) {
    return Refuse(EnvelopeError::kCorrupt);
  }
  if (raw[kFlagsOffset] != 0 || raw[kReservedOffset] != 0 || raw[kReservedOffset + 1] != 0) {
    return Refuse(EnvelopeError::kUnsupportedVersion);
  }

  TimePoint steady_now = clock.Now();
  EnvelopeResult result;
  result.value.emplace(
      StoredValue{Bytes::Copy(raw.substr(kEnvelopeHeaderBytes, n)),
                  UnixNanosToSteady(GetI64(raw.data() + kFreshOffset), steady_now, unix_now_ns),
                  UnixNanosToSteady(GetI64(raw.data() + kStaleOffset), steady_now, unix_now_ns)});
  return result;
}

EnvelopeResult DecodeEnvelope(std::string_view raw, const Clock& clock) {
  return DecodeEnvelope(raw, clock, UnixNowNanos());
}

bool EnvelopeChecksum(uint8_t version, std::string_view body,
                      unsigned char out[kEnvelopeChecksumBytes]) {
  if (version == kEnvelopeVersionSha256) {
    unsigned char sum[kSha256Bytes];
    if (!Sha256(body, sum)) return false;
    std::memcpy(out, sum, kEnvelopeChecksumBytes);
    return true;
  }
  if (version == kEnvelopeVersion) {
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, XXH3_128bits(body.data(), body.size()));
    static_assert(sizeof(canonical.digest) == kEnvelopeChecksumBytes);
    std::memcpy(out, canonical.digest, kEnvelopeChecksumBytes);
    return true;
  }
  return false;
}

std::string Sha256Hex(std::string_view data, size_t bytes) {
  unsigned char sum[kSha256Bytes];
  if (!Sha256(data, sum)) return std::string();
  std::string out;
  AppendHex(sum, std::min(bytes, kSha256Bytes), &out);
  return out;
}

std::string_view ToolPrefixOf(std::string_view canonical_key) {
  size_t first = canonical_key.find('\0');
  if (first == std::string_view::npos) return std::string_view();
  size_t second = canonical_key.find('\0', first + 1);
  if (second == std::string_view::npos) return std::string_view();
  return canonical_key.substr(0, second + 1);
}

bool IsToolPrefix(std::string_view prefix) {
  return !prefix.empty() && prefix.back() == '\0' && ToolPrefixOf(prefix).size() == prefix.size();
}

std::string StoreToolDigest(std::string_view ns, std::string_view tool_prefix) {
  unsigned char sum[kSha256Bytes];
  if (!Sha256(tool_prefix, sum)) return std::string();
  std::string out;
  out.reserve(ns.size() + 1 + 2 * kToolDigestBytes);
  out.append(ns);
  out.push_back(':');
  AppendHex(sum, kToolDigestBytes, &out);
  return out;
}

std::string StoreKeyDigest(std::string_view ns, std::string_view canonical_key) {
  // A thread calls for the same tool again and again: keep its last tool
  // component rather than hashing the prefix on every call.
  struct LastTool {
    std::string ns;
    std::string prefix;
    std::string digest;
  };
  thread_local LastTool last;
  std::string_view prefix = ToolPrefixOf(canonical_key);
  if (last.digest.empty() || prefix != last.prefix || ns != last.ns) {
    std::string digest = StoreToolDigest(ns, prefix);
    if (digest.empty()) return std::string();
    last.ns.assign(ns);
    last.prefix.assign(prefix);
    last.digest = std::move(digest);
  }
  unsigned char sum[kSha256Bytes];
  if (!Sha256(canonical_key, sum)) return std::string();
  std::string out;
  out.reserve(last.digest.size() + 1 + 2 * kSha256Bytes);
  out.append(last.digest);
  out.push_back(':');
  AppendHex(sum, kSha256Bytes, &out);
  return out;
}

}  // namespace toolops
