// src/store/sqlite_store_test.cc
//
// The SQLite store: the Store contract, TTL and purging on a FakeClock (with
// a wall clock that follows it), durability across reopening, SQLite errors
// as values, damaged entries written straight into the file, several
// processes sharing one file (fork), two wrapped tools in two "processes"
// sharing entries through the registry, and the statistics snapshots and
// per-call tags that several handles of one file see.

#include "toolops/sqlite_store.h"

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "store/envelope.h"
#include "store/tag_index.h"
#include "toolops/environment.h"
#include "toolops/stats_publisher.h"
#include "toolops/tool.h"

namespace toolops {
namespace {

using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

constexpr int64_t kUnixStart = 1'700'000'000'000'000'000;

// Direct access to the database file, for looking at and damaging rows.
class RawDatabase {
 public:
  explicit RawDatabase(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
    sqlite3_busy_timeout(db_, 5000);
  }
  ~RawDatabase() { sqlite3_close(db_); }

  void Exec(const std::string& sql) {
    char* error = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
    EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (error ? error : "");
    sqlite3_free(error);
  }

  // Runs `sql` with ?1 bound to `text` and ?2 (if present) to `blob`.
  void Run(const std::string& sql, std::string_view text, std::optional<std::string> blob) {
    sqlite3_stmt* statement = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &statement, nullptr), SQLITE_OK) << sql;
    sqlite3_bind_text(statement, 1, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    if (blob) {
      sqlite3_bind_blob(statement, 2, blob->data(), static_cast<int>(blob->size()),
                        SQLITE_TRANSIENT);
    }
    EXPECT_EQ(sqlite3_step(statement), SQLITE_DONE) << sql;
    sqlite3_finalize(statement);
  }

  // The envelope of a row, or nullopt if there is no row.
  std::optional<std::string> Envelope(std::string_view digest) {
    sqlite3_stmt* statement = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, "SELECT envelope FROM toolops_entries WHERE digest = ?1", -1,
                                 &statement, nullptr),
              SQLITE_OK);
    sqlite3_bind_text(statement, 1, digest.data(), static_cast<int>(digest.size()),
                      SQLITE_TRANSIENT);
    std::optional<std::string> out;
    if (sqlite3_step(statement) == SQLITE_ROW) {
      const char* blob = static_cast<const char*>(sqlite3_column_blob(statement, 0));
      out.emplace(blob ? blob : "", sqlite3_column_bytes(statement, 0));
    }
    sqlite3_finalize(statement);
    return out;
  }

  void SetEnvelope(std::string_view digest, const std::string& envelope) {
    Run("UPDATE toolops_entries SET envelope = ?2 WHERE digest = ?1", digest, envelope);
  }

  int64_t Count(const std::string& where = "1") {
    sqlite3_stmt* statement = nullptr;
    std::string sql = "SELECT count(*) FROM toolops_entries WHERE " + where;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &statement, nullptr), SQLITE_OK);
    int64_t n = sqlite3_step(statement) == SQLITE_ROW ? sqlite3_column_int64(statement, 0) : -1;
    sqlite3_finalize(statement);
    return n;
  }

  std::string Pragma(const std::string& name) {
    sqlite3_stmt* statement = nullptr;
    std::string sql = "PRAGMA " + name;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &statement, nullptr), SQLITE_OK);
    std::string out;
    if (sqlite3_step(statement) == SQLITE_ROW) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(statement, 0));
    }
    sqlite3_finalize(statement);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

std::string ToolKey(std::string_view tool, std::string_view args) {
  std::string key(tool);
  key.push_back('\0');
  key += "1";
  key.push_back('\0');
  key += args;
  return key;
}

std::string Digest(std::string_view key) { return StoreKeyDigest("toolops", key); }

class SqliteStoreTest : public ::testing::Test {
 protected:
  SqliteStoreTest() {
    std::string pattern = ::testing::TempDir() + "toolops-sqlite-XXXXXX";
    EXPECT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/cache.db";
  }
  ~SqliteStoreTest() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  SqliteStoreOptions Options() const {
    SqliteStoreOptions options;
    options.path = path_;
    return options;
  }

  // Wall time that moves with clock_, so that TTLs are tested without waiting.
  UnixClock FakeUnix() {
    return [this] { return kUnixStart + (clock_.Now() - start_).count(); };
  }

