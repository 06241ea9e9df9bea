// src/store/entry_board.cc

#include "store/entry_board.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "store/envelope.h"

namespace toolops {
namespace {

// The tool prefix (name and version, each NUL-terminated, as a tool's key
// prefix) of the statistics snapshots.
constexpr std::string_view kStatsToolPrefix{
    "toolops.stats\0"
    "1\0",
    16};

// Until when a row written at `now` for `ttl` lives: at least a
// millisecond, since a Put whose stale_until is not after now erases
// instead of writing.
TimePoint RowUntil(TimePoint now, Duration ttl) {
  return now + std::max<Duration>(ttl, std::chrono::milliseconds(1));
}

}  // namespace

EntryBoard::EntryBoard(Store* store, Clock* clock, UnixClock unix_clock, std::string key_namespace)
    : board_store_(store),
      board_clock_(clock),
      board_unix_clock_(unix_clock ? std::move(unix_clock) : UnixClock(&UnixNowNanos)),
      board_namespace_(std::move(key_namespace)) {}

Status EntryBoard::Publish(std::string_view process, std::string_view snapshot, Duration ttl) {
  std::string key(kStatsToolPrefix);
  key += process;
  TimePoint now = board_clock_->Now();
  TimePoint until = RowUntil(now, ttl);
  return board_store_->Put(KeyRef::Of(key), StoredValue{Bytes::Copy(snapshot), until, until}, now);
}

Result<std::vector<std::string>> EntryBoard::Snapshots() {
  return LiveValuesOfTool(kStatsToolPrefix, "reading statistics failed");
}

Status EntryBoard::TagEntry(const KeyRef& key, const std::vector<std::string>& tags, Duration ttl) {
  // Every tag is checked before any is written, so a bad one records none.
  for (const std::string& tag : tags) {
    if (Status s = CheckTag(tag); !s.ok()) return s;
  }
  std::string digest = StoreKeyDigest(board_namespace_, key.bytes);
  if (digest.empty()) return DigestFailed();
  TimePoint now = board_clock_->Now();
  TimePoint until = RowUntil(now, ttl);
  for (const std::string& tag : tags) {
    std::string row = CallTagPrefix(tag) + digest;
    Status s =
        board_store_->Put(KeyRef::Of(row), StoredValue{Bytes::Copy(digest), until, until}, now);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

Result<size_t> EntryBoard::EraseTagged(std::string_view tag) {
  if (Status s = CheckTag(tag); !s.ok()) return s;
  std::string prefix = CallTagPrefix(tag);
  Result<std::vector<std::string>> digests = LiveValuesOfTool(prefix, "reading a tag failed");
  if (!digests.ok()) return digests.status();
  const std::string own = board_namespace_ + ":";
  size_t erased = 0;
  for (const std::string& digest : *digests) {
    // A value is acted on only if it names an entry of this namespace;
    // anything else (a row written by hand, say) is left alone.
    if (!digest.starts_with(own)) continue;
    Result<bool> gone = EraseDigest(digest);
    if (!gone.ok()) return gone.status();
    if (gone.value()) ++erased;
  }
  // The tag's own rows go last, so that a failure above leaves the tag
  // listing what it still reaches, for the next try.
  (void)board_store_->EraseByPrefix(prefix);
  return erased;
}

Result<std::vector<std::string>> EntryBoard::LiveValuesOfTool(std::string_view prefix,
                                                              std::string_view failure) {
  Result<std::vector<std::string>> envelopes = ToolEnvelopes(prefix, failure);
  if (!envelopes.ok()) return envelopes.status();
  const Clock& clock = *board_clock_;
  TimePoint now = clock.Now();
  int64_t unix_now = board_unix_clock_();
  std::vector<std::string> values;
  for (const std::string& raw : *envelopes) {
    EnvelopeResult decoded = DecodeEnvelope(raw, clock, unix_now);
    if (!decoded.ok()) {
      CountCorrupt();
      continue;
    }
    // The store's filter is on the wall clock; the engine's instants are
    // steady, and the two may disagree by a tick.
    if (decoded.value->stale_until <= now) continue;
    values.emplace_back(decoded.value->value.view());
  }
  return values;
}

}  // namespace toolops
