// src/store/redis_store_test.cc
//
// The Redis store against real redis-server processes started by the tests:
// the Store contract, what reaches the server (digests, hash tags, expiry),
// damaged values, AUTH and ACL users, TLS, a Redis Cluster of three masters,
// an outage in the middle of use, and the flight coordinator (leases,
// notifications, errors, takeover, fencing).

#include "toolops/redis_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "redis_server.h"
#include "store/envelope.h"
#include "store/redis_connection.h"
#include "toolops/log.h"

namespace toolops {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::RedisCluster;
using testing::RedisServer;
using testing::RedisServerOptions;
using Role = FlightCoordinator::Role;

std::string ToolKey(std::string_view tool, std::string_view args) {
  std::string key(tool);
  key.push_back('\0');
  key += "1";
  key.push_back('\0');
  key += args;
  return key;
}

// The Redis key the store uses for a canonical key.
std::string RedisKey(std::string_view key, std::string_view ns = "toolops") {
  std::string digest = StoreKeyDigest(ns, key);
  size_t colon = digest.rfind(':');
  return digest.substr(0, colon + 1) + "{" + digest.substr(colon + 1) + "}";
}

StoredValue Value(std::string_view payload, Duration ttl = seconds(60)) {
  TimePoint now = RealClock()->Now();
  return StoredValue{Bytes::Copy(payload), now + ttl, now + ttl};
}

// A plain connection for looking at and damaging what the store wrote.
std::unique_ptr<redis::Connection> Raw(int port) {
  redis::ConnectOptions options;
  options.io_timeout = seconds(5);
  options.connect_timeout = seconds(5);
  Result<std::unique_ptr<redis::Connection>> c =
      redis::Connection::Open(redis::Endpoint{"127.0.0.1", port}, options);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(*c) : nullptr;
}

// Collects log records; restores the default sink when destroyed.
class LogCapture {
 public:
  LogCapture() {
    SetLogSink([this](const LogRecord& r) {
      std::lock_guard lock(mu_);
      events_.emplace_back(r.event);
      messages_.emplace_back(r.message);
    });
  }
  ~LogCapture() { SetLogSink(nullptr); }
  int Count(std::string_view event) {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const std::string& e : events_) n += e == event;
    return n;
  }
  std::string All() {
    std::lock_guard lock(mu_);
    std::string out;
    for (const std::string& m : messages_) out += m + "\n";
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> events_;
  std::vector<std::string> messages_;
};

class RedisStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.ok()) << server_.error(); }

  RedisStoreOptions Options() {
    RedisStoreOptions o;
    o.port = server_.port();
    return o;
  }
  std::unique_ptr<RedisStore> Open(RedisStoreOptions o) {
    Result<std::unique_ptr<RedisStore>> store = RedisStore::Open(o);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(*store) : nullptr;
  }
  std::unique_ptr<RedisStore> Open() { return Open(Options()); }

  RedisServer server_;
};

TEST_F(RedisStoreTest, PutThenGetReturnsValueAndInstants) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::string key = ToolKey("search", "paris");
  KeyRef ref = KeyRef::Of(key);
  TimePoint now = RealClock()->Now();
  StoredValue v{Bytes::Copy("sunny"), now + seconds(30), now + seconds(90)};
  ASSERT_TRUE(store->Put(ref, v, now).ok());
  std::optional<StoredValue> got = store->Get(ref, now);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->value.view(), "sunny");
  // Instants cross as wall-clock nanoseconds: equal within a millisecond.
  EXPECT_LT(std::chrono::abs(got->fresh_until - v.fresh_until), milliseconds(1));
  EXPECT_LT(std::chrono::abs(got->stale_until - v.stale_until), milliseconds(1));
  EXPECT_FALSE(store->Get(KeyRef::Of(ToolKey("search", "lyon")), now).has_value());
  StoreStats stats = store->Stats();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.entries, 1u);
}

