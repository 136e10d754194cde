// TransferEngine: the client half of kvstash's data plane. Moves bytes between the caller's memory
// and a daemon's registered memory with batched one-sided UCX get/put (DESIGN.md §4).
//
// Where UCX can map the target's memory into this process (ucp_rkey_ptr: shared-memory transports
// on one host), an op is a plain memcpy by the calling thread — the daemon's CPU is not involved
// and nothing is posted. Otherwise it is posted as ucp_get_nbx/ucp_put_nbx.
//
// Progress model: the engine owns a pool of `workers` UCX workers, each behind its own mutex. A
// Run() call takes one worker and progresses it on the calling thread until every operation of
// the batch has completed (puts: remotely, after an endpoint flush). Operations larger than
// `split_bytes` are cut into pieces and spread over several workers, each progressed by its own
// thread for the duration of the call, so one large transfer can use more than one core.
//
// Thread-safety: every public method is safe for concurrent use by multiple threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "transfer/memory_region.h"
#include "transfer/ucx_context.h"

namespace kvstash::transfer {

struct TransferEngineOptions {
  UcxOptions ucx;
  size_t workers = 2;                  // UCX workers in the pool (1..64)
  size_t split_bytes = 8ULL << 20;     // ops above this are split across workers (0 = never split)
  uint64_t timeout_ms = 30'000;        // a batch that has not completed by then fails
  size_t registration_cache_entries = 64;  // caller buffers registered on the fly and kept
};

// How to reach a daemon's registered memory: both fields come from its control plane.
struct RemoteTarget {
  std::string worker_address;  // packed UCX worker address
  std::string packed_rkey;     // packed rkey of the daemon's arena
  // The registered range the rkey covers. When length > 0, Run refuses (INVALID_ARGUMENT, nothing
  // moved) any op that would reach outside it: addresses come from the network.
  uint64_t base = 0;
  uint64_t length = 0;
};

enum class OpKind { kGet, kPut };

struct TransferOp {
  OpKind kind = OpKind::kGet;
  void* local = nullptr;     // caller memory: destination of a get, source of a put
  size_t length = 0;
  uint64_t remote_addr = 0;  // address inside the daemon's registered memory
  Status status;             // filled by Run
};

class TransferEngine {
 public:
  static Result<std::unique_ptr<TransferEngine>> Create(const TransferEngineOptions& options);
  ~TransferEngine();

  // Runs a batch against one daemon and waits for all of it. Returns non-OK only when nothing
  // could be attempted (bad target, no endpoint); per-op failures are in ops[i].status
  // (UNAVAILABLE when the peer failed, DEADLINE_EXCEEDED on timeout). After a peer failure the
  // endpoint is rebuilt on the next call, so a restarted daemon is reached again.
  Status Run(const RemoteTarget& target, std::span<TransferOp> ops);
  // Forgets the endpoint and keys of a target that is gone (a daemon that restarted), so that
  // resources tied to it (mappings of its memory) are released now rather than at exit.
  void ForgetTarget(const RemoteTarget& target);

  // Run on a background thread; ops must stay alive until the future is ready.
  std::future<Status> RunAsync(const RemoteTarget& target, std::span<TransferOp> ops);

  // Registers caller memory for zero-copy transfers (engines that preallocate KV pools call this
  // once). Ops whose local range lies inside a registered buffer use its memory handle; others go
  // through UCX's own registration cache. INVALID_ARGUMENT for an empty range.
  Status RegisterBuffer(void* base, size_t length);
  // NOT_FOUND when `base` was not registered.
  Status UnregisterBuffer(void* base);

  const TransferEngineOptions& options() const { return options_; }

 private:
  struct Slot;
  TransferEngine() = default;
  Status RunOnWorker(Slot& slot, const RemoteTarget& target, std::span<TransferOp*> ops);
  ucp_mem_h FindMemh(const void* p, size_t n);

  TransferEngineOptions options_;
  std::shared_ptr<UcxContext> context_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::atomic<size_t> next_slot_{0};
  std::mutex regions_mu_;
  std::vector<std::unique_ptr<MemoryRegion>> regions_;  // guarded by regions_mu_
};

}  // namespace kvstash::transfer
