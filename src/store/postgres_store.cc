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

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/mutex.h"
#include "store/envelope.h"
#include "store/store_health.h"

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
// Pauses between connection attempts while the server is unreachable.
constexpr Duration kFirstReconnectPause = milliseconds(50);
constexpr Duration kMaxReconnectPause = std::chrono::seconds(2);
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
  kStatementCount,
};

struct StatementSpec {
  const char* name;
  // "{t}" stands for the quoted table name.
  const char* sql;
  int params;
  std::array<Oid, 4> types;
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
}};

// Creates the table and its indexes, and reads the table's comment, in one
// transaction that the caller ends. {t} is the quoted table name, {n} the
// bare one (for the lock key and the index names).
constexpr const char* kSchemaSql =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(hashtext('toolops schema {n}'));"
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

// Up to four statement parameters, all in binary format. Views are
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
  std::array<const char*, 4> values_{};
  std::array<int, 4> lengths_{};
  std::array<int, 4> formats_{1, 1, 1, 1};
  std::array<std::array<char, 8>, 4> ints_{};
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

struct Config {
  std::string conninfo;
  std::string name;
  std::string table;  // Quoted.
  Duration connect_timeout;
  Duration statement_timeout;
  std::array<std::string, kStatementCount> sql;
};

// Creates the table and its indexes if missing and checks the schema
// version, in one transaction under an advisory lock: CREATE ... IF NOT
// EXISTS alone can fail when two sessions create one table at once.
Status SetUpSchema(Connection& connection, const Config& config, const std::string& raw_table) {
  const std::string& t = config.table;
  std::string sql = ReplaceAll(ReplaceAll(kSchemaSql, "{t}", t), "{n}", raw_table);
  Duration timeout = config.statement_timeout + kReplyGrace;
  Result<PgResult> comment = Exec(connection, sql, timeout);
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
  } else if (!text.starts_with(kSchemaComment)) {
    return StoreError(StatusCode::kFailedPrecondition, config.name,
                      "table " + t + " is not a toolops table (its comment is '" + text + "')");
  } else {
    int version = std::atoi(text.c_str() + kSchemaComment.size());
    if (version > kSchemaVersion) {
      return StoreError(StatusCode::kFailedPrecondition, config.name,
                        "table " + t + " has schema version " + std::to_string(version) +
                            "; this build reads version " + std::to_string(kSchemaVersion));
    }
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
      pause_ = pause_ == Duration::zero() ? kFirstReconnectPause
                                          : std::min(2 * pause_, kMaxReconnectPause);
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

int64_t SteadyNanos(TimePoint tp) {
  return std::chrono::duration_cast<Duration>(tp.time_since_epoch()).count();
}

class PostgresStoreImpl final : public PostgresStore {
 public:
  PostgresStoreImpl(const PostgresStoreOptions& options, Clock* clock, UnixClock unix_clock,
                    Config config)
      : name_(options.name),
        namespace_(options.key_namespace),
        namespace_begin_(options.key_namespace + ":"),
        namespace_end_(options.key_namespace + ";"),  // ';' follows ':' in byte order.
        max_value_bytes_(options.max_value_bytes),
        purge_batch_(options.purge_batch),
        reply_timeout_(config.statement_timeout + kReplyGrace),
        clock_(clock),
        unix_clock_(unix_clock ? std::move(unix_clock) : UnixClock(&UnixNowNanos)),
        pool_(std::move(config), options.pool_size) {}

  void Adopt(std::unique_ptr<Connection> connection) { pool_.Adopt(std::move(connection)); }

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

  PostgresStoreCounters counters() const override {
    PostgresStoreCounters counters;
    counters.corrupt = corrupt_.load(std::memory_order_relaxed);
    counters.failed = failed_.load(std::memory_order_relaxed);
    counters.purged = purged_.load(std::memory_order_relaxed);
    counters.connections_dropped = dropped_.load(std::memory_order_relaxed);
    return counters;
  }

  size_t PurgeExpired() override {
    Params params;
    params.Int8(unix_clock_());
    params.Int8(static_cast<int64_t>(purge_batch_));
    Result<PgResult> result = Run(kPurge, params);
    if (!result.ok()) return Failed(), 0;
    size_t purged = static_cast<size_t>(std::strtoull(PQcmdTuples(result->get()), nullptr, 10));
    purged_.fetch_add(purged, std::memory_order_relaxed);
    expirations_.fetch_add(purged, std::memory_order_relaxed);
    return purged;
  }

 private:
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
  Result<bool> EraseDigest(std::string_view digest) {
    Params params;
    params.Text(digest);
    Result<PgResult> result = Run(kErase, params);
    if (!result.ok()) return Failed(result.status());
    return std::strtoull(PQcmdTuples(result->get()), nullptr, 10) > 0;
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
  Clock* const clock_;
  const UnixClock unix_clock_;

  // Synchronised inside.
  mutable ConnectionPool pool_;
  // Outages: skip at once while down, log once per episode.
  mutable StoreHealth health_{name_, std::chrono::milliseconds(100), std::chrono::seconds(2),
                              RealClock()};

  // Atomic counters.
  mutable std::atomic<uint64_t> hits_{0};
  mutable std::atomic<uint64_t> misses_{0};
  mutable std::atomic<uint64_t> expirations_{0};
  mutable std::atomic<uint64_t> rejected_{0};
  mutable std::atomic<uint64_t> corrupt_{0};
  mutable std::atomic<uint64_t> failed_{0};
  mutable std::atomic<uint64_t> purged_{0};
  mutable std::atomic<uint64_t> dropped_{0};
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
  config.connect_timeout = options.connect_timeout;
  config.statement_timeout = options.statement_timeout;
  for (int i = 0; i < kStatementCount; ++i) {
    config.sql[i] = ReplaceAll(kStatements[i].sql, "{t}", config.table);
  }

  // One connection sets the table up and proves the server usable before
  // the store exists; the pool opens more as threads need them.
  Result<std::unique_ptr<Connection>> first = OpenConnection(config, options.table);
  if (!first.ok()) return first.status();
  auto store =
      std::make_unique<PostgresStoreImpl>(options, clock, std::move(unix_clock), std::move(config));
  store->Adopt(std::move(first).value());
  return std::unique_ptr<PostgresStore>(std::move(store));
}

Result<std::unique_ptr<Store>> NewPostgresStore(const PostgresStoreOptions& options, Clock* clock) {
  Result<std::unique_ptr<PostgresStore>> store = PostgresStore::Open(options, clock);
  if (!store.ok()) return store.status();
  return std::unique_ptr<Store>(std::move(store).value());
}

}  // namespace toolops