TEST_F(RedisStoreTest, ServerHoldsDigestsWithHashTagsAndExpiry) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::string key = ToolKey("search", "secret-argument");
  TimePoint now = RealClock()->Now();
  ASSERT_TRUE(store
                  ->Put(KeyRef::Of(key),
                        StoredValue{Bytes::Copy("v"), now + seconds(10), now + seconds(20)}, now)
                  .ok());
  auto raw = Raw(server_.port());
  Result<redis::Reply> keys = raw->Run({"KEYS", "*"});
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 1u);
  std::string stored((*keys)[0].str());
  EXPECT_EQ(stored, RedisKey(key));
  EXPECT_EQ(stored.find("secret"), std::string::npos);
  // The key expires with stale_until (20 s), not fresh_until.
  Result<redis::Reply> pttl = raw->Run({"PTTL", stored});
  ASSERT_TRUE(pttl.ok());
  EXPECT_GT(pttl->integer(), 15'000);
  EXPECT_LE(pttl->integer(), 20'000);
}

TEST_F(RedisStoreTest, PutReplacesEraseRemovesAndPastEntriesAreDropped) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::string k_key = ToolKey("t", "a");
  KeyRef k = KeyRef::Of(k_key);
  TimePoint now = RealClock()->Now();
  ASSERT_TRUE(store->Put(k, Value("one"), now).ok());
  ASSERT_TRUE(store->Put(k, Value("two"), now).ok());
  EXPECT_EQ(store->Get(k, now)->value.view(), "two");
  EXPECT_TRUE(store->Erase(k));
  EXPECT_FALSE(store->Erase(k));
  EXPECT_FALSE(store->Get(k, now).has_value());
  // A value already past its stale_until removes the older one.
  ASSERT_TRUE(store->Put(k, Value("three"), now).ok());
  ASSERT_TRUE(
      store->Put(k, StoredValue{Bytes::Copy("old"), now - seconds(2), now - seconds(1)}, now).ok());
  EXPECT_FALSE(store->Get(k, now).has_value());
}

TEST_F(RedisStoreTest, TooLargeValueIsRefusedNamingSizeAndLimit) {
  RedisStoreOptions o = Options();
  o.max_value_bytes = 100;
  auto store = Open(o);
  ASSERT_NE(store, nullptr);
  std::string k_key = ToolKey("t", "big");
  KeyRef k = KeyRef::Of(k_key);
  TimePoint now = RealClock()->Now();
  ASSERT_TRUE(store->Put(k, Value("small"), now).ok());
  Status s = store->Put(k, Value(std::string(101, 'x')), now);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("101 bytes"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("max_value_bytes"), std::string::npos) << s.ToString();
  // The older, smaller value is gone too: it would no longer be current.
  EXPECT_FALSE(store->Get(k, now).has_value());
  EXPECT_EQ(store->Stats().rejected, 1u);
}

TEST_F(RedisStoreTest, EraseByPrefixErasesOneToolOrTheWholeNamespace) {
  auto store = Open();
  RedisStoreOptions other_options = Options();
  other_options.key_namespace = "other";
  auto other = Open(other_options);
  ASSERT_NE(store, nullptr);
  ASSERT_NE(other, nullptr);
  TimePoint now = RealClock()->Now();
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(store->Put(KeyRef::Of(ToolKey("a", std::to_string(i))), Value("x"), now).ok());
    ASSERT_TRUE(store->Put(KeyRef::Of(ToolKey("b", std::to_string(i))), Value("x"), now).ok());
  }
  ASSERT_TRUE(other->Put(KeyRef::Of(ToolKey("a", "0")), Value("x"), now).ok());
  std::string prefix_a = ToolKey("a", "");
  EXPECT_EQ(store->EraseByPrefix(prefix_a), 30u);
  EXPECT_FALSE(store->Get(KeyRef::Of(ToolKey("a", "3")), now).has_value());
  EXPECT_TRUE(store->Get(KeyRef::Of(ToolKey("b", "3")), now).has_value());
  EXPECT_EQ(store->EraseByPrefix("not a tool prefix"), 0u);
  EXPECT_EQ(store->EraseByPrefix(""), 30u);
  EXPECT_EQ(store->Stats().entries, 0u);
  // Another namespace on the same server is untouched.
  EXPECT_TRUE(other->Get(KeyRef::Of(ToolKey("a", "0")), now).has_value());
}

