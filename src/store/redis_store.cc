// src/store/redis_store.cc
//
// The Redis store and its cross-process flight coordinator. Cluster routing
// (CRC16 hash slots, the slot map from CLUSTER SLOTS, MOVED / ASK) is written
// here: the hiredis that Debian ships has no Cluster support and no
// maintained Cluster client is packaged.

#include "toolops/redis_store.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <charconv>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <utility>

#include "base/mutex.h"
#include "store/envelope.h"
#include "store/redis_connection.h"
#include "store/store_health.h"
#include "store/tag_index.h"
#include "toolops/log.h"
#include "toolops/stats_publisher.h"

namespace toolops {
namespace {

using redis::Command;
using redis::Connection;
using redis::Endpoint;
using redis::Reply;
using redis::ReplyView;

// Lease: take it unless someone holds it. Tokens grow with the server's
// clock (microseconds) and with the key's last token, so they keep growing
// even after the fence key has expired.
constexpr std::string_view kAcquireScript = R"lua(
local holder = redis.call('GET', KEYS[1])
if holder then return {0, holder} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local token = string.format('%.0f', math.max(last + 1, now))
redis.call('SET', KEYS[2], token, 'PX', ARGV[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
return {1, token}
)lua";

constexpr std::string_view kRenewScript = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
)lua";

// The leader's value: written unless a newer token has been issued (fencing).
constexpr std::string_view kCompleteValueScript = R"lua(
local written = 0
if tonumber(ARGV[1]) >= tonumber(redis.call('GET', KEYS[3]) or '0') then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  written = 1
end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return written
)lua";

// The leader's error (or a plain release when the payload is empty).
constexpr std::string_view kCompleteErrorScript = R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
)lua";

// Statistics: one hash per namespace, a field per process holding
// "<expires unix ms> <snapshot>", expiry read on the server's clock. The hash
// itself lives as long as its newest snapshot.
constexpr std::string_view kPublishStatsScript = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f', now + ttl) .. ' ' .. ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
)lua";

// Every snapshot not expired; expired fields are deleted on the way.
constexpr std::string_view kReadStatsScript = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  local v = all[i + 1]
  local space = string.find(v, ' ', 1, true)
  local expires = space and tonumber(string.sub(v, 1, space - 1)) or 0
  if expires > now then
    live[#live + 1] = string.sub(v, space + 1)
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return live
)lua";

// A tag's index of single-call entries: a set of value key names whose own
// TTL is extended to the longest-lived member's.
constexpr std::string_view kTagEntryScript = R"lua(
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
)lua";

// Takes the set (its members, and deletes it) in one step, so that a
// member added meanwhile is either taken or survives with its set.
constexpr std::string_view kTakeTagScript = R"lua(
local members = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
return members
)lua";

constexpr int kSlots = 16384;
constexpr std::chrono::hours kFenceTtl{1};

// CRC16-CCITT (XModem), the hash of Redis Cluster slots.
uint16_t Crc16(std::string_view data) {
  uint16_t crc = 0;
  for (unsigned char byte : data) {
    crc ^= static_cast<uint16_t>(byte) << 8;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                           : static_cast<uint16_t>(crc << 1);
    }
  }
  return crc;
}

