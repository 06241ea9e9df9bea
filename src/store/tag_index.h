// src/store/tag_index.h
//
// Which tools carry a cache tag, recorded in a shared store so that another
// process (`toolops invalidate --tag T`) can drop their entries. A tag's
// record is one entry of the store, under a key of its own that belongs to
// no tool; it lists the key prefixes (name and version) of the tools that
// carry the tag, never arguments. Records last 30 days from the last time a
// process recorded them (each wrap of a tagged tool refreshes its record).
//
// Recording is a read-modify-write of one entry: two processes recording
// different tools under one tag at the same instant may lose one of them
// until that tool is wrapped again.
//
// Tags of single calls (tags computed from arguments) are recorded per
// entry by stores that offer a CallTagIndex (SQLite, Redis, PostgreSQL):
// the index lists, under the tag, the digests of the tagged entries (never
// raw keys), and lives as long as the entries it lists.
//
// Thread-safe as the store is.

#ifndef TOOLOPS_STORE_TAG_INDEX_H_
#define TOOLOPS_STORE_TAG_INDEX_H_

#include <string>
#include <string_view>
#include <vector>

#include "toolops/clock.h"
#include "toolops/status.h"
#include "toolops/store.h"

namespace toolops {

// Most tools one tag's record lists; past it, new tools are not recorded.
inline constexpr size_t kMaxToolsPerTag = 1000;

// The canonical key of `tag`'s record.
std::string TagRecordKey(std::string_view tag);

// Adds `tool_prefix` (ToolCore::key_prefix()) to the records of `tags` in
// `store`. Returns the store's error (Unavailable when it is down).
Status RecordToolTags(Store& store, std::string_view tool_prefix,
                      const std::vector<std::string>& tags, Clock* clock = RealClock());

// The tool prefixes `store` records under `tag` (empty when none, or when
// the store cannot be read).
std::vector<std::string> TaggedToolPrefixes(Store& store, std::string_view tag,
                                            Clock* clock = RealClock());

// Entries tagged one call at a time, so that another process can erase
// them by tag. Each call is bounded by the store's timeouts.
class CallTagIndex {
 public:
  virtual ~CallTagIndex() = default;

  // Records that the entry of `key` carries each of `tags`, for `ttl` (at
  // least the entry's life, stale windows included). A tag must not be
  // empty or hold a NUL byte (InvalidArgument). Unavailable when the store
  // is down or failed. Recording an entry twice is harmless.
  virtual Status TagEntry(const KeyRef& key, const std::vector<std::string>& tags,
                          Duration ttl) = 0;

  // Erases every entry recorded under `tag`, and the tag's record. Returns
  // how many entries were there; Unavailable when the store failed.
  virtual Result<size_t> EraseTagged(std::string_view tag) = 0;
};

// The store's CallTagIndex, or null when it has none (memory).
CallTagIndex* CallTagIndexOf(Store& store);

// InvalidArgument unless `tag` is a usable tag (not empty, no NUL byte).
Status CheckTag(std::string_view tag);

// The tool prefix under which stores keep the index of `tag`'s entries
// ("toolops.tag", NUL, the tag, NUL), so that its digest names the tag
// without it leaving the process in clear.
std::string CallTagPrefix(std::string_view tag);

}  // namespace toolops

#endif  // TOOLOPS_STORE_TAG_INDEX_H_
