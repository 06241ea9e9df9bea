// src/store/redis_connection.cc

#include "store/redis_connection.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

namespace toolops::redis {
namespace {

Status Unavailable(const Endpoint& endpoint, std::string_view what) {
  return Status(StatusCode::kUnavailable, "redis " + endpoint.ToString() + ": " + std::string(what),
                Guard::kStore);
}

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "no OpenSSL error queued";
  char buffer[256];
  ERR_error_string_n(e, buffer, sizeof buffer);
  ERR_clear_error();
  return buffer;
}

// Milliseconds left until `deadline` for poll(), at least 0; -1 for never.
int PollTimeout(TimePoint deadline) {
  if (deadline == TimePoint::max()) return -1;
  auto left =
      std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) return 0;
  return left.count() > INT32_MAX ? INT32_MAX : static_cast<int>(left.count());
}

// Waits for `events` on fd until `deadline`. False on timeout or error.
bool WaitFor(int fd, short events, TimePoint deadline) {
  while (true) {
    pollfd p{fd, events, 0};
    int timeout = PollTimeout(deadline);
    int r = poll(&p, 1, timeout);
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

// Writing to a TLS socket whose peer has gone raises SIGPIPE, and OpenSSL's
// socket BIO has no MSG_NOSIGNAL. Block the signal on this thread for the
// write and consume it if it became pending, so a library never changes the
// process's signal disposition.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    already_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeBlock() {
    if (!already_pending_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        timespec zero{0, 0};
        while (sigtimedwait(&pipe_, nullptr, &zero) < 0 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool already_pending_ = false;
};

TimePoint SteadyDeadline(Duration timeout) {
  if (timeout == Duration::max()) return TimePoint::max();
  return std::chrono::steady_clock::now() + timeout;
}

}  // namespace

bool ReplyView::is_nil() const { return r_ == nullptr || r_->type == REDIS_REPLY_NIL; }
bool ReplyView::is_error() const { return r_ != nullptr && r_->type == REDIS_REPLY_ERROR; }
bool ReplyView::is_string() const {
  return r_ != nullptr && (r_->type == REDIS_REPLY_STRING || r_->type == REDIS_REPLY_STATUS);
}
bool ReplyView::is_integer() const { return r_ != nullptr && r_->type == REDIS_REPLY_INTEGER; }
bool ReplyView::is_array() const { return r_ != nullptr && r_->type == REDIS_REPLY_ARRAY; }

std::string_view ReplyView::str() const {
  if (r_ == nullptr || r_->str == nullptr) return {};
  return std::string_view(r_->str, r_->len);
}

long long ReplyView::integer() const { return is_integer() ? r_->integer : 0; }
size_t ReplyView::size() const { return is_array() ? r_->elements : 0; }
ReplyView ReplyView::operator[](size_t i) const {
  return i < size() ? ReplyView(r_->element[i]) : ReplyView();
}

std::string ReplyView::Describe() const {
  if (is_nil()) return "nil";
  if (is_error()) return "error reply '" + std::string(str()) + "'";
  if (is_integer()) return "integer " + std::to_string(integer());
  if (is_array()) return "array of " + std::to_string(size());
  return "string of " + std::to_string(str().size()) + " bytes";
}

Reply::Reply(redisReply* r) : ReplyView(r) {}
Reply::~Reply() {
  if (r_ != nullptr) freeReplyObject(const_cast<redisReply*>(r_));
}
Reply::Reply(Reply&& other) noexcept : ReplyView(other.r_) { other.r_ = nullptr; }
Reply& Reply::operator=(Reply&& other) noexcept {
  if (this != &other) {
    if (r_ != nullptr) freeReplyObject(const_cast<redisReply*>(r_));
    r_ = other.r_;
    other.r_ = nullptr;
  }
  return *this;
}

void TlsContextDeleter::operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }

Result<TlsContext> NewTlsContext(const std::string& ca_file, const std::string& cert_file,
                                 const std::string& key_file, bool verify_peer) {
  auto fail = [](std::string what) {
    return Status(StatusCode::kInvalidArgument, "redis TLS: " + what + ": " + OpenSslError(),
                  Guard::kStore);
  };
  TlsContext ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return fail("cannot create a TLS context");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  if (verify_peer) {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    int ok = ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx.get())
                             : SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr);
    if (ok != 1) return fail("cannot load CA certificates from '" + ca_file + "'");
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }
  if (cert_file.empty() != key_file.empty()) {
    return Status(StatusCode::kInvalidArgument,
                  "redis TLS: a client certificate needs both tls.cert_file and tls.key_file",
                  Guard::kStore);
  }
  if (!cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert_file.c_str()) != 1) {
      return fail("cannot load the client certificate '" + cert_file + "'");
    }
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return fail("cannot load the client key '" + key_file + "'");
    }
  }
  return ctx;
}

