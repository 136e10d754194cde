// TransferServer: the daemon half of the data plane. Registers the daemon's memory (the DRAM
// arena) with UCX and keeps one worker progressing on a dedicated thread, so that peers can read
// and write that memory with one-sided operations. Transports whose one-sided operations need the
// target's help (tcp) are served by that thread; shared-memory transports (cma, posix) never
// involve it.
//
// Progress model: one progress thread; it sleeps on the worker's event fd when idle
// (UCP_FEATURE_WAKEUP), so an idle daemon burns no CPU.
//
// Thread-safety: accessors may be called from any thread; Start/Stop by the owner.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "transfer/memory_region.h"
#include "transfer/ucx_context.h"
#include "transfer/ucx_worker.h"

namespace kvstash::transfer {

class TransferServer {
 public:
  // Registers [base, base + length) and starts the progress thread. Peers' one-sided operations
  // on such memory may be emulated by UCX with messages this server's progress thread answers.
  static Result<std::unique_ptr<TransferServer>> Start(const UcxOptions& options, void* base, size_t length);
  // Has UCX allocate `length` bytes (shared memory when it can) and serves them; memory() is the
  // region. Peers on the same host then map it and move bytes with their own CPU, truly one-sided.
  static Result<std::unique_ptr<TransferServer>> StartAllocated(const UcxOptions& options, size_t length);

  std::byte* memory() const { return region_->base(); }
  size_t memory_bytes() const { return region_->length(); }
  ~TransferServer();  // stops

  const std::string& worker_address() const { return worker_address_; }
  const std::string& packed_rkey() const { return region_->packed_rkey(); }
  const std::string& transports() const { return transports_; }

  void Stop();

 private:
  TransferServer() = default;
  void ProgressLoop();

  std::shared_ptr<UcxContext> context_;
  std::unique_ptr<MemoryRegion> region_;
  std::unique_ptr<UcxWorker> worker_;  // touched only by the progress thread after Start
  std::string worker_address_;
  std::string transports_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace kvstash::transfer
