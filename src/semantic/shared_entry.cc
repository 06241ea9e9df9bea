// src/semantic/shared_entry.cc

#include "semantic/shared_entry.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace toolops {
namespace {

constexpr char kMagic[3] = {'T', 'S', 'E'};
constexpr uint8_t kVersion = 1;
constexpr size_t kHeader = 3 + 1 + 2 + 4 + 4 + 4;

void PutU16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v & 0xff));
  out->push_back(static_cast<char>(v >> 8));
}
void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t GetU32(const unsigned char* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

}  // namespace

std::string EncodeSemanticEntry(const SemanticEntry& entry) {
  std::string out(kMagic, sizeof(kMagic));
  out.push_back(static_cast<char>(kVersion));
  PutU16(&out, static_cast<uint16_t>(entry.vector.size()));
  PutU32(&out, static_cast<uint32_t>(entry.partition.size()));
  PutU32(&out, static_cast<uint32_t>(entry.key.size()));
  PutU32(&out, static_cast<uint32_t>(entry.question.size()));
  for (float x : entry.vector) {
    float scaled = std::clamp(std::round(x * 127.0f), -127.0f, 127.0f);
    out.push_back(static_cast<char>(static_cast<int8_t>(scaled)));
  }
  out += entry.partition;
  out += entry.key;
  out += entry.question;
  return out;
}

std::optional<SemanticEntry> DecodeSemanticEntry(std::string_view bytes, size_t dims) {
  if (bytes.size() < kHeader || bytes.substr(0, 3) != std::string_view(kMagic, 3) ||
      static_cast<uint8_t>(bytes[3]) != kVersion) {
    return std::nullopt;
  }
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t stored_dims = size_t{p[4]} | size_t{p[5]} << 8;
  size_t partition = GetU32(p + 6), key = GetU32(p + 10), question = GetU32(p + 14);
  if (stored_dims != dims || dims == 0) return std::nullopt;
  // Sizes are at most 4 GiB each, so the sum cannot overflow a 64-bit size_t.
  if (bytes.size() != kHeader + dims + partition + key + question || key == 0) {
    return std::nullopt;
  }
  SemanticEntry entry;
  entry.vector.resize(dims);
  double norm = 0;
  for (size_t i = 0; i < dims; ++i) {
    entry.vector[i] = static_cast<float>(static_cast<int8_t>(p[kHeader + i])) / 127.0f;
    norm += static_cast<double>(entry.vector[i]) * entry.vector[i];
  }
  if (norm < 0.25) return std::nullopt;  // Not a unit vector (or all zeros).
  size_t at = kHeader + dims;
  entry.partition.assign(bytes.substr(at, partition));
  at += partition;
  entry.key.assign(bytes.substr(at, key));
  at += key;
  entry.question.assign(bytes.substr(at, question));
  return entry;
}

}  // namespace toolops