Connection::Connection(Endpoint endpoint, Duration io_timeout)
    : endpoint_(std::move(endpoint)), io_timeout_(io_timeout) {}

Connection::~Connection() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (fd_ >= 0) close(fd_);
  if (reader_ != nullptr) redisReaderFree(reader_);
}

Status Connection::Fail(std::string what) {
  broken_ = true;
  return Unavailable(endpoint_, what);
}

Result<std::unique_ptr<Connection>> Connection::Open(const Endpoint& endpoint,
                                                     const ConnectOptions& options) {
  std::unique_ptr<Connection> c(new Connection(endpoint, options.io_timeout));
  TimePoint deadline = SteadyDeadline(options.connect_timeout);
  c->reader_ = redisReaderCreate();
  if (c->reader_ == nullptr) return Unavailable(endpoint, "out of memory");

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* addresses = nullptr;
  std::string port = std::to_string(endpoint.port);
  if (int rc = getaddrinfo(endpoint.host.c_str(), port.c_str(), &hints, &addresses); rc != 0) {
    return Unavailable(endpoint, std::string("cannot resolve host: ") + gai_strerror(rc));
  }
  std::string last_error = "no address";
  for (addrinfo* a = addresses; a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last_error = std::string("socket: ") + std::strerror(errno);
      continue;
    }
    int rc = connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      if (WaitFor(fd, POLLOUT, deadline)) {
        int error = 0;
        socklen_t len = sizeof error;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
        rc = error == 0 ? 0 : -1;
        errno = error;
      } else {
        rc = -1;
        errno = ETIMEDOUT;
      }
    }
    if (rc == 0) {
      c->fd_ = fd;
      break;
    }
    last_error = std::string("connect: ") + std::strerror(errno);
    close(fd);
  }
  freeaddrinfo(addresses);
  if (c->fd_ < 0) return Unavailable(endpoint, last_error);
  int one = 1;
  setsockopt(c->fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (options.tls == nullptr) {
    // Plain TCP reads block in recv (bounded by SO_RCVTIMEO) instead of
    // recv -> EAGAIN -> poll -> recv: one system call per reply, not three.
    auto io = std::chrono::duration_cast<std::chrono::microseconds>(options.io_timeout);
    timeval tv{static_cast<time_t>(io.count() / 1'000'000),
               static_cast<suseconds_t>(io.count() % 1'000'000)};
    if (fcntl(c->fd_, F_SETFL, fcntl(c->fd_, F_GETFL) & ~O_NONBLOCK) == 0 &&
        setsockopt(c->fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0 &&
        setsockopt(c->fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0) {
      c->blocking_ = true;
    } else {
      fcntl(c->fd_, F_SETFL, fcntl(c->fd_, F_GETFL) | O_NONBLOCK);
    }
  }

  if (Status s = c->Handshake(options, deadline); !s.ok()) return s;
  return c;
}

Status Connection::Handshake(const ConnectOptions& options, TimePoint deadline) {
  if (options.tls != nullptr) {
    ssl_ = SSL_new(options.tls);
    if (ssl_ == nullptr) return Fail("TLS: " + OpenSslError());
    SSL_set_fd(ssl_, fd_);
    const std::string& name =
        options.tls_server_name.empty() ? endpoint_.host : options.tls_server_name;
    SSL_set_tlsext_host_name(ssl_, name.c_str());
    if (options.tls_verify_name) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      // An IP address must match the certificate's IP SAN, a name its DNS SAN.
      if (X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) != 1) {
        X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
      }
    }
    while (true) {
      ERR_clear_error();
      int rc = SSL_connect(ssl_);
      if (rc == 1) break;
      int error = SSL_get_error(ssl_, rc);
      short events = error == SSL_ERROR_WANT_READ    ? POLLIN
                     : error == SSL_ERROR_WANT_WRITE ? POLLOUT
                                                     : 0;
      if (events == 0) {
        long verify = SSL_get_verify_result(ssl_);
        std::string why = verify != X509_V_OK ? std::string("certificate not accepted: ") +
                                                    X509_verify_cert_error_string(verify)
                                              : OpenSslError();
        return Fail("TLS handshake failed: " + why);
      }
      if (!WaitFor(fd_, events, deadline)) return Fail("TLS handshake timed out");
    }
  }
  std::vector<Command> setup;
  if (!options.password.empty()) {
    if (options.username.empty()) {
      setup.push_back({"AUTH", options.password});
    } else {
      setup.push_back({"AUTH", options.username, options.password});
    }
  }
  std::string db = std::to_string(options.db);
  if (options.db != 0) setup.push_back({"SELECT", db});
  if (setup.empty()) return Status();
  for (const Command& command : setup) AppendCommand(&out_, command);
  if (Status s = WriteAll(out_, deadline); !s.ok()) return s;
  out_.clear();
  for (size_t i = 0; i < setup.size(); ++i) {
    Result<std::optional<Reply>> reply = ReadReply(deadline, false);
    if (!reply.ok()) return reply.status();
    if ((*reply)->is_error()) {
      broken_ = true;
      bool auth = setup[i][0] == "AUTH";
      return Status(auth ? StatusCode::kPermissionDenied : StatusCode::kInvalidArgument,
                    "redis " + endpoint_.ToString() + ": " + std::string(setup[i][0]) +
                        " refused: " + std::string((*reply)->str()),
                    Guard::kStore);
    }
  }
  return Status();
}