TEST_F(RedisStoreTest, DamagedValuesAreNeverReturnedAndAreDeleted) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto raw = Raw(server_.port());
  TimePoint now = RealClock()->Now();
  std::string good = std::string(EncodeEnvelope(Value("the right answer"), *RealClock()).view());
  std::vector<std::string> damaged = {
      "",                               // empty
      "hello",                          // foreign
      good.substr(0, good.size() / 2),  // truncated
      good + "x",                       // trailing bytes
      std::string(good.size(), '\0'),   // zeros
  };
  for (size_t i = 0; i < good.size(); i += 7) {
    std::string flipped = good;
    flipped[i] ^= 0x20;
    damaged.push_back(flipped);
  }
  int wrong = 0;
  for (size_t i = 0; i < damaged.size(); ++i) {
    std::string key = ToolKey("t", "k" + std::to_string(i));
    ASSERT_TRUE(raw->Run({"SET", RedisKey(key), damaged[i]}).ok());
    std::optional<StoredValue> got = store->Get(KeyRef::Of(key), now);
    if (got.has_value()) ++wrong;
    Result<redis::Reply> exists = raw->Run({"EXISTS", RedisKey(key)});
    EXPECT_EQ(exists->integer(), 0) << "damaged value " << i << " was not deleted";
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(store->counters().corrupt, damaged.size());
  // A value of another type under the key is a failed read, not a crash.
  std::string key = ToolKey("t", "list");
  ASSERT_TRUE(raw->Run({"RPUSH", RedisKey(key), "a"}).ok());
  EXPECT_FALSE(store->Get(KeyRef::Of(key), now).has_value());
}

TEST_F(RedisStoreTest, RejectsBadOptionsNamingTheField) {
  struct Case {
    std::string field;
    std::function<void(RedisStoreOptions&)> change;
  };
  std::vector<Case> cases = {
      {"key_namespace", [](RedisStoreOptions& o) { o.key_namespace = "a:b"; }},
      {"key_namespace", [](RedisStoreOptions& o) { o.key_namespace = ""; }},
      {"port", [](RedisStoreOptions& o) { o.port = 70000; }},
      {"io_timeout", [](RedisStoreOptions& o) { o.io_timeout = milliseconds(0); }},
      {"pool_size", [](RedisStoreOptions& o) { o.pool_size = 0; }},
      {"lease_ttl", [](RedisStoreOptions& o) { o.lease_ttl = milliseconds(1); }},
      {"db",
       [](RedisStoreOptions& o) {
         o.cluster = true;
         o.db = 2;
       }},
      {"url", [](RedisStoreOptions& o) { o.url = "http://localhost"; }},
      {"url", [](RedisStoreOptions& o) { o.url = "redis://host:notaport"; }},
      {"url", [](RedisStoreOptions& o) { o.url = "redis://:pw@/0"; }},
  };
  for (const Case& c : cases) {
    RedisStoreOptions o = Options();
    c.change(o);
    Result<std::unique_ptr<RedisStore>> store = RedisStore::Open(o);
    ASSERT_FALSE(store.ok()) << c.field;
    EXPECT_EQ(store.status().code(), StatusCode::kInvalidArgument) << store.status().ToString();
    EXPECT_NE(store.status().message().find(c.field), std::string::npos)
        << store.status().ToString();
  }
}

