// src/store/entry_board.h
//
// StatsBoard and CallTagIndex for the stores that keep both as ordinary
// entries of their own table (PostgreSQL, SQLite), under tool prefixes no
// tool uses:
//
//   - a statistics snapshot is the entry of key "toolops.stats" version 1
//     (as a tool prefix) + the process id, so a process replaces its own
//     and no other's;
//   - a tag's index is one entry per tagged entry, of key CallTagPrefix(tag)
//     + the entry's digest, holding that digest (never a raw key).
//
// So they expire and are purged like entries, every process sharing the
// table sees them, one indexed read on the tool column finds them, and the
// schema needs nothing new. The store supplies what only it can do: read
// one tool's envelopes, and erase a row by its digest.

#ifndef TOOLOPS_STORE_ENTRY_BOARD_H_
#define TOOLOPS_STORE_ENTRY_BOARD_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "store/tag_index.h"
#include "toolops/clock.h"
#include "toolops/stats_publisher.h"
#include "toolops/status.h"
#include "toolops/store.h"

namespace toolops {

class EntryBoard : public StatsBoard, public CallTagIndex {
 public:
  Status Publish(std::string_view process, std::string_view snapshot, Duration ttl) final;
  Result<std::vector<std::string>> Snapshots() final;
  Status TagEntry(const KeyRef& key, const std::vector<std::string>& tags, Duration ttl) final;
  Result<size_t> EraseTagged(std::string_view tag) final;

 protected:
  // `store` is the object deriving from this one, whose Put and
  // EraseByPrefix write and drop the rows; `clock`, `unix_clock` (empty:
  // the system clock) and `key_namespace` are the store's own.
  EntryBoard(Store* store, Clock* clock, UnixClock unix_clock, std::string key_namespace);

  // Unavailable, counted as a failure of the store: a digest could not be
  // computed.
  virtual Status DigestFailed() = 0;
  // The envelopes of the rows under tool prefix `prefix` whose stale_until
  // has not passed on the wall clock; Unavailable, naming `failure`, when
  // the store cannot be read.
  virtual Result<std::vector<std::string>> ToolEnvelopes(std::string_view prefix,
                                                         std::string_view failure) = 0;
  // Counts a row whose envelope is refused (damaged, foreign).
  virtual void CountCorrupt() = 0;
  // Deletes the row of one digest; whether there was one, or Unavailable.
  virtual Result<bool> EraseDigest(std::string_view digest) = 0;

 private:
  // The values of ToolEnvelopes(prefix) that decode and have not expired.
  Result<std::vector<std::string>> LiveValuesOfTool(std::string_view prefix,
                                                    std::string_view failure);

  Store* const board_store_;
  Clock* const board_clock_;
  const UnixClock board_unix_clock_;
  const std::string board_namespace_;
};

}  // namespace toolops

#endif  // TOOLOPS_STORE_ENTRY_BOARD_H_
