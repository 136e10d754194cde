// Mutexes the compiler can check (common/thread_annotations.h): Mutex and SharedMutex wrap the
// standard ones with clang's capability attributes; MutexLock, ReaderLock and WriterLock hold them
// for a scope. Members a mutex protects are declared GUARDED_BY(mu_), functions that expect it held
// REQUIRES(mu_), so a clang build with -Wthread-safety rejects code that breaks the rule.
//
// Condition variables: MutexLock::Wait* take a std::condition_variable and release the mutex while
// waiting, as std::condition_variable::wait does; the mutex is held again when they return. A
// predicate runs with the mutex held, but the analysis cannot see that inside a lambda: start such
// a lambda with `mu_.AssertHeld();`.
//
// Lock order, checked at run time in debug builds: a Mutex may be given a rank (Mutex(rank)); taking
// a ranked mutex while this thread holds one of an equal or higher rank aborts, naming both ranks.
// The check is on where KVSTASH_CHECK_LOCK_ORDER is 1 (the default without NDEBUG; the sanitizer
// build sets it too) and costs nothing elsewhere. Ranks are those of docs/ARCHITECTURE.md §6.
//
// Thread-safety: as the standard types they wrap.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>

#include "common/thread_annotations.h"

namespace kvstash {

namespace lock_order {
// Ranks of the locks that callbacks cross (docs/ARCHITECTURE.md §6): a thread takes them in
// increasing rank. 0 means unranked (never checked).
enum Rank : int {
  kUnranked = 0,
  kHbmTier = 10,           // the HBM tier's policy mutex
  kDramTier = 20,          // the DRAM tier's policy mutex
  kDemotionQueue = 30,     // the TierManager's demotion queue
  kSsdTier = 40,           // the SSD tier's own locks
  kAllocator = 50,         // a BlockAllocator
  kReceiveRanges = 60,     // a TransferServer's ranges of unfinished receives (leaf; the DRAM tier
                           // asks it under its policy mutex: DramTierOptions::region_in_use)
};
#ifndef KVSTASH_CHECK_LOCK_ORDER
#ifdef NDEBUG
#define KVSTASH_CHECK_LOCK_ORDER 0
#else
#define KVSTASH_CHECK_LOCK_ORDER 1
#endif
#endif
// Records that this thread takes (releases) a lock of `rank`; NoteAcquire aborts on an order
// violation. Always defined (tests call them directly); Mutex calls them only where
// KVSTASH_CHECK_LOCK_ORDER is 1.
void NoteAcquire(int rank, const void* mutex);
void NoteRelease(int rank, const void* mutex);
}  // namespace lock_order

class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  explicit Mutex(int rank) : rank_(rank) {}
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ACQUIRE() {
    if (KVSTASH_CHECK_LOCK_ORDER && rank_ != 0) lock_order::NoteAcquire(rank_, this);
    mu_.lock();
  }
  void Unlock() RELEASE() {
    mu_.unlock();
    if (KVSTASH_CHECK_LOCK_ORDER && rank_ != 0) lock_order::NoteRelease(rank_, this);
  }
  bool TryLock() TRY_ACQUIRE(true) {
    if (!mu_.try_lock()) return false;
    if (KVSTASH_CHECK_LOCK_ORDER && rank_ != 0) lock_order::NoteAcquire(rank_, this);
    return true;
  }
  // For the analysis only: states that the calling thread holds this mutex.
  void AssertHeld() const ASSERT_CAPABILITY(this) {}

  // BasicLockable, for std::scoped_lock and std::condition_variable_any.
  void lock() ACQUIRE() { Lock(); }
  void unlock() RELEASE() { Unlock(); }

 private:
  friend class MutexLock;
  std::mutex mu_;
  int rank_ = 0;
};

// Holds a Mutex for its scope; can wait on a condition variable.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.Lock(); }
  ~MutexLock() RELEASE() {
    if (held_) mu_.Unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  // Early release and re-acquire within the scope.
  void Unlock() RELEASE() {
    mu_.Unlock();
    held_ = false;
  }
  void Lock() ACQUIRE() {
    mu_.Lock();
    held_ = true;
  }

  void Wait(std::condition_variable& cv) {
    Adopted adopted(mu_);
    cv.wait(adopted.lock);
  }
  template <typename Predicate>
  void Wait(std::condition_variable& cv, Predicate pred) {
    Adopted adopted(mu_);
    cv.wait(adopted.lock, pred);
  }
  template <typename Rep, typename Period, typename Predicate>
  bool WaitFor(std::condition_variable& cv, const std::chrono::duration<Rep, Period>& timeout, Predicate pred) {
    Adopted adopted(mu_);
    return cv.wait_for(adopted.lock, timeout, pred);
  }
  template <typename Clock, typename Duration, typename Predicate>
  bool WaitUntil(std::condition_variable& cv, const std::chrono::time_point<Clock, Duration>& deadline,
                 Predicate pred) {
    Adopted adopted(mu_);
    return cv.wait_until(adopted.lock, deadline, pred);
  }
  template <typename Rep, typename Period>
  std::cv_status WaitFor(std::condition_variable& cv, const std::chrono::duration<Rep, Period>& timeout) {
    Adopted adopted(mu_);
    return cv.wait_for(adopted.lock, timeout);
  }

 private:
  // A std::unique_lock over the already-held std::mutex, handed back (not unlocked) at scope end,
  // so that std::condition_variable can release and re-take it while waiting.
  struct Adopted {
    explicit Adopted(Mutex& m) : lock(m.mu_, std::adopt_lock) {}
    ~Adopted() { lock.release(); }
    std::unique_lock<std::mutex> lock;
  };
  Mutex& mu_;
  bool held_ = true;
};

class CAPABILITY("shared_mutex") SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  void LockShared() ACQUIRE_SHARED() { mu_.lock_shared(); }
  void UnlockShared() RELEASE_SHARED() { mu_.unlock_shared(); }
  void AssertHeld() const ASSERT_CAPABILITY(this) {}
  void AssertReaderHeld() const ASSERT_SHARED_CAPABILITY(this) {}

 private:
  std::shared_mutex mu_;
};

// Holds a SharedMutex exclusively for its scope.
class SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.Lock(); }
  ~WriterLock() RELEASE() { mu_.Unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex& mu_;
};

// Holds a SharedMutex shared for its scope.
class SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex& mu) ACQUIRE_SHARED(mu) : mu_(mu) { mu_.LockShared(); }
  ~ReaderLock() RELEASE() { mu_.UnlockShared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex& mu_;
};

}  // namespace kvstash
