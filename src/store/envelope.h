// src/store/envelope.h
//
// The format every store that leaves the process shares: how a value and its
// freshness instants are written (the envelope) and how a key is named (the
// digest). Nothing here touches I/O; the functions are pure apart from
// reading the clocks, and are safe to call from many threads at once.
//
// Envelope, version 2. Integers are little-endian; offsets in bytes.
//
//   offset  size  field
//        0     4  magic "TOE1" (54 4F 45 31)
//        4     1  format version, 2 (1 is still read, see below)
//        5     1  flags, 0 (no flag is defined; a set bit is refused as
//                 kUnsupportedVersion, since only a newer writer sets one)
//        6     2  reserved, 0
//        8     8  fresh_until, signed Unix nanoseconds (system_clock)
//       16     8  stale_until, signed Unix nanoseconds (system_clock)
//       24     4  payload length n, unsigned
//       28     n  payload
//     28+n    16  checksum over bytes [0, 28+n): XXH3-128 in its canonical
//                 (big-endian) form
//
// So an envelope is 44 + n bytes. Version 1 has the same layout with the
// first 16 bytes of SHA-256 as checksum; it is still decoded, never written.
// The checksum detects damage, not tampering (there is no secret in it), so
// it needs to be strong against accidents, not against an adversary: 128
// bits of XXH3 leave no realistic chance that a damaged entry passes, and
// cost about 50 ns for a 1 KiB value where SHA-256 cost about 900 ns, a
// large share of a hit through a network store. (The key digests stay
// SHA-256: they name entries and must not collide on purpose.)
//
// Instants cross the process boundary as wall-clock time, because steady
// clocks of different processes (or of one process before and after a
// restart) share no origin:
//   wall   = unix_now + (steady - clock.Now())      when encoding
//   steady = clock.Now() + (wall - unix_now)        when decoding
// Both saturate instead of overflowing, and the extremes map onto each other
// (TimePoint::max() is INT64_MAX and back: "never" stays never). Two hosts
// whose wall clocks disagree see each other's entries expire early or late by
// that difference.
//
// Key digest (what a store sees instead of the raw key):
//
//   <namespace> ":" <tool: 16 lowercase hex> ":" <key: 64 lowercase hex>
//
// where <key> is SHA-256 of the whole canonical key and <tool> the first 8
// bytes of SHA-256 of the key's tool prefix: the key's bytes up to and
// including its second NUL (tool name, NUL, version, NUL), or no bytes when
// the key holds fewer than two NULs. Raw arguments never leave the process;
// the tool component lets a store drop one tool's entries (ToolCore::
// ClearCache) without knowing any raw key. Entries are told apart by the full
// 256-bit key hash; the 64-bit tool hash only groups them.

#ifndef TOOLOPS_STORE_ENVELOPE_H_
#define TOOLOPS_STORE_ENVELOPE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "toolops/bytes.h"
#include "toolops/clock.h"
#include "toolops/store.h"

namespace toolops {

inline constexpr char kEnvelopeMagic[4] = {'T', 'O', 'E', '1'};
inline constexpr uint8_t kEnvelopeVersion = 2;
// The version with a SHA-256 checksum, still read.
inline constexpr uint8_t kEnvelopeVersionSha256 = 1;
inline constexpr size_t kEnvelopeHeaderBytes = 28;
inline constexpr size_t kEnvelopeChecksumBytes = 16;
// Bytes an envelope adds to its payload.
inline constexpr size_t kEnvelopeOverheadBytes = kEnvelopeHeaderBytes + kEnvelopeChecksumBytes;
// The largest payload the length field can describe.
inline constexpr size_t kMaxEnvelopePayload = UINT32_MAX;

// Why DecodeEnvelope refused its input.
enum class EnvelopeError : uint8_t {
  kCorrupt,             // Checksum mismatch, or bytes after the checksum.
  kTruncated,           // Shorter than its header or its length field says.
  kForeign,             // Does not start with the magic: not an envelope.
  kUnsupportedVersion,  // A format version or flag this code does not know.
};

std::string_view EnvelopeErrorName(EnvelopeError error);

// The outcome of DecodeEnvelope: a value, or the reason there is none.
struct EnvelopeResult {
  std::optional<StoredValue> value;
  EnvelopeError error = EnvelopeError::kCorrupt;  // Meaningful only without a value.

  bool ok() const { return value.has_value(); }
};

// std::chrono::system_clock now, as Unix nanoseconds.
int64_t UnixNowNanos();

// Writes `v` as an envelope, converting its steady instants with `clock` and
// the wall clock `unix_now_ns` (read at about the same moment as
// clock.Now()). Returns empty Bytes if the payload is larger than
// kMaxEnvelopePayload or OpenSSL could not compute the checksum (out of
// memory); an empty result is never a valid envelope.
Bytes EncodeEnvelope(const StoredValue& v, const Clock& clock, int64_t unix_now_ns);
// The same, reading the wall clock from std::chrono::system_clock.
Bytes EncodeEnvelope(const StoredValue& v, const Clock& clock);

// Reads an envelope written by EncodeEnvelope, converting its instants back
// with `clock` and `unix_now_ns`. Any input is safe: damaged, truncated or
// foreign bytes are refused with the reason and never yield a value. Magic
// and version are checked before the length and the checksum (a newer version
// may lay out the rest differently), so damage there reads as kForeign or
// kUnsupportedVersion. The payload is copied out; `raw` may be released
// afterwards.
EnvelopeResult DecodeEnvelope(std::string_view raw, const Clock& clock, int64_t unix_now_ns);
// The same, reading the wall clock from std::chrono::system_clock.
EnvelopeResult DecodeEnvelope(std::string_view raw, const Clock& clock);

// The steady instant `tp` as Unix nanoseconds, and back (the conversions the
// envelope uses; saturating, extremes kept).
int64_t SteadyToUnixNanos(TimePoint tp, TimePoint steady_now, int64_t unix_now_ns);
TimePoint UnixNanosToSteady(int64_t unix_ns, TimePoint steady_now, int64_t unix_now_ns);

// The checksum an envelope of `version` (1 or 2) carries for `body` (its
// bytes before the checksum). False for another version, or when OpenSSL
// failed (out of memory).
bool EnvelopeChecksum(uint8_t version, std::string_view body,
                      unsigned char out[kEnvelopeChecksumBytes]);

// The first `bytes` bytes (at most 32) of SHA-256 of `data`, as lowercase
// hex. Empty if OpenSSL failed (out of memory).
std::string Sha256Hex(std::string_view data, size_t bytes = 32);

// The key's tool prefix: its bytes up to and including the second NUL, or
// empty when it holds fewer than two.
std::string_view ToolPrefixOf(std::string_view canonical_key);

// True when `prefix` is a tool prefix as ToolCore::key_prefix() builds it:
// it ends with a NUL and holds exactly two.
bool IsToolPrefix(std::string_view prefix);

// `ns` ":" the 16 hex digits of the tool component, for a tool prefix (see
// the layout above). Every digest of a key with that prefix starts with it.
// Empty if OpenSSL failed.
std::string StoreToolDigest(std::string_view ns, std::string_view tool_prefix);

// The digest a store keeps instead of `canonical_key` (layout above).
// Empty if OpenSSL failed.
std::string StoreKeyDigest(std::string_view ns, std::string_view canonical_key);

}  // namespace toolops

#endif  // TOOLOPS_STORE_ENVELOPE_H_
