// src/store/sqlite_store.cc
//
// The SQLite store. One table:
//
//   toolops_entries(digest TEXT PRIMARY KEY,   -- StoreKeyDigest(namespace, key)
//                   tool TEXT,                 -- its first part: StoreToolDigest
//                   stale_until_ns INTEGER,    -- Unix ns, for purging
//                   envelope BLOB)             -- EncodeEnvelope(value)
//
// indexed on stale_until_ns (purge batches) and on tool (ClearCache, and the
// reads below), with PRAGMA user_version holding the schema version.
//
// Statistics snapshots (StatsBoard) and the index of per-call tags
// (CallTagIndex) are ordinary rows of that table (EntryBoard, shared with the
// PostgreSQL store): they expire and are purged like entries, several
// processes sharing the file see each other's rows, and the schema stays as
// it is, so files written by older builds need no migration.
//
// Connections are opened in SQLite's multi-thread mode (no mutex of their
// own): a connection and its prepared statements are used by one thread at a
// time, handed out by ConnectionPool. The pool grows on demand up to a bound
// and keeps every connection it opened; a caller finding none free waits.

#include "toolops/sqlite_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/mutex.h"
#include "store/entry_board.h"
#include "store/envelope.h"

namespace toolops {
namespace {

constexpr int kSchemaVersion = 1;
// Purges run at most this often per store object.
constexpr Duration kPurgeInterval = std::chrono::seconds(1);
constexpr int64_t kNeverPurged = INT64_MIN;
constexpr size_t kMinConnections = 4;
constexpr size_t kMaxConnections = 32;

constexpr const char* kSchema[] = {
    "CREATE TABLE IF NOT EXISTS toolops_entries ("
    " digest TEXT PRIMARY KEY NOT NULL,"
    " tool TEXT NOT NULL,"
    " stale_until_ns INTEGER NOT NULL,"
    " envelope BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS toolops_entries_stale ON toolops_entries(stale_until_ns)",
    "CREATE INDEX IF NOT EXISTS toolops_entries_tool ON toolops_entries(tool)",
};

// The prepared statements every connection keeps.
enum Statement : int {
  kGet,
  kPut,
  kErase,
  kEraseCorrupt,
  kEraseTool,
  kEraseRange,
  kPurge,
  kCount,
  kReadTool,
  kStatementCount,
};

constexpr std::array<const char*, kStatementCount> kStatementSql = {
    // kGet
    "SELECT envelope FROM toolops_entries WHERE digest = ?1",
    // kPut
    "INSERT OR REPLACE INTO toolops_entries (digest, tool, stale_until_ns, envelope)"
    " VALUES (?1, ?2, ?3, ?4)",
    // kErase
    "DELETE FROM toolops_entries WHERE digest = ?1",
    // kEraseCorrupt: only if nobody replaced the bad entry meanwhile. Anything
    // not a blob is bad whatever it holds.
    "DELETE FROM toolops_entries WHERE digest = ?1"
    " AND (typeof(envelope) != 'blob' OR envelope = ?2)",
    // kEraseTool
    "DELETE FROM toolops_entries WHERE tool = ?1",
    // kEraseRange: digests in [?1, ?2), one namespace.
    "DELETE FROM toolops_entries WHERE digest >= ?1 AND digest < ?2",
    // kPurge
    "DELETE FROM toolops_entries WHERE rowid IN"
    " (SELECT rowid FROM toolops_entries WHERE stale_until_ns < ?1 LIMIT ?2)",
    // kCount
    "SELECT count(*), coalesce(sum(length(digest) + length(envelope)), 0)"
    " FROM toolops_entries WHERE digest >= ?1 AND digest < ?2",
    // kReadTool: the rows of one tool digest not expired at ?2 (Unix ns).
    "SELECT envelope FROM toolops_entries WHERE tool = ?1 AND stale_until_ns > ?2",
};

Status StoreError(StatusCode code, std::string_view store, std::string_view message) {
  return Status(code, "sqlite store '" + std::string(store) + "': " + std::string(message),
                Guard::kStore);
}

// One SQLite connection and its statements. Used by one thread at a time.
struct Connection {
  Connection() = default;
  ~Connection() {
    for (sqlite3_stmt* statement : statements) sqlite3_finalize(statement);
    sqlite3_close_v2(db);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // The connection's last error, for messages.
  std::string Error(std::string_view what, int rc) const {
    std::string message(what);
    message += ": ";
    message += sqlite3_errstr(rc);
    const char* detail = db != nullptr ? sqlite3_errmsg(db) : nullptr;
    if (detail != nullptr && std::string_view(detail) != sqlite3_errstr(rc)) {
      message += " (";
      message += detail;
      message += ")";
    }
    return message;
  }

  sqlite3* db = nullptr;
  std::array<sqlite3_stmt*, kStatementCount> statements{};
};

// Runs a statement that returns no rows.
int Exec(sqlite3* db, const char* sql) { return sqlite3_exec(db, sql, nullptr, nullptr, nullptr); }

// Uses one prepared statement of a connection and resets it when done, so
// that it holds no read lock and no borrowed binding after the scope.
class StatementScope {
 public:
  StatementScope(Connection& connection, Statement which)
      : statement_(connection.statements[which]) {}
  ~StatementScope() {
    sqlite3_reset(statement_);
    sqlite3_clear_bindings(statement_);
  }
  StatementScope(const StatementScope&) = delete;
  StatementScope& operator=(const StatementScope&) = delete;