void Connection::AppendCommand(std::string* out, const Command& command) {
  out->push_back('*');
  out->append(std::to_string(command.size()));
  out->append("\r\n");
  for (std::string_view arg : command) {
    out->push_back('$');
    out->append(std::to_string(arg.size()));
    out->append("\r\n");
    out->append(arg);
    out->append("\r\n");
  }
}

Status Connection::WriteAll(std::string_view data, TimePoint deadline) {
  size_t done = 0;
  std::optional<SigpipeBlock> block;
  if (ssl_ != nullptr) block.emplace();
  while (done < data.size()) {
    if (ssl_ != nullptr) {
      ERR_clear_error();
      int n = SSL_write(ssl_, data.data() + done, static_cast<int>(data.size() - done));
      if (n > 0) {
        done += static_cast<size_t>(n);
        continue;
      }
      int error = SSL_get_error(ssl_, n);
      short events = error == SSL_ERROR_WANT_READ    ? POLLIN
                     : error == SSL_ERROR_WANT_WRITE ? POLLOUT
                                                     : 0;
      if (events == 0) return Fail("TLS write failed: " + OpenSslError());
      if (!WaitFor(fd_, events, deadline)) return Fail("write timed out");
    } else {
      ssize_t n = send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (n >= 0) {
        done += static_cast<size_t>(n);
        continue;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        return Fail(std::string("write failed: ") + std::strerror(errno));
      }
      if (!WaitFor(fd_, POLLOUT, deadline)) return Fail("write timed out");
    }
  }
  return Status();
}

