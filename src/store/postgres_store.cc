// src/store/postgres_store.cc
//
// The PostgreSQL store. One table, named in the options ("t" below):
//
//   t(digest text COLLATE "C" PRIMARY KEY,  -- StoreKeyDigest(namespace, key)
//     tool text COLLATE "C" NOT NULL,       -- its first part: StoreToolDigest
//     stale_until bigint NOT NULL,          -- Unix ns, for purging
//     envelope bytea NOT NULL)              -- EncodeEnvelope(value)
//
// indexed on stale_until (purge batches) and on tool (ClearCache), with the
// table's comment holding the schema version. The "C" collation makes the
// digests of one namespace a byte range, whatever the database's locale.
//
// Coalescing across processes uses a second table, "t_leases" ("l" below),
// and a sequence, "t_lease_token":
//
//   l(digest text COLLATE "C" PRIMARY KEY,  -- the entry's digest
//     token bigint NOT NULL,                -- fencing token: nextval of the sequence
//     holder text NOT NULL,                 -- the process and attempt that took it
//     expires_at bigint NOT NULL,           -- server clock, Unix us; the release
//                                           -- time once released
//     error_code bigint, error_message text,  -- the leader's error, for the
//     error_until bigint)                   -- followers of `token`, until then
//
// indexed on expires_at (purge batches). A row outlives its lease: its token
// fences a slow former leader until the row is purged. Lease instants are on
// the server's clock, so processes whose clocks disagree still agree on who
// holds a lease. Completions are announced with pg_notify on one channel per
// table and namespace, the digest as payload.
//
// Written by hand, and why: the connection pool and the wait loop around
// libpq's asynchronous calls. libpq has no pool, and its blocking calls
// (PQconnectdb, PQexecPrepared) wait without bound when a server stops
// answering with its socket still open: connect_timeout covers only the
// connection, statement_timeout only a server that still runs. So every
// exchange here is PQsend* + PQflush + PQconsumeInput over poll() with a
// deadline, and a connection whose reply did not come in time is closed.
// libpqxx wraps the same blocking calls and has no pool either.
//
// Connections are used by one thread at a time, handed out by
// ConnectionPool, and are in nonblocking mode.

#include "toolops/postgres_store.h"

#include <libpq-fe.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/mutex.h"
#include "store/entry_board.h"
#include "store/envelope.h"
#include "store/store_health.h"
#include "toolops/log.h"

