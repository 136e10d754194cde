// ParallelFor: splits [0, n) into contiguous ranges run on a fixed pool of threads, and waits.
// Each index is handled by exactly one thread and the caller's function decides the order of
// work within its range, so results do not depend on the number of threads (the CPU engine's
// determinism rests on this: every output element is reduced by one thread, in index order).
//
// Thread-safety: one ParallelFor at a time per pool (the engine runs one forward step at a time).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <thread>
#include <vector>

#include "common/mutex.h"

namespace kvstash::node {

class ThreadPool {
 public:
  // `threads` >= 1; the calling thread is one of them, so threads - 1 are started.
  explicit ThreadPool(size_t threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t threads() const { return workers_.size() + 1; }
  // Calls fn(begin, end) over disjoint ranges covering [0, n); returns when all are done.
  void ParallelFor(size_t n, const std::function<void(size_t, size_t)>& fn);

 private:
  void WorkerLoop(size_t index);

  std::vector<std::thread> workers_;
  Mutex mu_;
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(size_t, size_t)>* job_ GUARDED_BY(mu_) = nullptr;
  size_t job_n_ GUARDED_BY(mu_) = 0;
  uint64_t generation_ GUARDED_BY(mu_) = 0;
  size_t pending_ GUARDED_BY(mu_) = 0;
  bool stop_ GUARDED_BY(mu_) = false;
};

}  // namespace kvstash::node