  // Binding a borrowed text or blob: it must outlive the scope's last Step.
  int BindText(int index, std::string_view text) {
    return sqlite3_bind_text64(statement_, index, text.data(), text.size(), SQLITE_STATIC,
                               SQLITE_UTF8);
  }
  int BindBlob(int index, std::string_view blob) {
    return sqlite3_bind_blob64(statement_, index, blob.data(), blob.size(), SQLITE_STATIC);
  }
  int BindInt(int index, int64_t value) { return sqlite3_bind_int64(statement_, index, value); }
  int Step() { return sqlite3_step(statement_); }
  sqlite3_stmt* get() const { return statement_; }

 private:
  sqlite3_stmt* const statement_;
};

// First of the bind results that failed, or SQLITE_OK.
int FirstError(std::initializer_list<int> rcs) {
  for (int rc : rcs) {
    if (rc != SQLITE_OK) return rc;
  }
  return SQLITE_OK;
}

// Runs PRAGMA journal_mode=WAL and stores the mode it reports in `mode`.
// The switch needs an exclusive lock and, unlike other statements, fails with
// SQLITE_BUSY at once, without calling the busy handler, while another
// connection holds the file (several processes opening a new file together);
// so it is retried here for up to `busy_timeout_ms`, sleeping in between.
int SwitchToWal(sqlite3* db, int busy_timeout_ms, std::string* mode) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(busy_timeout_ms);
  auto pause = std::chrono::milliseconds(1);
  while (true) {
    sqlite3_stmt* statement = nullptr;
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &statement, nullptr);
    mode->clear();
    if (rc == SQLITE_OK) {
      rc = sqlite3_step(statement);
      if (rc == SQLITE_ROW) {
        const unsigned char* text = sqlite3_column_text(statement, 0);
        if (text != nullptr) *mode = reinterpret_cast<const char*>(text);
        rc = SQLITE_OK;
      }
    }
    sqlite3_finalize(statement);
    bool busy = (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED ||
                (rc == SQLITE_OK && *mode != "wal");
    if (!busy || std::chrono::steady_clock::now() + pause > deadline) return rc;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
}

struct Config {
  std::string path;
  std::string name;
  int busy_timeout_ms;
};

// Opens a connection with its pragmas and statements. When `set_up` is true,
// also switches the file to WAL and creates the schema (idempotent; several
// processes may do it at once).
Result<std::unique_ptr<Connection>> OpenConnection(const Config& config, bool set_up) {
  auto connection = std::make_unique<Connection>();
  auto fail = [&](std::string_view what, int rc) -> Status {
    return StoreError(StatusCode::kUnavailable, config.name,
                      connection->Error(std::string(what) + " '" + config.path + "'", rc));
  };

  // Open; the busy timeout first, so that every later step waits for locks.
  int rc = sqlite3_open_v2(
      config.path.c_str(), &connection->db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
      nullptr);
  if (rc != SQLITE_OK) return fail("cannot open", rc);
  rc = sqlite3_busy_timeout(connection->db, config.busy_timeout_ms);
  if (rc != SQLITE_OK) return fail("cannot set busy_timeout on", rc);

  // WAL and the schema, once per store object.
  if (set_up) {
    std::string mode;
    rc = SwitchToWal(connection->db, config.busy_timeout_ms, &mode);
    if (rc != SQLITE_OK) return fail("cannot switch to WAL", rc);
    if (mode != "wal") {
      return StoreError(StatusCode::kUnavailable, config.name,
                        "'" + config.path + "' cannot use WAL (journal_mode is " + mode + ")");
    }
    for (const char* sql : kSchema) {
      rc = Exec(connection->db, sql);
      if (rc != SQLITE_OK) return fail("cannot create the table in", rc);
    }
    int version = 0;
    sqlite3_stmt* statement = nullptr;
    rc = sqlite3_prepare_v2(connection->db, "PRAGMA user_version", -1, &statement, nullptr);
    if (rc == SQLITE_OK) {
      rc = sqlite3_step(statement);
      if (rc == SQLITE_ROW) {
        version = sqlite3_column_int(statement, 0);
        rc = SQLITE_OK;
      }
    }
    sqlite3_finalize(statement);
    if (rc != SQLITE_OK) return fail("cannot read the schema version of", rc);
    if (version > kSchemaVersion) {
      return StoreError(StatusCode::kFailedPrecondition, config.name,
                        "'" + config.path + "' has schema version " + std::to_string(version) +
                            "; this build reads version " + std::to_string(kSchemaVersion));
    }
    if (version < kSchemaVersion) {
      rc = Exec(connection->db, ("PRAGMA user_version=" + std::to_string(kSchemaVersion)).c_str());
      if (rc != SQLITE_OK) return fail("cannot set the schema version of", rc);
    }
  }

  // Per connection: durability level and the statements.
  rc = Exec(connection->db, "PRAGMA synchronous=NORMAL");
  if (rc != SQLITE_OK) return fail("cannot set synchronous=NORMAL on", rc);
  for (int i = 0; i < kStatementCount; ++i) {
    rc = sqlite3_prepare_v3(connection->db, kStatementSql[i], -1, SQLITE_PREPARE_PERSISTENT,
                            &connection->statements[i], nullptr);
    if (rc != SQLITE_OK) return fail("cannot prepare statements for", rc);
  }
  return connection;
}

// Connections for one store: at most max_open exist; idle ones wait in a
// list. Safe for concurrent use.
class ConnectionPool {
 public:
  ConnectionPool(Config config, size_t max_open)
      : config_(std::move(config)), max_open_(max_open) {}

