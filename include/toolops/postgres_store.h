// include/toolops/postgres_store.h
//
// PostgresStore: the Store shared by processes on many hosts. Entries live in
// one table of a PostgreSQL server, reached through libpq; any number of
// processes may use one table at once (the write is an upsert, so racing
// writers of one key leave exactly one of their values). It also coordinates
// coalescing across processes (coordinator(): leases with fencing tokens in a
// second table, completions announced with LISTEN / NOTIFY).
//
// What reaches the server is the shared out-of-process format of
// src/store/envelope.h: keys as SHA-256 digests (raw arguments never leave
// the process) and values as checksummed envelopes with wall-clock instants.
// A damaged, truncated or foreign entry is never returned: Get counts it as a
// miss and as corrupt, and deletes it.
//
// A store failure never fails a call: Get returns nullopt on any server or
// connection error and Put returns Unavailable (guard kStore), which the
// engine counts and ignores. Both are counted in counters().failed. No
// operation waits on the network without a bound: connecting is bounded by
// connect_timeout, each statement by statement_timeout on the server and by
// statement_timeout + 250 ms on the client, which then drops the connection.
// After a failed connection attempt the store stops trying for a pause that
// grows from 50 ms to outage_max_backoff (2 s) while the server stays
// unreachable, and after a failed operation it skips operations (a miss at
// once) for a backoff from outage_initial_backoff to outage_max_backoff, so
// that a dead server costs calls a failed lookup, not a connect timeout
// each. Each outage is logged once when it starts and once when it ends
// ("store.down" / "store.up").
//
// Safe for concurrent use: each operation takes a connection from a small
// pool (one thread per connection at a time) and runs statements prepared on
// that connection, with binary parameters and results. A connection that
// broke or timed out is closed and replaced on next use; one found dead on
// first use after idling (the server restarted meanwhile) is replaced and the
// statement run again once, so a restart between two calls fails neither.
//
// Coalescing across processes: a leader's lease is a row of the lease table
// (key digest, fencing token from a sequence, holder, expiry on the server's
// clock), taken by one statement when absent or expired and renewed every
// lease_ttl / 3 by a thread of the store while the leader works. The leader's
// value is written by the statement that releases its lease, and only while
// the lease still carries the leader's token: a leader whose lease expired
// and was taken over cannot overwrite the newer leader's result. Completion
// and release send a notification (pg_notify, one channel per table and
// namespace, the key digest as payload) that a second thread, LISTENing on a
// connection of its own, turns into wake-ups of the followers waiting here;
// followers also look again every follower_poll, so a lost notification
// costs latency, never a call. Lease rows are purged with the entries, once
// expired for longer than error_ttl + lease_ttl.
//
// Known gaps: the table has no size bound; entries leave only when their
// stale_until passes (purged in batches on Put) or when erased. Rows hold
// tool results in the clear. Host names in the connection string are resolved
// by libpq outside the connect timeout (give an address, or hostaddr, where
// DNS may hang). EraseByPrefix and Stats run one statement each, under
// statement_timeout: on a very large table they may time out and report
// nothing erased / no entries (counted as failed).

#ifndef TOOLOPS_POSTGRES_STORE_H_
#define TOOLOPS_POSTGRES_STORE_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "toolops/clock.h"
#include "toolops/status.h"
#include "toolops/store.h"

namespace toolops {

struct PostgresStoreOptions {
  // A libpq connection string ("host=10.0.0.5 dbname=cache user=toolops") or
  // URI ("postgresql://toolops@10.0.0.5/cache"). Required. It may hold a
  // password: it never appears in a status message.
  std::string conninfo;
  // The store's name in StoreRegistry and in messages.
  std::string name = "postgres";
  // Prefix of every key digest, so that unrelated users of one table never
  // share entries. Non-empty, without ':'.
  std::string key_namespace = "toolops";
  // The table, created with its two indexes (named after it) if missing, in
  // the first schema of the connection's search_path. An unquoted lower-case
  // SQL name: a letter or '_', then letters, digits or '_', at most 48
  // characters (so that the index names fit PostgreSQL's 63).
  std::string table = "toolops_entries";
  // Puts of larger values are refused with ResourceExhausted.
  size_t max_value_bytes = 1 << 20;
  // The longest a connection attempt may take (libpq's connect_timeout, kept
  // to the millisecond by the store). Positive.
  Duration connect_timeout = std::chrono::seconds(2);
  // The longest one statement may run (the server's statement_timeout,
  // which counts lock waits too). Positive.
  Duration statement_timeout = std::chrono::seconds(2);
  // Connections kept open at most; a caller finding all of them busy waits
  // for one (within connect_timeout + statement_timeout). 1 to 64.
  size_t pool_size = 4;
  // Expired rows deleted by one purge (at most one purge a second, on Put).
  // Positive.
  size_t purge_batch = 500;

  // While the server is unreachable, operations are skipped (a miss at once)
  // and connection attempts paced: the pause starts at
  // outage_initial_backoff and doubles up to outage_max_backoff. Both
  // positive, initial not above max.
  Duration outage_initial_backoff = std::chrono::milliseconds(100);
  Duration outage_max_backoff = std::chrono::seconds(2);

