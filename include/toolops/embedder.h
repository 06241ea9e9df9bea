// include/toolops/embedder.h
//
// Embedder: turns the free text of a call into a vector, for the semantic
// cache. Vectors are unit length (or all zero for a text with no known
// token), so the dot product of two is their cosine similarity.
//
// The built-in StaticEmbedder runs in this process with no network and no
// Python: a static token-vector table (Model2Vec format: tokenizer.json,
// model.safetensors, config.json) and mean pooling. The model the project
// ships (models/minilm-static) is distilled from all-MiniLM-L6-v2 by
// scripts/make_model.py.
//
// Every Embedder is safe for concurrent use.

#ifndef TOOLOPS_EMBEDDER_H_
#define TOOLOPS_EMBEDDER_H_

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "toolops/status.h"

namespace toolops {

class Embedder {
 public:
  virtual ~Embedder() = default;
  // The vector of `text`: dims() floats, unit length or all zero.
  virtual Result<std::vector<float>> Embed(std::string_view text) const = 0;
  virtual size_t dims() const = 0;
  // Names the model, for logs and for keying: vectors of different models
  // never meet in one index.
  virtual const std::string& model_id() const = 0;
  // The vectors of several texts, in order. Embedders that pay per request
  // (a remote endpoint) send them together; the default embeds one by one.
  virtual Result<std::vector<std::vector<float>>> EmbedBatch(
      const std::vector<std::string>& texts) const {
    std::vector<std::vector<float>> out;
    out.reserve(texts.size());
    for (const std::string& text : texts) {
      Result<std::vector<float>> v = Embed(text);
      if (!v.ok()) return v.status();
      out.push_back(std::move(v).value());
    }
    return out;
  }
};

// Loads a Model2Vec-format directory. NotFound names a missing file;
// InvalidArgument names the file and what is wrong in it (an unsupported
// tokenizer, dtype or shape).
Result<std::unique_ptr<Embedder>> LoadStaticEmbedder(const std::string& directory);

// An OpenAI-compatible embeddings endpoint (POST {base_url}/embeddings with
// {"model": ..., "input": [...]}, as OpenAI, Azure OpenAI, vLLM, Ollama, LM
// Studio, text-embeddings-inference and llama.cpp's server accept). Vectors
// are normalised to unit length here.
struct HttpEmbedderOptions {
  // Up to and including the API version: "https://api.openai.com/v1",
  // "http://localhost:11434/v1".
  std::string base_url;
  std::string model;
  // Sent as "Authorization: Bearer <api_key>" when not empty.
  std::string api_key;
  // The vector size. 0: learned from one request when the embedder is
  // opened (which then fails if the endpoint does not answer).
  size_t dims = 0;
  // For one request, connection included.
  std::chrono::milliseconds timeout{2000};
  // Texts per request; larger batches are split.
  size_t max_batch = 64;
};

// InvalidArgument (guard kPolicy) naming a bad option. With dims == 0,
// whatever the probe request returned when it failed. Once open, a request
// that fails returns Unavailable (endpoint down, timeout, 5xx, 429),
// PermissionDenied (401, 403), InvalidArgument (other 4xx) or DataLoss (an
// answer that is not the expected JSON), each naming the endpoint; the
// semantic cache then treats the call as a miss. Outages are logged once per
// episode ("embedder.down" / "embedder.up").
Result<std::unique_ptr<Embedder>> OpenHttpEmbedder(const HttpEmbedderOptions& options);

// The directory of the bundled model: $TOOLOPS_MODEL_DIR when set, else the
// models/minilm-static directory of the source tree or install prefix this
// library was built for.
std::string DefaultModelDirectory();

}  // namespace toolops

#endif  // TOOLOPS_EMBEDDER_H_