  // Adds a connection opened elsewhere (the one Open() checked).
  void Adopt(std::unique_ptr<Connection> connection) TOOLOPS_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    ++open_;
    idle_.push_back(std::move(connection));
  }

  // A connection for the caller's exclusive use, opening one if none is idle
  // and the bound allows; otherwise waits for one. Unavailable if SQLite
  // cannot open one.
  Result<std::unique_ptr<Connection>> Acquire() TOOLOPS_EXCLUDES(mu_) {
    std::unique_ptr<Connection> idle = TakeIdleOrReserve();
    if (idle) return idle;
    // Opening takes file I/O: outside the lock.
    Result<std::unique_ptr<Connection>> connection = OpenConnection(config_, false);
    if (!connection.ok()) {
      MutexLock lock(&mu_);
      --open_;
      cv_.notify_one();
    }
    return connection;
  }

  // Returns a connection taken with Acquire().
  void Release(std::unique_ptr<Connection> connection) TOOLOPS_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    idle_.push_back(std::move(connection));
    cv_.notify_one();
  }

 private:
  // Waits until a connection is idle (returns it) or the bound leaves room
  // for one more (counts it as open and returns null).
  std::unique_ptr<Connection> TakeIdleOrReserve() TOOLOPS_EXCLUDES(mu_) {
    std::unique_lock<Mutex> lock(mu_);
    cv_.wait(lock, [this]() TOOLOPS_NO_THREAD_SAFETY_ANALYSIS {
      return !idle_.empty() || open_ < max_open_;
    });
    mu_.AssertHeld();  // The wait returns with the lock held.
    if (idle_.empty()) {
      ++open_;
      return nullptr;
    }
    std::unique_ptr<Connection> connection = std::move(idle_.back());
    idle_.pop_back();
    return connection;
  }

  const Config config_;
  const size_t max_open_;

  Mutex mu_;
  std::condition_variable_any cv_;
  std::vector<std::unique_ptr<Connection>> idle_ TOOLOPS_GUARDED_BY(mu_);
  size_t open_ TOOLOPS_GUARDED_BY(mu_) = 0;
};

// A connection held for one operation; returned to the pool at scope end.
class ConnectionLease {
 public:
  explicit ConnectionLease(ConnectionPool* pool) : pool_(pool) {
    Result<std::unique_ptr<Connection>> connection = pool_->Acquire();
    if (connection.ok()) {
      connection_ = std::move(connection).value();
    } else {
      status_ = connection.status();
    }
  }
  ~ConnectionLease() {
    if (connection_) pool_->Release(std::move(connection_));
  }
  ConnectionLease(const ConnectionLease&) = delete;
  ConnectionLease& operator=(const ConnectionLease&) = delete;

