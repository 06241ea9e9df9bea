// src/base/bytes.cc

#include "toolops/bytes.h"

#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <new>
#include <random>
#include <stdexcept>

// Header-only: the hash is inlined into HashBytes.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace toolops {

Bytes Bytes::Copy(std::string_view data) {
  Bytes out;
  if (data.empty()) return out;
  if (data.size() > std::numeric_limits<uint32_t>::max()) {
    throw std::length_error("toolops::Bytes holds at most 4 GiB");
  }
  void* memory = std::malloc(sizeof(Rep) + data.size());
  if (memory == nullptr) throw std::bad_alloc();
  Rep* rep = new (memory) Rep{{1}, static_cast<uint32_t>(data.size())};
  std::memcpy(reinterpret_cast<char*>(rep + 1), data.data(), data.size());
  out.rep_ = rep;
  return out;
}

constinit thread_local internal::SpareReturn internal::spare_return;

void Bytes::UnrefSlow() {
  // Acquire-release so that the last owner sees every write made before the
  // other owners let go (the usual reference-count rule).
  if (rep_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    rep_->~Rep();
    std::free(rep_);
  }
  rep_ = nullptr;
}

void SpareRefs::Refill(Bytes::Rep* rep) {
  if (rep != rep_) {
    Release();
    rep_ = rep;
  }
  if (count_ == 0) {
    rep_->refs.fetch_add(kBatch, std::memory_order_relaxed);
    count_ = kBatch;
  }
}

void SpareRefs::ReleaseSlow() {
  if (internal::spare_return.count == &count_) internal::spare_return = internal::SpareReturn{};
  if (count_ != 0) {
    // The same release as the last owner's in Bytes::UnrefSlow.
    if (rep_->refs.fetch_sub(count_, std::memory_order_acq_rel) == count_) {
      rep_->~Rep();
      std::free(rep_);
    }
  }
  rep_ = nullptr;
  count_ = 0;
}

namespace {

// A per-process seed, so that keys crafted by a model or a user to collide
// in one process do not collide in another.
uint64_t ProcessSeed() {
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}
const uint64_t kSeed = ProcessSeed();

}  // namespace

uint64_t HashBytes(std::string_view data) {
  // XXH3 (inlined): 16 bytes per step for the 20-100 byte keys tools
  // produce, about half the instructions of an 8-byte multiply-rotate loop.
  return XXH3_64bits_withSeed(data.data(), data.size(), kSeed);
}

}  // namespace toolops