Result<std::optional<Reply>> Connection::ReadReply(TimePoint deadline, bool soft_deadline) {
  char buffer[16384];
  while (true) {
    void* parsed = nullptr;
    if (redisReaderGetReply(reader_, &parsed) != REDIS_OK) {
      return Fail(std::string("protocol error: ") + reader_->errstr);
    }
    if (parsed != nullptr) return std::optional<Reply>(Reply(static_cast<redisReply*>(parsed)));
    ssize_t n;
    if (ssl_ != nullptr) {
      ERR_clear_error();
      int r = SSL_read(ssl_, buffer, sizeof buffer);
      if (r > 0) {
        n = r;
      } else {
        int error = SSL_get_error(ssl_, r);
        if (error == SSL_ERROR_ZERO_RETURN) return Fail("connection closed by the server");
        short events = error == SSL_ERROR_WANT_READ    ? POLLIN
                       : error == SSL_ERROR_WANT_WRITE ? POLLOUT
                                                       : 0;
        if (events == 0) return Fail("TLS read failed: " + OpenSslError());
        if (!WaitFor(fd_, events, deadline)) {
          if (soft_deadline) return std::optional<Reply>();
          return Fail("no reply within the timeout");
        }
        continue;
      }
    } else {
      // A blocking socket waits in recv for at most io_timeout; poll first
      // when less than that is left, or for a Receive with its own wait.
      if (blocking_ &&
          (soft_deadline || (deadline != TimePoint::max() &&
                             deadline - std::chrono::steady_clock::now() < io_timeout_))) {
        if (!WaitFor(fd_, POLLIN, deadline)) {
          if (soft_deadline) return std::optional<Reply>();
          return Fail("no reply within the timeout");
        }
      }
      n = recv(fd_, buffer, sizeof buffer, 0);
      if (n == 0) return Fail("connection closed by the server");
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          return Fail(std::string("read failed: ") + std::strerror(errno));
        }
        if (!WaitFor(fd_, POLLIN, deadline)) {
          if (soft_deadline) return std::optional<Reply>();
          return Fail("no reply within the timeout");
        }
        continue;
      }
    }
    if (redisReaderFeed(reader_, buffer, static_cast<size_t>(n)) != REDIS_OK) {
      return Fail(std::string("protocol error: ") + reader_->errstr);
    }
  }
}

Status Connection::Exchange(const std::vector<Command>& commands, std::vector<Reply>* replies) {
  replies->clear();
  if (broken_) return Unavailable(endpoint_, "connection is broken");
  TimePoint deadline = SteadyDeadline(io_timeout_);
  out_.clear();
  for (const Command& command : commands) AppendCommand(&out_, command);
  if (Status s = WriteAll(out_, deadline); !s.ok()) return s;
  replies->reserve(commands.size());
  for (size_t i = 0; i < commands.size(); ++i) {
    Result<std::optional<Reply>> reply = ReadReply(deadline, false);
    if (!reply.ok()) return reply.status();
    replies->push_back(std::move(**reply));
  }
  return Status();
}

Result<Reply> Connection::Run(const Command& command) {
  if (broken_) return Unavailable(endpoint_, "connection is broken");
  TimePoint deadline = SteadyDeadline(io_timeout_);
  out_.clear();
  AppendCommand(&out_, command);
  if (Status s = WriteAll(out_, deadline); !s.ok()) return s;
  Result<std::optional<Reply>> reply = ReadReply(deadline, false);
  if (!reply.ok()) return reply.status();
  return std::move(**reply);
}

Status Connection::Send(const Command& command) {
  if (broken_) return Unavailable(endpoint_, "connection is broken");
  out_.clear();
  AppendCommand(&out_, command);
  return WriteAll(out_, SteadyDeadline(io_timeout_));
}

Result<std::optional<Reply>> Connection::Receive(Duration wait) {
  if (broken_) return Unavailable(endpoint_, "connection is broken");
  return ReadReply(SteadyDeadline(wait), true);
}

}  // namespace toolops::redis