  std::unique_ptr<SqliteStore> Open(const SqliteStoreOptions& options) {
    Result<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options, &clock_, FakeUnix());
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(store).value() : nullptr;
  }
  std::unique_ptr<SqliteStore> Open() { return Open(Options()); }

  StoredValue ValueOf(std::string_view data, Duration fresh = seconds(60),
                      Duration stale = seconds(120)) {
    return StoredValue{Bytes::Copy(data), clock_.Now() + fresh, clock_.Now() + stale};
  }

  void PutOrFail(Store& store, std::string_view key, std::string_view value,
                 Duration fresh = seconds(60), Duration stale = seconds(120)) {
    Status status = store.Put(KeyRef::Of(key), ValueOf(value, fresh, stale), clock_.Now());
    ASSERT_TRUE(status.ok()) << status.ToString();
  }

  std::optional<std::string> Lookup(Store& store, std::string_view key) {
    std::optional<StoredValue> found = store.Get(KeyRef::Of(key), clock_.Now());
    if (!found) return std::nullopt;
    return found->value.ToString();
  }

  FakeClock clock_;
  const TimePoint start_ = clock_.Now();
  std::string dir_;
  std::string path_;
};

TEST_F(SqliteStoreTest, PutThenGetReturnsValueAndInstants) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  StoredValue v = ValueOf("result", seconds(60), seconds(90));
  ASSERT_TRUE(store->Put(KeyRef::Of("k"), v, clock_.Now()).ok());

  std::optional<StoredValue> found = store->Get(KeyRef::Of("k"), clock_.Now());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->value.view(), "result");
  EXPECT_EQ(found->fresh_until, v.fresh_until);
  EXPECT_EQ(found->stale_until, v.stale_until);
  EXPECT_EQ(Lookup(*store, "other"), std::nullopt);

  StoreStats stats = store->Stats();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.entries, 1u);
  EXPECT_EQ(stats.bytes, Digest("k").size() + kEnvelopeOverheadBytes + 6);
  EXPECT_EQ(store->name(), "sqlite");
  EXPECT_EQ(store->counters().failed, 0u);
}

TEST_F(SqliteStoreTest, FileHoldsDigestsInWalMode) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutOrFail(*store, ToolKey("search", "secret query"), "v");
  RawDatabase raw(path_);
  EXPECT_EQ(raw.Pragma("journal_mode"), "wal");
  EXPECT_EQ(raw.Pragma("user_version"), "1");
  EXPECT_EQ(raw.Count("digest = '" + Digest(ToolKey("search", "secret query")) + "'"), 1);
  EXPECT_EQ(raw.Count("instr(digest, 'secret') > 0"), 0);
  EXPECT_EQ(raw.Count("tool = '" + StoreToolDigest("toolops", ToolKey("search", "")) + "'"), 1);
}

TEST_F(SqliteStoreTest, PutReplacesAndEraseRemoves) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutOrFail(*store, "k", "one");
  PutOrFail(*store, "k", "two");
  EXPECT_EQ(Lookup(*store, "k"), "two");
  EXPECT_EQ(store->Stats().entries, 1u);
  EXPECT_TRUE(store->Erase(KeyRef::Of("k")));
  EXPECT_FALSE(store->Erase(KeyRef::Of("k")));
  EXPECT_EQ(Lookup(*store, "k"), std::nullopt);
}

TEST_F(SqliteStoreTest, TooLargeValueIsRefusedNamingSizeAndLimit) {
  SqliteStoreOptions options = Options();
  options.max_value_bytes = 100;
  auto store = Open(options);
  ASSERT_NE(store, nullptr);
  PutOrFail(*store, "k", std::string(100, 'a'));

  Status status = store->Put(KeyRef::Of("k"), ValueOf(std::string(101, 'b')), clock_.Now());
  EXPECT_EQ(status.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(status.guard(), Guard::kStore);
  EXPECT_NE(status.message().find("101"), std::string_view::npos) << status.ToString();
  EXPECT_NE(status.message().find("100"), std::string_view::npos) << status.ToString();
  // The older value is gone, so that no Get returns a value older than the
  // latest Put.
  EXPECT_EQ(Lookup(*store, "k"), std::nullopt);
  EXPECT_EQ(store->Stats().rejected, 1u);
  EXPECT_EQ(store->counters().failed, 0u);
}

TEST_F(SqliteStoreTest, EntryAlreadyPastStaleIsNotStoredAndDropsTheOlder) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutOrFail(*store, "k", "old");
  StoredValue past{Bytes::Copy("new"), clock_.Now() - seconds(2), clock_.Now() - seconds(1)};
  EXPECT_TRUE(store->Put(KeyRef::Of("k"), past, clock_.Now()).ok());
  EXPECT_EQ(Lookup(*store, "k"), std::nullopt);
  EXPECT_EQ(store->Stats().entries, 0u);
}

