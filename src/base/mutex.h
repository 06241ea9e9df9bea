// src/base/mutex.h
//
// Mutex and MutexLock: std::mutex with clang thread-safety annotations, so
// that members marked TOOLOPS_GUARDED_BY(mu_) are checked at compile time by
// clang's -Wthread-safety. Under GCC the annotations compile to nothing.
// Mutex is safe for concurrent use (it is a mutex); MutexLock is a scoped
// holder used by one thread.

#ifndef TOOLOPS_BASE_MUTEX_H_
#define TOOLOPS_BASE_MUTEX_H_

#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define TOOLOPS_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define TOOLOPS_THREAD_ANNOTATION(x)
#endif

#define TOOLOPS_CAPABILITY(x) TOOLOPS_THREAD_ANNOTATION(capability(x))
#define TOOLOPS_SCOPED_CAPABILITY TOOLOPS_THREAD_ANNOTATION(scoped_lockable)
#define TOOLOPS_GUARDED_BY(x) TOOLOPS_THREAD_ANNOTATION(guarded_by(x))
#define TOOLOPS_PT_GUARDED_BY(x) TOOLOPS_THREAD_ANNOTATION(pt_guarded_by(x))
#define TOOLOPS_REQUIRES(...) TOOLOPS_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define TOOLOPS_EXCLUDES(...) TOOLOPS_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define TOOLOPS_ACQUIRE(...) TOOLOPS_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define TOOLOPS_RELEASE(...) TOOLOPS_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TOOLOPS_NO_THREAD_SAFETY_ANALYSIS TOOLOPS_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace toolops {

class TOOLOPS_CAPABILITY("mutex") Mutex {
 public:
  void Lock() TOOLOPS_ACQUIRE() { mu_.lock(); }
  // Takes the lock only if it is free; true when taken.
  bool TryLock() TOOLOPS_THREAD_ANNOTATION(try_acquire_capability(true)) { return mu_.try_lock(); }
  void Unlock() TOOLOPS_RELEASE() { mu_.unlock(); }
  // For std::condition_variable_any and std::unique_lock.
  void lock() TOOLOPS_ACQUIRE() { mu_.lock(); }
  void unlock() TOOLOPS_RELEASE() { mu_.unlock(); }
  // Documents (and, under clang, lets the analysis assume) that the caller
  // holds the lock.
  void AssertHeld() const TOOLOPS_THREAD_ANNOTATION(assert_capability(this)) {}

 private:
  std::mutex mu_;
};

class TOOLOPS_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) TOOLOPS_ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() TOOLOPS_RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

}  // namespace toolops

#endif  // TOOLOPS_BASE_MUTEX_H_
