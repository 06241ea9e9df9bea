// include/toolops/redis_store.h
//
// RedisStore: the Store shared by many processes on many machines, on Redis
// or Valkey (a single server or a Redis Cluster). It also coordinates
// coalescing across processes (coordinator(): leases with fencing tokens,
// notified over pub/sub).
//
// What reaches the server is the out-of-process format of
// src/store/envelope.h: keys are SHA-256 digests under the namespace, with
// the key hash as the Cluster hash tag so that an entry and its lease live
// on one node (`ns:<tool>:{<key>}`, `...:lease`, `...:fence`, `...:err`);
// values are checksummed envelopes, with the entry's stale_until as the
// key's expiry. A damaged, truncated or foreign value is a miss (counted as
// corrupt and deleted), never a value.
//
// A store failure never fails a call. Every operation is bounded by
// connect_timeout + io_timeout. After a failure the store counts as down:
// operations are skipped at once (Get misses, Put returns Unavailable)
// until a backoff passes, then one probe goes through; when it succeeds
// sharing resumes. Each outage is logged once when it starts and once when
// it ends (events "store.down" / "store.up").
//
// Safe for concurrent use: each operation takes a pooled connection to the
// node that owns its key; a connection that failed is dropped, never reused.

#ifndef TOOLOPS_REDIS_STORE_H_
#define TOOLOPS_REDIS_STORE_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "toolops/clock.h"
#include "toolops/clock.h"  // UnixClock
#include "toolops/status.h"
#include "toolops/store.h"

namespace toolops {

struct RedisTlsOptions {
  bool enabled = false;
  // PEM file of the CAs that sign the server's certificate; empty: the
  // system's CAs.
  std::string ca_file;
  // Client certificate and key (PEM), for servers that ask for one. Both or
  // neither.
  std::string cert_file;
  std::string key_file;
  // The name the server's certificate must carry (and SNI); empty: the host.
  std::string server_name;
  // Turning this off accepts any certificate: for tests only.
  bool verify_peer = true;
};

struct RedisStoreOptions {
  // "redis://[[user]:password@]host[:port][/db]" or "rediss://..." (TLS).
  // When set, it fills host, port, username, password, db and tls.enabled;
  // the fields below then must keep their defaults for those.
  std::string url;
  std::string host = "127.0.0.1";
  int port = 6379;
  // AUTH: the password alone (the default user, or requirepass), or an ACL
  // user with its password.
  std::string username;
  std::string password;
  // SELECT'ed database (0 for Cluster).
  int db = 0;
  RedisTlsOptions tls;
  // host:port is one node of a Redis Cluster; the others are discovered
  // (CLUSTER SLOTS) and MOVED / ASK redirections are followed.
  bool cluster = false;

  // The store's name in StoreRegistry and in messages.
  std::string name = "redis";
  // Prefix of every key: letters, digits, '_', '-', '.'.
  std::string key_namespace = "toolops";
  // Puts of larger values are refused with ResourceExhausted.
  size_t max_value_bytes = 1 << 20;

  std::chrono::milliseconds connect_timeout{250};
  // Bound on one request and its reply.
  std::chrono::milliseconds io_timeout{250};
  // Idle connections kept per node.
  size_t pool_size = 8;
  // Backoff while the store is down: first wait, doubled up to the max.
  std::chrono::milliseconds outage_initial_backoff{100};
  std::chrono::milliseconds outage_max_backoff{5000};

  // Coalescing across processes: a leader's lease lasts lease_ttl and is
  // renewed every lease_ttl / 3 while the leader lives, so a leader that
  // dies is replaced within about lease_ttl.
  std::chrono::milliseconds lease_ttl{5000};
  // How long a leader's error stays visible to the followers of that lease.
  std::chrono::milliseconds error_ttl{2000};
  // A follower re-reads the state at least this often, in case a
  // notification was lost (the subscription is down, or it raced).
  std::chrono::milliseconds follower_poll{200};
};

struct RedisStoreCounters {
  uint64_t corrupt = 0;        // Values refused by the envelope check (misses, deleted).
  uint64_t failed = 0;         // Operations that failed (I/O, timeout, error reply).
  uint64_t skipped = 0;        // Operations not tried because the store was down.
  uint64_t outages = 0;        // Down episodes begun.
  uint64_t redirects = 0;      // Cluster MOVED / ASK replies followed.
  uint64_t leases_taken = 0;   // Leases this process acquired.
  uint64_t leases_lost = 0;    // Leases that ended before their holder completed.
  uint64_t fenced = 0;         // Results refused because a newer leader existed.
  uint64_t notifications = 0;  // Completion messages received.
};

class RedisStore : public Store {
 public:
  // Checks the options, connects (and for Cluster loads the slot map).
  // InvalidArgument (guard kStore) for bad options or TLS files;
  // PermissionDenied when AUTH is refused; Unavailable when no server
  // answers. `clock` must outlive the store. An empty `unix_clock` reads
  // std::chrono::system_clock.
  static Result<std::unique_ptr<RedisStore>> Open(const RedisStoreOptions& options,
                                                  Clock* clock = RealClock(),
                                                  UnixClock unix_clock = nullptr);

  // EraseByPrefix: `prefix` must be empty (every entry of this namespace) or
  // a tool's key prefix (that tool's entries); SCANs every node. Others erase
  // nothing. Stats: hits, misses, expirations and rejected are counted by
  // this object; entries comes from a SCAN of the namespace (O(entries), for
  // reporting); bytes is not tracked (0).

  virtual RedisStoreCounters counters() const = 0;
  // Whether the store is in an outage (operations skipped until a probe
  // succeeds).
  virtual bool down() const = 0;
};

Result<std::unique_ptr<Store>> NewRedisStore(const RedisStoreOptions& options,
                                             Clock* clock = RealClock());

}  // namespace toolops

#endif  // TOOLOPS_REDIS_STORE_H_
