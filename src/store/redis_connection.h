// src/store/redis_connection.h
//
// One connection to one Redis (or Valkey) server: plain TCP or TLS, AUTH and
// SELECT at connect time, and every operation bounded by a timeout. Commands
// are pipelined: Exchange writes all of its commands, then reads one reply
// for each.
//
// hiredis supplies the RESP reply parser (redisReader) only. The socket, TLS
// (OpenSSL) and timeout handling are written here because the hiredis of
// Debian 12 (0.14) has no TLS, and because every operation must stop at its
// deadline, which a blocking redisContext does not give for connect plus
// request plus reply as one bound. Commands are written in RESP by hand (a
// few lines: an array of bulk strings).
//
// Not thread-safe: one thread uses a connection at a time (the store's pool
// hands them out).

#ifndef TOOLOPS_STORE_REDIS_CONNECTION_H_
#define TOOLOPS_STORE_REDIS_CONNECTION_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "toolops/clock.h"
#include "toolops/status.h"

struct redisReply;
struct redisReader;
typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace toolops::redis {

// A reply or one element of it; does not own the memory.
class ReplyView {
 public:
  ReplyView() = default;
  explicit ReplyView(const redisReply* r) : r_(r) {}

  bool is_nil() const;
  bool is_error() const;
  bool is_string() const;  // A bulk string or a status ("OK").
  bool is_integer() const;
  bool is_array() const;
  std::string_view str() const;  // String, status or error text.
  long long integer() const;
  size_t size() const;  // Elements of an array.
  ReplyView operator[](size_t i) const;
  // For messages: "error reply 'WRONGTYPE ...'", "nil", "integer 3", ...
  std::string Describe() const;

 protected:
  const redisReply* r_ = nullptr;
};

// A whole reply, owned.
class Reply : public ReplyView {
 public:
  Reply() = default;
  explicit Reply(redisReply* r);
  ~Reply();
  Reply(Reply&& other) noexcept;
  Reply& operator=(Reply&& other) noexcept;
  Reply(const Reply&) = delete;
  Reply& operator=(const Reply&) = delete;
};

using Command = std::vector<std::string_view>;

struct Endpoint {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string ToString() const { return host + ":" + std::to_string(port); }
  bool operator==(const Endpoint&) const = default;
};

struct ConnectOptions {
  std::string username;         // ACL user; empty: the default user.
  std::string password;         // Empty: no AUTH.
  int db = 0;                   // SELECT after connecting when not 0.
  SSL_CTX* tls = nullptr;       // Not owned; null: plain TCP.
  std::string tls_server_name;  // SNI and the name the certificate must match; empty: host.
  bool tls_verify_name = true;
  Duration connect_timeout = std::chrono::milliseconds(250);
  Duration io_timeout = std::chrono::milliseconds(250);
};

class Connection {
 public:
  // Connects, performs the TLS handshake, AUTH and SELECT. Failures are
  // Unavailable (guard kStore) naming the endpoint and what failed; a refused
  // AUTH is PermissionDenied.
  static Result<std::unique_ptr<Connection>> Open(const Endpoint& endpoint,
                                                  const ConnectOptions& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends every command, then reads one reply per command into *replies
  // (error replies are replies). I/O failure, timeout or a protocol error
  // returns Unavailable and breaks the connection.
  Status Exchange(const std::vector<Command>& commands, std::vector<Reply>* replies);
  Result<Reply> Run(const Command& command);

  // For subscriptions: sends without reading, and reads one pushed reply,
  // waiting up to `wait` (nullopt when none arrived; the connection stays
  // usable).
  Status Send(const Command& command);
  Result<std::optional<Reply>> Receive(Duration wait);

  // A broken connection must be discarded.
  bool broken() const { return broken_; }
  const Endpoint& endpoint() const { return endpoint_; }

 private:
  Connection(Endpoint endpoint, Duration io_timeout);
  Status Handshake(const ConnectOptions& options, TimePoint deadline);
  Status WriteAll(std::string_view data, TimePoint deadline);
  // The next reply: from what is buffered, else from the socket until
  // `deadline`. nullopt with ok status: the deadline passed (only when
  // `soft_deadline`, for Receive).
  Result<std::optional<Reply>> ReadReply(TimePoint deadline, bool soft_deadline);
  Status Fail(std::string what);
  static void AppendCommand(std::string* out, const Command& command);

  const Endpoint endpoint_;
  const Duration io_timeout_;
  int fd_ = -1;
  SSL* ssl_ = nullptr;
  redisReader* reader_ = nullptr;
  std::string out_;
  bool broken_ = false;
  bool blocking_ = false;  // Plain TCP after connect: SO_RCVTIMEO bounds each read.
};

// Builds the SSL_CTX for TLS connections: verifying the server against
// `ca_file` (or the system's CAs when empty) unless `verify_peer` is false,
// and presenting `cert_file` / `key_file` when both are set. Errors name the
// file and OpenSSL's reason.
struct TlsContextDeleter {
  void operator()(SSL_CTX* ctx) const;
};
using TlsContext = std::unique_ptr<SSL_CTX, TlsContextDeleter>;
Result<TlsContext> NewTlsContext(const std::string& ca_file, const std::string& cert_file,
                                 const std::string& key_file, bool verify_peer);

}  // namespace toolops::redis

#endif  // TOOLOPS_STORE_REDIS_CONNECTION_H_
