// TransferEngine: the client half of kvstash's data plane. Moves bytes between the caller's memory
// and a daemon's registered memory (docs/ARCHITECTURE.md §4), with one of two protocols per target:
//
// * one-sided — where UCX can map the target's memory into this process (ucp_rkey_ptr:
//   shared-memory transports on one host), an op is a plain memcpy by the calling thread — the
//   daemon's CPU is not involved and nothing is posted. Otherwise it is posted as
//   ucp_get_nbx/ucp_put_nbx.
// * two-sided (daemon-pushed) — a get posts a tag receive straight into the caller's buffer and
//   asks the daemon (a small UCX active message carrying the op's grant) to send the bytes from its
//   arena; a put sends the bytes under the tag of a receive the daemon posted at PutBegin, eagerly
//   (UcxOptions::eager_sends: the send completes locally, the daemon need not answer). Used
//   where UCX only emulates one-sided operations (tcp), whose emulation is several times slower
//   than its tagged messages (docs/DATA_PLANE.md has the rule and the figures).
//   An eager get (OpKind::kEagerGet, two-sided only) needs no locate first: it names the key, the
//   daemon sends the block if it holds it in memory, with its size and checksum.
//   An eager put (OpKind::kEagerPut, two-sided only) needs no reservation first: it sends the
//   block's key, size and checksum in a small active message with the bytes right behind it, and
//   waits for the daemon's answer (stored, exists, busy, no space, or why it failed).
//
// Progress model: the engine owns a pool of `workers` UCX workers per protocol (the two-sided
// pool, with its own UCX context, is created on first use), each behind its own mutex. A
// Run() call takes one worker and progresses it on the calling thread until every operation of
// the batch has completed (puts: remotely, after an endpoint flush). Operations larger than
// `split_bytes` are cut into pieces and spread over several workers, each progressed by its own
// thread for the duration of the call, so one large transfer can use more than one core.
//
// Inside (internal to transfer/): batch_plan.h checks a call and deals it over the workers;
// one_sided_batch.h and two_sided_batch.h post and complete one worker's share, one type per op
// kind (two_sided_ops.h); op_outcome.h maps what UCX and the daemon reported to each op's status,
// as pure functions; progress_loop.h is the wait, its deadline on `clock`.
//
// Thread-safety: every public method is safe for concurrent use by multiple threads.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/mutex.h"
#include "kvstash/block_key.h"
#include "kvstash/reuse_advice.h"
#include "transfer/memory_region.h"
#include "transfer/ucx_context.h"

