#include "node/parallel.h"

#include <algorithm>

namespace kvstash::node {
namespace {

// The range of part `i` of `parts` over [0, n).
std::pair<size_t, size_t> Part(size_t n, size_t parts, size_t i) {
  const size_t base = n / parts, extra = n % parts;
  const size_t begin = i * base + std::min(i, extra);
  return {begin, begin + base + (i < extra ? 1 : 0)};
}

}  // namespace

ThreadPool::ThreadPool(size_t threads) {
  for (size_t i = 1; i < std::max<size_t>(threads, 1); ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::ParallelFor(size_t n, const std::function<void(size_t, size_t)>& fn) {
  const size_t parts = threads();
  if (parts == 1 || n < 2) {
    if (n > 0) fn(0, n);
    return;
  }
  {
    MutexLock lock(mu_);
    job_ = &fn;
    job_n_ = n;
    pending_ = workers_.size();
    ++generation_;
  }
  start_cv_.notify_all();
  const auto [begin, end] = Part(n, parts, 0);
  if (begin < end) fn(begin, end);
  MutexLock lock(mu_);
  lock.Wait(done_cv_, [&] { mu_.AssertHeld(); return pending_ == 0; });
  job_ = nullptr;
}

void ThreadPool::WorkerLoop(size_t index) {
  uint64_t seen = 0;
  MutexLock lock(mu_);
  while (true) {
    lock.Wait(start_cv_, [&] { mu_.AssertHeld(); return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    const auto* fn = job_;
    const size_t n = job_n_;
    lock.Unlock();
    const auto [begin, end] = Part(n, threads(), index);
    if (begin < end) (*fn)(begin, end);
    lock.Lock();
    if (--pending_ == 0) done_cv_.notify_one();
  }
}

}  // namespace kvstash::node
