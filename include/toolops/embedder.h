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
};

// Loads a Model2Vec-format directory. NotFound names a missing file;
// InvalidArgument names the file and what is wrong in it (an unsupported
// tokenizer, dtype or shape).
Result<std::unique_ptr<Embedder>> LoadStaticEmbedder(const std::string& directory);

// The directory of the bundled model: $TOOLOPS_MODEL_DIR when set, else the
// models/minilm-static directory of the source tree or install prefix this
// library was built for.
std::string DefaultModelDirectory();

}  // namespace toolops

#endif  // TOOLOPS_EMBEDDER_H_
