// IoEngine: runs batches of positioned reads and writes against a fixed set of files. It is the
// OS seam of the SSD tier (DESIGN.md §3, tiers/): SsdTier never calls pread/pwrite or io_uring
// itself, so tests can wrap an engine to make I/O fail or fill the disk.
//
// Two implementations:
//  * "uring" (tiers/uring_engine.cc): liburing, files registered with the ring (IOSQE_FIXED_FILE),
//    the memory regions given at creation registered as fixed buffers (READ_FIXED/WRITE_FIXED
//    for any op whose buffer lies inside one), a whole batch queued before one submit, up to
//    queue_depth ops in flight, completions reaped in batches from the shared completion ring.
//  * "threads" (tiers/thread_pool_engine.cc): queue_depth worker threads doing pread/pwrite —
//    the fallback when io_uring cannot be set up (old kernel, seccomp, io_uring_disabled).
//
// Sync() is the other half of the seam: SsdTier makes segment writes durable only through it.
//
// Contract: Run() executes every op of the batch, resubmitting the remainder of short transfers,
// keeps at most queue_depth of them in flight at once, and returns when all are done. Each op's
// `result` is then its byte count (== len) or -errno. The call's Status is non-OK only when the
// engine itself failed (the ring broke); per-op errors are reported only in `result`.
//
// Thread-safety: Run() may be called from any number of threads at once. The uring engine owns
// `rings` rings, each used by one caller at a time; the thread pool shares its workers.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvstash/result.h"

namespace kvstash::tiers {

struct IoOp {
  uint32_t file = 0;          // index into the files given at creation
  bool write = false;
  std::byte* buf = nullptr;   // aligned to the device's logical block for O_DIRECT files
  uint32_t len = 0;
  uint64_t offset = 0;
  int64_t result = 0;         // out: bytes transferred (== len) or -errno
};

struct IoEngineOptions {
  std::vector<int> fds;                          // open files; the caller keeps them open
  std::vector<std::span<std::byte>> memory;      // regions to register as fixed buffers
  uint32_t queue_depth = 32;
  uint32_t rings = 2;                            // uring only: concurrent callers served at once
};

class IoEngine {
 public:
  virtual ~IoEngine() = default;
  virtual std::string_view name() const = 0;  // "uring" | "threads"
  virtual Status Run(std::span<IoOp> ops) = 0;
  // Run(), calling on_complete(i) on the calling thread once for each op i whose result is final,
  // as soon as the engine knows it. The uring engine calls it while later ops of the batch are
  // still in flight, so per-op work (checksums, copies) overlaps the device's; the default
  // implementation calls it for every op after Run() returns. When the call's Status is non-OK,
  // ops not yet reported are never reported. on_complete must not call back into the engine or
  // take locks that a caller of Run() may hold.
  using CompletionFn = std::function<void(size_t)>;
  virtual Status RunEach(std::span<IoOp> ops, const CompletionFn& on_complete) {
    KVSTASH_RETURN_IF_ERROR(Run(ops));
    for (size_t i = 0; i < ops.size(); ++i) on_complete(i);
    return Status::Ok();
  }
  // Makes every completed write to these files durable (fdatasync each); INTERNAL naming the
  // error otherwise. The seam through which a power-loss test learns what was synced.
  virtual Status Sync(std::span<const int> fds) {
    for (int fd : fds) {
      if (::fdatasync(fd) != 0) return Internal(std::string("fdatasync failed: ") + std::strerror(errno));
    }
    return Status::Ok();
  }
  // True when buffers inside the registered memory go out as fixed-buffer ops.
  virtual bool buffers_registered() const = 0;
};

// io_uring engine. UNAVAILABLE (with the kernel's reason) when a ring cannot be created or the
// files cannot be registered. Failure to register buffers (RLIMIT_MEMLOCK) is not an error: the
// engine then issues plain READ/WRITE ops and buffers_registered() answers false.
Result<std::unique_ptr<IoEngine>> MakeUringEngine(const IoEngineOptions& options);
// pread/pwrite on queue_depth threads.
Result<std::unique_ptr<IoEngine>> MakeThreadPoolEngine(const IoEngineOptions& options);

}  // namespace kvstash::tiers