  bool ok() const { return connection_ != nullptr; }
  // Why there is no connection. REQUIRES: !ok().
  const Status& status() const { return status_; }
  // REQUIRES: ok().
  Connection& operator*() const { return *connection_; }

 private:
  ConnectionPool* const pool_;
  std::unique_ptr<Connection> connection_;
  Status status_;
};

int64_t SteadyNanos(TimePoint tp) {
  return std::chrono::duration_cast<Duration>(tp.time_since_epoch()).count();
}

class SqliteStoreImpl final : public SqliteStore, public EntryBoard {
 public:
  SqliteStoreImpl(const SqliteStoreOptions& options, Clock* clock, UnixClock unix_clock,
                  Config config, size_t max_connections)
      : EntryBoard(this, clock, unix_clock, options.key_namespace),
        name_(options.name),
        namespace_(options.key_namespace),
        namespace_begin_(options.key_namespace + ":"),
        namespace_end_(options.key_namespace + ";"),  // ';' follows ':' in byte order.
        max_value_bytes_(options.max_value_bytes),
        purge_batch_(options.purge_batch),
        clock_(clock),
        unix_clock_(unix_clock ? std::move(unix_clock) : UnixClock(&UnixNowNanos)),
        pool_(std::move(config), max_connections) {}

  void Adopt(std::unique_ptr<Connection> connection) { pool_.Adopt(std::move(connection)); }