// The slot of a key: the hash of its first non-empty {tag}, else of all of it.
int SlotOf(std::string_view key) {
  size_t open = key.find('{');
  if (open != std::string_view::npos) {
    size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return Crc16(key) & (kSlots - 1);
}

Status StoreError(StatusCode code, std::string_view store, std::string_view message) {
  return Status(code, "redis store '" + std::string(store) + "': " + std::string(message),
                Guard::kStore);
}

std::string Millis(Duration d) {
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(d).count();
  return std::to_string(std::max<int64_t>(ms, 1));
}

bool ParseUint(std::string_view text, uint64_t* out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

std::string PercentDecode(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && std::isxdigit(static_cast<unsigned char>(in[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(in[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(in.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

// Fills `o` from o->url. Errors name the part that is wrong.
Status ApplyUrl(RedisStoreOptions* o) {
  std::string_view url = o->url;
  auto bad = [&](std::string_view why) {
    return Status(StatusCode::kInvalidArgument,
                  "redis store '" + o->name + "': url '" + o->url + "' " + std::string(why) +
                      " (expected redis://[[user]:password@]host[:port][/db] or rediss://...)",
                  Guard::kPolicy);
  };
  if (url.starts_with("rediss://")) {
    o->tls.enabled = true;
    url.remove_prefix(9);
  } else if (url.starts_with("redis://")) {
    url.remove_prefix(8);
  } else {
    return bad("has an unknown scheme");
  }
  size_t at = url.rfind('@');
  if (at != std::string_view::npos) {
    std::string_view credentials = url.substr(0, at);
    url.remove_prefix(at + 1);
    size_t colon = credentials.find(':');
    if (colon == std::string_view::npos) {
      o->password = PercentDecode(credentials);
    } else {
      o->username = PercentDecode(credentials.substr(0, colon));
      o->password = PercentDecode(credentials.substr(colon + 1));
    }
  }
  size_t slash = url.find('/');
  if (slash != std::string_view::npos) {
    std::string_view db = url.substr(slash + 1);
    url = url.substr(0, slash);
    uint64_t n = 0;
    if (!db.empty() && (!ParseUint(db, &n) || n > 1'000'000))
      return bad("has a bad database number");
    o->db = static_cast<int>(n);
  }
  std::string_view host = url;
  if (!host.empty() && host.front() == '[') {  // [ipv6]:port
    size_t close = host.find(']');
    if (close == std::string_view::npos) return bad("has an unclosed '['");
    std::string_view rest = host.substr(close + 1);
    host = host.substr(1, close - 1);
    if (!rest.empty()) {
      uint64_t port = 0;
      if (rest.front() != ':' || !ParseUint(rest.substr(1), &port) || port == 0 || port > 65535) {
        return bad("has a bad port");
      }
      o->port = static_cast<int>(port);
    }
  } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    uint64_t port = 0;
    if (!ParseUint(host.substr(colon + 1), &port) || port == 0 || port > 65535) {
      return bad("has a bad port");
    }
    o->port = static_cast<int>(port);
    host = host.substr(0, colon);
  }
  if (host.empty()) return bad("has no host");
  o->host = std::string(host);
  return Status();
}

Status CheckOptions(const RedisStoreOptions& o) {
  auto bad = [&](std::string_view field, std::string_view why) {
    return Status(StatusCode::kInvalidArgument,
                  "redis store '" + o.name + "': " + std::string(field) + " " + std::string(why),
                  Guard::kPolicy);
  };
  if (o.name.empty()) return bad("name", "must not be empty");
  if (o.key_namespace.empty()) return bad("key_namespace", "must not be empty");
  for (char c : o.key_namespace) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') {
      return bad("key_namespace",
                 "may hold only letters, digits, '_', '-' and '.' (got '" + o.key_namespace + "')");
    }
  }
  if (o.host.empty()) return bad("host", "must not be empty");
  if (o.port <= 0 || o.port > 65535) return bad("port", "must be in [1, 65535]");
  if (o.db < 0) return bad("db", "must not be negative");
  if (o.cluster && o.db != 0) return bad("db", "must be 0 for a Redis Cluster");
  if (o.max_value_bytes == 0) return bad("max_value_bytes", "must be positive");
  if (o.connect_timeout.count() <= 0) return bad("connect_timeout", "must be positive");
  if (o.io_timeout.count() <= 0) return bad("io_timeout", "must be positive");
  if (o.pool_size == 0) return bad("pool_size", "must be positive");
  if (o.outage_initial_backoff.count() <= 0 || o.outage_max_backoff < o.outage_initial_backoff) {
    return bad("outage_initial_backoff", "must be positive and not above outage_max_backoff");
  }
  if (o.lease_ttl.count() < 30) return bad("lease_ttl", "must be at least 30ms");
  if (o.error_ttl.count() <= 0) return bad("error_ttl", "must be positive");
  if (o.follower_poll.count() <= 0) return bad("follower_poll", "must be positive");
  return Status();
}

// Idle connections to one node.
class NodePool {
 public:
  NodePool(Endpoint endpoint, const redis::ConnectOptions* options, size_t max_idle)
      : endpoint_(std::move(endpoint)), options_(options), max_idle_(max_idle) {}

  Result<std::unique_ptr<Connection>> Take() {
    {
      MutexLock lock(&mu_);
      if (!idle_.empty()) {
        std::unique_ptr<Connection> c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    return Connection::Open(endpoint_, *options_);
  }

  void Return(std::unique_ptr<Connection> c) {
    if (c->broken()) return;
    MutexLock lock(&mu_);
    if (idle_.size() < max_idle_) idle_.push_back(std::move(c));
  }

  const Endpoint& endpoint() const { return endpoint_; }

 private:
  const Endpoint endpoint_;
  const redis::ConnectOptions* const options_;
  const size_t max_idle_;
  Mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_ TOOLOPS_GUARDED_BY(mu_);
};

// Which node serves each slot. A single server owns every slot.
struct Topology {
  std::vector<std::shared_ptr<NodePool>> nodes;
  std::array<uint16_t, kSlots> owner{};  // Index into nodes.
};

// The Redis names of one entry: the value key and its companions, all with
// the key hash as hash tag.
struct EntryNames {
  std::string value;  // ns:<tool>:{<key>}

  explicit EntryNames(const std::string& digest) {
    size_t colon = digest.rfind(':');
    value.reserve(digest.size() + 2);
    value.append(digest, 0, colon + 1).append("{").append(digest, colon + 1).append("}");
  }
  // Built on demand: a hit needs only the value key.
  std::string lease() const { return value + ":lease"; }
  std::string fence() const { return value + ":fence"; }
  std::string error() const { return value + ":err"; }
};

bool IsCompanionKey(std::string_view key) {
  return key.ends_with(":lease") || key.ends_with(":fence") || key.ends_with(":err") ||
         key.ends_with(":stats") || key.ends_with(":tagged");
}

class RedisStoreImpl final : public RedisStore,
                             public FlightCoordinator,
                             public BreakerBus,
                             public SemanticBus,
                             public StatsBoard,
                             public CallTagIndex {
 public:
  RedisStoreImpl(RedisStoreOptions options, Clock* clock, UnixClock unix_clock,
                 redis::TlsContext tls)
      : options_(std::move(options)),
        clock_(clock),
        unix_clock_(unix_clock ? std::move(unix_clock) : UnixClock(&UnixNowNanos)),
        tls_(std::move(tls)),
        health_(options_.name, options_.outage_initial_backoff, options_.outage_max_backoff,
                RealClock()),
        channel_(options_.key_namespace + ":flights"),
        breaker_channel_(options_.key_namespace + ":breakers"),
        semantic_channel_(options_.key_namespace + ":semantic"),
        instance_(std::to_string(std::random_device()()) + "-" +
                  std::to_string(reinterpret_cast<uintptr_t>(this))) {
    connect_.username = options_.username;
    connect_.password = options_.password;
    connect_.db = options_.db;
    connect_.tls = tls_.get();
    connect_.tls_server_name = options_.tls.server_name;
    connect_.tls_verify_name = options_.tls.verify_peer;
    connect_.connect_timeout = options_.connect_timeout;
    connect_.io_timeout = options_.io_timeout;
    seed_ = Endpoint{options_.host, options_.port};
    auto single = std::make_shared<Topology>();
    single->nodes.push_back(PoolFor(seed_));
    topology_ = std::move(single);
  }

  ~RedisStoreImpl() override {
    {
      std::lock_guard lock(threads_mu_);
      stopping_ = true;
    }
    threads_cv_.notify_all();
    if (keeper_.joinable()) keeper_.join();
    if (subscriber_.joinable()) subscriber_.join();
  }

  // Checks that a server answers (and AUTH passes), loads the Cluster slot
  // map, then starts the lease keeper and the subscriber.
  Status Start() {
    Result<std::unique_ptr<Connection>> probe = Connection::Open(seed_, connect_);
    if (!probe.ok()) return probe.status();
    Result<Reply> pong = (*probe)->Run({"PING"});
    if (!pong.ok()) return pong.status();
    if (pong->is_error()) {
      return StoreError(StatusCode::kUnavailable, options_.name,
                        "PING answered " + pong->Describe());
    }
    if (options_.cluster) {
      if (Status s = LoadSlots(**probe); !s.ok()) return s;
    }
    keeper_ = std::thread([this] { KeepLeases(); });
    subscriber_ = std::thread([this] { FollowMessages(); });
    // Notifications work from the first call on: wait (boundedly) for the
    // subscription. Without it, followers poll and breakers catch up when it
    // comes.
    auto until = std::chrono::steady_clock::now() + options_.connect_timeout + options_.io_timeout;
    while (!subscribed_.load(std::memory_order_relaxed) &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return Status();
  }

  // Store --------------------------------------------------------------------

  std::optional<StoredValue> Get(const KeyRef& key, TimePoint now) override {
    std::string digest = StoreKeyDigest(options_.key_namespace, key.bytes);
    if (digest.empty()) return Failed(), Miss();
    EntryNames names(digest);
    std::vector<Reply> replies;
    if (!Execute(names.value, {{"GET", names.value}}, &replies).ok()) return Miss();
    std::optional<StoredValue> value = DecodeReply(names, replies[0], now);
    if (!value) return Miss();
    hits_.fetch_add(1, std::memory_order_relaxed);
    return value;
  }

  Status Put(const KeyRef& key, const StoredValue& value, TimePoint now) override {
    std::string digest = StoreKeyDigest(options_.key_namespace, key.bytes);
    if (digest.empty()) {
      Failed();
      return StoreError(StatusCode::kUnavailable, options_.name, "cannot compute a key digest");
    }
    EntryNames names(digest);
    if (value.value.size() > options_.max_value_bytes) {
      rejected_.fetch_add(1, std::memory_order_relaxed);
      std::vector<Reply> ignored;
      (void)Execute(names.value, {{"DEL", names.value}}, &ignored);
      return TooLarge(value.value.size());
    }
    std::vector<Reply> replies;
    if (value.stale_until <= now) {
      return Execute(names.value, {{"DEL", names.value}}, &replies);
    }
    Bytes envelope = EncodeEnvelope(value, *clock_, unix_clock_());
    if (envelope.empty()) {
      Failed();
      return StoreError(StatusCode::kUnavailable, options_.name, "cannot encode the envelope");
    }
    std::string px = Millis(value.stale_until - now);
    if (Status s =
            Execute(names.value, {{"SET", names.value, envelope.view(), "PX", px}}, &replies);
        !s.ok()) {
      return s;
    }
    if (replies[0].is_error()) {
      Failed();
      return StoreError(StatusCode::kUnavailable, options_.name,
                        "SET answered " + replies[0].Describe());
    }
    return Status();
  }

  bool Erase(const KeyRef& key) override {
    std::string digest = StoreKeyDigest(options_.key_namespace, key.bytes);
    if (digest.empty()) return Failed(), false;
    EntryNames names(digest);
    std::vector<Reply> replies;
    if (!Execute(names.value, {{"DEL", names.value}}, &replies).ok()) return false;
    return replies[0].integer() > 0;
  }

  size_t EraseByPrefix(std::string_view prefix) override {
    std::string pattern;
    if (prefix.empty()) {
      pattern = options_.key_namespace + ":*";
    } else if (IsToolPrefix(prefix)) {
      pattern = StoreToolDigest(options_.key_namespace, prefix);
      if (pattern.empty()) return 0;
      pattern += ":*";
    } else {
      return 0;
    }
    size_t erased = 0;
    ForEachKey(pattern, [&](Connection& c, std::vector<std::string>& keys) -> Status {
      for (const std::string& key : keys) {
        Result<Reply> r = c.Run({"UNLINK", key});
        if (!r.ok()) return r.status();
        if (!IsCompanionKey(key)) erased += static_cast<size_t>(r->integer());
      }
      return Status();
    });
    return erased;
  }

  StoreStats Stats() const override {
    StoreStats stats;
    stats.hits = hits_.load(std::memory_order_relaxed);
    stats.misses = misses_.load(std::memory_order_relaxed);
    stats.expirations = expirations_.load(std::memory_order_relaxed);
    stats.rejected = rejected_.load(std::memory_order_relaxed);
    uint64_t entries = 0;
    const_cast<RedisStoreImpl*>(this)->ForEachKey(options_.key_namespace + ":*",
                                                  [&](Connection&, std::vector<std::string>& keys) {
                                                    for (const std::string& key : keys)
                                                      entries += IsCompanionKey(key) ? 0 : 1;
                                                    return Status();
                                                  });
    stats.entries = entries;
    return stats;
  }

  std::string_view name() const override { return options_.name; }
  FlightCoordinator* coordinator() override { return this; }
  BreakerBus* breaker_bus() override { return this; }
  SemanticBus* semantic_bus() override { return this; }

  // StatsBoard ---------------------------------------------------------------

  Status Publish(std::string_view process, std::string_view snapshot, Duration ttl) override {
    const std::string key = StatsKey();
    std::string ttl_ms = Millis(std::max<Duration>(ttl, std::chrono::milliseconds(1)));
    std::vector<Reply> replies;
    if (Status s = Execute(
            key, {{"EVAL", kPublishStatsScript, "1", key, process, snapshot, ttl_ms}}, &replies);
        !s.ok()) {
      return s;
    }
    if (replies[0].is_error()) {
      Failed();
      return StoreError(StatusCode::kUnavailable, options_.name,
                        "publishing statistics answered " + replies[0].Describe());
    }
    return Status();
  }

  Result<std::vector<std::string>> Snapshots() override {
    const std::string key = StatsKey();
    std::vector<Reply> replies;
    if (Status s = Execute(key, {{"EVAL", kReadStatsScript, "1", key}}, &replies); !s.ok()) {
      return s;
    }
    const Reply& r = replies[0];
    if (!r.is_array()) {
      Failed();
      return StoreError(StatusCode::kUnavailable, options_.name,
                        "reading statistics answered " + r.Describe());
    }
    std::vector<std::string> snapshots;
    snapshots.reserve(r.size());
    for (size_t i = 0; i < r.size(); ++i) snapshots.emplace_back(r[i].str());
    return snapshots;
  }

  std::string StatsKey() const { return options_.key_namespace + ":stats"; }

  // CallTagIndex -------------------------------------------------------------

  Status TagEntry(const KeyRef& key, const std::vector<std::string>& tags, Duration ttl) override {
    std::string digest = StoreKeyDigest(options_.key_namespace, key.bytes);
    if (digest.empty()) {
      Failed();
      return StoreError(StatusCode::kUnavailable, options_.name, "cannot compute a key digest");
    }
    EntryNames names(digest);
    std::string ttl_ms = Millis(std::max<Duration>(ttl, std::chrono::milliseconds(1)));
    for (const std::string& tag : tags) {
      if (Status s = CheckTag(tag); !s.ok()) return s;
      std::string set = TagSetKey(tag);
      if (set.empty()) return StoreError(StatusCode::kUnavailable, options_.name, "no tag digest");
      std::vector<Reply> replies;
      if (Status s =
              Execute(set, {{"EVAL", kTagEntryScript, "1", set, names.value, ttl_ms}}, &replies);
          !s.ok()) {
        return s;
      }
      if (replies[0].is_error()) {
        Failed();
        return StoreError(StatusCode::kUnavailable, options_.name,
                          "tagging an entry answered " + replies[0].Describe());
      }
    }
    return Status();
  }

  Result<size_t> EraseTagged(std::string_view tag) override {
    if (Status s = CheckTag(tag); !s.ok()) return s;
    std::string set = TagSetKey(tag);
    if (set.empty()) return StoreError(StatusCode::kUnavailable, options_.name, "no tag digest");
    std::vector<Reply> replies;
    if (Status s = Execute(set, {{"EVAL", kTakeTagScript, "1", set}}, &replies); !s.ok()) return s;
    if (!replies[0].is_array()) {
      Failed();
      return StoreError(StatusCode::kUnavailable, options_.name,
                        "taking a tag answered " + replies[0].Describe());
    }
    std::vector<std::string> members;
    for (size_t i = 0; i < replies[0].size(); ++i) members.emplace_back(replies[0][i].str());
    size_t erased = 0;
    for (const std::string& member : members) {
      std::vector<Reply> unlinked;
      if (Status s = Execute(member, {{"UNLINK", member}}, &unlinked); !s.ok()) return s;
      if (unlinked[0].is_integer()) erased += static_cast<size_t>(unlinked[0].integer());
    }
    return erased;
  }

  // "ns:<tag digest>:tagged", or "" when the digest cannot be computed.
  std::string TagSetKey(std::string_view tag) const {
    std::string tool = StoreToolDigest(options_.key_namespace, CallTagPrefix(tag));
    return tool.empty() ? "" : tool + ":tagged";
  }

  // SemanticBus --------------------------------------------------------------

  void Share(std::string_view tool_id, std::string entry, int64_t expires_unix_ns) override {
    {
      std::lock_guard lock(threads_mu_);
      shares_.push_back(SharedEntry{std::string(tool_id), std::move(entry), expires_unix_ns});
    }
    threads_cv_.notify_all();
  }

  uint64_t Follow(std::string_view tool_id, EntryHandler handler) override {
    uint64_t id;
    {
      std::lock_guard lock(followers_mu_);
      id = ++last_follower_;
      followers_[id] = SemanticFollower{std::string(tool_id), std::move(handler)};
    }
    {
      std::lock_guard lock(threads_mu_);
      catch_ups_.emplace_back(tool_id);
    }
    threads_cv_.notify_all();
    return id;
  }

  void Unfollow(uint64_t follower) override {
    std::lock_guard lock(followers_mu_);
    followers_.erase(follower);
  }

  // BreakerBus ---------------------------------------------------------------

  void AnnounceOpen(std::string_view tool_id, int64_t open_until_unix_ns,
                    std::string_view reason) override {
    {
      std::lock_guard lock(threads_mu_);
      announcements_.push_back(
          Announcement{std::string(tool_id), open_until_unix_ns, std::string(reason)});
    }
    threads_cv_.notify_all();
  }

  uint64_t Subscribe(std::string_view tool_id, OpenHandler handler) override {
    uint64_t id;
    {
      std::lock_guard lock(subs_mu_);
      id = ++last_subscription_;
      subscriptions_[id] = BreakerSubscription{std::string(tool_id), std::move(handler)};
    }
    {
      std::lock_guard lock(threads_mu_);
      checks_.emplace_back(tool_id);
    }
    threads_cv_.notify_all();
    return id;
  }

  void Unsubscribe(uint64_t subscription) override {
    std::lock_guard lock(subs_mu_);
    subscriptions_.erase(subscription);
  }

  RedisStoreCounters counters() const override {
    RedisStoreCounters c;
    c.corrupt = corrupt_.load(std::memory_order_relaxed);
    c.failed = failed_.load(std::memory_order_relaxed);
    c.skipped = health_.skipped();
    c.outages = health_.episodes();
    c.redirects = redirects_.load(std::memory_order_relaxed);
    c.leases_taken = leases_taken_.load(std::memory_order_relaxed);
    c.leases_lost = leases_lost_.load(std::memory_order_relaxed);
    c.fenced = fenced_.load(std::memory_order_relaxed);
    c.notifications = notifications_.load(std::memory_order_relaxed);
    return c;
  }
  bool down() const override { return health_.down(); }

  // FlightCoordinator --------------------------------------------------------

  Lease Acquire(const KeyRef& key) override {
    std::string digest = StoreKeyDigest(options_.key_namespace, key.bytes);
    if (digest.empty()) return Failed(), Lease{};
    EntryNames names(digest);
    std::string ttl = Millis(options_.lease_ttl);
    std::string fence_ttl = Millis(kFenceTtl);
    std::vector<Reply> replies;
    if (!Execute(names.value,
                 {{"EVAL", kAcquireScript, "2", names.lease(), names.fence(), ttl, fence_ttl}},
                 &replies)
             .ok()) {
      return Lease{};
    }
    const Reply& r = replies[0];
    uint64_t token = 0;
    if (r.size() != 2 || !ParseUint(r[1].str(), &token)) {
      Failed();
      Log(LogLevel::kWarning, "store.error",
          "redis store '" + options_.name + "': lease script answered " + r.Describe());
      return Lease{};
    }
    if (r[0].integer() != 1) return Lease{Role::kFollower, token};
    leases_taken_.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard lock(held_mu_);
      held_[names.value] = token;
    }
    return Lease{Role::kLeader, token};
  }

  bool Complete(const KeyRef& key, uint64_t token, const Result<StoredValue>& outcome,
                TimePoint now) override {
    std::string digest = StoreKeyDigest(options_.key_namespace, key.bytes);
    if (digest.empty()) return Failed(), false;
    EntryNames names(digest);
    Forget(names, token);
    std::string token_text = std::to_string(token);
    std::vector<Reply> replies;
    bool storable = outcome.ok() && outcome->value.size() <= options_.max_value_bytes &&
                    outcome->stale_until > now;
    if (storable) {
      Bytes envelope = EncodeEnvelope(*outcome, *clock_, unix_clock_());
      if (!envelope.empty()) {
        std::string px = Millis(outcome->stale_until - now);
        if (!Execute(names.value,
                     {{"EVAL", kCompleteValueScript, "3", names.value, names.lease(), names.fence(),
                       token_text, envelope.view(), px, channel_, names.value}},
                     &replies)
                 .ok()) {
          return false;
        }
        if (replies[0].integer() == 1) return true;
        fenced_.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
    }
    // An error for the followers of this lease, or a plain release.
    std::string payload;
    if (!outcome.ok()) {
      payload = token_text + ":" + std::to_string(static_cast<int>(outcome.status().code())) + ":" +
                std::string(outcome.status().message());
    }
    ReleaseWith(names, token, payload);
    return false;
  }

  void Release(const KeyRef& key, uint64_t token) override {
    std::string digest = StoreKeyDigest(options_.key_namespace, key.bytes);
    if (digest.empty()) return Failed();
    EntryNames names(digest);
    Forget(names, token);
    ReleaseWith(names, token, "");
  }

  WaitResult Wait(const KeyRef& key, const Lease& lease, TimePoint until) override {
    std::string digest = StoreKeyDigest(options_.key_namespace, key.bytes);
    if (digest.empty()) return Failed(), WaitResult{};
    EntryNames names(digest);
    uint64_t holder = lease.token;
    std::unique_lock lock(waiters_mu_);
    WaitSlot& slot = waiters_[names.value];
    ++slot.users;
    lock.unlock();
    WaitResult result;
    while (true) {
      lock.lock();
      uint64_t generation = slot.generation;
      lock.unlock();

      std::vector<Reply> replies;
      if (!Execute(names.value,
                   {{"GET", names.value}, {"GET", names.error()}, {"GET", names.lease()}}, &replies)
               .ok()) {
        result.kind = WaitResult::kUnavailable;
        break;
      }
      TimePoint now = clock_->Now();
      std::optional<StoredValue> value = DecodeReply(names, replies[0], now, /*count=*/false);
      if (value && value->fresh_until > now) {
        result.kind = WaitResult::kValue;
        result.value = std::move(value);
        break;
      }
      if (std::optional<Status> error = ParseError(replies[1].str(), holder)) {
        result.kind = WaitResult::kError;
        result.error = std::move(*error);
        break;
      }
      uint64_t current = 0;
      if (replies[2].is_nil() || !ParseUint(replies[2].str(), &current)) {
        result.kind = WaitResult::kLeaseGone;
        break;
      }
      holder = current;  // A new leader took over: follow it.
      TimePoint real_now = std::chrono::steady_clock::now();
      if (until != TimePoint::max() && clock_->Now() >= until) {
        result.kind = WaitResult::kTimedOut;
        break;
      }
      Duration poll = subscribed_.load(std::memory_order_relaxed)
                          ? Duration(options_.follower_poll)
                          : Duration(std::chrono::milliseconds(20));
      TimePoint wake = real_now + poll;
      if (until != TimePoint::max()) wake = std::min(wake, real_now + (until - clock_->Now()));
      lock.lock();
      waiters_cv_.wait_until(lock, wake, [&] { return slot.generation != generation; });
      lock.unlock();
    }
    lock.lock();
    if (--slot.users == 0) waiters_.erase(names.value);
    return result;
  }

 private:
  // Stops renewing a lease that is being given up.
  void Forget(const EntryNames& names, uint64_t token) {
    std::lock_guard lock(held_mu_);
    auto it = held_.find(names.value);
    if (it != held_.end() && it->second == token) held_.erase(it);
  }

  // Releases the lease (if still ours), leaves `payload` (an error) for its
  // followers when not empty, and wakes them.
  void ReleaseWith(const EntryNames& names, uint64_t token, std::string_view payload) {
    std::string token_text = std::to_string(token);
    std::string ttl = Millis(options_.error_ttl);
    std::vector<Reply> replies;
    (void)Execute(names.value,
                  {{"EVAL", kCompleteErrorScript, "2", names.lease(), names.error(), token_text,
                    payload, ttl, channel_, names.value}},
                  &replies);
  }

  struct WaitSlot {
    uint64_t generation = 0;
    int users = 0;
  };

  std::optional<StoredValue> Miss() {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  void Failed() { failed_.fetch_add(1, std::memory_order_relaxed); }

  Status TooLarge(size_t size) const {
    return StoreError(StatusCode::kResourceExhausted, options_.name,
                      "value of " + std::to_string(size) + " bytes exceeds the limit of " +
                          std::to_string(options_.max_value_bytes) + " bytes (max_value_bytes)");
  }

  // A GET reply as a value: nil, damaged (counted, deleted) and expired
  // replies are nullopt.
  std::optional<StoredValue> DecodeReply(const EntryNames& names, const ReplyView& reply,
                                         TimePoint now, bool count = true) {
    if (reply.is_nil()) return std::nullopt;
    if (!reply.is_string()) {
      Failed();
      return std::nullopt;
    }
    EnvelopeResult decoded = DecodeEnvelope(reply.str(), *clock_, unix_clock_());
    if (!decoded.ok()) {
      corrupt_.fetch_add(1, std::memory_order_relaxed);
      std::vector<Reply> ignored;
      (void)Execute(names.value, {{"DEL", names.value}}, &ignored);
      return std::nullopt;
    }
    if (decoded.value->stale_until <= now) {
      if (count) expirations_.fetch_add(1, std::memory_order_relaxed);
      return std::nullopt;
    }
    return std::move(decoded.value);
  }

  // "token:code:message" for the lease `holder`, as a status.
  static std::optional<Status> ParseError(std::string_view payload, uint64_t holder) {
    size_t first = payload.find(':');
    if (first == std::string_view::npos) return std::nullopt;
    size_t second = payload.find(':', first + 1);
    if (second == std::string_view::npos) return std::nullopt;
    uint64_t token = 0;
    uint64_t code = 0;
    if (!ParseUint(payload.substr(0, first), &token) || token != holder) return std::nullopt;
    if (!ParseUint(payload.substr(first + 1, second - first - 1), &code) || code == 0 ||
        code > static_cast<uint64_t>(StatusCode::kUnauthenticated)) {
      return std::nullopt;
    }
    return Status(static_cast<StatusCode>(code), std::string(payload.substr(second + 1)),
                  Guard::kUpstream);
  }

  std::shared_ptr<NodePool> PoolFor(const Endpoint& endpoint) {
    std::lock_guard lock(pools_mu_);
    for (const std::shared_ptr<NodePool>& pool : pools_) {
      if (pool->endpoint() == endpoint) return pool;
    }
    pools_.push_back(std::make_shared<NodePool>(endpoint, &connect_, options_.pool_size));
    return pools_.back();
  }

  std::shared_ptr<const Topology> topology() const {
    std::lock_guard lock(topology_mu_);
    return topology_;
  }

  // Reads CLUSTER SLOTS from `c` and installs the map.
  Status LoadSlots(Connection& c) {
    Result<Reply> r = c.Run({"CLUSTER", "SLOTS"});
    if (!r.ok()) return r.status();
    if (!r->is_array() || r->size() == 0) {
      return StoreError(StatusCode::kUnavailable, options_.name,
                        "CLUSTER SLOTS answered " + r->Describe() +
                            "; is the server a Redis Cluster node with all slots assigned?");
    }
    auto next = std::make_shared<Topology>();
    next->owner.fill(UINT16_MAX);
    for (size_t i = 0; i < r->size(); ++i) {
      ReplyView range = (*r)[i];
      if (range.size() < 3 || range[2].size() < 2) continue;
      std::string host(range[2][0].str());
      if (host.empty()) host = c.endpoint().host;
      Endpoint endpoint{host, static_cast<int>(range[2][1].integer())};
      std::shared_ptr<NodePool> pool = PoolFor(endpoint);
      auto it = std::find(next->nodes.begin(), next->nodes.end(), pool);
      uint16_t index = static_cast<uint16_t>(it - next->nodes.begin());
      if (it == next->nodes.end()) next->nodes.push_back(pool);
      long long from = range[0].integer();
      long long to = range[1].integer();
      for (long long s = std::max(0LL, from); s <= std::min<long long>(to, kSlots - 1); ++s) {
        next->owner[static_cast<size_t>(s)] = index;
      }
    }
    if (next->nodes.empty()) {
      return StoreError(StatusCode::kUnavailable, options_.name, "CLUSTER SLOTS named no node");
    }
    for (uint16_t& owner : next->owner) {
      if (owner == UINT16_MAX) owner = 0;  // Unassigned: any node answers MOVED or an error.
    }
    std::lock_guard lock(topology_mu_);
    topology_ = std::move(next);
    return Status();
  }

  // Runs `commands` (all on one slot: the one of `routing_key`) on the node
  // that owns it, following up to two redirections. A transport failure
  // marks the store down; error replies are left to the caller.
  Status Execute(std::string_view routing_key, const std::vector<Command>& commands,
                 std::vector<Reply>* replies) {
    if (!health_.Allow()) {
      return StoreError(StatusCode::kUnavailable, options_.name,
                        "skipped: the store is down and waiting to be retried");
    }
    std::shared_ptr<const Topology> map = topology();
    std::shared_ptr<NodePool> node = map->nodes[map->owner[SlotOf(routing_key)]];
    bool asking = false;
    for (int hop = 0;; ++hop) {
      Result<std::unique_ptr<Connection>> c = node->Take();
      if (!c.ok()) return Down(c.status());
      Status s;
      if (asking) {
        std::vector<Command> with_asking;
        with_asking.push_back({"ASKING"});
        with_asking.insert(with_asking.end(), commands.begin(), commands.end());
        s = (*c)->Exchange(with_asking, replies);
        if (s.ok()) replies->erase(replies->begin());
      } else {
        s = (*c)->Exchange(commands, replies);
      }
      if (!s.ok()) return Down(s);
      std::unique_ptr<Connection> connection = std::move(*c);
      // A redirection: "MOVED <slot> <host>:<port>" or "ASK ...".
      std::string_view redirect;
      for (const Reply& r : *replies) {
        if (r.is_error() && (r.str().starts_with("MOVED ") || r.str().starts_with("ASK "))) {
          redirect = r.str();
          break;
        }
      }
      if (redirect.empty() || hop == 2) {
        node->Return(std::move(connection));
        health_.Succeeded();
        return Status();
      }
      redirects_.fetch_add(1, std::memory_order_relaxed);
      asking = redirect.starts_with("ASK ");
      std::string_view target = redirect.substr(redirect.rfind(' ') + 1);
      size_t colon = target.rfind(':');
      uint64_t port = 0;
      if (colon == std::string_view::npos || !ParseUint(target.substr(colon + 1), &port)) {
        node->Return(std::move(connection));
        health_.Succeeded();  // The server answered; the reply is what is wrong.
        Failed();
        return StoreError(StatusCode::kUnavailable, options_.name,
                          "cannot parse the redirection '" + std::string(redirect) + "'");
      }
      std::string host(target.substr(0, colon));
      if (host.empty()) host = node->endpoint().host;
      if (!asking) (void)LoadSlots(*connection);  // The map changed: reload it.
      node->Return(std::move(connection));
      node = PoolFor(Endpoint{host, static_cast<int>(port)});
    }
  }

  Status Down(const Status& error) {
    Failed();
    health_.Failed(error);
    return error;
  }

  // Calls `visit` with batches of keys matching `pattern`, on every node.
  template <typename Visit>
  void ForEachKey(const std::string& pattern, Visit visit) {
    if (!health_.Allow()) return;
    std::shared_ptr<const Topology> map = topology();
    for (const std::shared_ptr<NodePool>& node : map->nodes) {
      Result<std::unique_ptr<Connection>> c = node->Take();
      if (!c.ok()) {
        (void)Down(c.status());
        return;
      }
      std::string cursor = "0";
      do {
        Result<Reply> r = (*c)->Run({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
        if (!r.ok()) {
          (void)Down(r.status());
          return;
        }
        if (r->size() != 2) {
          health_.Succeeded();  // The server answered (an error reply, say a missing ACL right).
          Failed();
          return;
        }
        cursor = std::string((*r)[0].str());
        std::vector<std::string> keys;
        for (size_t i = 0; i < (*r)[1].size(); ++i) keys.emplace_back((*r)[1][i].str());
        if (Status s = visit(**c, keys); !s.ok()) {
          (void)Down(s);
          return;
        }
      } while (cursor != "0");
      node->Return(std::move(*c));
    }
    health_.Succeeded();
  }

  // Renews the leases this process holds, every lease_ttl / 3.
  // The store's background work: breaker announcements and first looks (as
  // soon as they are queued), and lease renewals (every lease_ttl / 3).
  void KeepLeases() {
    Duration period = std::chrono::duration_cast<Duration>(options_.lease_ttl) / 3;
    std::string ttl = Millis(options_.lease_ttl);
    auto next_renewal = std::chrono::steady_clock::now() + period;
    std::unique_lock lock(threads_mu_);
    while (true) {
      threads_cv_.wait_until(lock, next_renewal, [&] {
        return stopping_ || !announcements_.empty() || !checks_.empty() || !shares_.empty() ||
               !catch_ups_.empty();
      });
      if (stopping_) return;
      std::vector<Announcement> announcements = std::move(announcements_);
      std::vector<std::string> checks = std::move(checks_);
      std::vector<SharedEntry> shares = std::move(shares_);
      std::vector<std::string> catch_ups = std::move(catch_ups_);
      announcements_.clear();
      checks_.clear();
      shares_.clear();
      catch_ups_.clear();
      lock.unlock();
      for (const Announcement& a : announcements) SendAnnouncement(a);
      for (const std::string& tool_id : checks) CheckBreaker(tool_id);
      for (const SharedEntry& e : shares) SendShare(e);
      for (const std::string& tool_id : catch_ups) CatchUp(tool_id);
      if (std::chrono::steady_clock::now() < next_renewal) {
        lock.lock();
        continue;
      }
      next_renewal = std::chrono::steady_clock::now() + period;
      std::vector<std::pair<std::string, uint64_t>> held;
      {
        std::lock_guard held_lock(held_mu_);
        held.assign(held_.begin(), held_.end());
      }
      for (const auto& [value_key, token] : held) {
        std::string lease_key = value_key + ":lease";
        std::string token_text = std::to_string(token);
        std::vector<Reply> replies;
        if (!Execute(value_key, {{"EVAL", kRenewScript, "1", lease_key, token_text, ttl}}, &replies)
                 .ok()) {
          continue;  // Tried again next period; the lease may survive a short outage.
        }
        if (replies[0].integer() == 1) continue;
        std::lock_guard held_lock(held_mu_);
        auto it = held_.find(value_key);
        if (it != held_.end() && it->second == token) {
          held_.erase(it);
          leases_lost_.fetch_add(1, std::memory_order_relaxed);
          Log(LogLevel::kWarning, "lease.lost",
              "redis store '" + options_.name +
                  "': a lease expired before its call finished (its result will be fenced if "
                  "another process took over)");
        }
      }
      lock.lock();
    }
  }

  // Follows the pub/sub messages: flight completions (waking the followers
  // waiting for them) and breaker announcements (calling their handlers).
  void FollowMessages() {
    Duration backoff = std::chrono::milliseconds(50);
    while (true) {
      {
        std::lock_guard lock(threads_mu_);
        if (stopping_) return;
      }
      Result<std::unique_ptr<Connection>> c = Connection::Open(seed_, connect_);
      bool ok =
          c.ok() && (*c)->Send({"SUBSCRIBE", channel_, breaker_channel_, semantic_channel_}).ok();
      for (int confirmations = 0; ok && confirmations < 3; ++confirmations) {
        Result<std::optional<Reply>> confirm = (*c)->Receive(options_.io_timeout);
        ok = confirm.ok() && confirm->has_value() && (**confirm).is_array();
      }
      if (ok) {
        backoff = std::chrono::milliseconds(50);
        subscribed_.store(true, std::memory_order_relaxed);
        // Messages may have been missed while unsubscribed: followers look
        // again, and every subscribed breaker reads its tool's state.
        WakeAll();
        RecheckBreakers();
        CatchUpAll();
        while (true) {
          {
            std::lock_guard lock(threads_mu_);
            if (stopping_) break;
          }
          Result<std::optional<Reply>> message = (*c)->Receive(std::chrono::milliseconds(100));
          if (!message.ok()) break;
          if (!message->has_value()) continue;
          const Reply& m = **message;
          if (m.size() == 3 && m[0].str() == "message") {
            if (m[1].str() == breaker_channel_) {
              OnBreakerMessage(m[2].str());
            } else if (m[1].str() == semantic_channel_) {
              OnSemanticMessage(m[2].str());
            } else {
              notifications_.fetch_add(1, std::memory_order_relaxed);
              Wake(m[2].str());
            }
          }
        }
        subscribed_.store(false, std::memory_order_relaxed);
      }
      std::unique_lock lock(threads_mu_);
      if (threads_cv_.wait_for(lock, backoff, [&] { return stopping_; })) return;
      backoff = std::min<Duration>(backoff * 2, std::chrono::seconds(2));
    }
  }

  struct Announcement {
    std::string tool_id;
    int64_t until_unix_ns;
    std::string reason;
  };
  struct SharedEntry {
    std::string tool_id;
    std::string entry;
    int64_t expires_unix_ns;
  };
  struct SemanticFollower {
    std::string tool_id;
    EntryHandler handler;
  };

  // The entries of a tool: a sorted set scored by expiry (unix ms), members
  // "<instance>\n<entry>". Bounded: past kMaxSharedEntries the entries
  // closest to expiry leave.
  static constexpr int64_t kMaxSharedEntries = 200'000;
  std::string SemanticKey(std::string_view tool_id) const {
    return options_.key_namespace + ":semantic:{" + std::string(tool_id) + "}";
  }

  void SendShare(const SharedEntry& e) {
    int64_t now_ms = unix_clock_() / 1'000'000;
    int64_t expires_ms = e.expires_unix_ns / 1'000'000;
    if (expires_ms <= now_ms) return;
    std::string key = SemanticKey(e.tool_id);
    std::string member = instance_ + "\n" + e.entry;
    std::string message = e.tool_id + "\n" + std::to_string(expires_ms) + "\n" + member;
    std::vector<Reply> replies;
    (void)Execute(key,
                  {{"ZADD", key, std::to_string(expires_ms), member},
                   {"ZREMRANGEBYSCORE", key, "-inf", std::to_string(now_ms)},
                   {"ZREMRANGEBYRANK", key, "0", std::to_string(-kMaxSharedEntries - 1)},
                   {"PEXPIREAT", key, std::to_string(expires_ms), "GT"},
                   {"PUBLISH", semantic_channel_, message}},
                  &replies);
  }

  // A follower's first look, and every look after an outage: the entries
  // of the tool that have not expired, handed to its followers.
  void CatchUp(const std::string& tool_id) {
    std::string key = SemanticKey(tool_id);
    int64_t now_ms = unix_clock_() / 1'000'000;
    std::vector<Reply> replies;
    if (!Execute(key, {{"ZRANGEBYSCORE", key, std::to_string(now_ms), "+inf", "WITHSCORES"}},
                 &replies)
             .ok() ||
        !replies[0].is_array()) {
      return;
    }
    const Reply& items = replies[0];
    for (size_t i = 0; i + 1 < items.size(); i += 2) {
      uint64_t expires_ms = 0;
      if (!ParseUint(items[i + 1].str(), &expires_ms)) continue;
      DispatchEntry(tool_id, items[i].str(), static_cast<int64_t>(expires_ms), /*skip_own=*/false);
    }
  }

  void CatchUpAll() {
    std::vector<std::string> tool_ids;
    {
      std::lock_guard lock(followers_mu_);
      for (const auto& [id, follower] : followers_) tool_ids.push_back(follower.tool_id);
    }
    if (tool_ids.empty()) return;
    {
      std::lock_guard lock(threads_mu_);
      catch_ups_.insert(catch_ups_.end(), tool_ids.begin(), tool_ids.end());
    }
    threads_cv_.notify_all();
  }

  // `message` is "<tool id>\n<expires unix ms>\n<instance>\n<entry>".
  void OnSemanticMessage(std::string_view message) {
    size_t first = message.find('\n');
    if (first == std::string_view::npos) return;
    size_t second = message.find('\n', first + 1);
    if (second == std::string_view::npos) return;
    uint64_t expires_ms = 0;
    if (!ParseUint(message.substr(first + 1, second - first - 1), &expires_ms)) return;
    DispatchEntry(message.substr(0, first), message.substr(second + 1),
                  static_cast<int64_t>(expires_ms), /*skip_own=*/true);
  }

  // `member` is "<instance>\n<entry>".
  void DispatchEntry(std::string_view tool_id, std::string_view member, int64_t expires_ms,
                     bool skip_own) {
    size_t newline = member.find('\n');
    if (newline == std::string_view::npos) return;
    if (skip_own && member.substr(0, newline) == instance_) return;
    std::string_view entry = member.substr(newline + 1);
    std::lock_guard lock(followers_mu_);
    for (const auto& [id, follower] : followers_) {
      if (follower.tool_id == tool_id) follower.handler(entry, expires_ms * 1'000'000);
    }
  }
  struct BreakerSubscription {
    std::string tool_id;
    OpenHandler handler;
  };

  std::string BreakerKey(std::string_view tool_id) const {
    return options_.key_namespace + ":breaker:{" + std::string(tool_id) + "}";
  }

  // Records the opening under the tool's key (for processes that start or
  // subscribe later) and tells the running ones.
  void SendAnnouncement(const Announcement& a) {
    int64_t left_ns = a.until_unix_ns - unix_clock_();
    if (left_ns <= 0) return;
    std::string state = std::to_string(a.until_unix_ns) + "\n" + instance_ + "\n" + a.reason;
    std::string message = a.tool_id + "\n" + state;
    std::string key = BreakerKey(a.tool_id);
    std::string px = Millis(std::chrono::nanoseconds(left_ns));
    std::vector<Reply> replies;
    (void)Execute(key, {{"SET", key, state, "PX", px}, {"PUBLISH", breaker_channel_, message}},
                  &replies);
  }

  // A new subscriber's first look: is the tool open in some process now?
  void CheckBreaker(const std::string& tool_id) {
    std::string key = BreakerKey(tool_id);
    std::vector<Reply> replies;
    if (!Execute(key, {{"GET", key}}, &replies).ok() || !replies[0].is_string()) return;
    DispatchBreaker(tool_id, replies[0].str(), /*skip_own=*/false);
  }

  void RecheckBreakers() {
    std::vector<std::string> tool_ids;
    {
      std::lock_guard lock(subs_mu_);
      for (const auto& [id, subscription] : subscriptions_) {
        tool_ids.push_back(subscription.tool_id);
      }
    }
    if (tool_ids.empty()) return;
    {
      std::lock_guard lock(threads_mu_);
      checks_.insert(checks_.end(), tool_ids.begin(), tool_ids.end());
    }
    threads_cv_.notify_all();
  }

  void OnBreakerMessage(std::string_view message) {
    size_t newline = message.find('\n');
    if (newline == std::string_view::npos) return;
    DispatchBreaker(message.substr(0, newline), message.substr(newline + 1), /*skip_own=*/true);
  }

  // `state` is "<until unix ns>\n<instance>\n<reason>".
  void DispatchBreaker(std::string_view tool_id, std::string_view state, bool skip_own) {
    size_t first = state.find('\n');
    if (first == std::string_view::npos) return;
    size_t second = state.find('\n', first + 1);
    if (second == std::string_view::npos) return;
    uint64_t until = 0;
    if (!ParseUint(state.substr(0, first), &until)) return;
    if (skip_own && state.substr(first + 1, second - first - 1) == instance_) return;
    std::string_view reason = state.substr(second + 1);
    std::lock_guard lock(subs_mu_);
    for (const auto& [id, subscription] : subscriptions_) {
      if (subscription.tool_id == tool_id) {
        subscription.handler(static_cast<int64_t>(until), reason);
      }
    }
  }

  void Wake(std::string_view value_key) {
    {
      std::lock_guard lock(waiters_mu_);
      auto it = waiters_.find(std::string(value_key));
      if (it == waiters_.end()) return;
      ++it->second.generation;
    }
    waiters_cv_.notify_all();
  }

  void WakeAll() {
    {
      std::lock_guard lock(waiters_mu_);
      for (auto& [key, slot] : waiters_) ++slot.generation;
    }
    waiters_cv_.notify_all();
  }

  const RedisStoreOptions options_;
  Clock* const clock_;
  const UnixClock unix_clock_;
  const redis::TlsContext tls_;
  redis::ConnectOptions connect_;
  Endpoint seed_;
  StoreHealth health_;
  const std::string channel_;
  const std::string breaker_channel_;
  const std::string semantic_channel_;
  const std::string instance_;  // Tells this store object's announcements apart.

  std::mutex pools_mu_;
  std::vector<std::shared_ptr<NodePool>> pools_;
  mutable std::mutex topology_mu_;
  std::shared_ptr<const Topology> topology_;

  std::mutex held_mu_;
  std::map<std::string, uint64_t> held_;  // Value key -> token of leases held here.

  std::mutex waiters_mu_;
  std::condition_variable waiters_cv_;
  std::unordered_map<std::string, WaitSlot> waiters_;
  std::atomic<bool> subscribed_{false};

  std::mutex subs_mu_;  // Held while handlers run, so Unsubscribe waits for them.
  uint64_t last_subscription_ = 0;
  std::map<uint64_t, BreakerSubscription> subscriptions_;

  std::mutex threads_mu_;
  std::condition_variable threads_cv_;
  bool stopping_ = false;
  std::vector<Announcement> announcements_;  // Guarded by threads_mu_.
  std::vector<std::string> checks_;          // Guarded by threads_mu_.
  std::vector<SharedEntry> shares_;          // Guarded by threads_mu_.
  std::vector<std::string> catch_ups_;       // Guarded by threads_mu_.
  std::mutex followers_mu_;                  // Held while handlers run, so Unfollow waits for them.
  uint64_t last_follower_ = 0;
  std::map<uint64_t, SemanticFollower> followers_;
  std::thread keeper_;
  std::thread subscriber_;

  std::atomic<uint64_t> hits_{0};
  std::atomic<uint64_t> misses_{0};
  std::atomic<uint64_t> expirations_{0};
  std::atomic<uint64_t> rejected_{0};
  std::atomic<uint64_t> corrupt_{0};
  std::atomic<uint64_t> failed_{0};
  std::atomic<uint64_t> redirects_{0};
  std::atomic<uint64_t> leases_taken_{0};
  std::atomic<uint64_t> leases_lost_{0};
  std::atomic<uint64_t> fenced_{0};
  std::atomic<uint64_t> notifications_{0};
};

}  // namespace

Result<std::unique_ptr<RedisStore>> RedisStore::Open(const RedisStoreOptions& given, Clock* clock,
                                                     UnixClock unix_clock) {
  RedisStoreOptions options = given;
  if (!options.url.empty()) {
    if (Status s = ApplyUrl(&options); !s.ok()) return s;
  }
  if (Status s = CheckOptions(options); !s.ok()) return s;
  if (clock == nullptr) {
    return Status(StatusCode::kInvalidArgument, "redis store: the clock is null", Guard::kPolicy);
  }
  redis::TlsContext tls;
  if (options.tls.enabled) {
    Result<redis::TlsContext> made = redis::NewTlsContext(
        options.tls.ca_file, options.tls.cert_file, options.tls.key_file, options.tls.verify_peer);
    if (!made.ok()) return made.status();
    tls = std::move(*made);
  }
  auto store = std::make_unique<RedisStoreImpl>(std::move(options), clock, std::move(unix_clock),
                                                std::move(tls));
  if (Status s = store->Start(); !s.ok()) return s;
  return std::unique_ptr<RedisStore>(std::move(store));
}

Result<std::unique_ptr<Store>> NewRedisStore(const RedisStoreOptions& options, Clock* clock) {
  Result<std::unique_ptr<RedisStore>> store = RedisStore::Open(options, clock);
  if (!store.ok()) return store.status();
  return std::unique_ptr<Store>(std::move(*store));
}

}  // namespace toolops
