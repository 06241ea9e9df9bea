// src/base/bytes.cc

#include "toolops/bytes.h"

#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <new>
#include <stdexcept>

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
  std::memcpy(rep + 1, data.data(), data.size());
  out.rep_ = rep;
  return out;
}

void Bytes::Unref() {
  if (rep_ == nullptr) return;
  // Acquire-release so that the last owner sees every write made before the
  // other owners let go (the usual reference-count rule).
  if (rep_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    rep_->~Rep();
    std::free(rep_);
  }
  rep_ = nullptr;
}

uint64_t HashBytes(std::string_view data) {
  // libstdc++'s string_view hash is a 64-bit Murmur variant: fast and well
  // mixed for the short keys tools produce.
  return std::hash<std::string_view>{}(data);
}

}  // namespace toolops
