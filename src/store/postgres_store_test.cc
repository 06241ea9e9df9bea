// src/store/postgres_store_test.cc
//
// The PostgreSQL store against real servers that the tests start themselves
// (testing/postgres_server.h): the Store contract, TTL and purging on a
// FakeClock (with a wall clock that follows it), damaged rows written
// straight into the table, server errors and lock waits as values, many
// threads and several processes (fork) sharing one table, two wrapped tools
// in two "processes" sharing entries through the registry; and, each on a
// server of its own, restarts and crashes of the server, a stopped server and
// a hung one.
//
// PostgresStoreTest shares one server per test process and gives each test a
// table of its own. If the server cannot start, every test fails with the
// reason: nothing is skipped.

#include "toolops/postgres_store.h"

#include <libpq-fe.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "postgres_server.h"
#include "processes.h"
#include "store/envelope.h"
#include "toolops/environment.h"
#include "toolops/log.h"
#include "toolops/tool.h"

namespace toolops {
namespace {

using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using testing::PostgresServer;

constexpr int64_t kUnixStart = 1'700'000'000'000'000'000;

// Direct access to a table over a connection of its own, for looking at and
// damaging rows.
class RawTable {
 public:
  RawTable(const std::string& conninfo, std::string table)
      : conn_(PQconnectdb(conninfo.c_str())), table_(std::move(table)) {
    EXPECT_EQ(PQstatus(conn_), CONNECTION_OK) << PQerrorMessage(conn_);
  }
  ~RawTable() { PQfinish(conn_); }
  RawTable(const RawTable&) = delete;
  RawTable& operator=(const RawTable&) = delete;

  const std::string& table() const { return table_; }

  void Exec(const std::string& sql) {
    PGresult* result = PQexec(conn_, sql.c_str());
    ExecStatusType status = PQresultStatus(result);
    EXPECT_TRUE(status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
        << sql << ": " << PQresultErrorMessage(result);
    PQclear(result);
  }

  // The first column of the first row as text, or "" when there is none.
  std::string Scalar(const std::string& sql) {
    PGresult* result = PQexec(conn_, sql.c_str());
    EXPECT_EQ(PQresultStatus(result), PGRES_TUPLES_OK)
        << sql << ": " << PQresultErrorMessage(result);
    std::string out = PQntuples(result) > 0 ? PQgetvalue(result, 0, 0) : "";
    PQclear(result);
    return out;
  }

  int64_t Count(const std::string& where = "true") {
    return std::stoll(Scalar("SELECT count(*) FROM " + table_ + " WHERE " + where));
  }

  // The envelope of a row, or nullopt if there is none.
  std::optional<std::string> Envelope(const std::string& digest) {
    const char* values[] = {digest.c_str()};
    PGresult* result =
        PQexecParams(conn_, ("SELECT envelope FROM " + table_ + " WHERE digest = $1").c_str(), 1,
                     nullptr, values, nullptr, nullptr, /*resultFormat=*/1);
    EXPECT_EQ(PQresultStatus(result), PGRES_TUPLES_OK) << PQresultErrorMessage(result);
    std::optional<std::string> out;
    if (PQntuples(result) == 1) out.emplace(PQgetvalue(result, 0, 0), PQgetlength(result, 0, 0));
    PQclear(result);
    return out;
  }

  void SetEnvelope(const std::string& digest, const std::string& envelope) {
    const char* values[] = {digest.c_str(), envelope.data()};
    const int lengths[] = {static_cast<int>(digest.size()), static_cast<int>(envelope.size())};
    const int formats[] = {0, 1};
    PGresult* result =
        PQexecParams(conn_, ("UPDATE " + table_ + " SET envelope = $2 WHERE digest = $1").c_str(),
                     2, nullptr, values, lengths, formats, 0);
    EXPECT_EQ(PQresultStatus(result), PGRES_COMMAND_OK) << PQresultErrorMessage(result);
    EXPECT_STREQ(PQcmdTuples(result), "1");
    PQclear(result);
  }

 private:
  PGconn* const conn_;
  const std::string table_;
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

// How long `fn` takes.
template <typename F>
Duration Timed(F&& fn) {
  auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::steady_clock::now() - start;
}

// Clocks and value helpers shared by both fixtures.
class PostgresFixture : public ::testing::Test {
 protected:
  // Wall time that moves with clock_, so that TTLs are tested without waiting.
  UnixClock FakeUnix() {
    return [this] { return kUnixStart + (clock_.Now() - start_).count(); };
  }

  std::unique_ptr<PostgresStore> Open(const PostgresStoreOptions& options) {
    Result<std::unique_ptr<PostgresStore>> store =
        PostgresStore::Open(options, &clock_, FakeUnix());
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(store).value() : nullptr;
  }

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
};

class PostgresStoreTest : public PostgresFixture {
 protected:
  static void SetUpTestSuite() {
    server_ = new PostgresServer();
    start_status_ = new Status(server_->Start());
  }
  static void TearDownTestSuite() {
    delete server_;
    delete start_status_;
    server_ = nullptr;
    start_status_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(start_status_->ok())
        << "cannot start a PostgreSQL server for the tests: " << start_status_->ToString();
    // A table per test, named after it: tests share the server.
    static int tables = 0;
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    table_ = "t";
    for (char c : name.substr(0, 36)) table_ += static_cast<char>(std::tolower(c));
    table_ += "_" + std::to_string(++tables);
  }

  PostgresStoreOptions Options() const {
    PostgresStoreOptions options;
    options.conninfo = server_->conninfo();
    options.table = table_;
    return options;
  }
  std::unique_ptr<PostgresStore> Open() { return PostgresFixture::Open(Options()); }
  using PostgresFixture::Open;

  RawTable Raw() const { return RawTable(server_->conninfo(), table_); }

  static PostgresServer* server_;
  static Status* start_status_;
  std::string table_;
};

PostgresServer* PostgresStoreTest::server_ = nullptr;
Status* PostgresStoreTest::start_status_ = nullptr;

TEST_F(PostgresStoreTest, PutThenGetReturnsValueAndInstants) {
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
  EXPECT_EQ(store->name(), "postgres");
  EXPECT_EQ(store->counters().failed, 0u);
}

TEST_F(PostgresStoreTest, TableHoldsDigestsToolsAndTheSchemaVersion) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutOrFail(*store, ToolKey("search", "secret query"), "v", seconds(10), seconds(20));
  RawTable raw = Raw();
  EXPECT_EQ(raw.Count("digest = '" + Digest(ToolKey("search", "secret query")) + "'"), 1);
  EXPECT_EQ(raw.Count("position('secret' in digest) > 0"), 0);
  EXPECT_EQ(raw.Count("tool = '" + StoreToolDigest("toolops", ToolKey("search", "")) + "'"), 1);
  // stale_until is the wall-clock instant, in Unix nanoseconds.
  EXPECT_EQ(raw.Count("stale_until = " +
                      std::to_string(kUnixStart + std::chrono::nanoseconds(seconds(20)).count())),
            1);
  EXPECT_EQ(raw.Scalar("SELECT obj_description('" + table_ + "'::regclass, 'pg_class')"),
            "toolops entries, schema version 1");
  EXPECT_EQ(raw.Count("true"), 1);
}

TEST_F(PostgresStoreTest, PutReplacesAndEraseRemoves) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutOrFail(*store, "k", "one");
  PutOrFail(*store, "k", "two");
  EXPECT_EQ(Lookup(*store, "k"), "two");
  EXPECT_EQ(store->Stats().entries, 1u);
  EXPECT_TRUE(store->Erase(KeyRef::Of("k")));
  EXPECT_FALSE(store->Erase(KeyRef::Of("k")));
  EXPECT_EQ(Lookup(*store, "k"), std::nullopt);
  PutOrFail(*store, "empty", "");
  EXPECT_EQ(Lookup(*store, "empty"), "");
}

TEST_F(PostgresStoreTest, TooLargeValueIsRefusedNamingSizeAndLimit) {
  PostgresStoreOptions options = Options();
  options.max_value_bytes = 100;
  auto store = Open(options);
  ASSERT_NE(store, nullptr);
  PutOrFail(*store, "k", std::string(100, 'a'));

  Status status = store->Put(KeyRef::Of("k"), ValueOf(std::string(101, 'b')), clock_.Now());
  EXPECT_EQ(status.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(status.guard(), Guard::kStore);
  EXPECT_NE(status.message().find("value of 101 bytes exceeds the limit of 100 bytes"),
            std::string_view::npos)
      << status.ToString();
  // The older value is gone, so that no Get returns a value older than the
  // latest Put.
  EXPECT_EQ(Lookup(*store, "k"), std::nullopt);
  EXPECT_EQ(store->Stats().rejected, 1u);
  EXPECT_EQ(store->counters().failed, 0u);
}

TEST_F(PostgresStoreTest, LargeValuesRoundTrip) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::string value(1 << 20, '\0');
  std::mt19937_64 rng(7);
  for (char& c : value) c = static_cast<char>(rng());
  PutOrFail(*store, "big", value);
  EXPECT_EQ(Lookup(*store, "big"), value);
}

TEST_F(PostgresStoreTest, EntryAlreadyPastStaleIsNotStoredAndDropsTheOlder) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutOrFail(*store, "k", "old");
  StoredValue past{Bytes::Copy("new"), clock_.Now() - seconds(2), clock_.Now() - seconds(1)};
  EXPECT_TRUE(store->Put(KeyRef::Of("k"), past, clock_.Now()).ok());
  EXPECT_EQ(Lookup(*store, "k"), std::nullopt);
  EXPECT_EQ(store->Stats().entries, 0u);
}

TEST_F(PostgresStoreTest, ExpiredEntryIsNotReturned) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutOrFail(*store, "k", "v", seconds(10), seconds(30));
  clock_.Advance(seconds(29));
  EXPECT_EQ(Lookup(*store, "k"), "v");  // Stale but servable: the engine decides.
  clock_.Advance(seconds(1));
  EXPECT_EQ(Lookup(*store, "k"), std::nullopt);
  EXPECT_EQ(store->Stats().expirations, 1u);
}

