// src/semantic/http_embedder.cc
//
// OpenHttpEmbedder: an OpenAI-compatible /embeddings endpoint through libcurl.
// One easy handle per request (requests are network-bound; a handle costs
// microseconds), so concurrent calls never share curl state.

#include <curl/curl.h>

#include <atomic>
#include <cmath>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "toolops/embedder.h"
#include "toolops/log.h"

namespace toolops {
namespace {

size_t AppendBody(char* data, size_t size, size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

class HttpEmbedder final : public Embedder {
 public:
  explicit HttpEmbedder(HttpEmbedderOptions options)
      : options_(std::move(options)),
        url_(options_.base_url + "/embeddings"),
        model_id_("http:" + options_.model + "@" + options_.base_url) {
    while (url_.find("//embeddings") != std::string::npos) {
      url_.erase(url_.find("//embeddings"), 1);  // A base URL ending in '/'.
    }
  }

  Result<std::vector<float>> Embed(std::string_view text) const override {
    Result<std::vector<std::vector<float>>> batch = Request({std::string(text)});
    if (!batch.ok()) return batch.status();
    return std::move((*batch)[0]);
  }

  Result<std::vector<std::vector<float>>> EmbedBatch(
      const std::vector<std::string>& texts) const override {
    std::vector<std::vector<float>> out;
    out.reserve(texts.size());
    for (size_t at = 0; at < texts.size(); at += options_.max_batch) {
      size_t end = std::min(texts.size(), at + options_.max_batch);
      Result<std::vector<std::vector<float>>> part =
          Request(std::vector<std::string>(texts.begin() + at, texts.begin() + end));
      if (!part.ok()) return part.status();
      for (auto& v : *part) out.push_back(std::move(v));
    }
    return out;
  }

  size_t dims() const override { return dims_; }
  const std::string& model_id() const override { return model_id_; }

  // The dims from one request, when the options leave them open.
  Status Probe() {
    if (options_.dims != 0) {
      dims_ = options_.dims;
      return Status();
    }
    Result<std::vector<std::vector<float>>> v = Request({"dimension probe"});
    if (!v.ok()) return v.status();
    dims_ = (*v)[0].size();
    return Status();
  }

 private:
  Status Fail(StatusCode code, const std::string& what) const {
    bool was_down = down_.exchange(true);
    std::string message = "embedding endpoint " + url_ + ": " + what;
    if (!was_down && code == StatusCode::kUnavailable) {
      Log(LogLevel::kWarning, "embedder.down",
          message + " (semantic lookups are misses until it answers again)");
    }
    return Status(code, message, Guard::kUpstream);
  }

  Result<std::vector<std::vector<float>>> Request(const std::vector<std::string>& texts) const {
    InitCurlOnce();
    nlohmann::json body = {{"model", options_.model}, {"input", texts}};
    std::string payload = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::string answer;
    CURL* curl = curl_easy_init();
    if (curl == nullptr) return Fail(StatusCode::kUnavailable, "libcurl could not start a request");
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    // No "Expect: 100-continue" round trip before larger bodies.
    headers = curl_slist_append(headers, "Expect:");
    if (!options_.api_key.empty()) {
      headers = curl_slist_append(headers, ("Authorization: Bearer " + options_.api_key).c_str());
    }
    curl_easy_setopt(curl, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(payload.size()));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &AppendBody);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout.count()));
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    CURLcode code = curl_easy_perform(curl);
    long http = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    if (code != CURLE_OK) {
      std::string what =
          code == CURLE_OPERATION_TIMEDOUT
              ? "no answer within " + std::to_string(options_.timeout.count()) + " ms"
              : std::string(curl_easy_strerror(code));
      return Fail(StatusCode::kUnavailable, what);
    }
    std::string snippet = answer.substr(0, 200);
    if (http == 401 || http == 403) {
      return Fail(StatusCode::kPermissionDenied,
                  "HTTP " + std::to_string(http) + " (check the API key): " + snippet);
    }
    if (http == 429 || http >= 500) {
      return Fail(StatusCode::kUnavailable, "HTTP " + std::to_string(http) + ": " + snippet);
    }
    if (http != 200) {
      return Fail(StatusCode::kInvalidArgument, "HTTP " + std::to_string(http) + ": " + snippet);
    }
    nlohmann::json doc = nlohmann::json::parse(answer, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("data") ||
        !doc["data"].is_array() || doc["data"].size() != texts.size()) {
      return Fail(StatusCode::kDataLoss,
                  "the answer is not {\"data\": [one embedding per input]}: " + snippet);
    }
    std::vector<std::vector<float>> out(texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
      const nlohmann::json& item = doc["data"][i];
      if (!item.is_object() || !item.contains("embedding") || !item["embedding"].is_array()) {
        return Fail(StatusCode::kDataLoss, "data[" + std::to_string(i) + "] has no embedding");
      }
      size_t index = i;
      if (item.contains("index") && item["index"].is_number_unsigned()) {
        index = item["index"].get<size_t>();
      }
      if (index >= texts.size() || !out[index].empty()) {
        return Fail(StatusCode::kDataLoss, "data[" + std::to_string(i) + "] has a bad index");
      }
      std::vector<float>& v = out[index];
      double norm = 0;
      for (const nlohmann::json& x : item["embedding"]) {
        if (!x.is_number()) {
          return Fail(StatusCode::kDataLoss, "data[" + std::to_string(i) + "] holds a non-number");
        }
        v.push_back(x.get<float>());
        norm += static_cast<double>(v.back()) * v.back();
      }
      size_t want = dims_ != 0 ? dims_ : options_.dims;
      if (v.empty() || (want != 0 && v.size() != want)) {
        return Fail(StatusCode::kDataLoss, "data[" + std::to_string(i) + "] has " +
                                               std::to_string(v.size()) + " values, expected " +
                                               std::to_string(want));
      }
      if (norm > 0) {
        float scale = static_cast<float>(1.0 / std::sqrt(norm));
        for (float& x : v) x *= scale;
      }
    }
    if (down_.exchange(false)) {
      Log(LogLevel::kInfo, "embedder.up", "embedding endpoint " + url_ + " answers again");
    }
    return out;
  }

  const HttpEmbedderOptions options_;
  std::string url_;
  const std::string model_id_;
  size_t dims_ = 0;  // Set by Probe, before the embedder is shared.
  mutable std::atomic<bool> down_{false};
};

}  // namespace

Result<std::unique_ptr<Embedder>> OpenHttpEmbedder(const HttpEmbedderOptions& options) {
  auto bad = [](const std::string& what) {
    return Status(StatusCode::kInvalidArgument, "http embedder: " + what, Guard::kPolicy);
  };
  if (!options.base_url.starts_with("http://") && !options.base_url.starts_with("https://")) {
    return bad("base_url '" + options.base_url +
               "' must start with http:// or https:// (for example https://api.openai.com/v1)");
  }
  if (options.model.empty()) return bad("model is empty; name the embedding model");
  if (options.timeout.count() <= 0) return bad("timeout must be positive");
  if (options.max_batch == 0 || options.max_batch > 2048) {
    return bad("max_batch is " + std::to_string(options.max_batch) + "; it must be 1 to 2048");
  }
  auto embedder = std::make_unique<HttpEmbedder>(options);
  if (Status s = embedder->Probe(); !s.ok()) {
    return s.WithContext("http embedder (set dims to open it without a request)");
  }
  return std::unique_ptr<Embedder>(std::move(embedder));
}

}  // namespace toolops