namespace toolops {
namespace {

using SteadyClock = std::chrono::steady_clock;
using Deadline = SteadyClock::time_point;
using std::chrono::milliseconds;

constexpr int kSchemaVersion = 1;
// The table comment; the version number follows it.
constexpr std::string_view kSchemaComment = "toolops entries, schema version ";
// Purges run at most this often per store object.
constexpr Duration kPurgeInterval = std::chrono::seconds(1);
constexpr int64_t kNeverPurged = INT64_MIN;
// How much longer than statement_timeout the client waits for a reply: time
// for the server to report its own timeout (the connection then stays
// usable), short enough to bound a server that hangs.
constexpr Duration kReplyGrace = milliseconds(250);
// The first pause between connection attempts while the server is
// unreachable (at most outage_max_backoff), and the shortest pause of the
// listening connection between its attempts.
constexpr Duration kFirstReconnectPause = milliseconds(50);
// The listening connection checks that its server still answers when it has
// heard nothing for this long.
constexpr Duration kListenHeartbeat = std::chrono::seconds(1);
// How often the listening thread looks whether the store is closing.
constexpr Duration kListenTick = milliseconds(100);
// Without a listening connection, followers look at the lease this often.
constexpr Duration kUnnotifiedPoll = milliseconds(20);
constexpr size_t kMaxPoolSize = 64;
constexpr size_t kMaxTableName = 48;
// PostgreSQL's largest field is 1 GiB - 1 byte; leave room for the envelope
// and the rest of the row in one protocol message.
constexpr size_t kMaxValueBytes = (size_t{1} << 30) - (size_t{1} << 16);

// Parameter type OIDs (catalog/pg_type_d.h belongs to the server headers).
constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;
constexpr Oid kTextOid = 25;

// The statements every connection prepares.
enum Statement : int {
  kGet,
  kPut,
  kErase,
  kEraseCorrupt,
  kEraseTool,
  kEraseRange,
  kPurge,
  kCount,
  kAcquire,
  kRenew,
  kCompleteValue,
  kFinishLease,
  kWaitState,
  kPurgeLeases,
  kReadTool,
  kStatementCount,
};

constexpr int kMaxParams = 5;

struct StatementSpec {
  const char* name;
  // "{t}" stands for the quoted table name, "{l}" for the lease table,
  // "{s}" for the token sequence, "{c}" for the notification channel and
  // "{now}" for the server's clock in Unix microseconds.
  const char* sql;
  int params;
  std::array<Oid, kMaxParams> types;
};

constexpr std::array<StatementSpec, kStatementCount> kStatements = {{
    {"toolops_get", "SELECT envelope FROM {t} WHERE digest = $1", 1, {kTextOid}},
    // An upsert: racing writers of one key each leave a whole row, the last
    // one wins.
    {"toolops_put",
     "INSERT INTO {t} (digest, tool, stale_until, envelope) VALUES ($1, $2, $3, $4)"
     " ON CONFLICT (digest) DO UPDATE SET tool = EXCLUDED.tool,"
     " stale_until = EXCLUDED.stale_until, envelope = EXCLUDED.envelope",
     4,
     {kTextOid, kTextOid, kInt8Oid, kByteaOid}},
    {"toolops_erase", "DELETE FROM {t} WHERE digest = $1", 1, {kTextOid}},
    // Only if nobody replaced the bad entry meanwhile.
    {"toolops_erase_corrupt",
     "DELETE FROM {t} WHERE digest = $1 AND envelope = $2",
     2,
     {kTextOid, kByteaOid}},
    {"toolops_erase_tool", "DELETE FROM {t} WHERE tool = $1", 1, {kTextOid}},
    // Digests in [$1, $2): one namespace.
    {"toolops_erase_range",
     "DELETE FROM {t} WHERE digest >= $1 AND digest < $2",
     2,
     {kTextOid, kTextOid}},
    // One batch by row address (a TID scan), skipping rows another purge has
    // locked; the outer condition again for a row replaced in between.
    {"toolops_purge",
     "DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} WHERE stale_until < $1"
     " LIMIT $2 FOR UPDATE SKIP LOCKED)) AND stale_until < $1",
     2,
     {kInt8Oid, kInt8Oid}},
    {"toolops_count",
     "SELECT count(*), coalesce(sum(octet_length(digest) + octet_length(envelope)), 0)::bigint"
     " FROM {t} WHERE digest >= $1 AND digest < $2",
     2,
     {kTextOid, kTextOid}},
    // Takes the lease ($1 digest, $2 holder, $3 TTL in us) if there is none
    // or it has expired (clearing the former leader's error), in one
    // statement: the upsert locks the row, so of racing takers exactly one
    // finds it expired. A lease held by someone else is left as it is (the
    // update writes the same values back) and reported. Returns the token
    // and whether $2 holds it now.
    {"toolops_acquire",
     "INSERT INTO {l} AS l (digest, token, holder, expires_at)"
     " VALUES ($1, nextval('{s}'), $2, {now} + $3)"
     " ON CONFLICT (digest) DO UPDATE SET"
     " token = CASE WHEN l.expires_at <= EXCLUDED.expires_at - $3"
     " THEN EXCLUDED.token ELSE l.token END,"
     " holder = CASE WHEN l.expires_at <= EXCLUDED.expires_at - $3"
     " THEN EXCLUDED.holder ELSE l.holder END,"
     " expires_at = CASE WHEN l.expires_at <= EXCLUDED.expires_at - $3"
     " THEN EXCLUDED.expires_at ELSE l.expires_at END,"
     " error_code = CASE WHEN l.expires_at <= EXCLUDED.expires_at - $3"
     " THEN 0 ELSE l.error_code END"
     " RETURNING token, holder = $2",
     3,
     {kTextOid, kTextOid, kInt8Oid}},
    // Extends a lease that is still held by token $2.
    {"toolops_renew",
     "UPDATE {l} SET expires_at = {now} + $3 WHERE digest = $1 AND token = $2 AND expires_at > "
     "{now}",
     3,
     {kTextOid, kInt8Oid, kInt8Oid}},
    // The leader's value ($3 tool, $4 stale_until, $5 envelope): written only
    // while the lease row carries the leader's token $2 (fencing), in the
    // statement that releases the lease; then the followers are notified.
    // Returns how many rows were written (0: fenced).
    {"toolops_complete_value",
     "WITH lease AS (UPDATE {l} SET expires_at = LEAST(expires_at, {now})"
     " WHERE digest = $1 AND token = $2 RETURNING digest),"
     " written AS (INSERT INTO {t} (digest, tool, stale_until, envelope)"
     " SELECT $1, $3, $4, $5 FROM lease"
     " ON CONFLICT (digest) DO UPDATE SET tool = EXCLUDED.tool,"
     " stale_until = EXCLUDED.stale_until, envelope = EXCLUDED.envelope RETURNING 1)"
     " SELECT (SELECT count(*) FROM written) FROM (SELECT pg_notify('{c}', $1)) AS sent",
     5,
     {kTextOid, kInt8Oid, kTextOid, kInt8Oid, kByteaOid}},
    // Releases the lease of token $2, leaving the leader's error ($3 code, 0
    // for none; $4 message) for $5 us, and notifies the followers. Returns
    // how many leases were released.
    {"toolops_finish_lease",
     "WITH lease AS (UPDATE {l} SET expires_at = LEAST(expires_at, {now}),"
     " error_code = $3, error_message = $4, error_until = {now} + $5"
     " WHERE digest = $1 AND token = $2 RETURNING 1)"
     " SELECT (SELECT count(*) FROM lease) FROM (SELECT pg_notify('{c}', $1)) AS sent",
     5,
     {kTextOid, kInt8Oid, kInt8Oid, kTextOid, kInt8Oid}},
    // What a follower looks at: the entry, and the lease (token, still held,
    // error code and message, error still valid). Always one row.
    {"toolops_wait_state",
     "SELECT e.envelope, l.token, l.expires_at > n.us, l.error_code, l.error_message,"
     " l.error_until > n.us"
     " FROM (SELECT {now} AS us) AS n LEFT JOIN {t} AS e ON e.digest = $1"
     " LEFT JOIN {l} AS l ON l.digest = $1",
     1,
     {kTextOid}},
    // One batch of lease rows expired for longer than $1 us, as for entries.
    {"toolops_purge_leases",
     "DELETE FROM {l} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {l} WHERE expires_at < {now} - $1"
     " LIMIT $2 FOR UPDATE SKIP LOCKED)) AND expires_at < {now} - $1",
     2,
     {kInt8Oid, kInt8Oid}},
    // Every entry of one tool ($1) not expired at $2 (Unix ns): the
    // statistics snapshots.
    {"toolops_read_tool",
     "SELECT envelope FROM {t} WHERE tool = $1 AND stale_until > $2",
     2,
     {kTextOid, kInt8Oid}},
}};

// The server's clock, in Unix microseconds: the clock of every lease.
constexpr std::string_view kServerNow = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

// Whether every table, index and sequence exists, and the entry table's
// comment: when all are there, Open takes no lock (CREATE INDEX IF NOT
// EXISTS takes one that stops the table's writers even when the index
// exists).
constexpr const char* kSchemaPresentSql =
    "SELECT to_regclass('{t}') IS NOT NULL AND to_regclass('\"{n}_stale_until\"') IS NOT NULL"
    " AND to_regclass('\"{n}_tool\"') IS NOT NULL AND to_regclass('{l}') IS NOT NULL"
    " AND to_regclass('\"{n}_leases_expiry\"') IS NOT NULL"
    " AND to_regclass('\"{n}_lease_token\"') IS NOT NULL,"
    " coalesce(obj_description(to_regclass('{t}'), 'pg_class'), '')";

// Creates the tables, their indexes and the token sequence, and reads the
// entry table's comment, in one transaction that the caller ends. {t} and
// {l} are the quoted table names, {n} the bare one (for the lock key and the
// index and sequence names). The lease table comes first: completion
// statements lock it before the entry table, and so must this transaction
// (CREATE INDEX locks its table even when the index exists), or the two can
// deadlock.
constexpr const char* kSchemaSql =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(hashtext('toolops schema {n}'));"
    "CREATE TABLE IF NOT EXISTS {l} ("
    " digest text COLLATE \"C\" PRIMARY KEY,"
    " token bigint NOT NULL,"
    " holder text NOT NULL,"
    " expires_at bigint NOT NULL,"
    " error_code bigint NOT NULL DEFAULT 0,"
    " error_message text NOT NULL DEFAULT '',"
    " error_until bigint NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS \"{n}_leases_expiry\" ON {l} (expires_at);"
    "CREATE SEQUENCE IF NOT EXISTS \"{n}_lease_token\";"
    "CREATE TABLE IF NOT EXISTS {t} ("
    " digest text COLLATE \"C\" PRIMARY KEY,"
    " tool text COLLATE \"C\" NOT NULL,"
    " stale_until bigint NOT NULL,"
    " envelope bytea NOT NULL);"
    "CREATE INDEX IF NOT EXISTS \"{n}_stale_until\" ON {t} (stale_until);"
    "CREATE INDEX IF NOT EXISTS \"{n}_tool\" ON {t} (tool);"
    "SELECT coalesce(obj_description('{t}'::regclass, 'pg_class'), '')";

std::string ReplaceAll(std::string text, std::string_view from, std::string_view to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

Status StoreError(StatusCode code, std::string_view store, std::string_view message) {
  return Status(code, "postgres store '" + std::string(store) + "': " + std::string(message),
                Guard::kStore);
}

// libpq's last message for a connection, without its trailing newline.
std::string ConnectionMessage(const PGconn* conn) {
  std::string message = conn != nullptr ? PQerrorMessage(conn) : "no connection";
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  return message.empty() ? "unknown libpq error" : message;
}

std::string ResultMessage(const PGresult* result) {
  std::string message = PQresultErrorMessage(result);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  return message.empty() ? std::string(PQresStatus(PQresultStatus(result))) : message;
}

int64_t CeilMillis(Duration d) { return std::chrono::ceil<milliseconds>(d).count(); }

struct ResultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
using PgResult = std::unique_ptr<PGresult, ResultDeleter>;

bool Succeeded(const PGresult* result) {
  ExecStatusType status = PQresultStatus(result);
  return status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
}

// One connection and the state the pool and the store keep for it. Used by
// one thread at a time.
struct Connection {
  Connection() = default;
  ~Connection() {
    if (conn != nullptr) PQfinish(conn);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool healthy() const { return conn != nullptr && !abandoned && PQstatus(conn) == CONNECTION_OK; }

  PGconn* conn = nullptr;
  // A statement was given up with its reply outstanding: the connection is
  // out of step with the server and must be closed.
  bool abandoned = false;
  // Opened for the current lease rather than taken from the idle list. A
  // connection that was idle may have died meanwhile without anyone seeing.
  bool fresh = true;
};

enum class Ready { kYes, kTimedOut, kFailed };

// Waits until the connection's socket can be read (and/or written) or the
// deadline passes.
Ready WaitForSocket(PGconn* conn, bool read, bool write, Deadline deadline) {
  int fd = PQsocket(conn);
  if (fd < 0) return Ready::kFailed;
  pollfd watch{};
  watch.fd = fd;
  watch.events = static_cast<short>((read ? POLLIN : 0) | (write ? POLLOUT : 0));
  while (true) {
    Duration left = deadline - SteadyClock::now();
    if (left <= Duration::zero()) return Ready::kTimedOut;
    int rc = poll(&watch, 1, static_cast<int>(std::min<int64_t>(CeilMillis(left), INT_MAX)));
    // Errors and hang-ups count as ready: libpq reads them and reports.
    if (rc > 0) return Ready::kYes;
    if (rc < 0 && errno != EINTR) return Ready::kFailed;
  }
}

// Sends what a PQsend* call queued and collects the whole reply, by
// `deadline`. Returns the first failed result if any, else the last result.
// Returns null with *error set when the connection failed, or when the reply
// did not come in time (the connection is then marked abandoned).
PgResult AwaitReply(Connection& connection, Deadline deadline, std::string* error) {
  PGconn* conn = connection.conn;
  auto give_up = [&](Ready ready) {
    if (ready == Ready::kTimedOut) {
      connection.abandoned = true;
      *error = "no reply from the server in time";
    } else {
      *error = "cannot wait for the server: " + ConnectionMessage(conn);
    }
    return nullptr;
  };

  // Send. The server may answer (or fail) before it has read everything.
  while (true) {
    int flushed = PQflush(conn);
    if (flushed == 0) break;
    if (flushed < 0) {
      *error = ConnectionMessage(conn);
      return nullptr;
    }
    Ready ready = WaitForSocket(conn, true, true, deadline);
    if (ready != Ready::kYes) return give_up(ready);
    if (PQconsumeInput(conn) == 0) {
      *error = ConnectionMessage(conn);
      return nullptr;
    }
  }

  // Receive every result of the query.
  PgResult kept;
  while (true) {
    while (PQisBusy(conn)) {
      Ready ready = WaitForSocket(conn, true, false, deadline);
      if (ready != Ready::kYes) return give_up(ready);
      if (PQconsumeInput(conn) == 0) break;  // PQgetResult reports what is known.
    }
    PgResult next(PQgetResult(conn));
    if (next == nullptr) break;
    // The first failure sticks; otherwise the latest result replaces the last.
    if (kept == nullptr || Succeeded(kept.get())) kept = std::move(next);
    if (PQstatus(conn) == CONNECTION_BAD) break;
  }
  if (kept == nullptr) *error = ConnectionMessage(conn);
  return kept;
}

// Runs SQL text (one or more statements) on `connection`: the last result,
// or Unavailable with the first error (callers add the store's name).
Result<PgResult> Exec(Connection& connection, const std::string& sql, Duration timeout) {
  if (PQsendQuery(connection.conn, sql.c_str()) == 0) {
    return Status(StatusCode::kUnavailable, ConnectionMessage(connection.conn));
  }
  std::string error;
  PgResult result = AwaitReply(connection, SteadyClock::now() + timeout, &error);
  if (result == nullptr) return Status(StatusCode::kUnavailable, error);
  if (!Succeeded(result.get())) {
    return Status(StatusCode::kUnavailable, ResultMessage(result.get()));
  }
  return result;
}

// Up to kMaxParams statement parameters, all in binary format. Views are
// borrowed: they must outlive the statement.
class Params {
 public:
  void Text(std::string_view text) { Add(text); }
  void Binary(std::string_view bytes) { Add(bytes); }
  void Int8(int64_t value) {
    char* out = ints_[count_].data();
    uint64_t u = static_cast<uint64_t>(value);
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(u >> (56 - 8 * i));
    Add(std::string_view(out, 8));
  }

  int count() const { return count_; }
  const char* const* values() const { return values_.data(); }
  const int* lengths() const { return lengths_.data(); }
  const int* formats() const { return formats_.data(); }

 private:
  void Add(std::string_view bytes) {
    // A null pointer would be SQL NULL: an empty value needs a real one.
    values_[count_] = bytes.data() != nullptr ? bytes.data() : "";
    lengths_[count_] = static_cast<int>(bytes.size());
    ++count_;
  }

  int count_ = 0;
  std::array<const char*, kMaxParams> values_{};
  std::array<int, kMaxParams> lengths_{};
  std::array<int, kMaxParams> formats_{1, 1, 1, 1, 1};
  std::array<std::array<char, 8>, kMaxParams> ints_{};
};

// A binary int8 field.
int64_t Int8At(const PGresult* result, int row, int column) {
  if (PQgetlength(result, row, column) != 8) return 0;
  const char* in = PQgetvalue(result, row, column);
  uint64_t u = 0;
  for (int i = 0; i < 8; ++i) u = (u << 8) | static_cast<unsigned char>(in[i]);
  return static_cast<int64_t>(u);
}

void IgnoreNotice(void*, const char*) {}

// A field that may be SQL NULL, as bytes.
std::optional<std::string_view> FieldAt(const PGresult* result, int row, int column) {
  if (PQgetisnull(result, row, column) != 0) return std::nullopt;
  return std::string_view(PQgetvalue(result, row, column),
                          static_cast<size_t>(PQgetlength(result, row, column)));
}

// A binary bool field; false for NULL.
bool BoolAt(const PGresult* result, int row, int column) {
  std::optional<std::string_view> field = FieldAt(result, row, column);
  return field && field->size() == 1 && (*field)[0] != 0;
}

struct Config {
  std::string conninfo;
  std::string name;
  std::string table;   // Quoted.
  std::string leases;  // Quoted.
  // The notification channel: letters and digits only.
  std::string channel;
  Duration connect_timeout;
  Duration statement_timeout;
  // Pauses between connection attempts while the server is unreachable.
  Duration first_reconnect_pause;
  Duration max_reconnect_pause;
  std::array<std::string, kStatementCount> sql;
};

// Creates the table and its indexes if missing and checks the schema
// version, in one transaction under an advisory lock: CREATE ... IF NOT
// EXISTS alone can fail when two sessions create one table at once.
Status SetUpSchema(Connection& connection, const Config& config, const std::string& raw_table) {
  const std::string& t = config.table;
  auto names = [&](const char* sql) {
    return ReplaceAll(ReplaceAll(ReplaceAll(sql, "{t}", t), "{l}", config.leases), "{n}",
                      raw_table);
  };
  // A table's comment: OK for ours of a version we read.
  auto check = [&](const std::string& text) {
    if (!text.starts_with(kSchemaComment)) {
      return StoreError(StatusCode::kFailedPrecondition, config.name,
                        "table " + t + " is not a toolops table (its comment is '" + text + "')");
    }
    int version = std::atoi(text.c_str() + kSchemaComment.size());
    if (version > kSchemaVersion) {
      return StoreError(StatusCode::kFailedPrecondition, config.name,
                        "table " + t + " has schema version " + std::to_string(version) +
                            "; this build reads version " + std::to_string(kSchemaVersion));
    }
    return Status::Ok();
  };
  Duration timeout = config.statement_timeout + kReplyGrace;

  // All there and stamped: nothing to create.
  Result<PgResult> present = Exec(connection, names(kSchemaPresentSql), timeout);
  if (present.ok() && PQntuples(present->get()) == 1 &&
      std::string_view(PQgetvalue(present->get(), 0, 0)) == "t") {
    std::string text = PQgetvalue(present->get(), 0, 1);
    if (!text.empty()) return check(text);
  }

  Result<PgResult> comment = Exec(connection, names(kSchemaSql), timeout);
  if (!comment.ok()) {
    return StoreError(StatusCode::kUnavailable, config.name,
                      "cannot create table " + t + ": " + std::string(comment.status().message()));
  }
  std::string text = PQntuples(comment->get()) == 1 ? PQgetvalue(comment->get(), 0, 0) : "";

  // Stamp a new table; refuse a newer or a foreign one.
  std::string finish = "COMMIT";
  if (text.empty()) {
    finish = "COMMENT ON TABLE " + t + " IS '" + std::string(kSchemaComment) +
             std::to_string(kSchemaVersion) + "';COMMIT";
  } else if (Status ours = check(text); !ours.ok()) {
    return ours;
  }
  Result<PgResult> done = Exec(connection, finish, timeout);
  if (!done.ok()) {
    return StoreError(StatusCode::kUnavailable, config.name,
                      "cannot set up table " + t + ": " + std::string(done.status().message()));
  }
  return Status::Ok();
}

// Connects within connect_timeout, sets the session up and prepares the
// statements. When `raw_table` is not empty, also creates the schema.
Result<std::unique_ptr<Connection>> OpenConnection(const Config& config,
                                                   const std::string& raw_table = "") {
  auto fail = [&](std::string message) {
    return StoreError(StatusCode::kUnavailable, config.name, message);
  };
  auto connection = std::make_unique<Connection>();

  // Connect. Later keywords override the connection string's; libpq's own
  // connect_timeout counts whole seconds from 2, the deadline is exact.
  const Deadline deadline = SteadyClock::now() + config.connect_timeout;
  std::string timeout_seconds =
      std::to_string(std::max<int64_t>(2, (CeilMillis(config.connect_timeout) + 999) / 1000));
  const char* const keys[] = {"dbname", "connect_timeout", "fallback_application_name", nullptr};
  const char* const values[] = {config.conninfo.c_str(), timeout_seconds.c_str(), "toolops",
                                nullptr};
  connection->conn = PQconnectStartParams(keys, values, /*expand_dbname=*/1);
  PGconn* conn = connection->conn;
  if (conn == nullptr) return fail("cannot allocate a connection");
  if (PQstatus(conn) == CONNECTION_BAD) return fail("cannot connect: " + ConnectionMessage(conn));
  PostgresPollingStatusType polling = PGRES_POLLING_WRITING;
  while (polling != PGRES_POLLING_OK) {
    if (polling == PGRES_POLLING_FAILED) return fail("cannot connect: " + ConnectionMessage(conn));
    Ready ready = WaitForSocket(conn, polling == PGRES_POLLING_READING,
                                polling == PGRES_POLLING_WRITING, deadline);
    if (ready == Ready::kTimedOut) {
      return fail("cannot connect within " + std::to_string(CeilMillis(config.connect_timeout)) +
                  " ms (connect_timeout)");
    }
    if (ready == Ready::kFailed) return fail("cannot connect: " + ConnectionMessage(conn));
    polling = PQconnectPoll(conn);
  }
  // Notices ("relation already exists, skipping") would go to stderr.
  PQsetNoticeProcessor(conn, &IgnoreNotice, nullptr);
  if (PQsetnonblocking(conn, 1) != 0) {
    return fail("cannot switch to nonblocking mode: " + ConnectionMessage(conn));
  }

  // The session's bound on every statement, enforced by the server.
  Duration timeout = config.statement_timeout + kReplyGrace;
  Result<PgResult> set = Exec(
      *connection,
      "SET statement_timeout = " + std::to_string(CeilMillis(config.statement_timeout)), timeout);
  if (!set.ok()) {
    return fail("cannot set statement_timeout: " + std::string(set.status().message()));
  }

  if (!raw_table.empty()) {
    Status schema = SetUpSchema(*connection, config, raw_table);
    if (!schema.ok()) return schema;
  }

  for (int i = 0; i < kStatementCount; ++i) {
    const StatementSpec& spec = kStatements[i];
    std::string error;
    PgResult result;
    if (PQsendPrepare(conn, spec.name, config.sql[i].c_str(), spec.params, spec.types.data()) !=
        0) {
      result = AwaitReply(*connection, SteadyClock::now() + timeout, &error);
    } else {
      error = ConnectionMessage(conn);
    }
    if (result != nullptr && !Succeeded(result.get())) error = ResultMessage(result.get());
    if (result == nullptr || !Succeeded(result.get())) {
      return fail("cannot prepare statements on table " + config.table + ": " + error);
    }
  }
  return connection;
}

// The connections of one store: at most `size` exist; healthy idle ones wait
// in a list, so a connection taken from it was fine when it was put back.
// Safe for concurrent use.
class ConnectionPool {
 public:
  ConnectionPool(Config config, size_t size) : config_(std::move(config)), size_(size) {}

  const Config& config() const { return config_; }

  // Adds a connection opened elsewhere (the one Open() set up).
  void Adopt(std::unique_ptr<Connection> connection) TOOLOPS_EXCLUDES(mu_) {
    connection->fresh = false;
    MutexLock lock(&mu_);
    ++open_;
    idle_.push_back(std::move(connection));
  }

  // A healthy connection for the caller's exclusive use: an idle one, else
  // a new one when the bound allows, else the first one released. Unavailable
  // when none is free within connect_timeout + statement_timeout, when a new
  // one cannot be opened, or while the pause after a failed attempt lasts.
  Result<std::unique_ptr<Connection>> Acquire() TOOLOPS_EXCLUDES(mu_) {
    Result<std::unique_ptr<Connection>> idle = TakeIdleOrReserve();
    if (!idle.ok() || *idle != nullptr) return idle;

    // Connecting takes round trips: outside the lock.
    Result<std::unique_ptr<Connection>> connection = OpenConnection(config_);
    MutexLock lock(&mu_);
    if (connection.ok()) {
      pause_ = Duration::zero();
      retry_at_ = Deadline();
    } else {
      --open_;
      pause_ = pause_ == Duration::zero() ? config_.first_reconnect_pause
                                          : std::min(2 * pause_, config_.max_reconnect_pause);
      retry_at_ = SteadyClock::now() + pause_;
      cv_.notify_one();
    }
    return connection;
  }

  // Returns a connection taken with Acquire(); one that is not healthy any
  // more is closed (its slot freed). Returns whether it was closed.
  bool Release(std::unique_ptr<Connection> connection) TOOLOPS_EXCLUDES(mu_) {
    if (!connection->healthy()) {
      connection.reset();  // Closing may write to the socket: outside the lock.
      MutexLock lock(&mu_);
      --open_;
      cv_.notify_one();
      return true;
    }
    connection->fresh = false;
    MutexLock lock(&mu_);
    idle_.push_back(std::move(connection));
    cv_.notify_one();
    return false;
  }

 private:
  // Waits until a connection is idle (returns it) or the bound leaves room
  // for one more (counts it as open and returns null). Unavailable when
  // neither happens within connect_timeout + statement_timeout, or when a
  // new one is needed while the pause after a failed attempt lasts.
  Result<std::unique_ptr<Connection>> TakeIdleOrReserve() TOOLOPS_EXCLUDES(mu_) {
    const Deadline deadline =
        SteadyClock::now() + config_.connect_timeout + config_.statement_timeout;
    std::unique_lock<Mutex> lock(mu_);
    bool free = cv_.wait_until(lock, deadline, [this]() TOOLOPS_NO_THREAD_SAFETY_ANALYSIS {
      return !idle_.empty() || open_ < size_;
    });
    mu_.AssertHeld();  // The wait returns with the lock held.
    if (!free) {
      return StoreError(StatusCode::kUnavailable, config_.name,
                        "no connection came free within connect_timeout + statement_timeout");
    }
    if (!idle_.empty()) {
      std::unique_ptr<Connection> connection = std::move(idle_.back());
      idle_.pop_back();
      return connection;
    }
    Deadline now = SteadyClock::now();
    if (now < retry_at_) {
      return StoreError(StatusCode::kUnavailable, config_.name,
                        "the server was unreachable; next attempt in " +
                            std::to_string(CeilMillis(retry_at_ - now)) + " ms");
    }
    ++open_;
    return std::unique_ptr<Connection>();
  }

  const Config config_;
  const size_t size_;

  Mutex mu_;
  std::condition_variable_any cv_;
  std::vector<std::unique_ptr<Connection>> idle_ TOOLOPS_GUARDED_BY(mu_);
  // Connections idle, leased or being opened.
  size_t open_ TOOLOPS_GUARDED_BY(mu_) = 0;
  // While the server is unreachable: no attempt before retry_at_, and the
  // pause grows with each failed attempt.
  Deadline retry_at_ TOOLOPS_GUARDED_BY(mu_);
  Duration pause_ TOOLOPS_GUARDED_BY(mu_) = Duration::zero();
};

// A connection of its own that LISTENs on the store's channel; its
// notifications are read by PostgresStoreImpl::Listen.
Result<std::unique_ptr<Connection>> OpenListener(const Config& config) {
  Result<std::unique_ptr<Connection>> connection = OpenConnection(config);
  if (!connection.ok()) return connection;
  Result<PgResult> listen = Exec(**connection, "LISTEN \"" + config.channel + "\"",
                                 config.statement_timeout + kReplyGrace);
  if (!listen.ok()) {
    return StoreError(StatusCode::kUnavailable, config.name,
                      "cannot LISTEN: " + std::string(listen.status().message()));
  }
  return connection;
}

// "host:pid:random", naming this store object in the lease table.
std::string InstanceName() {
  std::array<char, 256> host{};
  if (gethostname(host.data(), host.size() - 1) != 0) host[0] = '\0';
  return std::string(host.data()) + ":" + std::to_string(getpid()) + ":" +
         std::to_string(std::random_device()());
}

int64_t Micros(Duration d) { return std::chrono::ceil<std::chrono::microseconds>(d).count(); }

int64_t SteadyNanos(TimePoint tp) {
  return std::chrono::duration_cast<Duration>(tp.time_since_epoch()).count();
}

class PostgresStoreImpl final : public PostgresStore, public FlightCoordinator, public EntryBoard {
 public:
  PostgresStoreImpl(const PostgresStoreOptions& options, Clock* clock, UnixClock unix_clock,
                    Config config)
      : EntryBoard(this, clock, unix_clock, options.key_namespace),
        name_(options.name),
        namespace_(options.key_namespace),
        namespace_begin_(options.key_namespace + ":"),
        namespace_end_(options.key_namespace + ";"),  // ';' follows ':' in byte order.
        max_value_bytes_(options.max_value_bytes),
        purge_batch_(options.purge_batch),
        reply_timeout_(config.statement_timeout + kReplyGrace),
        lease_ttl_(options.lease_ttl),
        error_ttl_(options.error_ttl),
        follower_poll_(options.follower_poll),
        max_reconnect_pause_(options.outage_max_backoff),
        instance_(InstanceName()),
        clock_(clock),
        unix_clock_(unix_clock ? std::move(unix_clock) : UnixClock(&UnixNowNanos)),
        pool_(std::move(config), options.pool_size),
        health_(name_, options.outage_initial_backoff, options.outage_max_backoff, RealClock()) {}

  ~PostgresStoreImpl() override {
    {
      MutexLock lock(&threads_mu_);
      stopping_ = true;
    }
    threads_cv_.notify_all();
    if (keeper_.joinable()) keeper_.join();
    if (listener_.joinable()) listener_.join();
  }

  void Adopt(std::unique_ptr<Connection> connection) { pool_.Adopt(std::move(connection)); }

  // Starts the lease keeper and the listener, on `listening` when Open could
  // open it (else the listener opens its own).
  void Start(std::unique_ptr<Connection> listening) {
    if (listening != nullptr) listening_.store(true, std::memory_order_relaxed);
    keeper_ = std::thread([this] { KeepLeases(); });
    listener_ = std::thread(
        [this, connection = std::move(listening)]() mutable { Listen(std::move(connection)); });
  }

  std::optional<StoredValue> Get(const KeyRef& key, TimePoint now) override {
    std::string digest = StoreKeyDigest(namespace_, key.bytes);
    if (digest.empty()) return Failed(), Miss();
    Params params;
    params.Text(digest);
    Result<PgResult> result = Run(kGet, params);
    if (!result.ok()) return Failed(), Miss();
    const PGresult* rows = result->get();
    if (PQntuples(rows) == 0) return Miss();
    std::string_view raw(PQgetvalue(rows, 0, 0), static_cast<size_t>(PQgetlength(rows, 0, 0)));
    EnvelopeResult decoded = DecodeEnvelope(raw, *clock_, unix_clock_());

    // Refused: count, and delete the row unless it changed meanwhile.
    if (!decoded.ok()) {
      corrupt_.fetch_add(1, std::memory_order_relaxed);
      Params erase;
      erase.Text(digest);
      erase.Binary(raw);
      if (!Run(kEraseCorrupt, erase).ok()) Failed();
      return Miss();
    }
    if (decoded.value->stale_until <= now) {
      expirations_.fetch_add(1, std::memory_order_relaxed);
      return Miss();
    }
    hits_.fetch_add(1, std::memory_order_relaxed);
    return std::move(decoded.value);
  }

  Status Put(const KeyRef& key, const StoredValue& value, TimePoint now) override {
    std::string digest = StoreKeyDigest(namespace_, key.bytes);
    if (digest.empty()) {
      Failed();
      return StoreError(StatusCode::kUnavailable, name_, "cannot compute a key digest");
    }

    // Entries that cannot or need not be stored leave no older value behind.
    if (value.value.size() > max_value_bytes_) {
      rejected_.fetch_add(1, std::memory_order_relaxed);
      (void)EraseDigest(digest);
      return StoreError(StatusCode::kResourceExhausted, name_,
                        "value of " + std::to_string(value.value.size()) +
                            " bytes exceeds the limit of " + std::to_string(max_value_bytes_) +
                            " bytes (max_value_bytes)");
    }
    if (value.stale_until <= now) {
      Result<bool> erased = EraseDigest(digest);
      return erased.ok() ? Status::Ok() : erased.status();
    }

    // Encode with one reading of the wall clock for the envelope and the row.
    int64_t unix_now = unix_clock_();
    Bytes envelope = EncodeEnvelope(value, *clock_, unix_now);
    if (envelope.empty()) {
      Failed();
      return StoreError(StatusCode::kUnavailable, name_, "cannot encode the envelope");
    }
    int64_t stale_ns = SteadyToUnixNanos(value.stale_until, clock_->Now(), unix_now);
    std::string_view tool = std::string_view(digest).substr(0, digest.rfind(':'));

    // Write.
    Params params;
    params.Text(digest);
    params.Text(tool);
    params.Int8(stale_ns);
    params.Binary(envelope.view());
    Result<PgResult> result = Run(kPut, params);
    if (!result.ok()) return Failed(result.status().WithContext("put failed"));
    MaybePurge();
    return Status::Ok();
  }

  bool Erase(const KeyRef& key) override {
    std::string digest = StoreKeyDigest(namespace_, key.bytes);
    if (digest.empty()) return Failed(), false;
    Result<bool> erased = EraseDigest(digest);
    return erased.ok() && erased.value();
  }

  size_t EraseByPrefix(std::string_view prefix) override {
    Params params;
    Statement which = kEraseRange;
    std::string tool;
    if (prefix.empty()) {
      params.Text(namespace_begin_);
      params.Text(namespace_end_);
    } else {
      if (!IsToolPrefix(prefix)) return 0;
      tool = StoreToolDigest(namespace_, prefix);
      if (tool.empty()) return Failed(), 0;
      params.Text(tool);
      which = kEraseTool;
    }
    Result<PgResult> result = Run(which, params);
    if (!result.ok()) return Failed(), 0;
    return static_cast<size_t>(std::strtoull(PQcmdTuples(result->get()), nullptr, 10));
  }

  StoreStats Stats() const override {
    StoreStats stats;
    stats.hits = hits_.load(std::memory_order_relaxed);
    stats.misses = misses_.load(std::memory_order_relaxed);
    stats.expirations = expirations_.load(std::memory_order_relaxed);
    stats.rejected = rejected_.load(std::memory_order_relaxed);

    Params params;
    params.Text(namespace_begin_);
    params.Text(namespace_end_);
    Result<PgResult> result = Run(kCount, params);
    if (!result.ok() || PQntuples(result->get()) != 1) return Failed(), stats;
    stats.entries = static_cast<uint64_t>(Int8At(result->get(), 0, 0));
    stats.bytes = static_cast<uint64_t>(Int8At(result->get(), 0, 1));
    return stats;
  }

  std::string_view name() const override { return name_; }

  FlightCoordinator* coordinator() override { return this; }

  // EntryBoard ---------------------------------------------------------------
  //
  // Statistics snapshots and per-call tags are rows of the entry table under
  // tool ids of their own (see entry_board.h).

  // One indexed statement on the tool column.
  Result<std::vector<std::string>> ToolEnvelopes(std::string_view prefix,
                                                 std::string_view failure) override {
    std::string tool = StoreToolDigest(namespace_, prefix);
    if (tool.empty()) return DigestFailed();
    Params params;
    params.Text(tool);
    params.Int8(unix_clock_());
    Result<PgResult> result = Run(kReadTool, params);
    if (!result.ok()) return Failed(result.status().WithContext(failure));
    const PGresult* rows = result->get();
    std::vector<std::string> envelopes;
    for (int i = 0; i < PQntuples(rows); ++i) {
      envelopes.emplace_back(PQgetvalue(rows, i, 0), static_cast<size_t>(PQgetlength(rows, i, 0)));
    }
    return envelopes;
  }

  PostgresStoreCounters counters() const override {
    PostgresStoreCounters counters;
    counters.corrupt = corrupt_.load(std::memory_order_relaxed);
    counters.failed = failed_.load(std::memory_order_relaxed);
    counters.purged = purged_.load(std::memory_order_relaxed);
    counters.connections_dropped = dropped_.load(std::memory_order_relaxed);
    counters.outages = health_.episodes();
    counters.leases_taken = leases_taken_.load(std::memory_order_relaxed);
    counters.leases_lost = leases_lost_.load(std::memory_order_relaxed);
    counters.fenced = fenced_.load(std::memory_order_relaxed);
    counters.notifications = notifications_.load(std::memory_order_relaxed);
    counters.leases_purged = leases_purged_.load(std::memory_order_relaxed);
    return counters;
  }

  bool down() const override { return health_.down(); }
  bool listening() const override { return listening_.load(std::memory_order_relaxed); }

  size_t PurgeExpired() override {
    Params params;
    params.Int8(unix_clock_());
    params.Int8(static_cast<int64_t>(purge_batch_));
    Result<PgResult> result = Run(kPurge, params);
    if (!result.ok()) return Failed(), 0;
    size_t purged = static_cast<size_t>(std::strtoull(PQcmdTuples(result->get()), nullptr, 10));
    purged_.fetch_add(purged, std::memory_order_relaxed);
    expirations_.fetch_add(purged, std::memory_order_relaxed);

    // Lease rows, once their error has expired and their token is past
    // fencing anyone: a former leader whose row is gone cannot write either.
    Params leases;
    leases.Int8(Micros(error_ttl_ + lease_ttl_));
    leases.Int8(static_cast<int64_t>(purge_batch_));
    Result<PgResult> deleted = Run(kPurgeLeases, leases);
    if (deleted.ok()) {
      leases_purged_.fetch_add(std::strtoull(PQcmdTuples(deleted->get()), nullptr, 10),
                               std::memory_order_relaxed);
    } else {
      Failed();
    }
    return purged;
  }

  // FlightCoordinator --------------------------------------------------------

  Lease Acquire(const KeyRef& key) override {
    std::string digest = StoreKeyDigest(namespace_, key.bytes);
    if (digest.empty()) return Failed(), Lease{};
    std::string holder = instance_ + ":" + std::to_string(attempts_.fetch_add(1) + 1);
    Params params;
    params.Text(digest);
    params.Text(holder);
    params.Int8(Micros(lease_ttl_));
    Result<PgResult> result = Run(kAcquire, params);
    if (!result.ok()) return Failed(), Lease{};
    const PGresult* rows = result->get();
    if (PQntuples(rows) != 1) return Failed(), Lease{};
    uint64_t token = static_cast<uint64_t>(Int8At(rows, 0, 0));
    if (!BoolAt(rows, 0, 1)) return Lease{Role::kFollower, token};
    leases_taken_.fetch_add(1, std::memory_order_relaxed);
    {
      MutexLock lock(&held_mu_);
      held_[digest] = token;
    }
    return Lease{Role::kLeader, token};
  }

  bool Complete(const KeyRef& key, uint64_t token, const Result<StoredValue>& outcome,
                TimePoint now) override {
    std::string digest = StoreKeyDigest(namespace_, key.bytes);
    if (digest.empty()) return Failed(), false;
    Forget(digest, token);

    // A value: written with the release, unless fenced.
    bool storable =
        outcome.ok() && outcome->value.size() <= max_value_bytes_ && outcome->stale_until > now;
    if (storable) {
      int64_t unix_now = unix_clock_();
      Bytes envelope = EncodeEnvelope(*outcome, *clock_, unix_now);
      if (!envelope.empty()) {
        int64_t stale_ns = SteadyToUnixNanos(outcome->stale_until, clock_->Now(), unix_now);
        std::string_view tool = std::string_view(digest).substr(0, digest.rfind(':'));
        Params params;
        params.Text(digest);
        params.Int8(static_cast<int64_t>(token));
        params.Text(tool);
        params.Int8(stale_ns);
        params.Binary(envelope.view());
        Result<PgResult> result = Run(kCompleteValue, params);
        if (!result.ok() || PQntuples(result->get()) != 1) return Failed(), false;
        if (Int8At(result->get(), 0, 0) == 1) {
          MaybePurge();
          return true;
        }
        fenced_.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
    }

    // An error for the followers of this lease, or a plain release.
    if (outcome.ok()) {
      FinishLease(digest, token, Status::Ok());
    } else {
      FinishLease(digest, token, outcome.status());
    }
    return false;
  }

  void Release(const KeyRef& key, uint64_t token) override {
    std::string digest = StoreKeyDigest(namespace_, key.bytes);
    if (digest.empty()) return Failed();
    Forget(digest, token);
    FinishLease(digest, token, Status::Ok());
  }

  WaitResult Wait(const KeyRef& key, const Lease& lease, TimePoint until) override {
    std::string digest = StoreKeyDigest(namespace_, key.bytes);
    if (digest.empty()) return Failed(), WaitResult{};
    uint64_t holder = lease.token;
    {
      MutexLock lock(&waiters_mu_);
      ++waiters_[digest].users;
    }

    WaitResult result;
    while (true) {
      // The generation before looking: a notification after it wakes us.
      uint64_t generation = 0;
      {
        MutexLock lock(&waiters_mu_);
        generation = waiters_[digest].generation;
      }

      Params params;
      params.Text(digest);
      Result<PgResult> state = Run(kWaitState, params);
      if (!state.ok() || PQntuples(state->get()) != 1) {
        Failed();
        result.kind = WaitResult::kUnavailable;
        break;
      }
      const PGresult* row = state->get();

      // The leader's value.
      TimePoint now = clock_->Now();
      if (std::optional<std::string_view> raw = FieldAt(row, 0, 0)) {
        EnvelopeResult decoded = DecodeEnvelope(*raw, *clock_, unix_clock_());
        if (decoded.ok() && decoded.value->fresh_until > now) {
          result.kind = WaitResult::kValue;
          result.value = std::move(decoded.value);
          break;
        }
        if (!decoded.ok()) corrupt_.fetch_add(1, std::memory_order_relaxed);
      }

      // The lease: gone, failed, held by the same or by a newer leader.
      if (PQgetisnull(row, 0, 1) != 0) {
        result.kind = WaitResult::kLeaseGone;
        break;
      }
      uint64_t token = static_cast<uint64_t>(Int8At(row, 0, 1));
      bool held = BoolAt(row, 0, 2);
      if (token == holder && BoolAt(row, 0, 5)) {
        int64_t code = Int8At(row, 0, 3);
        if (code > 0 && code <= static_cast<int64_t>(StatusCode::kUnauthenticated)) {
          result.kind = WaitResult::kError;
          result.error = Status(static_cast<StatusCode>(code),
                                std::string(FieldAt(row, 0, 4).value_or("")), Guard::kUpstream);
          break;
        }
      }
      if (!held) {
        result.kind = WaitResult::kLeaseGone;
        break;
      }
      holder = token;  // A new leader may have taken over: follow it.

      // Sleep until notified, the next look, or `until`.
      if (until != TimePoint::max() && clock_->Now() >= until) {
        result.kind = WaitResult::kTimedOut;
        break;
      }
      TimePoint real_now = std::chrono::steady_clock::now();
      Duration poll = listening_.load(std::memory_order_relaxed) ? follower_poll_ : kUnnotifiedPoll;
      TimePoint wake = real_now + poll;
      if (until != TimePoint::max()) wake = std::min(wake, real_now + (until - clock_->Now()));
      std::unique_lock<Mutex> lock(waiters_mu_);
      waiters_mu_.AssertHeld();                 // The lock above holds it.
      const WaitSlot& slot = waiters_[digest];  // Nodes stay put: the reference outlives rehashes.
      waiters_cv_.wait_until(lock, wake, [&]() TOOLOPS_NO_THREAD_SAFETY_ANALYSIS {
        return slot.generation != generation;
      });
    }
    MutexLock lock(&waiters_mu_);
    auto slot = waiters_.find(digest);
    if (--slot->second.users == 0) waiters_.erase(slot);
    return result;
  }

 private:
  // EntryBoard's hooks.
  void CountCorrupt() override { corrupt_.fetch_add(1, std::memory_order_relaxed); }
  Status DigestFailed() override {
    return Failed(StoreError(StatusCode::kUnavailable, name_, "cannot compute a key digest"));
  }

  // Counting helpers that read well in a return statement.
  std::nullopt_t Miss() const {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  void Failed() const { failed_.fetch_add(1, std::memory_order_relaxed); }
  Status Failed(Status status) const {
    Failed();
    return status;
  }

  // Runs a prepared statement on a pooled connection; its successful result
  // (rows in binary format), or Unavailable. A connection that was idle in
  // the pool and turns out dead (the server restarted, or closed it) is
  // replaced and the statement run once more: every statement here may run
  // twice without harm. A connection whose reply timed out is not retried:
  // the server may be hung, and a second wait would double the bound.
  Result<PgResult> Run(Statement which, const Params& params) const {
    if (!health_.Allow()) {
      return StoreError(StatusCode::kUnavailable, name_,
                        "skipped: the server is down and waiting to be retried");
    }
    for (int attempt = 0;; ++attempt) {
      Result<std::unique_ptr<Connection>> acquired = pool_.Acquire();
      if (!acquired.ok()) {
        health_.Failed(acquired.status());
        return acquired.status();
      }
      std::unique_ptr<Connection> connection = std::move(acquired).value();

      std::string error;
      PgResult result;
      if (PQsendQueryPrepared(connection->conn, kStatements[which].name, params.count(),
                              params.values(), params.lengths(), params.formats(),
                              /*resultFormat=*/1) != 0) {
        result = AwaitReply(*connection, SteadyClock::now() + reply_timeout_, &error);
      } else {
        error = ConnectionMessage(connection->conn);
      }
      if (result != nullptr && Succeeded(result.get())) {
        pool_.Release(std::move(connection));
        health_.Succeeded();
        return result;
      }
      if (result != nullptr) error = ResultMessage(result.get());

      bool retry = attempt == 0 && !connection->fresh && !connection->abandoned &&
                   PQstatus(connection->conn) == CONNECTION_BAD;
      if (pool_.Release(std::move(connection))) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
      }
      if (!retry) {
        Status failed = StoreError(StatusCode::kUnavailable, name_,
                                   std::string(kStatements[which].name) + ": " + error);
        // An error reply means the server is up (the statement failed); no
        // reply at all starts or continues an outage.
        if (result != nullptr) {
          health_.Succeeded();
        } else {
          health_.Failed(failed);
        }
        return failed;
      }
    }
  }

  // Deletes the row of one digest; whether there was one, or Unavailable.
  Result<bool> EraseDigest(std::string_view digest) override {
    Params params;
    params.Text(digest);
    Result<PgResult> result = Run(kErase, params);
    if (!result.ok()) return Failed(result.status());
    return std::strtoull(PQcmdTuples(result->get()), nullptr, 10) > 0;
  }

  // Stops renewing a lease that is being given up.
  void Forget(const std::string& digest, uint64_t token) {
    MutexLock lock(&held_mu_);
    auto it = held_.find(digest);
    if (it != held_.end() && it->second == token) held_.erase(it);
  }

  // Releases the lease of `token` (if it still is), leaving `error` for its
  // followers unless it is OK, and notifies them.
  void FinishLease(const std::string& digest, uint64_t token, const Status& error) {
    Params params;
    params.Text(digest);
    params.Int8(static_cast<int64_t>(token));
    params.Int8(error.ok() ? 0 : static_cast<int64_t>(error.code()));
    params.Text(error.ok() ? std::string_view() : error.message());
    params.Int8(error.ok() ? 0 : Micros(error_ttl_));
    if (!Run(kFinishLease, params).ok()) Failed();
  }

  // The lease keeper: renews the leases this process holds, every
  // lease_ttl / 3, until the store closes.
  void KeepLeases() {
    const Duration period = lease_ttl_ / 3;
    while (true) {
      {
        std::unique_lock<Mutex> lock(threads_mu_);
        threads_mu_.AssertHeld();  // The lock above holds it.
        threads_cv_.wait_for(lock, period,
                             [this]() TOOLOPS_NO_THREAD_SAFETY_ANALYSIS { return stopping_; });
        if (stopping_) return;
      }
      std::vector<std::pair<std::string, uint64_t>> held;
      {
        MutexLock lock(&held_mu_);
        held.assign(held_.begin(), held_.end());
      }
      for (const auto& [digest, token] : held) {
        Params params;
        params.Text(digest);
        params.Int8(static_cast<int64_t>(token));
        params.Int8(Micros(lease_ttl_));
        Result<PgResult> renewed = Run(kRenew, params);
        if (!renewed.ok()) {
          Failed();
          continue;  // Tried again next period; the lease may survive a short outage.
        }
        if (std::strtoull(PQcmdTuples(renewed->get()), nullptr, 10) == 1) continue;
        MutexLock lock(&held_mu_);
        auto it = held_.find(digest);
        if (it != held_.end() && it->second == token) {
          held_.erase(it);
          leases_lost_.fetch_add(1, std::memory_order_relaxed);
          Log(LogLevel::kWarning, "lease.lost",
              "postgres store '" + name_ +
                  "': a lease expired before its call finished (its result will be fenced if "
                  "another process took over)");
        }
      }
    }
  }

  // The listener: reads the notifications of the store's channel on a
  // connection of its own and wakes the followers waiting for those keys.
  // A connection that breaks (or stops answering the heartbeat) is replaced,
  // with pauses from 50 ms to outage_max_backoff; every follower looks again
  // after each new LISTEN, since notifications were lost meanwhile.
  void Listen(std::unique_ptr<Connection> connection) {
    Duration pause = kFirstReconnectPause;
    while (!Stopping()) {
      if (connection == nullptr) {
        Result<std::unique_ptr<Connection>> opened = OpenListener(pool_.config());
        if (!opened.ok()) {
          std::unique_lock<Mutex> lock(threads_mu_);
          threads_cv_.wait_for(lock, pause,
                               [this]() TOOLOPS_NO_THREAD_SAFETY_ANALYSIS { return stopping_; });
          pause = std::min(2 * pause, std::max(kFirstReconnectPause, max_reconnect_pause_));
          continue;
        }
        connection = std::move(opened).value();
        listening_.store(true, std::memory_order_relaxed);
        WakeAll();
      }
      pause = kFirstReconnectPause;
      if (!ReadNotifications(*connection)) {
        listening_.store(false, std::memory_order_relaxed);
        connection.reset();
      }
    }
  }

  // Reads notifications from `connection` until the store closes (true) or
  // the connection fails (false).
  bool ReadNotifications(Connection& connection) {
    Deadline heard = SteadyClock::now();
    while (!Stopping()) {
      Ready ready = WaitForSocket(connection.conn, true, false, SteadyClock::now() + kListenTick);
      if (ready == Ready::kFailed) return false;
      if (ready == Ready::kYes) {
        if (PQconsumeInput(connection.conn) == 0) return false;
        heard = SteadyClock::now();
      } else if (SteadyClock::now() - heard >= kListenHeartbeat) {
        // Quiet for a while: is the server still there?
        if (!Exec(connection, "SELECT 1", reply_timeout_).ok()) return false;
        heard = SteadyClock::now();
      }
      while (PGnotify* notice = PQnotifies(connection.conn)) {
        notifications_.fetch_add(1, std::memory_order_relaxed);
        Wake(notice->extra);
        PQfreemem(notice);
      }
      if (PQstatus(connection.conn) == CONNECTION_BAD) return false;
    }
    return true;
  }

  bool Stopping() {
    MutexLock lock(&threads_mu_);
    return stopping_;
  }

  // Wakes the followers waiting for `digest`, or every follower.
  void Wake(std::string_view digest) {
    {
      MutexLock lock(&waiters_mu_);
      auto it = waiters_.find(std::string(digest));
      if (it == waiters_.end()) return;
      ++it->second.generation;
    }
    waiters_cv_.notify_all();
  }
  void WakeAll() {
    {
      MutexLock lock(&waiters_mu_);
      for (auto& [digest, slot] : waiters_) ++slot.generation;
    }
    waiters_cv_.notify_all();
  }

  // Purges one batch if none ran in the last kPurgeInterval of this store.
  void MaybePurge() {
    int64_t now = SteadyNanos(clock_->Now());
    int64_t last = last_purge_ns_.load(std::memory_order_relaxed);
    if (last != kNeverPurged && now - last < kPurgeInterval.count()) return;
    if (!last_purge_ns_.compare_exchange_strong(last, now, std::memory_order_relaxed)) return;
    PurgeExpired();
  }

  // Constant after construction.
  const std::string name_;
  const std::string namespace_;
  const std::string namespace_begin_;
  const std::string namespace_end_;
  const size_t max_value_bytes_;
  const size_t purge_batch_;
  const Duration reply_timeout_;
  const Duration lease_ttl_;
  const Duration error_ttl_;
  const Duration follower_poll_;
  const Duration max_reconnect_pause_;
  const std::string instance_;
  Clock* const clock_;
  const UnixClock unix_clock_;

  // Synchronised inside.
  mutable ConnectionPool pool_;
  // Outages: skip at once while down, log once per episode.
  mutable StoreHealth health_;

  // Leases held by this process, renewed by the keeper: digest -> token.
  Mutex held_mu_;
  std::map<std::string, uint64_t> held_ TOOLOPS_GUARDED_BY(held_mu_);

  // Followers waiting, by digest: the listener bumps a slot's generation
  // when its key is notified.
  struct WaitSlot {
    uint64_t generation = 0;
    int users = 0;
  };
  Mutex waiters_mu_;
  std::condition_variable_any waiters_cv_;
  std::unordered_map<std::string, WaitSlot> waiters_ TOOLOPS_GUARDED_BY(waiters_mu_);

  // The keeper and the listener, and how they are told to stop.
  Mutex threads_mu_;
  std::condition_variable_any threads_cv_;
  bool stopping_ TOOLOPS_GUARDED_BY(threads_mu_) = false;
  std::thread keeper_;
  std::thread listener_;
  std::atomic<bool> listening_{false};

  // Atomic counters.
  mutable std::atomic<uint64_t> hits_{0};
  mutable std::atomic<uint64_t> misses_{0};
  mutable std::atomic<uint64_t> expirations_{0};
  mutable std::atomic<uint64_t> rejected_{0};
  mutable std::atomic<uint64_t> corrupt_{0};
  mutable std::atomic<uint64_t> failed_{0};
  mutable std::atomic<uint64_t> purged_{0};
  mutable std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> attempts_{0};
  std::atomic<uint64_t> leases_taken_{0};
  std::atomic<uint64_t> leases_lost_{0};
  std::atomic<uint64_t> fenced_{0};
  std::atomic<uint64_t> notifications_{0};
  std::atomic<uint64_t> leases_purged_{0};
  std::atomic<int64_t> last_purge_ns_{kNeverPurged};
};

bool IsTableName(std::string_view name) {
  if (name.empty() || name.size() > kMaxTableName) return false;
  auto lower = [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; };
  if (!lower(name[0])) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return lower(c) || (c >= '0' && c <= '9'); });
}

Status ValidateOptions(const PostgresStoreOptions& options, const Clock* clock) {
  auto invalid = [&](std::string message) {
    return StoreError(StatusCode::kInvalidArgument, options.name, message);
  };
  if (clock == nullptr) return invalid("clock is null");
  if (options.conninfo.empty()) return invalid("conninfo is empty");
  char* parse_error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(options.conninfo.c_str(), &parse_error);
  PQconninfoFree(parsed);
  PQfreemem(parse_error);
  if (parsed == nullptr) {
    // libpq's message may quote the string, and the string may hold a
    // password: say only that it is wrong.
    return invalid("conninfo is not a connection string or URI that libpq can parse");
  }
  if (options.key_namespace.empty() || options.key_namespace.find(':') != std::string::npos) {
    return invalid("key_namespace '" + options.key_namespace + "' must be non-empty, without ':'");
  }
  if (!IsTableName(options.table)) {
    return invalid("table '" + options.table +
                   "' must be a lower-case SQL name: a letter or '_', then letters, digits or "
                   "'_', at most " +
                   std::to_string(kMaxTableName) + " characters");
  }
  if (options.max_value_bytes == 0) return invalid("max_value_bytes must be positive");
  if (options.max_value_bytes > kMaxValueBytes) {
    return invalid("max_value_bytes is " + std::to_string(options.max_value_bytes) +
                   "; it must be at most " + std::to_string(kMaxValueBytes));
  }
  if (options.connect_timeout < milliseconds(1)) {
    return invalid("connect_timeout must be at least 1 ms");
  }
  if (options.statement_timeout < milliseconds(1)) {
    return invalid("statement_timeout must be at least 1 ms");
  }
  if (options.pool_size == 0 || options.pool_size > kMaxPoolSize) {
    return invalid("pool_size must be between 1 and " + std::to_string(kMaxPoolSize));
  }
  if (options.purge_batch == 0 || options.purge_batch > static_cast<uint64_t>(INT64_MAX)) {
    return invalid("purge_batch must be positive");
  }
  if (options.outage_initial_backoff <= Duration::zero() ||
      options.outage_max_backoff < options.outage_initial_backoff) {
    return invalid("outage_initial_backoff must be positive and not above outage_max_backoff");
  }
  if (options.lease_ttl < milliseconds(30)) return invalid("lease_ttl must be at least 30 ms");
  if (options.error_ttl <= Duration::zero()) return invalid("error_ttl must be positive");
  if (options.follower_poll <= Duration::zero()) {
    return invalid("follower_poll must be positive");
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<PostgresStore>> PostgresStore::Open(const PostgresStoreOptions& options,
                                                           Clock* clock, UnixClock unix_clock) {
  Status valid = ValidateOptions(options, clock);
  if (!valid.ok()) return valid;
  if (PQisthreadsafe() == 0) {
    return StoreError(StatusCode::kFailedPrecondition, options.name,
                      "the libpq library was built without thread support");
  }

  Config config;
  config.conninfo = options.conninfo;
  config.name = options.name;
  config.table = "\"" + options.table + "\"";
  config.leases = "\"" + options.table + "_leases\"";
  // One channel per table and namespace; any namespace fits this way.
  config.channel = "toolops_flights_" +
                   Sha256Hex(options.table + std::string(1, '\0') + options.key_namespace, 8);
  config.connect_timeout = options.connect_timeout;
  config.statement_timeout = options.statement_timeout;
  config.first_reconnect_pause = std::min(kFirstReconnectPause, options.outage_max_backoff);
  config.max_reconnect_pause = options.outage_max_backoff;
  std::string sequence = "\"" + options.table + "_lease_token\"";
  for (int i = 0; i < kStatementCount; ++i) {
    std::string sql = ReplaceAll(kStatements[i].sql, "{t}", config.table);
    sql = ReplaceAll(std::move(sql), "{l}", config.leases);
    sql = ReplaceAll(std::move(sql), "{s}", sequence);
    sql = ReplaceAll(std::move(sql), "{c}", config.channel);
    config.sql[i] = ReplaceAll(std::move(sql), "{now}", kServerNow);
  }

  // One connection sets the table up and proves the server usable before
  // the store exists; the pool opens more as threads need them.
  Result<std::unique_ptr<Connection>> first = OpenConnection(config, options.table);
  if (!first.ok()) return first.status();
  if (config.channel.size() <= std::string_view("toolops_flights_").size()) {
    return StoreError(StatusCode::kUnavailable, options.name, "cannot compute the channel name");
  }
  // Notifications work from the first call when the listening connection
  // opens now; otherwise followers poll until the listener gets one.
  Result<std::unique_ptr<Connection>> listening = OpenListener(config);
  auto store =
      std::make_unique<PostgresStoreImpl>(options, clock, std::move(unix_clock), std::move(config));
  store->Adopt(std::move(first).value());
  store->Start(listening.ok() ? std::move(listening).value() : nullptr);
  return std::unique_ptr<PostgresStore>(std::move(store));
}

Result<std::unique_ptr<Store>> NewPostgresStore(const PostgresStoreOptions& options, Clock* clock) {
  Result<std::unique_ptr<PostgresStore>> store = PostgresStore::Open(options, clock);
  if (!store.ok()) return store.status();
  return std::unique_ptr<Store>(std::move(store).value());
}

}  // namespace toolops