TEST_F(PostgresStoreTest, ExpiredRowsArePurgedInBatchesAtMostOncePerSecond) {
  PostgresStoreOptions options = Options();
  options.purge_batch = 100;
  auto store = Open(options);
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 250; ++i) {
    PutOrFail(*store, "short-" + std::to_string(i), "v", seconds(5), seconds(10));
  }
  PutOrFail(*store, "long", "v", seconds(500), seconds(1000));
  RawTable raw = Raw();
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

TEST_F(PostgresStoreTest, EraseByPrefixErasesOneToolOrTheWholeNamespace) {
  auto store = Open();
  PostgresStoreOptions other_options = Options();
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

TEST_F(PostgresStoreTest, EntriesSurviveReopeningWithTheirRemainingTtl) {
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

TEST_F(PostgresStoreTest, RejectsBadOptions) {
  auto status = [&](PostgresStoreOptions options) {
    return PostgresStore::Open(options, &clock_).status();
  };
  auto code = [&](PostgresStoreOptions options) { return status(options).code(); };
  PostgresStoreOptions o = Options();
  o.conninfo = "";
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o.conninfo = "password=hunter2 not a connection string";
  Status bad = status(o);
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.guard(), Guard::kStore);
  EXPECT_EQ(bad.message().find("hunter2"), std::string_view::npos) << bad.ToString();
  o.conninfo = "host=127.0.0.1 colour=blue";
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o = Options();
  o.key_namespace = "";
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o.key_namespace = "a:b";
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  for (const char* table : {"", "1abc", "Entries", "a-b", "a b", "t; DROP TABLE x", "s.t",
                            "\"quoted\"", "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghij"}) {
    o = Options();
    o.table = table;
    EXPECT_EQ(code(o), StatusCode::kInvalidArgument) << table;
  }
  o = Options();
  o.max_value_bytes = 0;
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o.max_value_bytes = size_t{1} << 40;
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o = Options();
  o.connect_timeout = Duration::zero();
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o = Options();
  o.statement_timeout = -seconds(1);
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o.statement_timeout = std::chrono::microseconds(500);  // The server counts milliseconds.
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o = Options();
  o.pool_size = 0;
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o.pool_size = 65;
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o = Options();
  o.purge_batch = 0;
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o = Options();
  o.outage_initial_backoff = Duration::zero();
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o = Options();
  o.outage_max_backoff = o.outage_initial_backoff / 2;
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o = Options();
  o.lease_ttl = milliseconds(29);
  Status short_lease = status(o);
  EXPECT_EQ(short_lease.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(short_lease.message().find("lease_ttl"), std::string_view::npos)
      << short_lease.ToString();
  o = Options();
  o.error_ttl = Duration::zero();
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o = Options();
  o.follower_poll = -milliseconds(1);
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  EXPECT_EQ(PostgresStore::Open(Options(), nullptr).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Raw().Scalar("SELECT count(*) FROM pg_class WHERE relname = '" + table_ + "'"), "0");

  // A reserved word is a fine table name: names are always quoted.
  o = Options();
  o.table = "select";
  auto store = Open(o);
  ASSERT_NE(store, nullptr);
  PutOrFail(*store, "k", "v");
  EXPECT_EQ(Lookup(*store, "k"), "v");
  RawTable(server_->conninfo(), "\"select\"").Exec("DROP TABLE \"select\"");
}

TEST_F(PostgresStoreTest, UnreachableServerIsUnavailableAtOpenWithinTheTimeout) {
  PostgresStoreOptions options = Options();
  options.conninfo = "host=127.0.0.1 port=" + std::to_string(testing::PickFreePort()) +
                     " user=postgres password=hunter2 sslmode=disable";
  options.connect_timeout = milliseconds(500);
  Result<std::unique_ptr<PostgresStore>> store = std::unique_ptr<PostgresStore>();
  Duration took = Timed([&] { store = PostgresStore::Open(options, &clock_); });
  EXPECT_EQ(store.status().code(), StatusCode::kUnavailable) << store.status().ToString();
  EXPECT_EQ(store.status().guard(), Guard::kStore);
  EXPECT_EQ(store.status().message().find("hunter2"), std::string_view::npos);
  EXPECT_LT(took, seconds(2));

  options = Options();
  options.conninfo += " dbname=no_such_database";
  store = PostgresStore::Open(options, &clock_);
  EXPECT_EQ(store.status().code(), StatusCode::kUnavailable) << store.status().ToString();
  EXPECT_NE(store.status().message().find("no_such_database"), std::string_view::npos)
      << store.status().ToString();
}

TEST_F(PostgresStoreTest, NewerOrForeignTablesAreRefused) {
  ASSERT_NE(Open(), nullptr);
  RawTable raw = Raw();
  raw.Exec("COMMENT ON TABLE " + table_ + " IS 'toolops entries, schema version 2'");
  Result<std::unique_ptr<PostgresStore>> store = PostgresStore::Open(Options(), &clock_);
  EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition) << store.status().ToString();
  EXPECT_NE(store.status().message().find("schema version 2"), std::string_view::npos);

  raw.Exec("COMMENT ON TABLE " + table_ + " IS 'invoices'");
  store = PostgresStore::Open(Options(), &clock_);
  EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition) << store.status().ToString();

  // A table of that name with other columns and no comment cannot be used.
  raw.Exec("DROP TABLE " + table_);
  raw.Exec("CREATE TABLE " + table_ + " (id int)");
  store = PostgresStore::Open(Options(), &clock_);
  EXPECT_EQ(store.status().code(), StatusCode::kUnavailable) << store.status().ToString();
}

