// testing/redis_server.cc

#include "redis_server.h"

#include <signal.h>

#include <chrono>
#include <fstream>
#include <thread>

namespace toolops::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string Quote(const std::string& s) { return "\"" + s + "\""; }

// Runs a redis-cli command and returns its output.
std::string RedisCli(const std::string& cli, const std::vector<std::string>& args,
                     const std::string& out_path) {
  std::vector<std::string> argv = {cli};
  argv.insert(argv.end(), args.begin(), args.end());
  std::remove(out_path.c_str());
  RunProgram(argv, out_path);
  return ReadFileOrEmpty(out_path);
}

}  // namespace

RedisServer::RedisServer(RedisServerOptions options) : options_(std::move(options)) {
  log_ = dir_.File("redis.log");
  if (options_.tls && !MakeCertificates()) return;
  for (int tries = 0; tries < 5; ++tries) {
    port_ = PickFreePort();
    if (Launch()) return;
  }
}

RedisServer::~RedisServer() { process_.Stop(seconds(2)); }

bool RedisServer::MakeCertificates() {
  std::optional<std::string> openssl = FindProgram("openssl");
  if (!openssl) {
    error_ = "openssl not found (install the openssl package)";
    return false;
  }
  std::string ext = dir_.File("server.ext");
  std::ofstream(ext) << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
  std::string log = dir_.File("openssl.log");
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), *openssl);
    return RunProgram(args, log) == 0;
  };
  bool ok =
      run({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
           "/CN=toolops test CA", "-keyout", dir_.File("ca.key"), "-out", dir_.File("ca.crt")}) &&
      run({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=other CA",
           "-keyout", dir_.File("other-ca.key"), "-out", dir_.File("other-ca.crt")}) &&
      run({"req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout",
           dir_.File("server.key"), "-out", dir_.File("server.csr")}) &&
      run({"x509", "-req", "-in", dir_.File("server.csr"), "-CA", dir_.File("ca.crt"), "-CAkey",
           dir_.File("ca.key"), "-CAcreateserial", "-days", "2", "-extfile", ext, "-out",
           dir_.File("server.crt")});
  if (!ok) error_ = "openssl could not make test certificates: " + ReadFileOrEmpty(log);
  return ok;
}

bool RedisServer::Launch() {
  std::optional<std::string> server = FindProgram("redis-server", {"/usr/sbin"});
  if (!server) {
    error_ = "redis-server not found (install the redis-server package)";
    return false;
  }
  std::string conf = dir_.File("redis.conf");
  {
    std::ofstream out(conf);
    out << "bind 127.0.0.1\n"
        << "save \"\"\nappendonly no\n"
        << "dir " << dir_.path() << "\n"
        << "daemonize no\n"
        << "protected-mode no\n";
    if (options_.tls) {
      out << "port 0\ntls-port " << port_ << "\n"
          << "tls-cert-file " << dir_.File("server.crt") << "\n"
          << "tls-key-file " << dir_.File("server.key") << "\n"
          << "tls-ca-cert-file " << dir_.File("ca.crt") << "\n"
          << "tls-auth-clients no\n";
    } else {
      out << "port " << port_ << "\n";
    }
    if (!options_.password.empty()) out << "requirepass " << Quote(options_.password) << "\n";
    for (const std::string& user : options_.acl_users) out << user << "\n";
    if (options_.cluster_node) {
      out << "cluster-enabled yes\n"
          << "cluster-config-file " << dir_.File("nodes.conf") << "\n"
          << "cluster-node-timeout 5000\n"
          // The bus port defaults to port + 10000, which may be taken or past 65535.
          << "cluster-port " << PickFreePort() << "\n";
    }
  }
  std::string why;
  if (!process_.Start({*server, conf}, log_, "", &why)) {
    error_ = "cannot start redis-server: " + why;
    return false;
  }
  // With TLS the port accepts TCP before the handshake works; a TCP accept is
  // enough to know the server listens.
  if (!WaitForPort(port_, seconds(10))) {
    error_ = "redis-server did not listen on port " + std::to_string(port_) +
             "; log: " + ReadFileOrEmpty(log_);
    process_.Stop(seconds(1));
    return false;
  }
  if (!process_.running()) {
    error_ = "redis-server exited; log: " + ReadFileOrEmpty(log_);
    return false;
  }
  error_.clear();
  return true;
}

void RedisServer::Stop() { process_.Stop(seconds(5)); }

bool RedisServer::Start() { return Launch(); }

void RedisServer::Kill() {
  process_.Signal(SIGKILL);
  process_.Wait(seconds(10));
}

RedisCluster::RedisCluster(int masters) {
  RedisServerOptions options;
  options.cluster_node = true;
  std::vector<std::string> create = {"--cluster", "create"};
  for (int i = 0; i < masters; ++i) {
    nodes_.push_back(std::make_unique<RedisServer>(options));
    if (!nodes_.back()->ok()) {
      error_ = nodes_.back()->error();
      return;
    }
    create.push_back("127.0.0.1:" + std::to_string(nodes_.back()->port()));
  }
  std::optional<std::string> cli = FindProgram("redis-cli");
  if (!cli) {
    error_ = "redis-cli not found (install the redis-tools package)";
    return;
  }
  create.insert(create.end(), {"--cluster-replicas", "0", "--cluster-yes"});
  TempDir scratch("toolops-cluster");
  std::string out = scratch.File("out");
  std::string created = RedisCli(*cli, create, out);
  // Wait until every node agrees that the cluster is ready.
  auto until = std::chrono::steady_clock::now() + seconds(30);
  while (true) {
    bool ready = true;
    for (const auto& node : nodes_) {
      std::string info =
          RedisCli(*cli, {"-p", std::to_string(node->port()), "cluster", "info"}, out);
      if (info.find("cluster_state:ok") == std::string::npos) ready = false;
    }
    if (ready) return;
    if (std::chrono::steady_clock::now() > until) {
      error_ = "the cluster did not become ready; redis-cli --cluster create said: " + created;
      return;
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
}

}  // namespace toolops::testing
