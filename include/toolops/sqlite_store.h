// include/toolops/sqlite_store.h
//
// SqliteStore: the durable single-machine Store. Entries live in one SQLite
// file (WAL mode, synchronous=NORMAL) that survives restarts and that several
// processes on one host may share; SQLite's file locks and busy_timeout
// serialise their writers, and readers never wait for writers.
//
// What reaches the file is the shared out-of-process format of
// src/store/envelope.h: keys as SHA-256 digests (raw arguments never leave
// the process) and values as checksummed envelopes with wall-clock instants.
// A damaged, truncated or foreign entry is never returned: Get counts it as a
// miss and as corrupt, and deletes it.
//
// A store failure never fails a call: Get returns nullopt on any SQLite error
// and Put returns Unavailable (guard kStore), which the engine counts and
// ignores. Both are counted in counters().failed.
//
// Safe for concurrent use: each operation takes a connection from a small
// pool (one thread per connection at a time) and reuses its prepared
// statements.
//
// The store is also a StatsBoard (statistics snapshots for `toolops stats
// --store`) and a CallTagIndex (per-call tags for `toolops invalidate --tag`),
// found with StatsBoardOf and CallTagIndexOf: their rows live in the same
// table, so every process sharing the file sees them.
//
// Known gaps: the file has no size bound; entries leave only when their
// stale_until passes (purged in batches on Put) or when erased. The file holds
// tool results in the clear, with permissions from the process umask.

#ifndef TOOLOPS_SQLITE_STORE_H_
#define TOOLOPS_SQLITE_STORE_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "toolops/clock.h"
#include "toolops/status.h"
#include "toolops/store.h"

namespace toolops {

struct SqliteStoreOptions {
  // The database file; created if missing. Must name a file (not ":memory:").
  std::string path;
  // The store's name in StoreRegistry and in messages.
  std::string name = "sqlite";
  // Prefix of every key digest, so that unrelated users of one file never
  // share entries. Non-empty, without ':'.
  std::string key_namespace = "toolops";
  // Puts of larger values are refused with ResourceExhausted.
  size_t max_value_bytes = 1 << 20;
  // How long an operation waits for another connection's lock before it
  // fails with Unavailable. Not negative.
  Duration busy_timeout = std::chrono::seconds(5);
  // Expired rows deleted by one purge (at most one purge a second, on Put).
  // Positive.
  size_t purge_batch = 500;
};

// Counters the StoreStats struct has no field for.
struct SqliteStoreCounters {
  // Entries refused by the envelope check (damaged, truncated, foreign or of
  // an unknown version). Each is also a miss, and is deleted.
  uint64_t corrupt = 0;
  // Operations that failed in SQLite (I/O error, disk full, locked past
  // busy_timeout, ...) or in computing a digest.
  uint64_t failed = 0;
  // Expired rows deleted by purge batches (also counted in expirations).
  uint64_t purged = 0;
};

class SqliteStore : public Store {
 public:
  // Opens (creating if needed) the file and its table, and checks one
  // connection. Returns InvalidArgument (guard kStore) for bad options,
  // FailedPrecondition for a file written by a newer schema, and Unavailable
  // (guard kStore) when SQLite cannot open or set up the file. `clock` must
  // outlive the store. An empty `unix_clock` reads std::chrono::system_clock.
  static Result<std::unique_ptr<SqliteStore>> Open(const SqliteStoreOptions& options,
                                                   Clock* clock = RealClock(),
                                                   UnixClock unix_clock = nullptr);

  // Get: one indexed read. Returns nullopt for a missing or expired entry
  // (expired rows stay until purged), a corrupt one (then deleted), and on
  // any SQLite error. Blocks on file I/O; never waits for writers.
  //
  // Put: one INSERT OR REPLACE, waiting up to busy_timeout for other writers.
  // Values over max_value_bytes are refused with ResourceExhausted naming the
  // size and the limit, and remove any older entry for the key, as does a
  // value whose stale_until is not after `now` (that Put returns OK). At most
  // once a second, also deletes up to purge_batch expired rows.
  //
  // EraseByPrefix: `prefix` must be empty (every entry of this store's
  // key_namespace) or a tool's key prefix as ToolCore::key_prefix() builds it
  // (name, NUL, version, NUL: that tool's entries). Any other prefix erases
  // nothing and returns 0, since the store holds digests, not raw keys.
  //
  // Stats: hits, misses, expirations and rejected are counted by this
  // object; entries and bytes (digest and envelope bytes) come from a count
  // over this namespace's rows of the file (statistics snapshots and tag
  // rows included), O(entries): for occasional reporting, not the hot path.
  // evictions stays 0 (there is no size bound).

  // Corrupt entries, failed operations and purged rows seen by this object.
  virtual SqliteStoreCounters counters() const = 0;

  // Deletes up to purge_batch rows (of any namespace) whose stale_until has
  // passed; returns how many. Put does this on its own; this is for tools
  // and tests.
  virtual size_t PurgeExpired() = 0;
};

// Opens a SqliteStore (see SqliteStore::Open) as a plain Store.
Result<std::unique_ptr<Store>> NewSqliteStore(const SqliteStoreOptions& options,
                                              Clock* clock = RealClock());

}  // namespace toolops

#endif  // TOOLOPS_SQLITE_STORE_H_