namespace kvstash::transfer {

class UcxWorker;

struct TransferEngineOptions {
  UcxOptions ucx;
  size_t workers = 2;                  // UCX workers in the pool (1..64)
  size_t split_bytes = 8ULL << 20;     // ops above this are split across workers (0 = never split)
  uint64_t timeout_ms = 30'000;        // a batch that has not completed by then fails
  // The time that timeout (and the 10 s connection handshake) is measured on; tests pass their
  // own. Must outlive the engine.
  const Clock* clock = SteadyClock::Default();
  size_t registration_cache_entries = 64;  // caller buffers registered on the fly and kept
};

enum class Protocol { kOneSided, kTwoSided };
std::string_view ToString(Protocol protocol);

// How to reach a daemon's registered memory: both fields come from its control plane.
struct RemoteTarget {
  std::string worker_address;  // packed UCX worker address
  std::string packed_rkey;     // packed rkey of the daemon's arena
  // The registered range the rkey covers. When length > 0, Run refuses (INVALID_ARGUMENT, nothing
  // moved) any op that would reach outside it: addresses come from the network.
  uint64_t base = 0;
  uint64_t length = 0;
  Protocol protocol = Protocol::kOneSided;  // how Run moves bytes to and from this target
  std::string push_worker_address{};  // kTwoSided: the daemon's two-sided worker (its own UCX context)
  // kTwoSided: all the daemon's lanes (push_worker_address is one of them). A batch with no
  // two-phase put is dealt over several of them, one engine worker each (see Run).
  std::vector<std::string> push_lane_addresses{};
};

enum class OpKind { kGet, kPut, kEagerPut, kEagerGet };

struct TransferOp {
  OpKind kind = OpKind::kGet;
  void* local = nullptr;     // caller memory: destination of a get, source of a put
  size_t length = 0;
  uint64_t remote_addr = 0;  // address inside the daemon's registered memory
  Status status;             // filled by Run
  // Two-sided only. A get carries `grant` to the daemon, which checks it before sending (the
  // store puts the block's key, lease and the daemon's seal there: common/read_grant.h; opaque to
  // the engine). A put is sent under `tag`, the tag of the receive the daemon posted for the region;
  // such a put is never split.
  std::array<std::byte, 40> grant{};
  uint64_t tag = 0;
  // kEagerPut only (remote_addr and tag unused): the block the daemon reserves, receives, verifies
  // and commits in one round. `status` is its answer: OK (stored), ALREADY_EXISTS, ABORTED (another
  // writer holds the key), RESOURCE_EXHAUSTED, DATA_LOSS (bytes or checksum wrong), or a transport
  // error. Never split.
  BlockKey key{};
  std::optional<BlockKey> parent{};
  uint64_t checksum = 0;  // filled by Run: the XXH3-64 of the bytes it sent (common/checksum.h)
  bool pin = false;
  std::optional<ReuseAdvice> advice{};  // for the daemon's eviction policy
  // kEagerGet uses `key` (remote_addr unused; `length` is the room in `local`). On OK the block's
  // bytes are in local[0, got_size) and got_checksum is the daemon's checksum of them (the caller
  // verifies). Otherwise `status` is NOT_FOUND (a miss), FAILED_PRECONDITION (stored where the
  // daemon cannot send it from now: locate it the usual way), OUT_OF_RANGE (larger than `length`)
  // or a transport error. Never split.
  uint64_t got_size = 0;
  uint64_t got_checksum = 0;
  // `local` is CUDA device memory (a UCX that moves it is needed). UCX's CUDA transports work in
  // the CUDA context current on the thread that progresses the worker, which is the caller's only:
  // a batch holding such an op is never split or dealt over lanes to the engine's helper threads.
  bool device_local = false;
};

class TransferEngine {
 public:
  static Result<std::unique_ptr<TransferEngine>> Create(const TransferEngineOptions& options);
  ~TransferEngine();

  // Runs a batch against one daemon and waits for all of it. Two-sided batches of several ops
  // with no two-phase put (kPut, whose receives wait on the target's own lane) are dealt over up to
  // `workers` of the daemon's lanes, each progressed by its own thread, so that one caller uses
  // several daemon threads. Returns non-OK only when nothing
  // could be attempted (bad target, no endpoint); per-op failures are in ops[i].status
  // (UNAVAILABLE when the peer failed, DEADLINE_EXCEEDED on timeout). After a peer failure the
  // endpoint is rebuilt on the next call, so a restarted daemon is reached again.
  Status Run(const RemoteTarget& target, std::span<TransferOp> ops);
  // Forgets the endpoint and keys of a target that is gone (a daemon that restarted), so that
  // resources tied to it (mappings of its memory) are released now rather than at exit.
  void ForgetTarget(const RemoteTarget& target);

  // The protocol for `target` (whose `protocol` field is ignored): kOneSided when this process
  // can map the target's memory (ucp_rkey_ptr) or UCX's endpoint to it has native RMA lanes
  // (shared memory, RDMA verbs); otherwise kTwoSided (tcp, where UCX emulates one-sided operations
  // with messages). UNAVAILABLE when the target cannot be reached.
  Result<Protocol> PreferredProtocol(const RemoteTarget& target);