TEST_F(SqliteStoreTest, ExpiredEntryIsNotReturned) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutOrFail(*store, "k", "v", seconds(10), seconds(30));
  clock_.Advance(seconds(29));
  EXPECT_EQ(Lookup(*store, "k"), "v");  // Stale but servable: the engine decides.
  clock_.Advance(seconds(1));
  EXPECT_EQ(Lookup(*store, "k"), std::nullopt);
  EXPECT_EQ(store->Stats().expirations, 1u);
}

TEST_F(SqliteStoreTest, ExpiredRowsArePurgedInBatchesAtMostOncePerSecond) {
  SqliteStoreOptions options = Options();
  options.purge_batch = 100;
  auto store = Open(options);
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 250; ++i) {
    PutOrFail(*store, "short-" + std::to_string(i), "v", seconds(5), seconds(10));
  }
  PutOrFail(*store, "long", "v", seconds(500), seconds(1000));
  RawDatabase raw(path_);
  ASSERT_EQ(raw.Count(), 251);

  clock_.Advance(seconds(11));
  PutOrFail(*store, "trigger-1", "v", minutes(10), minutes(20));
  EXPECT_EQ(raw.Count(), 252 - 100);
  PutOrFail(*store, "trigger-2", "v", minutes(10), minutes(20));  // Within the second.
  EXPECT_EQ(raw.Count(), 253 - 100);
  clock_.Advance(seconds(1));
  PutOrFail(*store, "trigger-3", "v", minutes(10), minutes(20));
  EXPECT_EQ(raw.Count(), 254 - 200);
  EXPECT_EQ(store->PurgeExpired(), 50u);
  EXPECT_EQ(store->PurgeExpired(), 0u);
  EXPECT_EQ(raw.Count(), 4);
  EXPECT_EQ(Lookup(*store, "long"), "v");
  EXPECT_EQ(store->counters().purged, 250u);
  EXPECT_EQ(store->Stats().expirations, 250u);
}

TEST_F(SqliteStoreTest, EraseByPrefixErasesOneToolOrTheWholeNamespace) {
  auto store = Open();
  SqliteStoreOptions other_options = Options();
  other_options.key_namespace = "other";
  auto other = Open(other_options);
  ASSERT_NE(store, nullptr);
  ASSERT_NE(other, nullptr);
  for (int i = 0; i < 3; ++i) PutOrFail(*store, ToolKey("search", std::to_string(i)), "s");
  for (int i = 0; i < 2; ++i) PutOrFail(*store, ToolKey("weather", std::to_string(i)), "w");
  PutOrFail(*other, ToolKey("search", "0"), "other namespace");

  // Anything but a tool prefix or "" erases nothing.
  EXPECT_EQ(store->EraseByPrefix("search"), 0u);
  EXPECT_EQ(store->EraseByPrefix(ToolKey("search", "0")), 0u);
  EXPECT_EQ(store->EraseByPrefix(std::string("search\0", 7)), 0u);

  EXPECT_EQ(store->EraseByPrefix(ToolKey("search", "")), 3u);
  EXPECT_EQ(Lookup(*store, ToolKey("search", "0")), std::nullopt);
  EXPECT_EQ(Lookup(*store, ToolKey("weather", "0")), "w");
  EXPECT_EQ(Lookup(*other, ToolKey("search", "0")), "other namespace");

  EXPECT_EQ(store->EraseByPrefix(""), 2u);
  EXPECT_EQ(store->Stats().entries, 0u);
  EXPECT_EQ(other->Stats().entries, 1u);
  EXPECT_EQ(Lookup(*other, ToolKey("search", "0")), "other namespace");
}