  std::optional<StoredValue> Get(const KeyRef& key, TimePoint now) override {
    std::string digest = StoreKeyDigest(namespace_, key.bytes);
    if (digest.empty()) return Failed(), Miss();
    ConnectionLease lease(&pool_);
    if (!lease.ok()) return Failed(), Miss();

    // Read the row; the blob is valid until the statement is reset.
    StatementScope statement(*lease, kGet);
    int rc = FirstError({statement.BindText(1, digest)});
    if (rc == SQLITE_OK) rc = statement.Step();
    if (rc == SQLITE_DONE) return Miss();
    if (rc != SQLITE_ROW) return Failed(), Miss();
    const char* blob = static_cast<const char*>(sqlite3_column_blob(statement.get(), 0));
    int size = sqlite3_column_bytes(statement.get(), 0);
    std::string_view raw = blob != nullptr ? std::string_view(blob, size) : std::string_view();
    EnvelopeResult decoded = DecodeEnvelope(raw, *clock_, unix_clock_());

    // Refused: count, and delete the row unless it changed meanwhile.
    if (!decoded.ok()) {
      std::string bad(raw);
      sqlite3_reset(statement.get());
      corrupt_.fetch_add(1, std::memory_order_relaxed);
      StatementScope erase(*lease, kEraseCorrupt);
      rc = FirstError({erase.BindText(1, digest), erase.BindBlob(2, bad)});
      if (rc == SQLITE_OK) rc = erase.Step();
      if (rc != SQLITE_DONE) Failed();
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
    ConnectionLease lease(&pool_);
    if (!lease.ok()) return Failed(lease.status());
    {
      StatementScope statement(*lease, kPut);
      int rc = FirstError({statement.BindText(1, digest), statement.BindText(2, tool),
                           statement.BindInt(3, stale_ns), statement.BindBlob(4, envelope.view())});
      if (rc == SQLITE_OK) rc = statement.Step();
      if (rc != SQLITE_DONE) {
        return Failed(
            StoreError(StatusCode::kUnavailable, name_, (*lease).Error("put failed", rc)));
      }
    }
    MaybePurge(*lease);
    return Status::Ok();
  }

  bool Erase(const KeyRef& key) override {
    std::string digest = StoreKeyDigest(namespace_, key.bytes);
    if (digest.empty()) return Failed(), false;
    Result<bool> erased = EraseDigest(digest);
    return erased.ok() && erased.value();
  }

  size_t EraseByPrefix(std::string_view prefix) override {
    if (prefix.empty()) return EraseWith(kEraseRange, namespace_begin_, namespace_end_);
    if (!IsToolPrefix(prefix)) return 0;
    std::string tool = StoreToolDigest(namespace_, prefix);
    if (tool.empty()) return Failed(), 0;
    return EraseWith(kEraseTool, tool, std::string_view());
  }

  StoreStats Stats() const override {
    StoreStats stats;
    stats.hits = hits_.load(std::memory_order_relaxed);
    stats.misses = misses_.load(std::memory_order_relaxed);
    stats.expirations = expirations_.load(std::memory_order_relaxed);
    stats.rejected = rejected_.load(std::memory_order_relaxed);

    ConnectionLease lease(&pool_);
    if (!lease.ok()) return Failed(), stats;
    StatementScope statement(*lease, kCount);
    int rc = FirstError(
        {statement.BindText(1, namespace_begin_), statement.BindText(2, namespace_end_)});
    if (rc == SQLITE_OK) rc = statement.Step();
    if (rc != SQLITE_ROW) return Failed(), stats;
    stats.entries = static_cast<uint64_t>(sqlite3_column_int64(statement.get(), 0));
    stats.bytes = static_cast<uint64_t>(sqlite3_column_int64(statement.get(), 1));
    return stats;
  }

  std::string_view name() const override { return name_; }

  SqliteStoreCounters counters() const override {
    SqliteStoreCounters counters;
    counters.corrupt = corrupt_.load(std::memory_order_relaxed);
    counters.failed = failed_.load(std::memory_order_relaxed);
    counters.purged = purged_.load(std::memory_order_relaxed);
    return counters;
  }

  size_t PurgeExpired() override {
    ConnectionLease lease(&pool_);
    if (!lease.ok()) return Failed(), 0;
    return PurgeWith(*lease);
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

  // One indexed read on the tool column. The envelopes are copied out,
  // since a blob lives only until the statement steps again.
  Result<std::vector<std::string>> ToolEnvelopes(std::string_view prefix,
                                                 std::string_view failure) override {
    std::string tool = StoreToolDigest(namespace_, prefix);
    if (tool.empty()) return DigestFailed();
    ConnectionLease lease(&pool_);
    if (!lease.ok()) return Failed(lease.status());
    StatementScope statement(*lease, kReadTool);
    int rc = FirstError({statement.BindText(1, tool), statement.BindInt(2, unix_clock_())});
    std::vector<std::string> envelopes;
    while (rc == SQLITE_OK && (rc = statement.Step()) == SQLITE_ROW) {
      rc = SQLITE_OK;  // A row read; step again.
      const char* blob = static_cast<const char*>(sqlite3_column_blob(statement.get(), 0));
      int size = sqlite3_column_bytes(statement.get(), 0);
      envelopes.emplace_back(blob != nullptr ? std::string(blob, size) : std::string());
    }
    if (rc != SQLITE_DONE) {
      return Failed(StoreError(StatusCode::kUnavailable, name_, (*lease).Error(failure, rc)));
    }
    return envelopes;
  }

  // Deletes the row of one digest; whether there was one, or Unavailable.
  Result<bool> EraseDigest(std::string_view digest) override {
    ConnectionLease lease(&pool_);
    if (!lease.ok()) return Failed(lease.status());
    StatementScope statement(*lease, kErase);
    int rc = FirstError({statement.BindText(1, digest)});
    if (rc == SQLITE_OK) rc = statement.Step();
    if (rc != SQLITE_DONE) {
      return Failed(
          StoreError(StatusCode::kUnavailable, name_, (*lease).Error("erase failed", rc)));
    }
    return sqlite3_changes((*lease).db) > 0;
  }

  // Runs kEraseTool (one text binding) or kEraseRange (two); rows deleted.
  size_t EraseWith(Statement which, std::string_view first, std::string_view second) {
    ConnectionLease lease(&pool_);
    if (!lease.ok()) return Failed(), 0;
    StatementScope statement(*lease, which);
    int rc = statement.BindText(1, first);
    if (rc == SQLITE_OK && which == kEraseRange) rc = statement.BindText(2, second);
    if (rc == SQLITE_OK) rc = statement.Step();
    if (rc != SQLITE_DONE) return Failed(), 0;
    return static_cast<size_t>(sqlite3_changes((*lease).db));
  }

  // Purges one batch if none ran in the last kPurgeInterval of this store.
  void MaybePurge(Connection& connection) {
    int64_t now = SteadyNanos(clock_->Now());
    int64_t last = last_purge_ns_.load(std::memory_order_relaxed);
    if (last != kNeverPurged && now - last < kPurgeInterval.count()) return;
    if (!last_purge_ns_.compare_exchange_strong(last, now, std::memory_order_relaxed)) return;
    PurgeWith(connection);
  }

  size_t PurgeWith(Connection& connection) {
    StatementScope statement(connection, kPurge);
    int rc = FirstError({statement.BindInt(1, unix_clock_()),
                         statement.BindInt(2, static_cast<int64_t>(purge_batch_))});
    if (rc == SQLITE_OK) rc = statement.Step();
    if (rc != SQLITE_DONE) return Failed(), 0;
    size_t purged = static_cast<size_t>(sqlite3_changes(connection.db));
    purged_.fetch_add(purged, std::memory_order_relaxed);
    expirations_.fetch_add(purged, std::memory_order_relaxed);
    return purged;
  }

  // Constant after construction.
  const std::string name_;
  const std::string namespace_;
  const std::string namespace_begin_;
  const std::string namespace_end_;
  const size_t max_value_bytes_;
  const size_t purge_batch_;
  Clock* const clock_;
  const UnixClock unix_clock_;

  // Synchronised inside.
  mutable ConnectionPool pool_;

  // Atomic counters.
  mutable std::atomic<uint64_t> hits_{0};
  mutable std::atomic<uint64_t> misses_{0};
  mutable std::atomic<uint64_t> expirations_{0};
  mutable std::atomic<uint64_t> rejected_{0};
  mutable std::atomic<uint64_t> corrupt_{0};
  mutable std::atomic<uint64_t> failed_{0};
  mutable std::atomic<uint64_t> purged_{0};
  std::atomic<int64_t> last_purge_ns_{kNeverPurged};
};

Status ValidateOptions(const SqliteStoreOptions& options, const Clock* clock) {
  auto invalid = [&](std::string message) {
    return StoreError(StatusCode::kInvalidArgument, options.name, message);
  };
  if (clock == nullptr) return invalid("clock is null");
  if (options.path.empty() || options.path == ":memory:" || options.path.starts_with("file:")) {
    return invalid("path must name a database file, not '" + options.path + "'");
  }
  if (options.key_namespace.empty() || options.key_namespace.find(':') != std::string::npos) {
    return invalid("key_namespace '" + options.key_namespace + "' must be non-empty, without ':'");
  }
  if (options.max_value_bytes == 0) return invalid("max_value_bytes must be positive");
  if (options.max_value_bytes > kMaxEnvelopePayload) {
    return invalid("max_value_bytes is " + std::to_string(options.max_value_bytes) +
                   "; it must be at most " + std::to_string(kMaxEnvelopePayload));
  }
  if (options.busy_timeout < Duration::zero()) return invalid("busy_timeout must not be negative");
  if (options.purge_batch == 0) return invalid("purge_batch must be positive");
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const SqliteStoreOptions& options,
                                                       Clock* clock, UnixClock unix_clock) {
  Status valid = ValidateOptions(options, clock);
  if (!valid.ok()) return valid;
  if (sqlite3_threadsafe() == 0) {
    return StoreError(StatusCode::kFailedPrecondition, options.name,
                      "the SQLite library was built without thread support");
  }

  // One connection sets the file up and proves it usable before the store
  // exists; the pool opens more as threads need them.
  int64_t timeout_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(options.busy_timeout).count();
  Config config{options.path, options.name,
                static_cast<int>(std::min<int64_t>(timeout_ms, INT_MAX))};
  Result<std::unique_ptr<Connection>> first = OpenConnection(config, true);
  if (!first.ok()) return first.status();
  int64_t length_limit = sqlite3_limit((*first)->db, SQLITE_LIMIT_LENGTH, -1);
  if (static_cast<int64_t>(options.max_value_bytes + kEnvelopeOverheadBytes) > length_limit) {
    return StoreError(StatusCode::kInvalidArgument, options.name,
                      "max_value_bytes is " + std::to_string(options.max_value_bytes) +
                          "; this SQLite stores at most " + std::to_string(length_limit) +
                          " bytes per value, envelope included");
  }

  size_t max_connections =
      std::clamp<size_t>(2 * std::thread::hardware_concurrency(), kMinConnections, kMaxConnections);
  auto store = std::make_unique<SqliteStoreImpl>(options, clock, std::move(unix_clock),
                                                 std::move(config), max_connections);
  store->Adopt(std::move(first).value());
  return std::unique_ptr<SqliteStore>(std::move(store));
}

Result<std::unique_ptr<Store>> NewSqliteStore(const SqliteStoreOptions& options, Clock* clock) {
  Result<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options, clock);
  if (!store.ok()) return store.status();
  return std::unique_ptr<Store>(std::move(store).value());
}

}  // namespace toolops