  // Run on a background thread; ops must stay alive until the future is ready.
  std::future<Status> RunAsync(const RemoteTarget& target, std::span<TransferOp> ops);

  // Registers caller memory for zero-copy transfers (engines that preallocate KV pools call this
  // once). Ops whose local range lies inside a registered buffer use its memory handle; others go
  // through UCX's own registration cache. INVALID_ARGUMENT for an empty range.
  Status RegisterBuffer(void* base, size_t length);
  // NOT_FOUND when `base` was not registered.
  Status UnregisterBuffer(void* base);

  const TransferEngineOptions& options() const { return options_; }
  // Whether this UCX moves CUDA device memory (its memory types include CUDA: a UCX built with
  // cuda_copy/cuda_ipc, where the driver is present).
  bool moves_device_memory() const;

  // The calls whose ops were cut into pieces above `split_bytes`, the pieces they made, and the
  // workers those pieces were dealt over (summed over the calls): what proves a split happened.
  struct SplitCounts {
    uint64_t calls = 0;
    uint64_t pieces = 0;
    uint64_t workers = 0;
  };
  SplitCounts split_counts() const;
  // Workers retired because a timed-out receive could not be stopped (see TwoSidedBatch).
  uint64_t retired_workers() const { return retired_count_.load(std::memory_order_relaxed); }

 private:
  struct Slot;
  struct Registered {  // one caller buffer, registered with each protocol's context
    std::unique_ptr<MemoryRegion> rma;
    std::unique_ptr<MemoryRegion> push;  // null until the two-sided context exists
  };
  TransferEngine() = default;
  static Result<std::vector<std::unique_ptr<Slot>>> CreateSlots(const std::shared_ptr<UcxContext>& context,
                                                                size_t count, bool messages, const Clock* clock);
  // The two-sided protocol's workers, created with their context on first use.
  Result<std::vector<std::unique_ptr<Slot>>*> PushSlots();
  // Moves `ops` on one worker (taking its mutex) and sets each op's status. Non-OK (and every
  // op failed with it) when no endpoint or rkey could be had.
  Status RunOnWorker(Slot& slot, const RemoteTarget& target, std::span<TransferOp*> ops);
  // One worker's share of a call: run by the calling thread (the first) or a helper thread.
  struct Assignment {
    Slot* slot;
    const RemoteTarget* target;
    std::vector<TransferOp*> ops;
  };
  void RunAssignments(std::vector<Assignment>& assignments);
  // Replaces `slot`'s worker by a fresh one and keeps the old one, never progressed again, until
  // the engine goes (TwoSidedBatch::ReceivesStillLanding). REQUIRES: the caller holds slot.mu.
  void RetireWorker(Slot& slot);
  ucp_mem_h FindMemh(const void* p, size_t n, Protocol protocol);

  TransferEngineOptions options_;
  std::shared_ptr<UcxContext> context_;  // one-sided (RMA); UcxOptions::messages says why two
  std::vector<std::unique_ptr<Slot>> slots_;
  std::atomic<size_t> next_slot_{0};
  std::atomic<uint64_t> split_calls_{0}, split_pieces_{0}, split_workers_{0};
  // Guards the creation of the three below; once push_ready_ is true they no longer change and
  // are read without it.
  Mutex push_mu_;
  std::shared_ptr<UcxContext> push_context_;  // two-sided (tag + active messages)
  std::vector<std::unique_ptr<Slot>> push_slots_;
  std::atomic<bool> push_ready_{false};
  Mutex regions_mu_;
  std::vector<Registered> regions_ GUARDED_BY(regions_mu_);
  // Workers retired with a receive still landing in a caller's buffer: never progressed again.
  Mutex retired_mu_;
  std::vector<std::unique_ptr<UcxWorker>> retired_ GUARDED_BY(retired_mu_);
  std::atomic<uint64_t> retired_count_{0};
};

}  // namespace kvstash::transfer
