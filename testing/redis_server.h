// testing/redis_server.h
//
// Private redis-server processes for tests and benchmarks: one server on a
// free port (optionally with a password, ACL users or TLS only), or a Redis
// Cluster of several masters. Each keeps nothing on disk and is killed when
// its object goes away. Nothing here uses a server the machine already runs.

#ifndef TOOLOPS_TESTING_REDIS_SERVER_H_
#define TOOLOPS_TESTING_REDIS_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "processes.h"

namespace toolops::testing {

struct RedisServerOptions {
  // requirepass, for the default user.
  std::string password;
  // ACL rules, one "user ..." line each (for example
  // "user agent on >secret ~* &* +@all").
  std::vector<std::string> acl_users;
  // Serve TLS only, with a certificate for 127.0.0.1 and localhost signed by
  // a CA made for this server (ca_file()).
  bool tls = false;
  // Start as a cluster node (for RedisCluster).
  bool cluster_node = false;
};

class RedisServer {
 public:
  // Starts the server; check ok() (error() says why not).
  explicit RedisServer(RedisServerOptions options = {});
  ~RedisServer();

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  int port() const { return port_; }
  // The CA certificate that signs the server's certificate (TLS only).
  std::string ca_file() const { return dir_.File("ca.crt"); }
  // A CA that did not sign it, for tests of refused certificates.
  std::string other_ca_file() const { return dir_.File("other-ca.crt"); }
  const std::string& log_path() const { return log_; }
  pid_t pid() const { return process_.pid(); }

  // Stops the server (SIGTERM, then SIGKILL) and starts it again on the same
  // port. Data does not survive (nothing is kept on disk).
  void Stop();
  bool Start();
  // SIGKILL, for crash tests.
  void Kill();

 private:
  bool Launch();
  bool MakeCertificates();

  RedisServerOptions options_;
  TempDir dir_{"toolops-redis"};
  std::string log_;
  int port_ = -1;
  ChildProcess process_;
  std::string error_;
};

// A Redis Cluster of `masters` nodes (at least 3), created with
// `redis-cli --cluster create` and ready (cluster_state:ok) on return.
class RedisCluster {
 public:
  explicit RedisCluster(int masters = 3);

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  const std::vector<std::unique_ptr<RedisServer>>& nodes() const { return nodes_; }
  int seed_port() const { return nodes_.front()->port(); }

 private:
  std::vector<std::unique_ptr<RedisServer>> nodes_;
  std::string error_;
};

}  // namespace toolops::testing

#endif  // TOOLOPS_TESTING_REDIS_SERVER_H_
