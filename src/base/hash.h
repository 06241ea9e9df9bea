// src/base/hash.h
//
// Mix64: the 64-bit finaliser of MurmurHash3. Every input bit affects every
// output bit, so positions derived from different bits of one hash (shard,
// slot, tag, sketch cell) stay independent. Pure, thread-safe.

#ifndef TOOLOPS_BASE_HASH_H_
#define TOOLOPS_BASE_HASH_H_

#include <cstdint>

namespace toolops {

inline uint64_t Mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

}  // namespace toolops

#endif  // TOOLOPS_BASE_HASH_H_
