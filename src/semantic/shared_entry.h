// src/semantic/shared_entry.h
//
// A semantic cache entry as it travels between processes (SemanticBus): the
// partition, the exact key of the answer, the question and its vector (int8,
// x * 127 rounded, as the vector index keeps it).
//
// Layout, little-endian: "TSE", version 1, u16 dims, u32 partition size,
// u32 key size, u32 question size, dims int8 values, then the three strings.
// A decoder refuses anything else (another version, other dims, sizes that do
// not add up): an entry from a foreign or corrupt writer is dropped, never
// indexed.

#ifndef TOOLOPS_SEMANTIC_SHARED_ENTRY_H_
#define TOOLOPS_SEMANTIC_SHARED_ENTRY_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace toolops {

struct SemanticEntry {
  std::string partition;
  std::string key;
  std::string question;
  std::vector<float> vector;  // Unit length.
};

std::string EncodeSemanticEntry(const SemanticEntry& entry);

// The entry, or nullopt when `bytes` is not an entry of `dims` dimensions.
std::optional<SemanticEntry> DecodeSemanticEntry(std::string_view bytes, size_t dims);

}  // namespace toolops

#endif  // TOOLOPS_SEMANTIC_SHARED_ENTRY_H_