TEST_F(PostgresStoreTest, ServerErrorsMakeGetMissAndAreCounted) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  PutOrFail(*store, "k", "v");
  Raw().Exec("DROP TABLE " + table_);

  EXPECT_EQ(Lookup(*store, "k"), std::nullopt);
  Status status = store->Put(KeyRef::Of("k"), ValueOf("v"), clock_.Now());
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(status.guard(), Guard::kStore);
  EXPECT_NE(status.message().find("does not exist"), std::string_view::npos) << status.ToString();
  EXPECT_FALSE(store->Erase(KeyRef::Of("k")));
  EXPECT_EQ(store->EraseByPrefix(""), 0u);
  StoreStats stats = store->Stats();
  EXPECT_EQ(stats.entries, 0u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(store->counters().failed, 5u);  // Get, Put, Erase, EraseByPrefix, Stats.
  // Server errors leave the connections usable.
  EXPECT_EQ(store->counters().connections_dropped, 0u);

  // Once the table is back, the same store works again.
  ASSERT_NE(Open(), nullptr);
  PutOrFail(*store, "k", "again");
  EXPECT_EQ(Lookup(*store, "k"), "again");
}

TEST_F(PostgresStoreTest, LockHeldPastStatementTimeoutIsUnavailableNotAHang) {
  PostgresStoreOptions options = Options();
  options.statement_timeout = milliseconds(200);
  auto store = Open(options);
  ASSERT_NE(store, nullptr);
  PutOrFail(*store, "k", "before");

  RawTable locker = Raw();
  locker.Exec("BEGIN");
  locker.Exec("SELECT * FROM " + table_ + " FOR UPDATE");
  Status status;
  Duration took =
      Timed([&] { status = store->Put(KeyRef::Of("k"), ValueOf("during"), clock_.Now()); });
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(status.guard(), Guard::kStore);
  EXPECT_NE(status.message().find("statement timeout"), std::string_view::npos)
      << status.ToString();
  EXPECT_GE(took, milliseconds(200));
  EXPECT_LT(took, seconds(2));
  EXPECT_EQ(Lookup(*store, "k"), "before");  // Readers do not wait for the lock.
  locker.Exec("COMMIT");

  PutOrFail(*store, "k", "after");
  EXPECT_EQ(Lookup(*store, "k"), "after");
  EXPECT_EQ(store->counters().failed, 1u);
  // The server cancelled the statement; the connection stayed in step.
  EXPECT_EQ(store->counters().connections_dropped, 0u);
}

TEST_F(PostgresStoreTest, DamagedEntriesAreNeverReturnedAndAreDeleted) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const int kKeys = 7;
  for (int i = 0; i < kKeys; ++i) {
    PutOrFail(*store, "k" + std::to_string(i), "value " + std::to_string(i));
  }

  RawTable raw = Raw();
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
  raw.SetEnvelope(Digest("k5"), "");
  // k6 is left intact.

  for (int i = 0; i < kKeys - 1; ++i) {
    EXPECT_EQ(Lookup(*store, "k" + std::to_string(i)), std::nullopt) << "k" << i;
  }
  EXPECT_EQ(Lookup(*store, "k6"), "value 6");
  EXPECT_EQ(store->counters().corrupt, 6u);
  EXPECT_EQ(store->counters().failed, 0u);
  EXPECT_EQ(raw.Count(), 1);  // The damaged rows were deleted.

  // Once deleted they are plain misses, and the keys take new values.
  EXPECT_EQ(Lookup(*store, "k0"), std::nullopt);
  EXPECT_EQ(store->counters().corrupt, 6u);
  PutOrFail(*store, "k0", "fresh");
  EXPECT_EQ(Lookup(*store, "k0"), "fresh");
}

