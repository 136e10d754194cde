// The pread/pwrite IoEngine (contract in tiers/io_engine.h): queue_depth worker threads share one
// job queue; each Run() enqueues its ops and waits until its own ops are all done, so concurrent
// callers share the workers and the queue depth.
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "tiers/io_engine.h"

namespace kvstash::tiers {
namespace {

struct Batch {
  std::mutex mu;
  std::condition_variable cv;
  size_t remaining = 0;
};

struct Job {
  IoOp* op;
  Batch* batch;
};

class ThreadPoolEngine final : public IoEngine {
 public:
  ThreadPoolEngine(std::vector<int> fds, uint32_t threads) : fds_(std::move(fds)) {
    for (uint32_t i = 0; i < threads; ++i) workers_.emplace_back([this] { Work(); });
  }
  ~ThreadPoolEngine() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  std::string_view name() const override { return "threads"; }
  bool buffers_registered() const override { return false; }

  Status Run(std::span<IoOp> ops) override {
    if (ops.empty()) return Status::Ok();
    Batch batch;
    batch.remaining = ops.size();
    {
      std::lock_guard lock(mu_);
      for (IoOp& op : ops) jobs_.push_back({&op, &batch});
    }
    cv_.notify_all();
    std::unique_lock lock(batch.mu);
    batch.cv.wait(lock, [&] { return batch.remaining == 0; });
    return Status::Ok();
  }

 private:
  void Work() {
    for (;;) {
      Job job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        job = jobs_.front();
        jobs_.pop_front();
      }
      Execute(*job.op);
      std::lock_guard lock(job.batch->mu);
      if (--job.batch->remaining == 0) job.batch->cv.notify_all();
    }
  }

  void Execute(IoOp& op) const {
    if (op.file >= fds_.size()) {
      op.result = -EBADF;
      return;
    }
    const int fd = fds_[op.file];
    uint32_t done = 0;
    while (done < op.len) {
      const ssize_t n = op.write ? ::pwrite(fd, op.buf + done, op.len - done, static_cast<off_t>(op.offset + done))
                                 : ::pread(fd, op.buf + done, op.len - done, static_cast<off_t>(op.offset + done));
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        op.result = -errno;
        return;
      }
      if (n == 0) {
        op.result = -EIO;
        return;
      }
      done += static_cast<uint32_t>(n);
    }
    op.result = op.len;
  }

  const std::vector<int> fds_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace

Result<std::unique_ptr<IoEngine>> MakeThreadPoolEngine(const IoEngineOptions& options) {
  if (options.queue_depth == 0) return InvalidArgument("queue_depth must be > 0");
  return std::unique_ptr<IoEngine>(std::make_unique<ThreadPoolEngine>(options.fds, options.queue_depth));
}

}  // namespace kvstash::tiers
