// testing/http_recorder.cc

#include "http_recorder.h"

#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/read_until.hpp>
#include <asio/streambuf.hpp>
#include <asio/write.hpp>

#include <atomic>
#include <condition_variable>
#include <istream>
#include <mutex>
#include <thread>

namespace toolops::testing {

using asio::ip::tcp;

class HttpRecorder::Impl {
 public:
  explicit Impl(bool keep_bodies)
      : keep_bodies_(keep_bodies),
        acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    port_ = acceptor_.local_endpoint().port();
    Accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Impl() {
    io_.stop();
    thread_.join();
  }

  int port_ = 0;
  std::atomic<int> status_{200};
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<HttpRequest> requests_;

 private:
  struct Connection {
    explicit Connection(asio::io_context& io) : socket(io) {}
    tcp::socket socket;
    asio::streambuf buffer;
    HttpRequest request;
    std::string response;
  };

  void Accept() {
    auto c = std::make_shared<Connection>(io_);
    acceptor_.async_accept(c->socket, [this, c](const asio::error_code& ec) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) ReadHead(c);
      Accept();
    });
  }

  void ReadHead(const std::shared_ptr<Connection>& c) {
    asio::async_read_until(c->socket, c->buffer, "\r\n\r\n",
                           [this, c](const asio::error_code& ec, size_t head_size) {
                             if (ec) return;
                             std::string head(asio::buffers_begin(c->buffer.data()),
                                              asio::buffers_begin(c->buffer.data()) + head_size);
                             c->buffer.consume(head_size);
                             ParseHead(head, &c->request);
                             size_t length = 0;
                             auto it = c->request.headers.find("content-length");
                             if (it != c->request.headers.end()) length = std::stoul(it->second);
                             ReadBody(c, length);
                           });
  }

  static void ParseHead(const std::string& head, HttpRequest* r) {
    size_t line_end = head.find("\r\n");
    std::string first = head.substr(0, line_end);
    size_t a = first.find(' '), b = first.rfind(' ');
    r->method = first.substr(0, a);
    r->path = first.substr(a + 1, b - a - 1);
    size_t pos = line_end + 2;
    while (pos < head.size()) {
      size_t end = head.find("\r\n", pos);
      if (end == std::string::npos || end == pos) break;
      std::string line = head.substr(pos, end - pos);
      size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        size_t v = colon + 1;
        while (v < line.size() && line[v] == ' ') ++v;
        r->headers[name] = line.substr(v);
      }
      pos = end + 2;
    }
  }

  void ReadBody(const std::shared_ptr<Connection>& c, size_t length) {
    size_t have = c->buffer.size();
    if (have >= length) {
      if (keep_bodies_) {
        c->request.body.assign(asio::buffers_begin(c->buffer.data()),
                               asio::buffers_begin(c->buffer.data()) + length);
      }
      Respond(c);
      return;
    }
    asio::async_read(c->socket, c->buffer, asio::transfer_exactly(length - have),
                     [this, c, length](const asio::error_code& ec, size_t) {
                       if (ec) return;
                       ReadBody(c, length);
                     });
  }

  void Respond(const std::shared_ptr<Connection>& c) {
    {
      std::lock_guard lock(mu_);
      requests_.push_back(std::move(c->request));
    }
    cv_.notify_all();
    int status = status_.load();
    c->response = "HTTP/1.1 " + std::to_string(status) + (status == 200 ? " OK" : " Error") +
                  "\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: "
                  "close\r\n\r\n{}";
    asio::async_write(c->socket, asio::buffer(c->response), [c](const asio::error_code&, size_t) {
      asio::error_code ignored;
      c->socket.shutdown(tcp::socket::shutdown_both, ignored);
    });
  }

  const bool keep_bodies_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
};

HttpRecorder::HttpRecorder(bool keep_bodies) : impl_(std::make_unique<Impl>(keep_bodies)) {}
HttpRecorder::~HttpRecorder() = default;
int HttpRecorder::port() const { return impl_->port_; }
std::string HttpRecorder::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(impl_->port_) + path;
}
std::vector<HttpRequest> HttpRecorder::requests() const {
  std::lock_guard lock(impl_->mu_);
  return impl_->requests_;
}
bool HttpRecorder::WaitForRequests(size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mu_);
  return impl_->cv_.wait_for(lock, timeout, [&] { return impl_->requests_.size() >= n; });
}
void HttpRecorder::set_status(int status) { impl_->status_.store(status); }

}  // namespace toolops::testing