TEST_F(PostgresStoreTest, RandomDamageInTheTableNeverYieldsAWrongValue) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  RawTable raw = Raw();
  std::mt19937_64 rng(11);
  int returned = 0;
  const int kRounds = 200;
  for (int i = 0; i < kRounds; ++i) {
    std::string value = "value-" + std::to_string(i) + std::string(rng() % 64, 'v');
    PutOrFail(*store, "k", value);
    std::string damaged = *raw.Envelope(Digest("k"));
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

TEST_F(PostgresStoreTest, ManyThreadsWriteAndReadTheSameAndDifferentKeys) {
  PostgresStoreOptions options = Options();
  options.pool_size = 4;  // Fewer connections than threads: some wait.
  auto store = Open(options);
  ASSERT_NE(store, nullptr);
  const int kThreads = 12;
  const int kOps = 200;
  std::atomic<int> wrong{0};
  std::atomic<int> failed_puts{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int n = 0; n < kOps; ++n) {
        // A third of the operations on one hot key, the rest spread.
        std::string key = rng() % 3 == 0 ? "hot" : "key-" + std::to_string(rng() % 50);
        if (rng() % 2 == 0) {
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
  EXPECT_EQ(store->counters().connections_dropped, 0u);
  EXPECT_LE(store->Stats().entries, 51u);
  EXPECT_TRUE(Lookup(*store, "hot").value_or("").starts_with("hot:"));
}

// ---- Several processes ----

constexpr int kProcesses = 4;
constexpr int kProcessKeys = 300;

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

// The body of one child process: opens the store (all children at once, on
// a table that does not exist yet), writes every key in its own order and
// reads back random keys. Returns the exit code: 0 when every operation
// succeeded and every value read was one a writer wrote for that key.
int RunWriterProcess(const PostgresStoreOptions& options, int w) {
  Result<std::unique_ptr<PostgresStore>> opened = PostgresStore::Open(options);
  if (!opened.ok()) {
    std::fprintf(stderr, "writer %d: %s\n", w, opened.status().ToString().c_str());
    return 10;
  }
  PostgresStore& store = **opened;
  std::vector<int> order(kProcessKeys);
  for (int i = 0; i < kProcessKeys; ++i) order[i] = i;
  std::mt19937 rng(100 + w);
  std::shuffle(order.begin(), order.end(), rng);
  Clock* clock = RealClock();
  for (int i : order) {
    std::string key = ToolKey("shared", std::to_string(i));
    StoredValue v{Bytes::Copy(WriterValue(w, i)), clock->Now() + minutes(30),
                  clock->Now() + minutes(60)};
    if (Status put = store.Put(KeyRef::Of(key), v, clock->Now()); !put.ok()) {
      std::fprintf(stderr, "writer %d: %s\n", w, put.ToString().c_str());
      return 11;
    }
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

TEST_F(PostgresStoreTest, SeveralProcessesShareOneTable) {
  // Children block on the gate until the parent closes it, so that all of
  // them create the table and start writing together.
  int gate[2];
  ASSERT_EQ(pipe(gate), 0);
  std::vector<pid_t> children;
  const PostgresStoreOptions options = Options();
  for (int w = 0; w < kProcesses; ++w) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(gate[1]);
      char byte;
      (void)!read(gate[0], &byte, 1);
      _exit(RunWriterProcess(options, w));
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

  auto store = PostgresStore::Open(Options());
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

// One "process": its own registry, holding its own store object on the table.
struct ToolProcess {
  ToolProcess(const PostgresStoreOptions& options, Clock* clock, UnixClock unix_clock)
      : random(5), pool(NewThreadPool(4)) {
    Result<std::unique_ptr<PostgresStore>> opened =
        PostgresStore::Open(options, clock, std::move(unix_clock));
    EXPECT_TRUE(opened.ok()) << opened.status().ToString();
    if (opened.ok()) store = std::shared_ptr<PostgresStore>(std::move(opened).value());
    registry.Register("postgres", store);
    env.clock = clock;
    env.random = &random;
    env.stores = &registry;
    env.executor = pool.get();
  }

  SeededRandom random;
  StoreRegistry registry;
  std::shared_ptr<PostgresStore> store;
  std::unique_ptr<Executor> pool;
  Environment env;
};

TEST_F(PostgresStoreTest, SecondProcessHitsAndClearCacheErasesOneTool) {
  ToolPolicy policy;
  policy.cache.store = "postgres";
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

  // The first process fills the table.
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

// ---- Coalescing across processes: the flight coordinator ----

using Role = FlightCoordinator::Role;
using WaitKind = FlightCoordinator::WaitResult::Kind;

TEST_F(PostgresStoreTest, FollowerIsWokenByTheLeadersNotification) {
  // With a 5 s fallback look, only the notification can wake the follower
  // sooner.
  PostgresStoreOptions o = Options();
  o.follower_poll = seconds(5);
  auto a = Open(o);
  auto b = Open(o);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(b->listening());
  std::string key = ToolKey("t", "flight");
  KeyRef k = KeyRef::Of(key);
  FlightCoordinator::Lease leader = a->coordinator()->Acquire(k);
  ASSERT_EQ(leader.role, Role::kLeader);
  FlightCoordinator::Lease follower = b->coordinator()->Acquire(k);
  ASSERT_EQ(follower.role, Role::kFollower);
  EXPECT_EQ(follower.token, leader.token);
  // A second caller in the leader's own process follows too.
  EXPECT_EQ(a->coordinator()->Acquire(k).role, Role::kFollower);

  std::atomic<bool> done{false};
  FlightCoordinator::WaitResult got;
  std::chrono::steady_clock::time_point woke;
  std::thread waiter([&] {
    got = b->coordinator()->Wait(k, follower, TimePoint::max());
    woke = std::chrono::steady_clock::now();
    done = true;
  });
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_FALSE(done.load());
  auto completed = std::chrono::steady_clock::now();
  EXPECT_TRUE(a->coordinator()->Complete(k, leader.token, ValueOf("shared"), clock_.Now()));
  waiter.join();
  ASSERT_EQ(got.kind, WaitKind::kValue);
  EXPECT_EQ(got.value->value.view(), "shared");
  EXPECT_LT(woke - completed, seconds(4));
  EXPECT_GE(b->counters().notifications, 1u);
  std::printf(
      "figure (postgres): follower woken %.1f ms after the leader's completion "
      "(fallback look every 5 s)\n",
      std::chrono::duration<double, std::milli>(woke - completed).count());
  // The value is in the table for everyone, and the lease is released: the
  // next caller leads, with a larger token.
  EXPECT_EQ(Lookup(*b, key), "shared");
  FlightCoordinator::Lease next = b->coordinator()->Acquire(k);
  EXPECT_EQ(next.role, Role::kLeader);
  EXPECT_GT(next.token, leader.token);
  b->coordinator()->Release(k, next.token);
  EXPECT_EQ(a->counters().leases_taken, 1u);
  EXPECT_EQ(a->counters().failed + b->counters().failed, 0u);
}

TEST_F(PostgresStoreTest, LeaseTableHoldsDigestsTokensAndTheServersClock) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::string key = ToolKey("search", "secret query");
  FlightCoordinator::Lease lease = store->coordinator()->Acquire(KeyRef::Of(key));
  ASSERT_EQ(lease.role, Role::kLeader);
  RawTable raw(server_->conninfo(), table_ + "_leases");
  EXPECT_EQ(raw.Count("digest = '" + Digest(key) + "' AND token = " + std::to_string(lease.token)),
            1);
  EXPECT_EQ(raw.Count("position('secret' in digest) > 0"), 0);
  // Held for lease_ttl (5 s) from now on the server's clock.
  EXPECT_EQ(raw.Count("expires_at BETWEEN (extract(epoch FROM clock_timestamp()) * 1e6)::bigint"
                      " + 4000000 AND (extract(epoch FROM clock_timestamp()) * 1e6)::bigint"
                      " + 5000000"),
            1);
  // Tokens come from the table's sequence.
  EXPECT_EQ(raw.Scalar("SELECT last_value FROM \"" + table_ + "_lease_token\""),
            std::to_string(lease.token));
}

TEST_F(PostgresStoreTest, LeadersErrorReachesItsFollowers) {
  auto a = Open();
  auto b = Open();
  std::string key = ToolKey("t", "error");
  KeyRef k = KeyRef::Of(key);
  FlightCoordinator::Lease leader = a->coordinator()->Acquire(k);
  ASSERT_EQ(leader.role, Role::kLeader);
  FlightCoordinator::Lease follower = b->coordinator()->Acquire(k);
  ASSERT_EQ(follower.role, Role::kFollower);
  std::thread completer([&] {
    std::this_thread::sleep_for(milliseconds(100));
    a->coordinator()->Complete(
        k, leader.token, Status(StatusCode::kResourceExhausted, "rate limited"), clock_.Now());
  });
  FlightCoordinator::WaitResult got = b->coordinator()->Wait(k, follower, TimePoint::max());
  completer.join();
  ASSERT_EQ(got.kind, WaitKind::kError);
  EXPECT_EQ(got.error.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(got.error.message(), "rate limited");
  EXPECT_EQ(got.error.guard(), Guard::kUpstream);
  // Nothing was cached, and the next caller leads again; its followers do
  // not see the former leader's error.
  EXPECT_EQ(Lookup(*b, key), std::nullopt);
  FlightCoordinator::Lease next = b->coordinator()->Acquire(k);
  ASSERT_EQ(next.role, Role::kLeader);
  FlightCoordinator::Lease next_follower = a->coordinator()->Acquire(k);
  ASSERT_EQ(next_follower.role, Role::kFollower);
  EXPECT_EQ(a->coordinator()->Wait(k, next_follower, clock_.Now()).kind, WaitKind::kTimedOut);
}

TEST_F(PostgresStoreTest, ReleasedLeaseWakesFollowersToLookAgain) {
  PostgresStoreOptions o = Options();
  o.follower_poll = seconds(5);
  auto a = Open(o);
  auto b = Open(o);
  std::string key = ToolKey("t", "released");
  KeyRef k = KeyRef::Of(key);
  FlightCoordinator::Lease leader = a->coordinator()->Acquire(k);
  FlightCoordinator::Lease follower = b->coordinator()->Acquire(k);
  ASSERT_EQ(follower.role, Role::kFollower);
  std::thread releaser([&] {
    std::this_thread::sleep_for(milliseconds(100));
    a->coordinator()->Release(k, leader.token);
  });
  FlightCoordinator::WaitResult got = b->coordinator()->Wait(k, follower, TimePoint::max());
  releaser.join();
  EXPECT_EQ(got.kind, WaitKind::kLeaseGone);
  EXPECT_EQ(b->coordinator()->Acquire(k).role, Role::kLeader);
}

TEST_F(PostgresStoreTest, DeadLeadersLeaseExpiresAndAFollowerTakesOver) {
  PostgresStoreOptions o = Options();
  o.lease_ttl = milliseconds(300);
  auto b = Open(o);
  std::string key = ToolKey("t", "takeover");
  KeyRef k = KeyRef::Of(key);
  FlightCoordinator::Lease dead;
  {
    auto a = Open(o);
    dead = a->coordinator()->Acquire(k);
    ASSERT_EQ(dead.role, Role::kLeader);
  }  // The leader's process "dies": nobody renews its lease.
  FlightCoordinator::Lease follower = b->coordinator()->Acquire(k);
  ASSERT_EQ(follower.role, Role::kFollower);
  auto start = std::chrono::steady_clock::now();
  FlightCoordinator::WaitResult got = b->coordinator()->Wait(k, follower, TimePoint::max());
  EXPECT_EQ(got.kind, WaitKind::kLeaseGone);
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(300) + seconds(1));
  FlightCoordinator::Lease takeover = b->coordinator()->Acquire(k);
  EXPECT_EQ(takeover.role, Role::kLeader);
  EXPECT_GT(takeover.token, dead.token);
}

TEST_F(PostgresStoreTest, LiveLeadersLeaseIsRenewed) {
  PostgresStoreOptions o = Options();
  o.lease_ttl = milliseconds(150);
  auto a = Open(o);
  auto b = Open(o);
  std::string key = ToolKey("t", "renewed");
  KeyRef k = KeyRef::Of(key);
  FlightCoordinator::Lease leader = a->coordinator()->Acquire(k);
  ASSERT_EQ(leader.role, Role::kLeader);
  for (int i = 0; i < 10; ++i) {
    std::this_thread::sleep_for(milliseconds(60));
    EXPECT_EQ(b->coordinator()->Acquire(k).role, Role::kFollower) << i;
  }
  EXPECT_EQ(a->counters().leases_lost, 0u);
  EXPECT_TRUE(a->coordinator()->Complete(k, leader.token, ValueOf("v"), clock_.Now()));
}

TEST_F(PostgresStoreTest, StaleLeaderIsFencedAndCannotOverwriteANewerResult) {
  auto a = Open();
  auto b = Open();
  RawTable raw(server_->conninfo(), table_ + "_leases");
  std::string key = ToolKey("t", "fence");
  KeyRef k = KeyRef::Of(key);
  FlightCoordinator::Lease old_leader = a->coordinator()->Acquire(k);
  ASSERT_EQ(old_leader.role, Role::kLeader);
  // The old leader stalls long enough for its lease to expire.
  raw.Exec("UPDATE " + raw.table() + " SET expires_at = 0");
  FlightCoordinator::Lease new_leader = b->coordinator()->Acquire(k);
  ASSERT_EQ(new_leader.role, Role::kLeader);
  EXPECT_GT(new_leader.token, old_leader.token);

  // Neither before nor after the new leader's result may the old one write.
  EXPECT_FALSE(a->coordinator()->Complete(k, old_leader.token, ValueOf("old"), clock_.Now()));
  EXPECT_EQ(Lookup(*a, key), std::nullopt);
  EXPECT_TRUE(b->coordinator()->Complete(k, new_leader.token, ValueOf("new"), clock_.Now()));
  EXPECT_FALSE(a->coordinator()->Complete(k, old_leader.token, ValueOf("old"), clock_.Now()));
  EXPECT_EQ(a->counters().fenced, 2u);
  EXPECT_EQ(Lookup(*a, key), "new");
  // Nor release the newer lease or publish an error for it.
  FlightCoordinator::Lease third = b->coordinator()->Acquire(k);
  ASSERT_EQ(third.role, Role::kLeader);
  a->coordinator()->Release(k, old_leader.token);
  a->coordinator()->Complete(k, old_leader.token, Status(StatusCode::kInternal, "late"),
                             clock_.Now());
  EXPECT_EQ(a->coordinator()->Acquire(k).role, Role::kFollower);
  EXPECT_EQ(raw.Count("error_code <> 0"), 0);
}

TEST_F(PostgresStoreTest, FollowerFollowsANewLeaderAfterATakeover) {
  auto a = Open();
  auto b = Open();
  auto c = Open();
  RawTable raw(server_->conninfo(), table_ + "_leases");
  std::string key = ToolKey("t", "relay");
  KeyRef k = KeyRef::Of(key);
  FlightCoordinator::Lease first = a->coordinator()->Acquire(k);
  FlightCoordinator::Lease follower = c->coordinator()->Acquire(k);
  ASSERT_EQ(follower.role, Role::kFollower);
  raw.Exec("UPDATE " + raw.table() + " SET expires_at = 0");
  FlightCoordinator::Lease second = b->coordinator()->Acquire(k);
  ASSERT_EQ(second.role, Role::kLeader);
  ASSERT_GT(second.token, first.token);
  std::thread completer([&] {
    std::this_thread::sleep_for(milliseconds(100));
    b->coordinator()->Complete(k, second.token, Status(StatusCode::kNotFound, "gone"),
                               clock_.Now());
  });
  // Waiting on the first leader's token, the follower sees the second's error.
  FlightCoordinator::WaitResult got = c->coordinator()->Wait(k, follower, TimePoint::max());
  completer.join();
  ASSERT_EQ(got.kind, WaitKind::kError);
  EXPECT_EQ(got.error.message(), "gone");
}

TEST_F(PostgresStoreTest, ValueWrittenWithoutANotificationIsFoundByTheFallbackLook) {
  PostgresStoreOptions o = Options();
  o.follower_poll = milliseconds(100);
  auto a = Open(o);
  auto b = Open(o);
  std::string key = ToolKey("t", "unnotified");
  KeyRef k = KeyRef::Of(key);
  ASSERT_EQ(a->coordinator()->Acquire(k).role, Role::kLeader);
  FlightCoordinator::Lease follower = b->coordinator()->Acquire(k);
  ASSERT_EQ(follower.role, Role::kFollower);
  std::thread writer([&] {
    std::this_thread::sleep_for(milliseconds(150));
    PutOrFail(*a, key, "quiet");  // A plain write sends no notification.
  });
  FlightCoordinator::WaitResult got = b->coordinator()->Wait(k, follower, TimePoint::max());
  writer.join();
  ASSERT_EQ(got.kind, WaitKind::kValue);
  EXPECT_EQ(got.value->value.view(), "quiet");
  EXPECT_EQ(b->counters().notifications, 0u);
}

TEST_F(PostgresStoreTest, ListeningConnectionLostIsReopenedAndNotificationsResume) {
  PostgresStoreOptions o = Options();
  o.follower_poll = seconds(5);
  auto a = Open(o);
  auto b = Open(o);
  ASSERT_TRUE(b->listening());
  // The server ends every listening session (and nothing else of ours).
  RawTable raw = Raw();
  const std::string listeners =
      "SELECT {} FROM pg_stat_activity WHERE (query LIKE 'LISTEN %' OR query = 'SELECT 1')";
  auto listeners_sql = [&](const std::string& what) {
    std::string sql = listeners;
    return sql.replace(sql.find("{}"), 2, what);
  };
  std::string old_pids = raw.Scalar(listeners_sql("string_agg(pid::text, ',')"));
  ASSERT_FALSE(old_pids.empty());
  EXPECT_EQ(raw.Scalar(listeners_sql("count(pg_terminate_backend(pid))")), "2");
  // Both stores listen again, on new sessions.
  auto until = std::chrono::steady_clock::now() + seconds(10);
  while (raw.Scalar(listeners_sql("count(*)") + " AND pid NOT IN (" + old_pids + ")") != "2" ||
         !b->listening()) {
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "the listener did not come back";
    std::this_thread::sleep_for(milliseconds(20));
  }

  // A follower is woken by the notification again, well before its 5 s look.
  std::string key = ToolKey("t", "relisten");
  KeyRef k = KeyRef::Of(key);
  FlightCoordinator::Lease leader = a->coordinator()->Acquire(k);
  FlightCoordinator::Lease follower = b->coordinator()->Acquire(k);
  ASSERT_EQ(follower.role, Role::kFollower);
  std::chrono::steady_clock::time_point completed;
  std::thread completer([&] {
    std::this_thread::sleep_for(milliseconds(100));
    completed = std::chrono::steady_clock::now();
    a->coordinator()->Complete(k, leader.token, ValueOf("again"), clock_.Now());
  });
  FlightCoordinator::WaitResult got = b->coordinator()->Wait(k, follower, TimePoint::max());
  auto woke = std::chrono::steady_clock::now();
  completer.join();
  ASSERT_EQ(got.kind, WaitKind::kValue);
  EXPECT_LT(woke - completed, seconds(4));
  EXPECT_GE(b->counters().notifications, 1u);
}

TEST_F(PostgresStoreTest, DamagedValueIsNeverHandedToAFollower) {
  auto a = Open();
  auto b = Open();
  std::string key = ToolKey("t", "damaged");
  KeyRef k = KeyRef::Of(key);
  FlightCoordinator::Lease leader = a->coordinator()->Acquire(k);
  FlightCoordinator::Lease follower = b->coordinator()->Acquire(k);
  ASSERT_EQ(follower.role, Role::kFollower);
  ASSERT_TRUE(a->coordinator()->Complete(k, leader.token, ValueOf("good"), clock_.Now()));
  RawTable raw = Raw();
  std::optional<std::string> envelope = raw.Envelope(Digest(key));
  ASSERT_TRUE(envelope.has_value());
  std::string damaged = *envelope;
  damaged[damaged.size() / 2] ^= 0x20;
  raw.SetEnvelope(Digest(key), damaged);
  // The lease is released and the value refused: the follower takes over.
  FlightCoordinator::WaitResult got = b->coordinator()->Wait(k, follower, TimePoint::max());
  EXPECT_EQ(got.kind, WaitKind::kLeaseGone);
  EXPECT_GE(b->counters().corrupt, 1u);
  EXPECT_EQ(b->coordinator()->Acquire(k).role, Role::kLeader);
}

TEST_F(PostgresStoreTest, SettingUpTheTablesWhileLeadersCompleteNeverDeadlocks) {
  auto leader = Open();
  ASSERT_NE(leader, nullptr);
  std::atomic<bool> done{false};
  std::atomic<int> completed{0};
  std::thread completing([&] {
    for (int i = 0; !done; ++i) {
      std::string key = ToolKey("t", "k" + std::to_string(i % 20));
      FlightCoordinator::Lease lease = leader->coordinator()->Acquire(KeyRef::Of(key));
      if (lease.role != Role::kLeader) continue;
      if (leader->coordinator()->Complete(KeyRef::Of(key), lease.token, ValueOf("v"),
                                          clock_.Now())) {
        ++completed;
      }
    }
  });
  // Each Open runs the creation transaction (an index is missing), whose
  // CREATE INDEX statements lock both tables while completions lock them too.
  RawTable raw = Raw();
  for (int i = 0; i < 15; ++i) {
    raw.Exec("DROP INDEX IF EXISTS \"" + table_ + "_tool\"");
    Result<std::unique_ptr<PostgresStore>> opened =
        PostgresStore::Open(Options(), &clock_, FakeUnix());
    EXPECT_TRUE(opened.ok()) << i << ": " << opened.status().ToString();
  }
  done = true;
  completing.join();
  EXPECT_GT(completed.load(), 0);
  EXPECT_EQ(leader->counters().failed, 0u);
}

TEST_F(PostgresStoreTest, ExpiredLeasesArePurgedInBatches) {
  PostgresStoreOptions o = Options();
  o.purge_batch = 100;
  auto store = Open(o);
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 250; ++i) {
    std::string key = ToolKey("t", "old-" + std::to_string(i));
    FlightCoordinator::Lease lease = store->coordinator()->Acquire(KeyRef::Of(key));
    ASSERT_EQ(lease.role, Role::kLeader);
    store->coordinator()->Release(KeyRef::Of(key), lease.token);
  }
  std::string held_key = ToolKey("t", "held");
  ASSERT_EQ(store->coordinator()->Acquire(KeyRef::Of(held_key)).role, Role::kLeader);
  std::string recent_key = ToolKey("t", "recent");
  FlightCoordinator::Lease recent = store->coordinator()->Acquire(KeyRef::Of(recent_key));
  store->coordinator()->Release(KeyRef::Of(recent_key), recent.token);
  RawTable raw(server_->conninfo(), table_ + "_leases");
  ASSERT_EQ(raw.Count(), 252);

  // Released an hour ago: past error_ttl + lease_ttl.
  raw.Exec("UPDATE " + raw.table() +
           " SET expires_at = expires_at - 3600000000 WHERE digest LIKE '" +
           Digest(ToolKey("t", "")).substr(0, 10) + "%' AND digest <> '" + Digest(held_key) +
           "' AND digest <> '" + Digest(recent_key) + "'");
  store->PurgeExpired();
  EXPECT_EQ(raw.Count(), 152);
  store->PurgeExpired();
  store->PurgeExpired();
  store->PurgeExpired();
  EXPECT_EQ(raw.Count(), 2);
  EXPECT_EQ(store->counters().leases_purged, 250u);
  // The held lease and the recently released one stay.
  EXPECT_EQ(raw.Count("digest = '" + Digest(held_key) + "'"), 1);
  EXPECT_EQ(raw.Count("digest = '" + Digest(recent_key) + "'"), 1);
}

// ---- Outages: each test on a server of its own ----

class PostgresStoreOutageTest : public PostgresFixture {
 protected:
  void SetUp() override {
    Status started = server_.Start();
    ASSERT_TRUE(started.ok()) << "cannot start a PostgreSQL server for the test: "
                              << started.ToString();
  }

  PostgresStoreOptions Options() const {
    PostgresStoreOptions options;
    options.conninfo = server_.conninfo();
    options.connect_timeout = milliseconds(500);
    options.statement_timeout = milliseconds(500);
    return options;
  }

  // Retries `op` (a Get or Put that should work again) for up to 15 s, as the
  // store paces its reconnection attempts; whether it succeeded.
  template <typename F>
  bool EventuallyWorks(F&& op) {
    const auto deadline = std::chrono::steady_clock::now() + seconds(15);
    while (std::chrono::steady_clock::now() < deadline) {
      if (op()) return true;
      std::this_thread::sleep_for(milliseconds(50));
    }
    return false;
  }

  PostgresServer server_;
};

TEST_F(PostgresStoreOutageTest, EntriesSurviveRestartAndCrashOfTheServer) {
  StoredValue v{Bytes::Copy("kept"), RealClock()->Now() + minutes(10),
                RealClock()->Now() + minutes(20)};
  auto opened = PostgresStore::Open(Options());
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  PostgresStore& store = **opened;
  ASSERT_TRUE(store.Put(KeyRef::Of("k"), v, RealClock()->Now()).ok());

  // A clean restart: the store's idle connection is dead, is replaced, and
  // the read goes through on the first try.
  ASSERT_TRUE(server_.Stop().ok());
  ASSERT_TRUE(server_.Start().ok()) << server_.LogTail();
  std::optional<StoredValue> found = store.Get(KeyRef::Of("k"), RealClock()->Now());
  ASSERT_TRUE(found.has_value()) << store.counters().failed;
  EXPECT_EQ(found->value.view(), "kept");
  // Off by no more than the drift between the wall and steady clocks.
  EXPECT_LT(std::chrono::abs(found->fresh_until - v.fresh_until), milliseconds(100));
  EXPECT_LT(std::chrono::abs(found->stale_until - v.stale_until), milliseconds(100));
  EXPECT_EQ(store.counters().failed, 0u);
  EXPECT_GE(store.counters().connections_dropped, 1u);

  // A crash: every server process killed; recovery replays the log.
  ASSERT_TRUE(store.Put(KeyRef::Of("k2"), v, RealClock()->Now()).ok());
  server_.Kill();
  ASSERT_TRUE(server_.Start().ok()) << server_.LogTail();
  auto reopened = NewPostgresStore(Options());
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_TRUE((*reopened)->Get(KeyRef::Of("k"), RealClock()->Now()).has_value());
  EXPECT_TRUE((*reopened)->Get(KeyRef::Of("k2"), RealClock()->Now()).has_value());
  EXPECT_TRUE(store.Get(KeyRef::Of("k2"), RealClock()->Now()).has_value());
}

TEST_F(PostgresStoreOutageTest, StoppedServerFailsCallsQuicklyAndTheStoreRecoversByItself) {
  std::atomic<int> down_lines{0};
  std::atomic<int> up_lines{0};
  SetLogSink([&](const LogRecord& r) {
    if (r.event == "store.down") ++down_lines;
    if (r.event == "store.up") ++up_lines;
  });
  auto store = Open(Options());
  ASSERT_NE(store, nullptr);
  PutOrFail(*store, "k", "before");
  ASSERT_TRUE(server_.Stop().ok());

  // Misses and Unavailable, each well within the timeouts.
  for (int i = 0; i < 5; ++i) {
    std::optional<std::string> found;
    Duration took = Timed([&] { found = Lookup(*store, "k"); });
    EXPECT_EQ(found, std::nullopt);
    EXPECT_LT(took, seconds(1)) << "get " << i;
    Status status;
    took = Timed([&] { status = store->Put(KeyRef::Of("k"), ValueOf("during"), clock_.Now()); });
    EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.ToString();
    EXPECT_EQ(status.guard(), Guard::kStore);
    EXPECT_LT(took, seconds(1)) << "put " << i;
  }
  EXPECT_EQ(store->counters().failed, 10u);
  EXPECT_EQ(store->Stats().misses, 5u);

  // Back: the same store object reconnects without help.
  ASSERT_TRUE(server_.Start().ok()) << server_.LogTail();
  EXPECT_TRUE(EventuallyWorks([&] { return Lookup(*store, "k") == "before"; }));
  PutOrFail(*store, "k", "after");
  EXPECT_EQ(Lookup(*store, "k"), "after");
  SetLogSink(nullptr);
  // One outage, logged once when it began and once when it ended.
  EXPECT_EQ(down_lines.load(), 1);
  EXPECT_EQ(up_lines.load(), 1);
}

TEST_F(PostgresStoreOutageTest, HungServerCannotBlockACall) {
  auto store = Open(Options());
  ASSERT_NE(store, nullptr);
  PutOrFail(*store, "k", "before");

  // Every server process stopped with its sockets open: requests are
  // accepted by the kernel and never answered.
  server_.Pause();
  std::optional<std::string> found;
  Duration took = Timed([&] { found = Lookup(*store, "k"); });
  EXPECT_EQ(found, std::nullopt);
  EXPECT_GE(took, milliseconds(500));  // statement_timeout + grace on the client.
  EXPECT_LT(took, milliseconds(2000));
  Status status;
  took = Timed([&] { status = store->Put(KeyRef::Of("k"), ValueOf("during"), clock_.Now()); });
  EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.ToString();
  EXPECT_LT(took, milliseconds(2000));  // connect_timeout for a new connection.
  EXPECT_GE(store->counters().connections_dropped, 1u);

  server_.Resume();
  EXPECT_TRUE(EventuallyWorks([&] { return Lookup(*store, "k") == "before"; }));
  PutOrFail(*store, "k", "after");
  EXPECT_EQ(Lookup(*store, "k"), "after");
}

TEST_F(PostgresStoreOutageTest, OpenFailsWithinConnectTimeoutOnAHungServer) {
  server_.Pause();
  Result<std::unique_ptr<PostgresStore>> store = std::unique_ptr<PostgresStore>();
  Duration took = Timed([&] { store = PostgresStore::Open(Options(), &clock_); });
  server_.Resume();
  EXPECT_EQ(store.status().code(), StatusCode::kUnavailable) << store.status().ToString();
  EXPECT_NE(store.status().message().find("connect_timeout"), std::string_view::npos)
      << store.status().ToString();
  EXPECT_GE(took, milliseconds(500));
  EXPECT_LT(took, milliseconds(1500));
}

TEST_F(PostgresStoreOutageTest, StoppedServerMeansNoCoordinationAndItResumesByItself) {
  PostgresStoreOptions o = Options();
  o.outage_initial_backoff = milliseconds(20);
  o.outage_max_backoff = milliseconds(100);
  auto a = Open(o);
  auto b = Open(o);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::string key = ToolKey("t", "outage");
  KeyRef k = KeyRef::Of(key);
  FlightCoordinator::Lease leader = a->coordinator()->Acquire(k);
  ASSERT_EQ(leader.role, Role::kLeader);
  FlightCoordinator::Lease follower = b->coordinator()->Acquire(k);
  ASSERT_EQ(follower.role, Role::kFollower);

  // A follower waiting when the server goes away is told to go on alone.
  FlightCoordinator::WaitResult got;
  std::thread waiter([&] { got = b->coordinator()->Wait(k, follower, TimePoint::max()); });
  std::this_thread::sleep_for(milliseconds(100));
  ASSERT_TRUE(server_.Stop().ok());
  waiter.join();
  EXPECT_EQ(got.kind, WaitKind::kUnavailable);
  // Every exchange fails fast and says "no coordination".
  for (int i = 0; i < 20; ++i) {
    Duration took =
        Timed([&] { EXPECT_EQ(b->coordinator()->Acquire(k).role, Role::kUnavailable); });
    EXPECT_LT(took, seconds(1)) << i;
  }
  EXPECT_FALSE(a->coordinator()->Complete(k, leader.token, ValueOf("v"), clock_.Now()));
  EXPECT_TRUE(b->down());
  EXPECT_GE(b->counters().outages, 1u);

  // Back: coordination resumes, notifications too.
  ASSERT_TRUE(server_.Start().ok()) << server_.LogTail();
  FlightCoordinator::Lease again;
  EXPECT_TRUE(EventuallyWorks([&] {
    again = a->coordinator()->Acquire(k);
    return again.role != Role::kUnavailable;
  }));
  EXPECT_TRUE(EventuallyWorks([&] { return a->listening() && b->listening(); }));
  if (again.role == Role::kFollower) {
    // The lease from before the outage is still running out.
    EXPECT_EQ(a->coordinator()->Wait(k, again, TimePoint::max()).kind, WaitKind::kLeaseGone);
    again = a->coordinator()->Acquire(k);
  }
  ASSERT_EQ(again.role, Role::kLeader);
  EXPECT_GT(again.token, leader.token);
  EXPECT_TRUE(a->coordinator()->Complete(k, again.token, ValueOf("after"), clock_.Now()));
  EXPECT_EQ(Lookup(*b, key), "after");
}

}  // namespace
}  // namespace toolops