  // Coalescing across processes: a leader's lease lasts lease_ttl and is
  // renewed every lease_ttl / 3 while the leader lives, so a leader that
  // dies is replaced within about lease_ttl. At least 30 ms.
  Duration lease_ttl = std::chrono::seconds(5);
  // How long a leader's error stays visible to the followers of that lease.
  // Positive.
  Duration error_ttl = std::chrono::seconds(2);
  // A follower looks at the lease again at least this often, in case a
  // notification was lost (the listening connection is down, or it raced).
  // Positive.
  Duration follower_poll = std::chrono::milliseconds(200);
};

// Counters the StoreStats struct has no field for.
struct PostgresStoreCounters {
  // Entries refused by the envelope check (damaged, truncated, foreign or of
  // an unknown version). Each is also a miss, and is deleted.
  uint64_t corrupt = 0;
  // Operations that failed: server errors, timeouts, lost connections,
  // connections that could not be opened, or a digest that could not be
  // computed.
  uint64_t failed = 0;
  // Expired rows deleted by purge batches (also counted in expirations).
  uint64_t purged = 0;
  // Connections closed because they broke, timed out or were found dead.
  uint64_t connections_dropped = 0;
  // Outages begun (operations failing for want of a server, until one works
  // again).
  uint64_t outages = 0;
  // Leases this process took, leases that ended before their holder
  // completed (not renewed in time), and results refused because the lease
  // had passed to a newer leader (fencing).
  uint64_t leases_taken = 0;
  uint64_t leases_lost = 0;
  uint64_t fenced = 0;
  // Completion notifications received on the listening connection.
  uint64_t notifications = 0;
  // Lease rows deleted by purge batches.
  uint64_t leases_purged = 0;
};

class PostgresStore : public Store {
 public:
  // Validates the options, connects once, creates the table and its indexes
  // if missing (serialised with an advisory lock, so several processes may
  // open a new table together) and prepares the statements. Returns
  // InvalidArgument (guard kStore) for bad options or a connection string
  // libpq cannot parse, FailedPrecondition for a table written by a newer
  // schema, and Unavailable (guard kStore) when the server cannot be reached
  // or set up within the timeouts. `clock` must outlive the store. An empty
  // `unix_clock` reads std::chrono::system_clock. Also creates the lease
  // table and its token sequence if missing, opens the listening connection
  // (a failure there is retried in the background, not an error) and starts
  // the store's two threads (lease renewal, notifications); the destructor
  // stops them.
  static Result<std::unique_ptr<PostgresStore>> Open(const PostgresStoreOptions& options,
                                                     Clock* clock = RealClock(),
                                                     UnixClock unix_clock = nullptr);

  // Get: one indexed read (a round trip). Returns nullopt for a missing or
  // expired entry (expired rows stay until purged), a corrupt one (then
  // deleted), and on any failure. Blocks on the network, within the bounds
  // above.
  //
  // Put: one upsert (INSERT ... ON CONFLICT DO UPDATE). Values over
  // max_value_bytes are refused with ResourceExhausted naming the size and
  // the limit, and remove any older entry for the key, as does a value whose
  // stale_until is not after `now` (that Put returns OK). At most once a
  // second, also deletes up to purge_batch expired rows.
  //
  // EraseByPrefix: `prefix` must be empty (every entry of this store's
  // key_namespace) or a tool's key prefix as ToolCore::key_prefix() builds it
  // (name, NUL, version, NUL: that tool's entries). Any other prefix erases
  // nothing and returns 0, since the store holds digests, not raw keys.
  //
  // Stats: hits, misses, expirations and rejected are counted by this
  // object; entries and bytes (digest and envelope bytes) come from a count
  // over this namespace's rows, O(entries): for occasional reporting, not
  // the hot path. evictions stays 0 (there is no size bound).

  // Corrupt entries, failed operations, purged rows and dropped connections
  // seen by this object.
  virtual PostgresStoreCounters counters() const = 0;

  // Deletes up to purge_batch rows (of any namespace) whose stale_until has
  // passed, and up to purge_batch lease rows expired for longer than
  // error_ttl + lease_ttl; returns how many entry rows (lease rows are
  // counted in counters().leases_purged). Rows another session is purging
  // at the same moment are skipped, not waited for. Put does this on its
  // own; this is for tools and tests.
  virtual size_t PurgeExpired() = 0;

  // Whether the store is in an outage (operations skipped until a probe
  // succeeds).
  virtual bool down() const = 0;
  // Whether the notification connection is LISTENing now (followers then
  // wake on notifications; otherwise they look again every 20 ms).
  virtual bool listening() const = 0;
};

// Opens a PostgresStore (see PostgresStore::Open) as a plain Store.
Result<std::unique_ptr<Store>> NewPostgresStore(const PostgresStoreOptions& options,
                                                Clock* clock = RealClock());

}  // namespace toolops

#endif  // TOOLOPS_POSTGRES_STORE_H_