TEST_F(SqliteStoreTest, EntriesSurviveReopeningWithTheirRemainingTtl) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    PutOrFail(*store, "long", "kept", seconds(60), seconds(100));
    PutOrFail(*store, "short", "gone", seconds(10), seconds(20));
  }
  clock_.Advance(seconds(30));  // Both wall and steady time pass while closed.

  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::optional<StoredValue> found = store->Get(KeyRef::Of("long"), clock_.Now());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->value.view(), "kept");
  EXPECT_EQ(found->fresh_until - clock_.Now(), seconds(30));
  EXPECT_EQ(found->stale_until - clock_.Now(), seconds(70));
  EXPECT_EQ(Lookup(*store, "short"), std::nullopt);
}

TEST_F(SqliteStoreTest, EntriesSurviveReopeningOnTheRealClocks) {
  StoredValue v{Bytes::Copy("kept"), RealClock()->Now() + minutes(10),
                RealClock()->Now() + minutes(20)};
  {
    auto store = NewSqliteStore(Options());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_TRUE((*store)->Put(KeyRef::Of("k"), v, RealClock()->Now()).ok());
  }
  auto store = NewSqliteStore(Options());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  std::optional<StoredValue> found = (*store)->Get(KeyRef::Of("k"), RealClock()->Now());
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->value.view(), "kept");
  // Off by no more than the drift between the wall and steady clocks.
  EXPECT_LT(std::chrono::abs(found->fresh_until - v.fresh_until), milliseconds(100));
  EXPECT_LT(std::chrono::abs(found->stale_until - v.stale_until), milliseconds(100));
}

