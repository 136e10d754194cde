// The io_uring IoEngine (contract in tiers/io_engine.h).
//
// Each ring serves one Run() at a time under its own mutex, so no two threads ever touch one
// ring's submission or completion queue. Within a Run the ops wait in a ready list; as many as fit
// under queue_depth are queued, then one io_uring_submit_and_wait() both submits them and blocks
// for the first completion, and every completion already posted is reaped from the shared ring
// without a further syscall. Short transfers and -EAGAIN/-EINTR go back to the ready list.
#include <liburing.h>
#include <sys/uio.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "tiers/io_engine.h"

namespace kvstash::tiers {
namespace {

constexpr uint64_t kMaxFixedBuffer = 1ULL << 30;  // the kernel's limit per registered buffer

struct FixedRegion {
  std::byte* begin;
  std::byte* end;
  int index;
};

struct Ring {
  std::mutex mu;
  io_uring ring{};
  bool initialized = false;
  bool broken = false;  // a submit failed with ops possibly still in flight: never used again
  ~Ring() {
    if (initialized) io_uring_queue_exit(&ring);
  }
};

std::string ErrnoText(int err) { return std::string(std::strerror(err)); }

class UringEngine final : public IoEngine {
 public:
  explicit UringEngine(uint32_t queue_depth) : queue_depth_(queue_depth) {}

  Status Init(const IoEngineOptions& o) {
    std::vector<iovec> iovecs;
    for (const auto& region : o.memory) {
      for (uint64_t off = 0; off < region.size(); off += kMaxFixedBuffer) {
        const uint64_t len = std::min<uint64_t>(kMaxFixedBuffer, region.size() - off);
        iovecs.push_back({region.data() + off, static_cast<size_t>(len)});
      }
    }
    const uint32_t rings = std::max<uint32_t>(1, o.rings);
    for (uint32_t i = 0; i < rings; ++i) {
      auto ring = std::make_unique<Ring>();
      io_uring_params params{};
      params.flags = IORING_SETUP_COOP_TASKRUN;
      int rc = io_uring_queue_init_params(queue_depth_, &ring->ring, &params);
      if (rc == -EINVAL) {  // kernels before 5.19 lack COOP_TASKRUN
        params = io_uring_params{};
        rc = io_uring_queue_init_params(queue_depth_, &ring->ring, &params);
      }
      if (rc < 0) return Unavailable("io_uring_queue_init failed: " + ErrnoText(-rc));
      ring->initialized = true;
      if (!o.fds.empty()) {
        rc = io_uring_register_files(&ring->ring, o.fds.data(), static_cast<unsigned>(o.fds.size()));
        if (rc < 0) return Unavailable("io_uring_register_files failed: " + ErrnoText(-rc));
      }
      if (!iovecs.empty() && (i == 0 || buffers_registered_)) {
        rc = io_uring_register_buffers(&ring->ring, iovecs.data(), static_cast<unsigned>(iovecs.size()));
        buffers_registered_ = rc == 0;
        if (rc < 0) register_error_ = ErrnoText(-rc);
      }
      rings_.push_back(std::move(ring));
    }
    if (buffers_registered_) {
      for (size_t i = 0; i < iovecs.size(); ++i) {
        auto* base = static_cast<std::byte*>(iovecs[i].iov_base);
        regions_.push_back({base, base + iovecs[i].iov_len, static_cast<int>(i)});
      }
      std::sort(regions_.begin(), regions_.end(),
                [](const FixedRegion& a, const FixedRegion& b) { return a.begin < b.begin; });
    }
    return Status::Ok();
  }

  std::string_view name() const override { return "uring"; }
  bool buffers_registered() const override { return buffers_registered_; }

  Status Run(std::span<IoOp> ops) override { return RunEach(ops, nullptr); }

  Status RunEach(std::span<IoOp> ops, const CompletionFn& on_complete) override {
    if (ops.empty()) return Status::Ok();
    for (auto& ring : rings_) {
      std::unique_lock lock(ring->mu, std::try_to_lock);
      if (lock.owns_lock()) return RunOnRing(*ring, ops, on_complete);
    }
    Ring& ring = *rings_[next_ring_.fetch_add(1, std::memory_order_relaxed) % rings_.size()];
    std::lock_guard lock(ring.mu);
    return RunOnRing(ring, ops, on_complete);
  }

