// src/observe/metrics_server.cc
//
// The opt-in /metrics endpoint: a small HTTP/1.1 server on Asio (one thread,
// one request per connection). Written here rather than pulling in an HTTP
// server library: it answers one GET.

#include <asio/ip/tcp.hpp>
#include <asio/read_until.hpp>
#include <asio/steady_timer.hpp>
#include <asio/streambuf.hpp>
#include <asio/write.hpp>

#include <atomic>
#include <istream>
#include <thread>

#include "toolops/metrics.h"

namespace toolops {

using asio::ip::tcp;

class MetricsServer::Impl {
 public:
  Impl(std::string host) : host_(std::move(host)), acceptor_(io_) {}

  Status Listen(uint16_t port) {
    asio::error_code ec;
    asio::ip::address address = asio::ip::make_address(host_, ec);
    if (ec) {
      return Status(StatusCode::kInvalidArgument,
                    "metrics server host '" + host_ +
                        "' is not an IP address; use 127.0.0.1 (this machine only) or 0.0.0.0 "
                        "(every interface)");
    }
    tcp::endpoint endpoint(address, port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Status(StatusCode::kUnavailable, "metrics server cannot listen on " + host_ + ":" +
                                                  std::to_string(port) + ": " + ec.message() +
                                                  "; choose another port (0 picks a free one)");
    }
    port_ = acceptor_.local_endpoint().port();
    Accept();
    thread_ = std::thread([this] { io_.run(); });
    return Status();
  }

  ~Impl() {
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

  uint16_t port() const { return port_; }
  const std::string& host() const { return host_; }
  uint64_t requests() const { return requests_.load(std::memory_order_relaxed); }

 private:
  struct Connection {
    explicit Connection(asio::io_context& io) : socket(io), timer(io), buffer(16 * 1024) {}
    tcp::socket socket;
    asio::steady_timer timer;
    asio::streambuf buffer;
    std::string response;
  };

  void Accept() {
    auto connection = std::make_shared<Connection>(io_);
    acceptor_.async_accept(connection->socket, [this, connection](const asio::error_code& ec) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) Serve(connection);
      Accept();
    });
  }

  void Serve(const std::shared_ptr<Connection>& c) {
    // A client that sends nothing is dropped after 10 seconds.
    c->timer.expires_after(std::chrono::seconds(10));
    c->timer.async_wait([c](const asio::error_code& ec) {
      if (!ec) {
        asio::error_code ignored;
        c->socket.close(ignored);
      }
    });
    asio::async_read_until(
        c->socket, c->buffer, "\r\n\r\n", [this, c](const asio::error_code& ec, size_t) {
          if (ec) {
            c->timer.cancel();
            return;
          }
          std::istream in(&c->buffer);
          std::string method, target, version;
          in >> method >> target >> version;
          std::string status, type = "text/plain; charset=utf-8", body;
          size_t query = target.find('?');
          std::string path = target.substr(0, query);
          if (method != "GET" && method != "HEAD") {
            status = "405 Method Not Allowed";
            body = "only GET is served here\n";
          } else if (path != "/metrics") {
            status = "404 Not Found";
            body = "not found; metrics are at /metrics\n";
          } else {
            status = "200 OK";
            type = "text/plain; version=0.0.4; charset=utf-8";
            body = PrometheusText();
          }
          requests_.fetch_add(1, std::memory_order_relaxed);
          c->response = "HTTP/1.1 " + status + "\r\nContent-Type: " + type +
                        "\r\nContent-Length: " + std::to_string(body.size()) +
                        "\r\nConnection: close\r\n\r\n";
          if (method != "HEAD") c->response += body;
          asio::async_write(c->socket, asio::buffer(c->response),
                            [c](const asio::error_code&, size_t) {
                              asio::error_code ignored;
                              c->socket.shutdown(tcp::socket::shutdown_both, ignored);
                              c->socket.close(ignored);
                              c->timer.cancel();
                            });
        });
  }

  const std::string host_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::atomic<uint64_t> requests_{0};
  std::thread thread_;
};

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& host,
                                                            uint16_t port) {
  auto impl = std::make_unique<Impl>(host);
  if (Status s = impl->Listen(port); !s.ok()) return s;
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MetricsServer::~MetricsServer() = default;
uint16_t MetricsServer::port() const { return impl_->port(); }
const std::string& MetricsServer::host() const { return impl_->host(); }
uint64_t MetricsServer::requests() const { return impl_->requests(); }

}  // namespace toolops
