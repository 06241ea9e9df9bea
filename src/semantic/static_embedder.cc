// src/semantic/static_embedder.cc
//
// The built-in embedder: WordPiece ids, the table rows of those ids, their
// mean, L2-normalised when the model's config asks for it. The safetensors
// reader (an 8-byte header length, a JSON header, raw little-endian data) is
// a few lines; no C++ safetensors library is packaged for Debian.

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "semantic/wordpiece.h"
#include "toolops/embedder.h"

#ifndef TOOLOPS_SOURCE_MODEL_DIR
#define TOOLOPS_SOURCE_MODEL_DIR ""
#endif

namespace toolops {
namespace {

using Json = nlohmann::json;

Status BadFile(const std::string& path, std::string_view what) {
  return Status(StatusCode::kInvalidArgument, "embedder model '" + path + "': " + std::string(what),
                Guard::kCodec);
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status(StatusCode::kNotFound,
                  "embedder model: cannot open '" + path +
                      "' (set TOOLOPS_MODEL_DIR to a directory with tokenizer.json, "
                      "model.safetensors and config.json)",
                  Guard::kCodec);
  }
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

float HalfToFloat(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1F;
  uint32_t mantissa = h & 0x3FF;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // Subnormal: normalise.
      exponent = 127 - 15 + 1;
      while ((mantissa & 0x400) == 0) {
        mantissa <<= 1;
        --exponent;
      }
      mantissa &= 0x3FF;
      bits = sign | (exponent << 23) | (mantissa << 13);
    }
  } else if (exponent == 0x1F) {
    bits = sign | 0x7F800000 | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

enum class DType { kF32, kF16, kI8 };

class StaticEmbedder final : public Embedder {
 public:
  static Result<std::unique_ptr<Embedder>> Load(const std::string& dir) {
    auto embedder = std::unique_ptr<StaticEmbedder>(new StaticEmbedder());
    StaticEmbedder& e = *embedder;

    Result<WordPieceTokenizer> tokenizer = WordPieceTokenizer::Load(dir + "/tokenizer.json");
    if (!tokenizer.ok()) {
      if (tokenizer.status().code() != StatusCode::kNotFound) return tokenizer.status();
      return Status(StatusCode::kNotFound,
                    "embedder model: " + std::string(tokenizer.status().message()) +
                        " (set TOOLOPS_MODEL_DIR to a directory with tokenizer.json, "
                        "model.safetensors and config.json)",
                    Guard::kCodec);
    }
    e.tokenizer_ = std::move(tokenizer).value();

    std::string config_path = dir + "/config.json";
    Result<std::string> config_text = ReadFile(config_path);
    if (!config_text.ok()) return config_text.status();
    Json config = Json::parse(*config_text, nullptr, false);
    if (config.is_discarded() || !config.is_object()) {
      return BadFile(config_path, "is not a JSON object");
    }
    e.normalize_ = config.value("normalize", true);
    // Model2Vec truncates the token ids to max_length before pooling.
    if (config.contains("max_length") && config["max_length"].is_number_integer()) {
      e.max_tokens_ = config["max_length"].get<size_t>();
    }

    std::string table_path = dir + "/model.safetensors";
    Result<std::string> table = ReadFile(table_path);
    if (!table.ok()) return table.status();
    e.file_ = std::move(table).value();
    if (Status s = e.ReadTable(table_path); !s.ok()) return s;
    if (e.rows_ < e.tokenizer_.vocab_size()) {
      return BadFile(table_path, "has " + std::to_string(e.rows_) +
                                     " rows, fewer than the tokenizer's vocabulary (" +
                                     std::to_string(e.tokenizer_.vocab_size()) + ")");
    }
    e.model_id_ = "static:" + dir.substr(dir.find_last_of('/') + 1) + ":" +
                  std::to_string(e.dims_) + ":" + std::to_string(e.file_.size());
    return std::unique_ptr<Embedder>(std::move(embedder));
  }

  Result<std::vector<float>> Embed(std::string_view text) const override {
    // Model2Vec cuts the text to max_length * median token length code
    // points first, then tokenises without [CLS] / [SEP], truncates to
    // max_length tokens and drops unknown tokens.
    if (max_tokens_ > 0) {
      size_t max_chars = max_tokens_ * tokenizer_.median_token_length();
      size_t chars = 0;
      for (size_t i = 0; i < text.size(); ++i) {
        if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80 && chars++ == max_chars) {
          text = text.substr(0, i);
          break;
        }
      }
    }
    std::vector<int32_t> ids = tokenizer_.Encode(text);
    if (max_tokens_ > 0 && ids.size() > max_tokens_) ids.resize(max_tokens_);
    std::vector<float> sum(dims_, 0.0f);
    size_t used = 0;
    for (int32_t id : ids) {
      if (id == tokenizer_.unk_id() || static_cast<size_t>(id) >= rows_) continue;
      AddRow(static_cast<size_t>(id), sum.data());
      ++used;
    }
    if (used == 0) return sum;
    float inv = 1.0f / static_cast<float>(used);
    double norm = 0;
    for (float& v : sum) {
      v *= inv;
      norm += static_cast<double>(v) * v;
    }
    if (normalize_ && norm > 0) {
      float scale = static_cast<float>(1.0 / std::sqrt(norm));
      for (float& v : sum) v *= scale;
    }
    return sum;
  }

  size_t dims() const override { return dims_; }
  const std::string& model_id() const override { return model_id_; }

 private:
  StaticEmbedder() = default;

  Status ReadTable(const std::string& path) {
    if (file_.size() < 8) return BadFile(path, "is shorter than a safetensors header");
    uint64_t header_size = 0;
    for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | static_cast<uint8_t>(file_[i]);
    if (header_size > file_.size() - 8) return BadFile(path, "has a header longer than the file");
    Json header = Json::parse(file_.substr(8, header_size), nullptr, false);
    if (header.is_discarded() || !header.is_object()) {
      return BadFile(path, "has a header that is not a JSON object");
    }
    const Json& tensor = header["embeddings"];
    if (!tensor.is_object()) return BadFile(path, "has no tensor named \"embeddings\"");
    std::string dtype = tensor.value("dtype", "");
    if (dtype == "F32") {
      dtype_ = DType::kF32;
    } else if (dtype == "F16") {
      dtype_ = DType::kF16;
    } else if (dtype == "I8") {
      dtype_ = DType::kI8;
    } else {
      return BadFile(path, "embeddings dtype '" + dtype + "' is not F32, F16 or I8");
    }
    const Json& shape = tensor["shape"];
    const Json& offsets = tensor["data_offsets"];
    if (!shape.is_array() || shape.size() != 2 || !offsets.is_array() || offsets.size() != 2) {
      return BadFile(path, "embeddings needs a 2-d shape and data_offsets");
    }
    rows_ = shape[0].get<size_t>();
    dims_ = shape[1].get<size_t>();
    size_t begin = offsets[0].get<size_t>();
    size_t end = offsets[1].get<size_t>();
    size_t width = dtype_ == DType::kF32 ? 4 : dtype_ == DType::kF16 ? 2 : 1;
    size_t base = 8 + header_size;
    if (dims_ == 0 || end < begin || end - begin != rows_ * dims_ * width ||
        base + end > file_.size()) {
      return BadFile(path, "embeddings data does not match its shape and dtype");
    }
    data_ = file_.data() + base + begin;
    // An int8 table carries its scale: one per row ("scales", F32 of shape
    // [rows]) or one for all (metadata "scale").
    if (dtype_ == DType::kI8) {
      const Json& scales = header["scales"];
      if (scales.is_object() && scales.value("dtype", "") == "F32") {
        size_t s_begin = scales["data_offsets"][0].get<size_t>();
        size_t s_end = scales["data_offsets"][1].get<size_t>();
        if (s_end - s_begin != rows_ * 4 || base + s_end > file_.size()) {
          return BadFile(path, "scales does not hold one F32 per row");
        }
        row_scales_ = reinterpret_cast<const float*>(file_.data() + base + s_begin);
      } else {
        const Json& meta = header["__metadata__"];
        if (!meta.is_object() || !meta.contains("scale")) {
          return BadFile(path, "an I8 table needs a \"scales\" tensor or a metadata \"scale\"");
        }
        global_scale_ = std::stof(meta["scale"].get<std::string>());
      }
    }
    return Status();
  }

  void AddRow(size_t row, float* sum) const {
    switch (dtype_) {
      case DType::kF32: {
        const char* p = data_ + row * dims_ * 4;
        for (size_t d = 0; d < dims_; ++d) {
          float v;
          std::memcpy(&v, p + d * 4, 4);
          sum[d] += v;
        }
        break;
      }
      case DType::kF16: {
        const char* p = data_ + row * dims_ * 2;
        for (size_t d = 0; d < dims_; ++d) {
          uint16_t h;
          std::memcpy(&h, p + d * 2, 2);
          sum[d] += HalfToFloat(h);
        }
        break;
      }
      case DType::kI8: {
        const auto* p = reinterpret_cast<const int8_t*>(data_ + row * dims_);
        float scale = row_scales_ != nullptr ? row_scales_[row] : global_scale_;
        for (size_t d = 0; d < dims_; ++d) sum[d] += static_cast<float>(p[d]) * scale;
        break;
      }
    }
  }

  WordPieceTokenizer tokenizer_;
  bool normalize_ = true;
  size_t max_tokens_ = 0;  // 0: no limit.
  std::string file_;
  const char* data_ = nullptr;
  DType dtype_ = DType::kF32;
  size_t rows_ = 0;
  size_t dims_ = 0;
  const float* row_scales_ = nullptr;
  float global_scale_ = 1.0f;
  std::string model_id_;
};

}  // namespace

Result<std::unique_ptr<Embedder>> LoadStaticEmbedder(const std::string& directory) {
  return StaticEmbedder::Load(directory);
}

std::string DefaultModelDirectory() {
  if (const char* dir = std::getenv("TOOLOPS_MODEL_DIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
  return TOOLOPS_SOURCE_MODEL_DIR;
}

}  // namespace toolops
