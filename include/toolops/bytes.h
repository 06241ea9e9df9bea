// include/toolops/bytes.h
//
// Bytes: an immutable, reference-counted byte buffer. Cached values are held
// as Bytes, so a cache hit hands out a reference (one atomic increment) and
// never copies the payload. One allocation holds the count, the size and the
// bytes.
//
// A Bytes object is a value: copy it freely. Different Bytes objects may be
// used from different threads at once, even when they share one buffer. The
// buffer never changes after construction.

#ifndef TOOLOPS_BYTES_H_
#define TOOLOPS_BYTES_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace toolops {

class Bytes {
 public:
  // The empty buffer. Allocates nothing.
  Bytes() noexcept = default;
  // Copies `data` into a new buffer.
  static Bytes Copy(std::string_view data);

  Bytes(const Bytes& other) noexcept : rep_(other.rep_) { Ref(); }
  Bytes(Bytes&& other) noexcept : rep_(std::exchange(other.rep_, nullptr)) {}
  Bytes& operator=(const Bytes& other) noexcept {
    Bytes(other).swap(*this);
    return *this;
  }
  Bytes& operator=(Bytes&& other) noexcept {
    Bytes(std::move(other)).swap(*this);
    return *this;
  }
  ~Bytes() { Unref(); }

  void swap(Bytes& other) noexcept { std::swap(rep_, other.rep_); }

  const char* data() const { return rep_ ? reinterpret_cast<const char*>(rep_ + 1) : ""; }
  size_t size() const { return rep_ ? rep_->size : 0; }
  bool empty() const { return size() == 0; }
  std::string_view view() const { return std::string_view(data(), size()); }
  std::string ToString() const { return std::string(view()); }

  // Bytes the buffer occupies on the heap (header and payload), 0 if empty.
  size_t footprint() const { return rep_ ? sizeof(Rep) + rep_->size : 0; }

  friend bool operator==(const Bytes& a, const Bytes& b) { return a.view() == b.view(); }

 private:
  struct Rep {
    std::atomic<uint32_t> refs;
    uint32_t size;
  };
  static_assert(sizeof(Rep) == 8, "the header is meant to cost 8 bytes");

  void Ref() const {
    if (rep_) rep_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  void Unref() {
    if (rep_ != nullptr) UnrefSlow();
  }
  void UnrefSlow();

  Rep* rep_ = nullptr;
};

// A fast 64-bit hash of a byte string, used for in-memory tables. Not for
// keys that leave the process (those are SHA-256 digests).
uint64_t HashBytes(std::string_view data);

}  // namespace toolops

#endif  // TOOLOPS_BYTES_H_
