// include/toolops/bytes.h
//
// Bytes: an immutable, reference-counted byte buffer. Cached values are held
// as Bytes, so a cache hit hands out a reference (one atomic increment, or
// none through SpareRefs) and never copies the payload. One allocation holds
// the count, the size and the bytes.
//
// A Bytes object is a value: copy it freely. Different Bytes objects may be
// used from different threads at once, even when they share one buffer. The
// buffer never changes after construction.
//
// SpareRefs (below) lets one thread hand out and take back references to a
// buffer it hands out often without touching the shared count.

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
  friend class SpareRefs;
  struct Rep {
    std::atomic<uint32_t> refs;
    uint32_t size;
  };
  static_assert(sizeof(Rep) == 8, "the header is meant to cost 8 bytes");

  void Ref() const {
    if (rep_) rep_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  void Unref();
  void UnrefSlow();

  Rep* rep_ = nullptr;
};

namespace internal {
// The spares of the buffer this thread handed out last through a SpareRefs,
// which a Bytes of that buffer dropped on this thread returns to (null when
// none: the SpareRefs let its buffer go).
struct SpareReturn {
  const void* rep = nullptr;
  uint32_t* count = nullptr;
};
extern constinit thread_local SpareReturn spare_return;
}  // namespace internal

inline void Bytes::Unref() {
  if (rep_ == nullptr) return;
  if (rep_ == internal::spare_return.rep) {
    // The reference moves back to this thread's spares: still counted.
    ++*internal::spare_return.count;
    return;
  }
  UnrefSlow();
}

// References to one buffer that one thread keeps in reserve: counted in the
// buffer's shared count but held by no Bytes object yet. Take() hands one
// out with no atomic operation (one atomic add refills kBatch at a time), and
// when the Bytes last handed out by this thread is destroyed on this thread,
// its reference comes back here instead of leaving the shared count. Copies
// of the handed-out Bytes, and Bytes destroyed on other threads, count
// through the shared count as usual.
//
// For a hot per-thread cache: the memory store's front cache keeps one per
// slot, so that a repeated hit costs no atomic read-modify-write.
//
// Not thread-safe: a SpareRefs belongs to one thread, which alone may call
// it and must destroy it (a thread_local, or an object of one).
class SpareRefs {
 public:
  SpareRefs() = default;
  ~SpareRefs() { Release(); }
  SpareRefs(const SpareRefs&) = delete;
  SpareRefs& operator=(const SpareRefs&) = delete;

  // A new reference to `value`'s buffer, as a copy of `value` would be. When
  // `value` holds another buffer than the spares held here, those are given
  // back first.
  Bytes Take(const Bytes& value) {
    Bytes out;
    if (value.rep_ != rep_ || count_ == 0) [[unlikely]] {
      if (value.rep_ == nullptr) return out;
      Refill(value.rep_);
    }
    --count_;
    internal::spare_return = internal::SpareReturn{rep_, &count_};
    out.rep_ = rep_;
    return out;
  }
  // Gives every spare reference back to the shared count.
  void Release() {
    if (count_ != 0 || rep_ != nullptr) ReleaseSlow();
  }

 private:
  static constexpr uint32_t kBatch = 32;
  void ReleaseSlow();
  // Binds to `rep` (giving back the spares of another buffer) and adds a
  // batch of spares.
  void Refill(Bytes::Rep* rep);

  Bytes::Rep* rep_ = nullptr;
  uint32_t count_ = 0;
};

// A fast 64-bit hash of a byte string, used for in-memory tables. Not for
// keys that leave the process (those are SHA-256 digests).
uint64_t HashBytes(std::string_view data);

}  // namespace toolops

#endif  // TOOLOPS_BYTES_H_
