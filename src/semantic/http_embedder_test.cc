// src/semantic/http_embedder_test.cc
//
// The OpenAI-compatible embedder against a real HTTP server on a free port
// (a small one in this file that speaks the /v1/embeddings shape): request
// format, batching, errors by kind, timeouts, and a semantic tool whose
// embedder is down (its calls go on as misses).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "toolops/embedder.h"
#include "toolops/tool.h"

namespace toolops {
namespace {

using std::chrono::milliseconds;

// One request at a time, "Connection: close". The handler gets the request
// head and body and returns the status and body of the answer.
class HttpServer {
 public:
  using Handler =
      std::function<std::pair<int, std::string>(const std::string& head, const std::string& body)>;
  explicit HttpServer(Handler handler) : handler_(std::move(handler)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(listen_fd_, 16);
    thread_ = std::thread([this] { Serve(); });
  }
  ~HttpServer() {
    stopping_ = true;
    shutdown(listen_fd_, SHUT_RDWR);
    close(listen_fd_);
    thread_.join();
  }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  int requests() const { return requests_.load(); }

 private:
  void Serve() {
    while (!stopping_) {
      int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      std::string data;
      char buf[4096];
      size_t head_end = std::string::npos;
      size_t content_length = 0;
      while (true) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) break;
        data.append(buf, static_cast<size_t>(n));
        if (head_end == std::string::npos &&
            (head_end = data.find("\r\n\r\n")) != std::string::npos) {
          size_t at = data.find("Content-Length: ");
          if (at != std::string::npos && at < head_end)
            content_length = std::stoul(data.substr(at + 16));
        }
        if (head_end != std::string::npos && data.size() >= head_end + 4 + content_length) break;
      }
      ++requests_;
      if (head_end == std::string::npos) {
        close(fd);
        continue;
      }
      auto [status, body] = handler_(data.substr(0, head_end), data.substr(head_end + 4));
      std::string answer =
          "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\n" +
          "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
      send(fd, answer.data(), answer.size(), MSG_NOSIGNAL);
      close(fd);
    }
  }

  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> requests_{0};
  std::thread thread_;
};

// A toy model: the vector of a text counts its letters a..d (not normalised,
// so the embedder's normalisation shows).
std::vector<float> Letters(const std::string& text) {
  std::vector<float> v(4, 0.0f);
  for (char c : text) {
    if (c >= 'a' && c <= 'd') v[c - 'a'] += 1;
  }
  v[3] += 0.5f;  // Never all zero.
  return v;
}

std::pair<int, std::string> EmbeddingsAnswer(const std::string& body, bool reversed = false) {
  nlohmann::json request = nlohmann::json::parse(body);
  nlohmann::json data = nlohmann::json::array();
  const auto& input = request["input"];
  for (size_t i = 0; i < input.size(); ++i) {
    size_t at = reversed ? input.size() - 1 - i : i;
    data.push_back({{"object", "embedding"}, {"index", at}, {"embedding", Letters(input[at])}});
  }
  return {200,
          nlohmann::json({{"object", "list"}, {"data", data}, {"model", request["model"]}}).dump()};
}

TEST(HttpEmbedderTest, SendsTheOpenAiShapeAndNormalises) {
  std::mutex mu;
  std::string seen_head, seen_model;
  HttpServer server([&](const std::string& head, const std::string& body) {
    std::lock_guard lock(mu);
    seen_head = head;
    seen_model = nlohmann::json::parse(body)["model"];
    return EmbeddingsAnswer(body, /*reversed=*/true);  // "index" says where each goes.
  });
  HttpEmbedderOptions options;
  options.base_url = server.base_url();
  options.model = "toy-letters";
  options.api_key = "sk-test";
  Result<std::unique_ptr<Embedder>> e = OpenHttpEmbedder(options);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ((*e)->dims(), 4u);  // Learned from the probe request.
  EXPECT_NE(seen_head.find("POST /v1/embeddings "), std::string::npos) << seen_head;
  EXPECT_NE(seen_head.find("Authorization: Bearer sk-test"), std::string::npos);
  EXPECT_EQ(seen_model, "toy-letters");

  Result<std::vector<float>> v = (*e)->Embed("aab");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  double norm = 0;
  for (float x : *v) norm += x * x;
  EXPECT_NEAR(norm, 1.0, 1e-5);
  EXPECT_GT((*v)[0], (*v)[1]);  // Two a's, one b.

  Result<std::vector<std::vector<float>>> batch = (*e)->EmbedBatch({"a", "b", "c"});
  ASSERT_TRUE(batch.ok());
  ASSERT_EQ(batch->size(), 3u);
  EXPECT_GT((*batch)[0][0], 0.5f);
  EXPECT_GT((*batch)[1][1], 0.5f);
  EXPECT_GT((*batch)[2][2], 0.5f);
}

TEST(HttpEmbedderTest, SplitsLargeBatches) {
  HttpServer server(
      [](const std::string&, const std::string& body) { return EmbeddingsAnswer(body); });
  HttpEmbedderOptions options;
  options.base_url = server.base_url() + "/";  // A trailing slash is fine.
  options.model = "m";
  options.dims = 4;  // No probe request.
  options.max_batch = 2;
  Result<std::unique_ptr<Embedder>> e = OpenHttpEmbedder(options);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(server.requests(), 0);
  Result<std::vector<std::vector<float>>> batch = (*e)->EmbedBatch({"a", "b", "c", "d", "ab"});
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  EXPECT_EQ(batch->size(), 5u);
  EXPECT_EQ(server.requests(), 3);
}

