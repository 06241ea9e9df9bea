// testing/http_recorder.h
//
// HttpRecorder: a real HTTP/1.1 server on a free loopback port that records
// every request (method, path, headers, body) and answers 200 (or the status
// set with set_status). For tests of exporters that POST to an endpoint.
// Safe for concurrent use.

#ifndef TOOLOPS_TESTING_HTTP_RECORDER_H_
#define TOOLOPS_TESTING_HTTP_RECORDER_H_

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace toolops::testing {

struct HttpRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // Names in lower case.
  std::string body;
};

class HttpRecorder {
 public:
  // Listens on 127.0.0.1 and a free port. With keep_bodies false, requests
  // are recorded without their bodies (a benchmark's collector).
  explicit HttpRecorder(bool keep_bodies = true);
  ~HttpRecorder();
  HttpRecorder(const HttpRecorder&) = delete;
  HttpRecorder& operator=(const HttpRecorder&) = delete;

  int port() const;
  std::string url(const std::string& path) const;
  std::vector<HttpRequest> requests() const;
  // Waits until at least `n` requests arrived; false on timeout.
  bool WaitForRequests(size_t n, std::chrono::milliseconds timeout) const;
  void set_status(int status);

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace toolops::testing

#endif  // TOOLOPS_TESTING_HTTP_RECORDER_H_