 private:
  // The fixed buffer holding [buf, buf + len), or -1.
  int FixedIndex(const std::byte* buf, uint32_t len) const {
    auto it = std::upper_bound(regions_.begin(), regions_.end(), buf,
                               [](const std::byte* p, const FixedRegion& r) { return p < r.begin; });
    if (it == regions_.begin()) return -1;
    --it;
    return buf >= it->begin && buf + len <= it->end ? it->index : -1;
  }

  // REQUIRES: ring.mu. Completed ops are reported only after the queue has been refilled and
  // submitted, so the device works on the next ops while on_complete runs.
  Status RunOnRing(Ring& r, std::span<IoOp> ops, const CompletionFn& on_complete) {
    if (r.broken) return Internal("io_uring ring is unusable after an earlier submit failure");
    std::vector<uint32_t> done_bytes(ops.size(), 0);
    std::deque<size_t> ready;
    for (size_t i = 0; i < ops.size(); ++i) {
      ops[i].result = 0;
      ready.push_back(i);
    }
    size_t in_flight = 0;
    size_t finished = 0;
    std::vector<size_t> completed;
    while (finished < ops.size() || !completed.empty()) {
      while (in_flight < queue_depth_ && !ready.empty()) {
        io_uring_sqe* sqe = io_uring_get_sqe(&r.ring);
        if (sqe == nullptr) break;
        const size_t i = ready.front();
        ready.pop_front();
        IoOp& op = ops[i];
        std::byte* buf = op.buf + done_bytes[i];
        const uint32_t len = op.len - done_bytes[i];
        const uint64_t off = op.offset + done_bytes[i];
        const int fixed = FixedIndex(buf, len);
        const int file = static_cast<int>(op.file);
        if (op.write) {
          if (fixed >= 0) {
            io_uring_prep_write_fixed(sqe, file, buf, len, off, fixed);
          } else {
            io_uring_prep_write(sqe, file, buf, len, off);
          }
        } else {
          if (fixed >= 0) {
            io_uring_prep_read_fixed(sqe, file, buf, len, off, fixed);
          } else {
            io_uring_prep_read(sqe, file, buf, len, off);
          }
        }
        sqe->flags |= IOSQE_FIXED_FILE;
        io_uring_sqe_set_data64(sqe, i);
        ++in_flight;
      }
      if (!completed.empty()) {
        const int rc = io_uring_submit(&r.ring);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
          r.broken = true;
          return Internal("io_uring_submit failed: " + ErrnoText(-rc));
        }
        for (size_t i : completed) on_complete(i);
        completed.clear();
        continue;
      }
      int rc = io_uring_submit_and_wait(&r.ring, 1);
      if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
        // Ops still in flight may complete later into their buffers; retire the ring so no later
        // call reuses it, and let the caller fail the batch.
        r.broken = true;
        return Internal("io_uring_submit_and_wait failed: " + ErrnoText(-rc));
      }
      unsigned head;
      unsigned seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(&r.ring, head, cqe) {
        ++seen;
        const size_t i = static_cast<size_t>(io_uring_cqe_get_data64(cqe));
        const int res = cqe->res;
        --in_flight;
        if (res == -EAGAIN || res == -EINTR) {
          ready.push_back(i);
        } else if (res < 0) {
          ops[i].result = res;
          ++finished;
          if (on_complete) completed.push_back(i);
        } else if (res == 0) {
          ops[i].result = -EIO;  // end of file inside a preallocated segment
          ++finished;
          if (on_complete) completed.push_back(i);
        } else {
          done_bytes[i] += static_cast<uint32_t>(res);
          if (done_bytes[i] < ops[i].len) {
            ready.push_back(i);
          } else {
            ops[i].result = ops[i].len;
            ++finished;
            if (on_complete) completed.push_back(i);
          }
        }
      }
      io_uring_cq_advance(&r.ring, seen);
    }
    return Status::Ok();
  }

  const uint32_t queue_depth_;
  std::vector<std::unique_ptr<Ring>> rings_;
  std::vector<FixedRegion> regions_;
  bool buffers_registered_ = false;
  std::string register_error_;
  std::atomic<uint64_t> next_ring_{0};
};

}  // namespace

Result<std::unique_ptr<IoEngine>> MakeUringEngine(const IoEngineOptions& options) {
  if (options.queue_depth == 0) return InvalidArgument("queue_depth must be > 0");
  auto engine = std::make_unique<UringEngine>(options.queue_depth);
  KVSTASH_RETURN_IF_ERROR(engine->Init(options));
  return std::unique_ptr<IoEngine>(std::move(engine));
}

}  // namespace kvstash::tiers