TEST_F(RedisStoreTest, UrlSetsHostPortAndDatabase) {
  RedisStoreOptions o;
  o.url = "redis://127.0.0.1:" + std::to_string(server_.port()) + "/3";
  auto store = Open(o);
  ASSERT_NE(store, nullptr);
  std::string key = ToolKey("t", "db3");
  ASSERT_TRUE(store->Put(KeyRef::Of(key), Value("x"), RealClock()->Now()).ok());
  auto raw = Raw(server_.port());
  ASSERT_TRUE(raw->Run({"SELECT", "3"}).ok());
  EXPECT_EQ(raw->Run({"EXISTS", RedisKey(key)})->integer(), 1);
}

TEST_F(RedisStoreTest, NobodyListeningIsUnavailableAtOpen) {
  RedisStoreOptions o;
  o.port = testing::PickFreePort();
  Result<std::unique_ptr<RedisStore>> store = RedisStore::Open(o);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(store.status().message().find(std::to_string(o.port)), std::string::npos);
}

TEST(RedisStoreAuthTest, PasswordAndAclUsers) {
  RedisServerOptions server_options;
  server_options.password = "s3cret";
  server_options.acl_users = {"user agent on >agent-pw ~* &* +@all",
                              "user reader on >reader-pw ~* &* -@all +ping"};
  RedisServer server(server_options);
  ASSERT_TRUE(server.ok()) << server.error();
  auto open = [&](std::string user, std::string password) {
    RedisStoreOptions o;
    o.port = server.port();
    o.username = std::move(user);
    o.password = std::move(password);
    return RedisStore::Open(o);
  };
  TimePoint now = RealClock()->Now();
  std::string k_key = ToolKey("t", "auth");
  KeyRef k = KeyRef::Of(k_key);
  {
    auto store = open("", "s3cret");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_TRUE((*store)->Put(k, Value("by default user"), now).ok());
  }
  {
    auto store = open("agent", "agent-pw");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    EXPECT_EQ((*store)->Get(k, now)->value.view(), "by default user");
  }
  {
    RedisStoreOptions o;
    o.url = "redis://agent:agent-pw@127.0.0.1:" + std::to_string(server.port());
    auto store = RedisStore::Open(o);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    EXPECT_TRUE((*store)->Get(k, now).has_value());
  }
  auto wrong = open("agent", "nope");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), StatusCode::kPermissionDenied) << wrong.status().ToString();
  auto none = open("", "");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("NOAUTH"), std::string::npos) << none.status().ToString();
  // A user without the right to GET: operations fail, the call never does.
  auto reader = open("reader", "reader-pw");
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_FALSE((*reader)->Get(k, now).has_value());
  EXPECT_FALSE((*reader)->Put(k, Value("x"), now).ok());
  EXPECT_GT((*reader)->counters().failed, 0u);
}