TEST_F(SqliteStoreTest, RejectsBadOptions) {
  auto code = [&](SqliteStoreOptions options) {
    return SqliteStore::Open(options, &clock_).status().code();
  };
  SqliteStoreOptions o = Options();
  o.path = "";
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o.path = ":memory:";
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o = Options();
  o.key_namespace = "";
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o.key_namespace = "a:b";
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o = Options();
  o.max_value_bytes = 0;
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o.max_value_bytes = size_t{1} << 40;
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o = Options();
  o.purge_batch = 0;
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o = Options();
  o.busy_timeout = -seconds(1);
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  EXPECT_EQ(SqliteStore::Open(Options(), nullptr).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(SqliteStoreTest, UnusableFilesAreUnavailableAtOpen) {
  SqliteStoreOptions options = Options();
  options.path = dir_;  // A directory.
  Result<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(options, &clock_);
  EXPECT_EQ(store.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(store.status().guard(), Guard::kStore);

  std::ofstream(path_) << std::string(4096, 'x');  // Not a database.
  store = SqliteStore::Open(Options(), &clock_);
  EXPECT_EQ(store.status().code(), StatusCode::kUnavailable) << store.status().ToString();
  EXPECT_EQ(store.status().guard(), Guard::kStore);
}

TEST_F(SqliteStoreTest, NewerSchemaIsRefused) {
  ASSERT_NE(Open(), nullptr);
  RawDatabase(path_).Exec("PRAGMA user_version = 2");
  Result<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(Options(), &clock_);
  EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(SqliteStoreTest, LockHeldPastBusyTimeoutIsUnavailableNotACrash) {
  SqliteStoreOptions options = Options();
  options.busy_timeout = milliseconds(50);
  auto store = Open(options);
  ASSERT_NE(store, nullptr);
  PutOrFail(*store, "k", "before");

  RawDatabase locker(path_);
  locker.Exec("BEGIN IMMEDIATE");
  Status status = store->Put(KeyRef::Of("k"), ValueOf("during"), clock_.Now());
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(status.guard(), Guard::kStore);
  EXPECT_EQ(store->counters().failed, 1u);
  EXPECT_EQ(Lookup(*store, "k"), "before");  // WAL: readers do not wait for the writer.
  locker.Exec("COMMIT");

  PutOrFail(*store, "k", "after");
  EXPECT_EQ(Lookup(*store, "k"), "after");
}

TEST_F(SqliteStoreTest, SqliteErrorsMakeGetMissAndAreCounted) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutOrFail(*store, "k", "v");
  RawDatabase(path_).Exec("DROP TABLE toolops_entries");

  EXPECT_EQ(Lookup(*store, "k"), std::nullopt);
  Status status = store->Put(KeyRef::Of("k"), ValueOf("v"), clock_.Now());
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(status.guard(), Guard::kStore);
  EXPECT_FALSE(store->Erase(KeyRef::Of("k")));
  EXPECT_EQ(store->EraseByPrefix(""), 0u);
  StoreStats stats = store->Stats();
  EXPECT_EQ(stats.entries, 0u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(store->counters().failed, 5u);  // Get, Put, Erase, EraseByPrefix, Stats.
}

TEST_F(SqliteStoreTest, DamagedEntriesAreNeverReturnedAndAreDeleted) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const int kKeys = 8;
  for (int i = 0; i < kKeys; ++i)
    PutOrFail(*store, "k" + std::to_string(i), "value " + std::to_string(i));

  RawDatabase raw(path_);
  std::string good = *raw.Envelope(Digest("k0"));
  std::mt19937_64 rng(3);
  std::string garbage(200, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  std::string flipped = *raw.Envelope(Digest("k3"));
  flipped[kEnvelopeHeaderBytes + 2] ^= 0x20;
  std::string newer = *raw.Envelope(Digest("k4"));
  newer[4] = 9;

  raw.SetEnvelope(Digest("k0"), garbage);
  raw.SetEnvelope(Digest("k1"), good.substr(0, good.size() - 7));
  raw.SetEnvelope(Digest("k2"), std::string("PK\x03\x04 not ours", 14));
  raw.SetEnvelope(Digest("k3"), flipped);
  raw.SetEnvelope(Digest("k4"), newer);
  raw.Exec("UPDATE toolops_entries SET envelope = 'text, not a blob' WHERE digest = '" +
           Digest("k5") + "'");
  raw.SetEnvelope(Digest("k6"), "");
  // k7 is left intact.

  for (int i = 0; i < kKeys - 1; ++i) {
    EXPECT_EQ(Lookup(*store, "k" + std::to_string(i)), std::nullopt) << "k" << i;
  }
  EXPECT_EQ(Lookup(*store, "k7"), "value 7");
  EXPECT_EQ(store->counters().corrupt, 7u);
  EXPECT_EQ(store->counters().failed, 0u);
  EXPECT_EQ(raw.Count(), 1);  // The damaged rows were deleted.

  // Once deleted they are plain misses, and the keys take new values.
  EXPECT_EQ(Lookup(*store, "k0"), std::nullopt);
  EXPECT_EQ(store->counters().corrupt, 7u);
  PutOrFail(*store, "k0", "fresh");
  EXPECT_EQ(Lookup(*store, "k0"), "fresh");
}

TEST_F(SqliteStoreTest, RandomDamageInTheFileNeverYieldsAWrongValue) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  RawDatabase raw(path_);
  std::mt19937_64 rng(11);
  int returned = 0;
  const int kRounds = 500;
  for (int i = 0; i < kRounds; ++i) {
    std::string value = "value-" + std::to_string(i) + std::string(rng() % 64, 'v');
    PutOrFail(*store, "k", value);
    std::string envelope = *raw.Envelope(Digest("k"));
    std::string damaged = envelope;
    switch (i % 3) {
      case 0:
        damaged[rng() % damaged.size()] ^= static_cast<char>(1 + rng() % 255);
        break;
      case 1:
        damaged.resize(rng() % damaged.size());
        break;
      case 2:
        damaged.insert(rng() % damaged.size(), 1, static_cast<char>(rng()));
        break;
    }
    raw.SetEnvelope(Digest("k"), damaged);
    std::optional<std::string> found = Lookup(*store, "k");
    if (found) {
      ++returned;
      EXPECT_EQ(*found, value);
    }
  }
  EXPECT_EQ(returned, 0);
  EXPECT_EQ(store->counters().corrupt, static_cast<uint64_t>(kRounds));
}

TEST_F(SqliteStoreTest, ConcurrentGetsAndPutsFromManyThreads) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const int kThreads = 8;
  const int kOps = 300;
  std::atomic<int> wrong{0};
  std::atomic<int> failed_puts{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int n = 0; n < kOps; ++n) {
        std::string key = "key-" + std::to_string(rng() % 50);
        if (rng() % 3 == 0) {
          std::string value = key + ":" + std::to_string(t) + "-" + std::to_string(n);
          StoredValue v{Bytes::Copy(value), clock_.Now() + minutes(1), clock_.Now() + minutes(2)};
          if (!store->Put(KeyRef::Of(key), v, clock_.Now()).ok()) ++failed_puts;
        } else if (std::optional<StoredValue> found = store->Get(KeyRef::Of(key), clock_.Now())) {
          if (!found->value.view().starts_with(key + ":")) ++wrong;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(failed_puts.load(), 0);
  EXPECT_EQ(store->counters().failed, 0u);
  EXPECT_EQ(store->counters().corrupt, 0u);
  EXPECT_LE(store->Stats().entries, 50u);
}

// ---- Several processes ----

constexpr int kProcesses = 4;
constexpr int kProcessKeys = 500;

// What writer `w` stores for key `i`: long enough that a torn or mixed write
// would show.
std::string WriterValue(int w, int i) {
  std::string unit = "w" + std::to_string(w) + "/k" + std::to_string(i) + ";";
  std::string value;
  while (value.size() < 600 + 97 * static_cast<size_t>(w)) value += unit;
  return value;
}

bool IsSomeWritersValue(std::string_view value, int i) {
  for (int w = 0; w < kProcesses; ++w) {
    if (value == WriterValue(w, i)) return true;
  }
  return false;
}

// The body of one child process: writes every key in its own order and reads
// back random keys. Returns the exit code: 0 when every operation succeeded
// and every value read was one a writer wrote for that key.
int RunWriterProcess(const std::string& path, int w) {
  SqliteStoreOptions options;
  options.path = path;
  Result<std::unique_ptr<SqliteStore>> opened = SqliteStore::Open(options);
  if (!opened.ok()) {
    std::fprintf(stderr, "writer %d: %s\n", w, opened.status().ToString().c_str());
    return 10;
  }
  SqliteStore& store = **opened;
  std::vector<int> order(kProcessKeys);
  for (int i = 0; i < kProcessKeys; ++i) order[i] = i;
  std::mt19937 rng(100 + w);
  std::shuffle(order.begin(), order.end(), rng);
  Clock* clock = RealClock();
  for (int i : order) {
    std::string key = ToolKey("shared", std::to_string(i));
    StoredValue v{Bytes::Copy(WriterValue(w, i)), clock->Now() + minutes(30),
                  clock->Now() + minutes(60)};
    if (!store.Put(KeyRef::Of(key), v, clock->Now()).ok()) return 11;
    int j = static_cast<int>(rng() % kProcessKeys);
    std::string other = ToolKey("shared", std::to_string(j));
    std::optional<StoredValue> found = store.Get(KeyRef::Of(other), clock->Now());
    if (found && !IsSomeWritersValue(found->value.view(), j)) return 12;
    found = store.Get(KeyRef::Of(key), clock->Now());
    if (!found) return 13;
    if (!IsSomeWritersValue(found->value.view(), i)) return 14;
  }
  if (store.counters().failed != 0 || store.counters().corrupt != 0) return 15;
  return 0;
}

TEST_F(SqliteStoreTest, SeveralProcessesShareOneFile) {
  // Children block on the gate until the parent closes it, so that all four
  // start writing together.
  int gate[2];
  ASSERT_EQ(pipe(gate), 0);
  std::vector<pid_t> children;
  for (int w = 0; w < kProcesses; ++w) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(gate[1]);
      char byte;
      (void)!read(gate[0], &byte, 1);
      _exit(RunWriterProcess(path_, w));
    }
    children.push_back(pid);
  }
  close(gate[0]);
  close(gate[1]);

  // Wait for all, killing any that hangs.
  const auto deadline = std::chrono::steady_clock::now() + minutes(3);
  for (pid_t pid : children) {
    int status = 0;
    pid_t done = 0;
    while ((done = waitpid(pid, &status, WNOHANG)) == 0 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(20));
    }
    if (done == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << "writer " << pid << " hung";
      continue;
    }
    EXPECT_TRUE(WIFEXITED(status)) << "writer " << pid << " crashed (status " << status << ")";
    if (WIFEXITED(status)) {
      EXPECT_EQ(WEXITSTATUS(status), 0) << "writer " << pid;
    }
  }

  auto store = SqliteStore::Open(Options());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  for (int i = 0; i < kProcessKeys; ++i) {
    std::optional<StoredValue> found =
        (*store)->Get(KeyRef::Of(ToolKey("shared", std::to_string(i))), RealClock()->Now());
    ASSERT_TRUE(found.has_value()) << "key " << i;
    EXPECT_TRUE(IsSomeWritersValue(found->value.view(), i)) << "key " << i;
  }
  EXPECT_EQ((*store)->Stats().entries, static_cast<uint64_t>(kProcessKeys));
  EXPECT_EQ((*store)->counters().corrupt, 0u);
}

// ---- Through wrapped tools ----

// One "process": its own registry, holding its own store object on the file.
struct ToolProcess {
  ToolProcess(const SqliteStoreOptions& options, Clock* clock, UnixClock unix_clock)
      : random(5), pool(NewThreadPool(4)) {
    Result<std::unique_ptr<SqliteStore>> opened =
        SqliteStore::Open(options, clock, std::move(unix_clock));
    EXPECT_TRUE(opened.ok()) << opened.status().ToString();
    if (opened.ok()) store = std::shared_ptr<SqliteStore>(std::move(opened).value());
    registry.Register("sqlite", store);
    env.clock = clock;
    env.random = &random;
    env.stores = &registry;
    env.executor = pool.get();
  }

  SeededRandom random;
  StoreRegistry registry;
  std::shared_ptr<SqliteStore> store;
  std::unique_ptr<Executor> pool;
  Environment env;
};

TEST_F(SqliteStoreTest, SecondProcessHitsAndClearCacheErasesOneTool) {
  ToolPolicy policy;
  policy.cache.store = "sqlite";
  policy.cache.ttl = minutes(10);
  ToolProcess first(Options(), &clock_, FakeUnix());
  ToolProcess second(Options(), &clock_, FakeUnix());
  ASSERT_NE(first.store, nullptr);
  ASSERT_NE(second.store, nullptr);

  std::atomic<int> search_calls{0};
  std::atomic<int> weather_calls{0};
  auto make_search = [&](ToolProcess& p) {
    return Readonly(
        {"search", "1", {"query"}}, policy,
        [&](const std::string& q) {
          ++search_calls;
          return "results for " + q;
        },
        p.env);
  };
  auto make_weather = [&](ToolProcess& p) {
    return Readonly(
        {"weather", "1", {"city"}}, policy,
        [&](const std::string& city) {
          ++weather_calls;
          return "sunny in " + city;
        },
        p.env);
  };
  auto search1 = make_search(first);
  auto weather1 = make_weather(first);
  auto search2 = make_search(second);
  auto weather2 = make_weather(second);

  // The first process fills the file.
  EXPECT_EQ(search1("paris"), "results for paris");
  EXPECT_EQ(search1("lyon"), "results for lyon");
  EXPECT_EQ(weather1("nice"), "sunny in nice");
  EXPECT_EQ(search_calls.load(), 2);

  // The second process is served from it.
  EXPECT_EQ(search2("paris"), "results for paris");
  EXPECT_EQ(weather2("nice"), "sunny in nice");
  EXPECT_EQ(search_calls.load(), 2);
  EXPECT_EQ(weather_calls.load(), 1);
  EXPECT_EQ(search2.stats()[Counter::kFreshHit], 1u);
  EXPECT_EQ(second.store->Stats().hits, 2u);

  // Clearing one tool's cache in one process erases its rows for everyone,
  // and only its rows.
  EXPECT_EQ(search1.core().ClearCache(), 2u);
  EXPECT_EQ(search2("paris"), "results for paris");
  EXPECT_EQ(search_calls.load(), 3);
  EXPECT_EQ(weather2("nice"), "sunny in nice");
  EXPECT_EQ(weather_calls.load(), 1);
  EXPECT_EQ(first.store->counters().failed + second.store->counters().failed, 0u);
}

std::vector<std::string> Sorted(std::vector<std::string> values) {
  std::sort(values.begin(), values.end());
  return values;
}

TEST_F(SqliteStoreTest, SnapshotsOfTwoHandlesOnOneFileAreReadBackUntilTheyExpire) {
  // Two handles of one file, as two processes of one host would hold.
  auto first = Open();
  auto second = Open();
  SqliteStoreOptions other_options = Options();
  other_options.key_namespace = "other";
  auto other = Open(other_options);
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  ASSERT_NE(other, nullptr);
  StatsBoard* first_board = StatsBoardOf(*first);
  StatsBoard* second_board = StatsBoardOf(*second);
  ASSERT_NE(first_board, nullptr);
  ASSERT_NE(second_board, nullptr);
  PutOrFail(*first, ToolKey("search", "q"), "an entry, not a snapshot");

  ASSERT_TRUE(first_board->Publish("host:1:a", "calls 1", seconds(30)).ok());
  ASSERT_TRUE(first_board->Publish("host:1:a", "calls 2", seconds(30)).ok());  // Replaces.
  ASSERT_TRUE(second_board->Publish("host:2:b", "calls 7", seconds(90)).ok());
  ASSERT_TRUE(StatsBoardOf(*other)->Publish("host:3:c", "elsewhere", seconds(90)).ok());

  std::vector<std::string> both = {"calls 2", "calls 7"};
  Result<std::vector<std::string>> read = first_board->Snapshots();
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(Sorted(*read), both);
  read = ReadPublishedStats(*second);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(Sorted(*read), both);

  // The first process stops publishing: its snapshot drops out at its TTL.
  clock_.Advance(seconds(30));
  read = second_board->Snapshots();
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(*read, std::vector<std::string>{"calls 7"});
  clock_.Advance(seconds(60));
  EXPECT_TRUE(first_board->Snapshots().value().empty());
  EXPECT_EQ(Lookup(*first, ToolKey("search", "q")), "an entry, not a snapshot");
  EXPECT_EQ(first->counters().failed, 0u);
}

TEST_F(SqliteStoreTest, EntriesTaggedByTheirCallsAreErasedByTagAndUntaggedOnesStay) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  CallTagIndex* index = CallTagIndexOf(*store);
  ASSERT_NE(index, nullptr);
  const std::string paris = ToolKey("weather", "paris"), rome = ToolKey("weather", "rome"),
                    oslo = ToolKey("weather", "oslo"), lima = ToolKey("weather", "lima");
  for (const std::string* key : {&paris, &rome, &oslo, &lima}) PutOrFail(*store, *key, *key);

  ASSERT_TRUE(index->TagEntry(KeyRef::Of(paris), {"city:paris", "europe"}, seconds(120)).ok());
  ASSERT_TRUE(index->TagEntry(KeyRef::Of(rome), {"europe"}, seconds(120)).ok());
  ASSERT_TRUE(index->TagEntry(KeyRef::Of(rome), {"europe"}, seconds(120)).ok());  // Harmless.
  ASSERT_TRUE(index->TagEntry(KeyRef::Of(oslo), {"city:oslo"}, seconds(120)).ok());
  RawDatabase raw(path_);
  EXPECT_EQ(raw.Count("instr(digest, 'europe') > 0 OR instr(tool, 'europe') > 0"), 0);

  // Bad tags are refused, and a call with one records none of its tags.
  EXPECT_EQ(index->TagEntry(KeyRef::Of(lima), {"americas", ""}, seconds(120)).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(index->TagEntry(KeyRef::Of(lima), {std::string("a\0b", 3)}, seconds(120)).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(index->EraseTagged("").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(index->EraseTagged("americas").value(), 0u);

  Result<size_t> erased = index->EraseTagged("europe");
  ASSERT_TRUE(erased.ok()) << erased.status().ToString();
  EXPECT_EQ(*erased, 2u);
  EXPECT_EQ(Lookup(*store, paris), std::nullopt);
  EXPECT_EQ(Lookup(*store, rome), std::nullopt);
  EXPECT_EQ(Lookup(*store, oslo), oslo);
  EXPECT_EQ(Lookup(*store, lima), lima);
  EXPECT_EQ(index->EraseTagged("europe").value(), 0u);      // Its rows went with the entries.
  EXPECT_EQ(index->EraseTagged("city:paris").value(), 0u);  // The entry is gone already.

  // Another handle of the file (another process) erases by tag too.
  auto second = Open();
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(CallTagIndexOf(*second)->EraseTagged("city:oslo").value(), 1u);
  EXPECT_EQ(Lookup(*store, oslo), std::nullopt);
  EXPECT_EQ(Lookup(*store, lima), lima);
  EXPECT_EQ(store->Stats().entries, 1u);  // No tag row is left behind.

  // A tag recorded for less than the entry's life no longer reaches it.
  ASSERT_TRUE(index->TagEntry(KeyRef::Of(lima), {"brief"}, seconds(10)).ok());
  clock_.Advance(seconds(11));
  EXPECT_EQ(index->EraseTagged("brief").value(), 0u);
  EXPECT_EQ(Lookup(*store, lima), lima);
  EXPECT_EQ(store->counters().failed, 0u);
}

}  // namespace
}  // namespace toolops