TEST(HttpEmbedderTest, ErrorsSayWhatWentWrong) {
  std::atomic<int> status{200};
  std::atomic<bool> garbage{false}, wrong_dims{false};
  HttpServer server(
      [&](const std::string&, const std::string& body) -> std::pair<int, std::string> {
        if (status != 200) return {status.load(), R"({"error": {"message": "nope"}})"};
        if (garbage) return {200, "<html>not json</html>"};
        if (wrong_dims) return {200, R"({"data": [{"index": 0, "embedding": [1, 2]}]})"};
        return EmbeddingsAnswer(body);
      });
  HttpEmbedderOptions options;
  options.base_url = server.base_url();
  options.model = "m";
  options.dims = 4;
  auto e = std::move(OpenHttpEmbedder(options)).value();
  status = 401;
  Result<std::vector<float>> r = e->Embed("a");
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(r.status().message().find("API key"), std::string_view::npos);
  status = 503;
  EXPECT_EQ(e->Embed("a").status().code(), StatusCode::kUnavailable);
  status = 429;
  EXPECT_EQ(e->Embed("a").status().code(), StatusCode::kUnavailable);
  status = 400;
  EXPECT_EQ(e->Embed("a").status().code(), StatusCode::kInvalidArgument);
  status = 200;
  garbage = true;
  EXPECT_EQ(e->Embed("a").status().code(), StatusCode::kDataLoss);
  garbage = false;
  wrong_dims = true;
  r = e->Embed("a");
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("expected 4"), std::string_view::npos)
      << r.status().ToString();
  wrong_dims = false;
  EXPECT_TRUE(e->Embed("a").ok());
}

TEST(HttpEmbedderTest, ADownOrSlowEndpointFailsFastAndClearly) {
  HttpEmbedderOptions options;
  options.model = "m";
  options.timeout = milliseconds(200);
  {
    HttpServer slow([](const std::string&, const std::string& body) {
      std::this_thread::sleep_for(milliseconds(600));
      return EmbeddingsAnswer(body);
    });
    options.base_url = slow.base_url();
    options.dims = 4;
    auto e = std::move(OpenHttpEmbedder(options)).value();
    auto start = std::chrono::steady_clock::now();
    Result<std::vector<float>> r = e->Embed("a");
    EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(550));
    EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
    EXPECT_NE(r.status().message().find("no answer within 200 ms"), std::string_view::npos)
        << r.status().ToString();
  }
  // Nothing listens there any more: refused at once.
  Result<std::unique_ptr<Embedder>> closed = OpenHttpEmbedder(options);
  ASSERT_TRUE(closed.ok());
  Result<std::vector<float>> r = (*closed)->Embed("a");
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find(options.base_url), std::string_view::npos);
  // Without dims, opening needs the endpoint, and says so.
  options.dims = 0;
  Result<std::unique_ptr<Embedder>> probe = OpenHttpEmbedder(options);
  EXPECT_FALSE(probe.ok());
  EXPECT_NE(probe.status().message().find("set dims"), std::string_view::npos)
      << probe.status().ToString();
}

TEST(HttpEmbedderTest, BadOptionsAreRefusedWhenOpening) {
  HttpEmbedderOptions options;
  options.base_url = "api.openai.com/v1";
  options.model = "m";
  EXPECT_NE(OpenHttpEmbedder(options).status().message().find("http://"), std::string_view::npos);
  options.base_url = "http://localhost:1/v1";
  options.model = "";
  EXPECT_NE(OpenHttpEmbedder(options).status().message().find("model"), std::string_view::npos);
  options.model = "m";
  options.max_batch = 0;
  EXPECT_NE(OpenHttpEmbedder(options).status().message().find("max_batch"), std::string_view::npos);
}

// A semantic tool whose embedder is down still answers every call, from
// upstream; once the embedder is back, questions in other words hit.
TEST(HttpEmbedderTest, ASemanticToolGoesOnWhenItsEmbedderIsDown) {
  std::atomic<bool> up{false};
  HttpServer server(
      [&](const std::string&, const std::string& body) -> std::pair<int, std::string> {
        if (!up) return {503, "{}"};
        return EmbeddingsAnswer(body);
      });
  HttpEmbedderOptions options;
  options.base_url = server.base_url();
  options.model = "m";
  options.dims = 4;
  auto embedder = std::move(OpenHttpEmbedder(options)).value();
  StoreRegistry stores;
  stores.Register("memory", std::move(NewMemoryStore({})).value());
  Environment env;
  env.stores = &stores;
  env.embedder = embedder.get();
  ToolPolicy policy;
  policy.cache.semantic.params = {"query"};
  policy.cache.semantic.guard = false;  // The toy model has no names.
  int calls = 0;
  auto tool = Readonly(
      {"t", "1", {"query"}}, policy,
      [&](const std::string& q) {
        ++calls;
        return "answer " + q;
      },
      env);
  EXPECT_EQ(tool("abc"), "answer abc");
  EXPECT_EQ(tool("cba"), "answer cba");  // Same letters, but no embedding: upstream.
  EXPECT_EQ(calls, 2);
  up = true;
  EXPECT_EQ(tool("aabbcc"), "answer aabbcc");
  EXPECT_EQ(tool("ccbbaa"), "answer aabbcc");  // Same letters: the same vector.
  EXPECT_EQ(calls, 3);
}

}  // namespace
}  // namespace toolops