TEST(RedisStoreTlsTest, VerifiedTlsWorksAndAnUnknownCaIsRefused) {
  RedisServerOptions server_options;
  server_options.tls = true;
  RedisServer server(server_options);
  ASSERT_TRUE(server.ok()) << server.error();
  RedisStoreOptions o;
  o.port = server.port();
  o.tls.enabled = true;
  o.tls.ca_file = server.ca_file();
  o.connect_timeout = seconds(2);
  o.io_timeout = seconds(2);
  TimePoint now = RealClock()->Now();
  std::string k_key = ToolKey("t", "tls");
  KeyRef k = KeyRef::Of(k_key);
  {
    auto store = RedisStore::Open(o);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_TRUE((*store)->Put(k, Value(std::string(100'000, 'z')), now).ok());
    std::optional<StoredValue> got = (*store)->Get(k, now);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->value.size(), 100'000u);
  }
  {
    RedisStoreOptions by_name = o;
    by_name.url = "rediss://localhost:" + std::to_string(server.port());
    auto store = RedisStore::Open(by_name);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    EXPECT_TRUE((*store)->Get(k, now).has_value());
  }
  {
    RedisStoreOptions other = o;
    other.tls.ca_file = server.other_ca_file();
    auto store = RedisStore::Open(other);
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status().code(), StatusCode::kUnavailable);
    EXPECT_NE(store.status().message().find("certificate"), std::string::npos)
        << store.status().ToString();
  }
  {
    RedisStoreOptions plain = o;
    plain.tls.enabled = false;
    EXPECT_FALSE(RedisStore::Open(plain).ok());
  }
}

TEST(RedisStoreClusterTest, EntriesSpreadOverThreeMastersAndRedirectionsAreFollowed) {
  RedisCluster cluster(3);
  ASSERT_TRUE(cluster.ok()) << cluster.error();
  RedisStoreOptions o;
  o.port = cluster.seed_port();
  o.cluster = true;
  o.io_timeout = seconds(2);
  auto store = RedisStore::Open(o);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  TimePoint now = RealClock()->Now();
  for (int i = 0; i < 200; ++i) {
    std::string k_key = ToolKey("t", std::to_string(i));
    KeyRef k = KeyRef::Of(k_key);
    ASSERT_TRUE((*store)->Put(k, Value("v" + std::to_string(i)), now).ok());
  }
  for (int i = 0; i < 200; ++i) {
    std::optional<StoredValue> got =
        (*store)->Get(KeyRef::Of(ToolKey("t", std::to_string(i))), now);
    ASSERT_TRUE(got.has_value()) << i;
    EXPECT_EQ(got->value.view(), "v" + std::to_string(i));
  }
  EXPECT_EQ((*store)->counters().redirects, 0u);
  // Every master holds some of them.
  for (const auto& node : cluster.nodes()) {
    auto raw = Raw(node->port());
    Result<redis::Reply> size = raw->Run({"DBSIZE"});
    ASSERT_TRUE(size.ok());
    EXPECT_GT(size->integer(), 20) << "node " << node->port();
  }
  EXPECT_EQ((*store)->Stats().entries, 200u);
  // Leases live beside their entries: acquire and complete on every node.
  FlightCoordinator* coordinator = (*store)->coordinator();
  for (int i = 0; i < 30; ++i) {
    std::string key = ToolKey("lease", std::to_string(i));
    FlightCoordinator::Lease lease = coordinator->Acquire(KeyRef::Of(key));
    ASSERT_EQ(lease.role, Role::kLeader) << i;
    EXPECT_TRUE(coordinator->Complete(KeyRef::Of(key), lease.token, Value("r"), now));
    EXPECT_TRUE((*store)->Get(KeyRef::Of(key), now).has_value());
  }
  // A store that does not know it talks to a cluster follows MOVED.
  RedisStoreOptions unaware = o;
  unaware.cluster = false;
  auto follower = RedisStore::Open(unaware);
  ASSERT_TRUE(follower.ok()) << follower.status().ToString();
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE((*follower)->Get(KeyRef::Of(ToolKey("t", std::to_string(i))), now).has_value());
  }
  EXPECT_GT((*follower)->counters().redirects, 0u);
  EXPECT_EQ((*store)->EraseByPrefix(""), 230u);
}

TEST_F(RedisStoreTest, OutageNeverFailsAndIsLoggedOncePerEpisode) {
  LogCapture log;
  RedisStoreOptions o = Options();
  o.outage_initial_backoff = milliseconds(50);
  o.outage_max_backoff = milliseconds(200);
  auto store = Open(o);
  ASSERT_NE(store, nullptr);
  std::string k_key = ToolKey("t", "outage");
  KeyRef k = KeyRef::Of(k_key);
  ASSERT_TRUE(store->Put(k, Value("before"), RealClock()->Now()).ok());

  server_.Stop();
  auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 200; ++i) {
    TimePoint now = RealClock()->Now();
    EXPECT_FALSE(store->Get(k, now).has_value());
    EXPECT_EQ(store->Put(k, Value("during"), now).code(), StatusCode::kUnavailable);
  }
  // Connection refused is fast, and most operations are skipped outright.
  EXPECT_LT(std::chrono::steady_clock::now() - started, seconds(5));
  EXPECT_TRUE(store->down());
  RedisStoreCounters during = store->counters();
  EXPECT_EQ(during.outages, 1u);
  EXPECT_GT(during.skipped, 300u);
  EXPECT_EQ(log.Count("store.down"), 1) << log.All();
  EXPECT_EQ(log.Count("store.up"), 0);

  ASSERT_TRUE(server_.Start()) << server_.error();
  auto restarted = std::chrono::steady_clock::now();
  bool back = false;
  while (std::chrono::steady_clock::now() - restarted < seconds(5)) {
    if (store->Put(k, Value("after"), RealClock()->Now()).ok()) {
      back = true;
      break;
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_TRUE(back);
  EXPECT_LT(std::chrono::steady_clock::now() - restarted, seconds(1));
  EXPECT_EQ(store->Get(k, RealClock()->Now())->value.view(), "after");
  EXPECT_FALSE(store->down());
  EXPECT_EQ(log.Count("store.down"), 1);
  EXPECT_EQ(log.Count("store.up"), 1) << log.All();
}

TEST_F(RedisStoreTest, FollowerIsWokenByTheLeadersValue) {
  // With a 5 s poll, only the notification can wake the follower sooner.
  RedisStoreOptions o = Options();
  o.follower_poll = seconds(5);
  auto a = Open(o);
  auto b = Open(o);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::string key = ToolKey("t", "flight");
  KeyRef k = KeyRef::Of(key);
  FlightCoordinator::Lease leader = a->coordinator()->Acquire(k);
  ASSERT_EQ(leader.role, Role::kLeader);
  FlightCoordinator::Lease follower = b->coordinator()->Acquire(k);
  ASSERT_EQ(follower.role, Role::kFollower);
  EXPECT_EQ(follower.token, leader.token);

  std::atomic<bool> done{false};
  FlightCoordinator::WaitResult got;
  std::chrono::steady_clock::time_point woke;
  std::thread waiter([&] {
    got = b->coordinator()->Wait(k, follower, RealClock()->Now() + seconds(10));
    woke = std::chrono::steady_clock::now();
    done = true;
  });
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_FALSE(done.load());
  auto completed = std::chrono::steady_clock::now();
  EXPECT_TRUE(a->coordinator()->Complete(k, leader.token, Value("shared"), RealClock()->Now()));
  waiter.join();
  ASSERT_EQ(got.kind, FlightCoordinator::WaitResult::kValue);
  EXPECT_EQ(got.value->value.view(), "shared");
  EXPECT_LT(woke - completed, seconds(4));
  EXPECT_GE(b->counters().notifications, 1u);
  // The lease is released: the next caller leads.
  FlightCoordinator::Lease next = b->coordinator()->Acquire(k);
  EXPECT_EQ(next.role, Role::kLeader);
  EXPECT_GT(next.token, leader.token);
}

TEST_F(RedisStoreTest, LeadersErrorReachesItsFollowers) {
  auto a = Open();
  auto b = Open();
  std::string k_key = ToolKey("t", "error");
  KeyRef k = KeyRef::Of(k_key);
  FlightCoordinator::Lease leader = a->coordinator()->Acquire(k);
  FlightCoordinator::Lease follower = b->coordinator()->Acquire(k);
  ASSERT_EQ(follower.role, Role::kFollower);
  std::thread completer([&] {
    std::this_thread::sleep_for(milliseconds(100));
    a->coordinator()->Complete(k, leader.token,
                               Status(StatusCode::kResourceExhausted, "rate limited"),
                               RealClock()->Now());
  });
  FlightCoordinator::WaitResult got =
      b->coordinator()->Wait(k, follower, RealClock()->Now() + seconds(10));
  completer.join();
  ASSERT_EQ(got.kind, FlightCoordinator::WaitResult::kError);
  EXPECT_EQ(got.error.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(got.error.message(), "rate limited");
  // Nothing was cached, and the next caller leads again.
  EXPECT_FALSE(b->Get(k, RealClock()->Now()).has_value());
  EXPECT_EQ(b->coordinator()->Acquire(k).role, Role::kLeader);
}

TEST_F(RedisStoreTest, DeadLeadersLeaseExpiresAndAFollowerTakesOver) {
  RedisStoreOptions o = Options();
  o.lease_ttl = milliseconds(300);
  auto b = Open(o);
  std::string k_key = ToolKey("t", "takeover");
  KeyRef k = KeyRef::Of(k_key);
  FlightCoordinator::Lease dead;
  {
    auto a = Open(o);
    dead = a->coordinator()->Acquire(k);
    ASSERT_EQ(dead.role, Role::kLeader);
  }  // The leader's process "dies": nobody renews its lease.
  FlightCoordinator::Lease follower = b->coordinator()->Acquire(k);
  ASSERT_EQ(follower.role, Role::kFollower);
  auto start = std::chrono::steady_clock::now();
  FlightCoordinator::WaitResult got =
      b->coordinator()->Wait(k, follower, RealClock()->Now() + seconds(10));
  EXPECT_EQ(got.kind, FlightCoordinator::WaitResult::kLeaseGone);
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(300) + seconds(1));
  FlightCoordinator::Lease takeover = b->coordinator()->Acquire(k);
  EXPECT_EQ(takeover.role, Role::kLeader);
  EXPECT_GT(takeover.token, dead.token);
}

TEST_F(RedisStoreTest, LiveLeadersLeaseIsRenewed) {
  RedisStoreOptions o = Options();
  o.lease_ttl = milliseconds(150);
  auto a = Open(o);
  auto b = Open(o);
  std::string k_key = ToolKey("t", "renewed");
  KeyRef k = KeyRef::Of(k_key);
  FlightCoordinator::Lease leader = a->coordinator()->Acquire(k);
  ASSERT_EQ(leader.role, Role::kLeader);
  for (int i = 0; i < 10; ++i) {
    std::this_thread::sleep_for(milliseconds(60));
    EXPECT_EQ(b->coordinator()->Acquire(k).role, Role::kFollower) << i;
  }
  EXPECT_EQ(a->counters().leases_lost, 0u);
  EXPECT_TRUE(a->coordinator()->Complete(k, leader.token, Value("v"), RealClock()->Now()));
}

TEST_F(RedisStoreTest, StaleLeaderIsFencedAndCannotOverwriteANewerResult) {
  auto a = Open();
  auto b = Open();
  auto raw = Raw(server_.port());
  std::string key = ToolKey("t", "fence");
  KeyRef k = KeyRef::Of(key);
  FlightCoordinator::Lease old_leader = a->coordinator()->Acquire(k);
  ASSERT_EQ(old_leader.role, Role::kLeader);
  // The old leader stalls long enough for its lease to vanish.
  ASSERT_TRUE(raw->Run({"DEL", RedisKey(key) + ":lease"}).ok());
  FlightCoordinator::Lease new_leader = b->coordinator()->Acquire(k);
  ASSERT_EQ(new_leader.role, Role::kLeader);
  EXPECT_GT(new_leader.token, old_leader.token);
  TimePoint now = RealClock()->Now();
  EXPECT_TRUE(b->coordinator()->Complete(k, new_leader.token, Value("new"), now));
  EXPECT_FALSE(a->coordinator()->Complete(k, old_leader.token, Value("old"), now));
  EXPECT_EQ(a->counters().fenced, 1u);
  EXPECT_EQ(a->Get(k, now)->value.view(), "new");
}

TEST_F(RedisStoreTest, ConcurrentOperationsFromManyThreads) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        std::string arg = std::to_string((t * 7 + i) % 40);
        std::string k_key = ToolKey("t", arg);
        KeyRef k = KeyRef::Of(k_key);
        TimePoint now = RealClock()->Now();
        if (i % 3 == 0) {
          (void)store->Put(k, Value("value-" + arg), now);
        } else if (std::optional<StoredValue> got = store->Get(k, now)) {
          if (got->value.view() != "value-" + arg) ++wrong;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(store->counters().failed, 0u);
}

}  // namespace
}  // namespace toolops
