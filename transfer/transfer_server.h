// TransferServer: the daemon half of the data plane. Registers the daemon's memory (the DRAM
// arena) with UCX and keeps one worker progressing on a dedicated thread, so that peers can read
// and write that memory with one-sided operations. Transports whose one-sided operations need the
// target's help (tcp) are served by that thread; shared-memory transports (cma, posix) never
// involve it.
//
// It also serves the two-sided protocol (transfer_engine.h, push_protocol.h):
// * gets — a peer's push request is checked (range inside the registered memory, then the
//   SendAuthorizer, e.g. the block's lease) and answered with one tagged send straight from the
//   registered memory (no copy), or with a reject message naming the reason;
// * two-phase puts — ExpectReceive posts a tag receive into the reserved region; AwaitReceive
//   waits for it; CancelReceive (or the receive's own timeout) withdraws it. A receive UCX has
//   matched cannot be withdrawn: MayStillWrite answers true for its range until UCX completes it,
//   and the store reuses no region while it does (docs/SECURITY.md);
// * eager gets (one round, no RPC) — a peer asks for a block by key; the GetSource leases it if it
//   is in the registered memory, the block is sent and answered with its size and checksum, and
//   the lease ends when the send has;
// * eager puts (one round, no RPC) — a peer's put request is handed to the PutSink, which
//   reserves room; the bytes that follow are received straight into it, then the sink verifies and
//   commits them and the peer gets the answer. All of it runs on the progress thread.
// A send that has not completed within send_timeout_ms (a peer that vanished mid-receive) has its
// endpoint closed, which ends the send: no request outlives its peer.
//
// Lanes: the two-sided protocol is served by `lanes` push workers (default one per four hardware
// threads, at most kMaxLanes), each progressed by a thread of its own, so that on a host with the
// cores several peers' transfers are received, copied and answered at once. A peer talks to one
// lane (push_worker_addresses()[i]); a two-phase put names its lane to PutBegin, whose receive is
// posted there. Lane 0's thread also progresses the one-sided worker.
//
// Progress model: one progress thread per lane; it sleeps on the worker's event fd when idle
// (UCP_FEATURE_WAKEUP), so an idle daemon burns no CPU. While sends are in flight, and for 500 us
// after any activity, it sleeps in 50 us steps instead (never a busy spin: a spinning thread on a
// host with more runnable threads than cores is descheduled for whole time slices). Push requests are handled and their sends
// posted on that thread. The two protocols have a UCX context and worker each (UcxOptions::messages
// says why); the thread progresses both. ExpectReceive and CancelReceive only queue their change
// and wake the thread, which posts or cancels the receive itself: the workers' locks spin, and
// gRPC handler threads spinning on them next to the progress thread were most of a daemon's CPU
// during two-sided puts (perf, 2-core VM). The two-sided worker stays thread-shared
// (UCS_THREAD_MODE_MULTI) for Signal() and the accessors.
//
// Sources: transfer_server.cc (start, lanes, progress), push_gets.cc, push_puts.cc; their shared
// private structures are in transfer_server_internal.h.
//
// Thread-safety: accessors and the *Receive methods may be called from any thread; Start, Stop
// and SetSendAuthorizer by the owner (the authorizer before peers are told the address).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/mutex.h"
#include "kvstash/block_key.h"
#include "kvstash/reuse_advice.h"
#include "transfer/memory_region.h"
#include "transfer/transport_policy.h"
#include "transfer/ucx_context.h"
#include "transfer/ucx_worker.h"

namespace kvstash::transfer {

// Decides whether a two-sided get may be served: the bytes [addr, addr + length) — already known
// to lie inside the registered memory — to the holder of `grant` (TransferOp::grant). Called on
// the progress thread for every request: must be quick and must not call into UCX.
class SendAuthorizer {
 public:
  virtual ~SendAuthorizer() = default;
  virtual Status AuthorizeSend(const std::byte* addr, size_t length, std::span<const std::byte> grant) = 0;
};

// An eager put as a peer asked for it (push::PutRequest, checked for form only).
struct EagerPut {
  BlockKey key;
  std::optional<BlockKey> parent;
  uint64_t size = 0;
  uint64_t checksum = 0;  // XXH3-64 the peer claims for the bytes
  bool pin = false;
  std::optional<ReuseAdvice> advice{};
};

// Stores eager puts (the daemon's store implements it). Reserve and Abort are called on the
// progress thread, Commit (which hashes the block) on one of the server's verifier threads, so
// that the progress thread goes on receiving meanwhile; calls may be concurrent. None may call
// into UCX; Reserve and Abort must be quick.
class PutSink {
 public:
  struct Space {
    std::byte* at = nullptr;  // inside the registered memory; holds put.size bytes
    uint64_t reservation_id = 0;
  };
  virtual ~PutSink() = default;
  // Reserves room for `put`, held for at most `timeout`. A non-OK status is the peer's answer and
  // leaves nothing behind: ALREADY_EXISTS (stored before: the bytes are dropped), ABORTED (another
  // writer holds the key), RESOURCE_EXHAUSTED, INVALID_ARGUMENT.
  virtual Result<Space> Reserve(const EagerPut& put, std::chrono::milliseconds timeout) = 0;
  // Exactly put.size bytes arrived at the reserved room: verify put.checksum and make the block
  // visible. The status is the peer's answer; on failure the room is given back.
  virtual Status Commit(const EagerPut& put, uint64_t reservation_id) = 0;
  // The bytes did not arrive whole (wrong size, withdrawn, timed out, peer gone): give the room back.
  virtual void Abort(uint64_t reservation_id) = 0;
};

// Finds blocks for eager gets (the daemon's store implements it). Called on the progress thread
// only: must be quick, do no I/O and not call into UCX.
class GetSource {
 public:
  struct Found {
    const std::byte* data = nullptr;  // inside the registered memory, leased
    uint64_t size = 0;
    uint64_t checksum = 0;
    uint64_t lease_epoch = 0;
  };
  virtual ~GetSource() = default;
  // Leases `key` if its bytes are in the registered memory: NOT_FOUND (a miss), or
  // FAILED_PRECONDITION when it is stored where it cannot be sent from now (the peer then asks
  // through the control plane, which can move it).
  virtual Result<Found> Acquire(const BlockKey& key) = 0;
  // The send of an acquired block has ended (done or failed): end its lease.
  virtual void Release(const BlockKey& key, uint64_t lease_epoch) = 0;
};

// Why the data plane refused a message from a peer. Every message any peer sends to a push worker
// is one of ours, checked field by field, or refused and counted under one of these.
enum class Refusal : uint8_t {
  kUnknownMessage,  // an active-message id the protocol does not use
  kMalformed,       // wrong header size, a payload, no reply endpoint, unknown version or flags
  kRendezvous,      // a request sent with UCX's rendezvous protocol (requests are header-only)
  kOutOfRange,      // a range outside the registered memory or the block it names
  kNotAuthorized,   // no lease behind the grant, or a block that is not stored here
  kCorrupt,         // the block failed its checksum on the daemon: not sent
};
inline constexpr size_t kRefusalKinds = 6;
// "unknown_message", "malformed", ... (the metric's reason label).
std::string_view RefusalName(Refusal reason);
// The refusal an authorizer's status stands for.
Refusal RefusalOf(const Status& status);

struct TwoSidedCounters {
  uint64_t sends_in_flight = 0;     // pushes posted and not yet completed
  uint64_t sends_completed = 0;
  uint64_t sends_failed = 0;        // ended with an error (peer gone, endpoint closed)
  uint64_t bytes_sent = 0;          // of completed sends
  uint64_t requests_rejected = 0;   // messages refused, all reasons (the sum of `refused`)
  std::array<uint64_t, kRefusalKinds> refused{};  // by Refusal
  uint64_t receives_open = 0;       // put receives posted and not yet withdrawn (both kinds of put)
  uint64_t eager_puts_stored = 0;   // eager puts committed
  uint64_t eager_puts_refused = 0;  // eager puts answered no before their bytes came (exists, busy, ...)
  uint64_t eager_puts_failed = 0;   // eager puts whose bytes did not arrive whole or failed the checksum
  uint64_t eager_gets_sent = 0;     // eager gets answered with the block
  uint64_t eager_gets_refused = 0;  // eager gets answered without it (miss, elsewhere, too large, malformed)
};

class TransferServer {
 public:
  // Registers [base, base + length) and starts the progress thread. Peers' one-sided operations
  // on such memory may be emulated by UCX with messages this server's progress thread answers.
  // `lanes`: push workers (0 = DefaultLanes(); at most kMaxLanes). `clock` times the deadlines of
  // receives and eager puts, the send timeout and the expiry sweeps; it must outlive the server.
  static Result<std::unique_ptr<TransferServer>> Start(const UcxOptions& options, void* base, size_t length,
                                                       size_t lanes = 0, const Clock* clock = SteadyClock::Default());
  // Has UCX allocate `length` bytes (shared memory when it can) and serves them; memory() is the
  // region. Peers on the same host then map it and move bytes with their own CPU, truly one-sided.
  static Result<std::unique_ptr<TransferServer>> StartAllocated(const UcxOptions& options, size_t length,
                                                                size_t lanes = 0,
                                                                const Clock* clock = SteadyClock::Default());
  static constexpr size_t kMaxLanes = 16;
  static size_t DefaultLanes();  // one per four hardware threads, 1..4

  std::byte* memory() const { return region_->base(); }
  size_t memory_bytes() const { return region_->length(); }
  ~TransferServer();  // stops

  const std::string& worker_address() const { return worker_address_; }
  // The workers of the two-sided protocol (its own UCX context: UcxOptions::messages), one per lane;
  // push_worker_address() is lane 0's.
  const std::string& push_worker_address() const;
  std::vector<std::string> push_worker_addresses() const;
  size_t lanes() const;
  const std::string& packed_rkey() const { return region_->packed_rkey(); }
  const std::string& transports() const { return transports_; }
  // The transports of the one-sided (RMA) context: same-host shared memory only, or "self" when
  // the configuration allows none (then no peer can use the one-sided protocol); see
  // transport_policy.h for why no network transport may carry it.
  const std::string& one_sided_transports() const { return one_sided_transports_; }
  bool serves_one_sided() const { return !ServesNoPeers(one_sided_transports_); }

  // Two-sided gets are refused (FAILED_PRECONDITION) until an authorizer is set; the 8-byte
  // connectivity probe at memory() (an all-zero grant) is always served. Not owned; must outlive
  // the server's progress (call Stop first).
  void SetSendAuthorizer(SendAuthorizer* authorizer) { authorizer_.store(authorizer, std::memory_order_release); }
  // Serves two-sided gets from GPU memory too: [base, base + length) (the HBM arena) is registered
  // in the two-sided context as CUDA memory, push requests may name ranges inside it (the
  // authorizer decides as for the arena), and UCX sends from it directly (cuda_ipc to a reader on
  // the same host, cuda_copy through host memory otherwise; docs/GPU.md "GPU-direct").
  // `bind_thread` runs once on each lane's progress thread before it next touches UCX (it makes
  // the GPU's CUDA context current there: UCX's CUDA transports use the calling thread's). Call
  // before peers learn of the region, at most once. FAILED_PRECONDITION when this UCX has no CUDA
  // memory transport (Debian's UCX 1.13), or for a second call; UNAVAILABLE when UCX refuses the
  // registration; INVALID_ARGUMENT for an empty range.
  Status AddDeviceRegion(void* base, size_t length, std::function<void()> bind_thread);
  // Runs `bind_thread` once on each lane's progress thread before it next touches UCX (first call
  // only; AddDeviceRegion calls it). For a daemon whose UCX moves CUDA memory without a device
  // region: a reader's CUDA buffer may still be written by the lanes (put-based rendezvous into a
  // device receive), which UCX's CUDA transports do in the calling thread's context. Call before
  // peers learn of the data plane.
  void BindLaneThreads(std::function<void()> bind_thread);
  // The device region's range; length 0 when there is none.
  uint64_t device_region_base() const;
  uint64_t device_region_bytes() const;
  // Whether the two-sided context's UCX moves CUDA memory (its memory types include CUDA).
  bool moves_device_memory() const;
  // The two-sided context, for asking it what it supports (never to close).
  const UcxContext& push_context() const { return *push_context_; }
  void SetSendTimeout(std::chrono::milliseconds timeout) { send_timeout_ms_.store(timeout.count()); }
  // Eager puts are refused (FAILED_PRECONDITION) until a sink is set. Not owned; must outlive the
  // server's progress (call Stop first). `reservation_timeout` bounds how long an eager put's room
  // waits for its bytes.
  // Eager gets are refused (FAILED_PRECONDITION, so peers ask the usual way) until a source is set.
  // Not owned; must outlive the server's progress (call Stop first).
  void SetGetSource(GetSource* source) { get_source_.store(source, std::memory_order_release); }
  // Both a GetSource and a PutSink are set: peers may send eager requests.
  bool serves_eager_requests() const {
    return get_source_.load(std::memory_order_acquire) != nullptr && put_sink_.load(std::memory_order_acquire) != nullptr;
  }
  // Also starts the verifier threads (`verifiers`; 0 = one per two hardware threads, 1..4).
  void SetPutSink(PutSink* sink, std::chrono::milliseconds reservation_timeout, size_t verifiers = 0);

  // Expects a receive of exactly `length` bytes at `at` (inside the registered memory) for a peer's
  // send under `tag`; the progress thread posts it (a send arriving first waits inside UCX). It
  // is withdrawn by CancelReceive or, at the latest, after `timeout`. INVALID_ARGUMENT for a
  // range outside the memory or a tag already expected; a failure to post is reported by
  // AwaitReceive.
  // `lane`: the lane the peer sends on (INVALID_ARGUMENT when there is no such lane).
  Status ExpectReceive(uint64_t tag, std::byte* at, size_t length, std::chrono::milliseconds timeout,
                       size_t lane = 0);
  // Waits up to `wait` for the receive under `tag` to complete. OK when exactly its length
  // arrived; NOT_FOUND when no such receive is open; DEADLINE_EXCEEDED when nothing (complete)
  // arrived in time; DATA_LOSS when the peer sent a different size. The receive stays open until
  // CancelReceive.
  Status AwaitReceive(uint64_t tag, std::chrono::milliseconds wait);
  // Withdraws the receive (cancels it if still waiting). Unknown tags are ignored. A receive UCX
  // has already matched cannot be cancelled: its bytes keep landing until it completes, so its
  // region must stay out of use until MayStillWrite says otherwise.
  void CancelReceive(uint64_t tag);

  // Whether a receive into the registered memory may still write into [at, at + length): one
  // expected (ExpectReceive) or posted (two-phase or eager put) that UCX has not reported complete
  // yet, withdrawn or not. UCX cannot cancel a receive it has matched (the first fragment of a
  // multi-fragment or rendezvous message arrived): its remaining bytes land whenever the lane
  // progresses, for as long as the peer keeps sending. The store keeps such a region from its
  // allocator until this answers false (DramTierOptions::region_in_use). Any thread; takes only a
  // leaf lock (lock_order::kReceiveRanges), so it may be called under the tier's locks.
  bool MayStillWrite(const std::byte* at, size_t length) const;

  TwoSidedCounters counters() const;

  void Stop();

 private:
  struct Lane;
  struct Send;
  struct Receive;
  struct EagerReceive;
  TransferServer() = default;
  static Result<std::unique_ptr<TransferServer>> Finish(std::unique_ptr<TransferServer> server,
                                                        const UcxOptions& options, size_t lanes, const Clock* clock);
  // The one-sided context's options: `options` with the transports transport_policy.h allows.
  UcxOptions OneSidedOptions(const UcxOptions& options);
  // Registers the protocol's handlers on the lane's worker, and OnUnknownMessage for every other id.
  static Status RegisterHandlers(Lane& lane);
  void ProgressLoop(Lane& lane);
  // Every active-message id the protocol does not use: counted and dropped. Registered for all
  // 65536 ids so that UCX's table of handlers covers any id a peer can send (UCX 1.13 reads the
  // entry of an unregistered id past the table's end on the rendezvous path: a remote crash).
  static ucs_status_t OnUnknownMessage(void* arg, const void* header, size_t header_length, void* data, size_t length,
                                       const ucp_am_recv_param_t* param);
  void Refuse(Refusal reason) { refused_[static_cast<size_t>(reason)].fetch_add(1, std::memory_order_relaxed); }
  static ucs_status_t OnPushRequest(void* arg, const void* header, size_t header_length, void* data, size_t length,
                                    const ucp_am_recv_param_t* param);
  static void OnSent(void* request, ucs_status_t status, void* user_data);
  static void OnReceived(void* request, ucs_status_t status, const ucp_tag_recv_info_t* info, void* user_data);
  static ucs_status_t OnEagerGet(void* arg, const void* header, size_t header_length, void* data, size_t length,
                                 const ucp_am_recv_param_t* param);
  // Posts one send to a peer's receive under `reply_tag`, tracked until it completes (then
  // `release`, if set, ends the block's lease): from `region` (the arena's push registration or the
  // device region), or (null) from a small buffer of static storage outside both. The status of
  // posting it.
  Status PostSend(Lane& lane, ucp_ep_h ep, const std::byte* addr, size_t length, uint64_t reply_tag,
                  std::optional<std::pair<BlockKey, uint64_t>> release, const MemoryRegion* region);
  static ucs_status_t OnEagerPut(void* arg, const void* header, size_t header_length, void* data, size_t length,
                                 const ucp_am_recv_param_t* param);
  static void OnEagerReceived(void* request, ucs_status_t status, const ucp_tag_recv_info_t* info, void* user_data);
  // Posts the receive of an eager put's bytes: into `at`, or into nothing (`at` null: a refused
  // put, whose bytes are dropped by a truncating receive).
  void ReceiveEagerBytes(Lane& lane, std::unique_ptr<EagerReceive> receive);
  // Progress thread, after progress: commits or aborts the eager puts whose receives ended, and
  // answers their peers.
  void FinishEagerPuts(Lane& lane);
  // A verifier thread: commits the eager puts whose bytes are in (PutSink::Commit) and hands the
  // outcomes back to the progress thread, which answers the peers.
  void VerifyLoop();
  void StopVerifiers();
  void ExpireEagerPuts(Lane& lane);
  void Answer(ucp_ep_h ep, uint64_t reply_tag, const Status& status, uint64_t size = 0, uint64_t checksum = 0);
  void Reject(ucp_ep_h ep, uint64_t reply_tag, Refusal reason, const Status& why);
  void EndStuckSends(Lane& lane);
  void ExpireReceives();
  // Progress thread: posts the receives ExpectReceive queued and cancels those CancelReceive
  // withdrew, so that only this thread calls into the two-sided worker for puts.
  void RunReceiveChanges(Lane& lane);
  // The range a receive (a Receive or an EagerReceive, named by its address) may write into, from
  // before it is posted until UCX reports it complete (or it is dropped unposted).
  void TrackLanding(const void* receive, const std::byte* at, size_t length);
  void UntrackLanding(const void* receive);

  const Clock* clock_ = SteadyClock::Default();  // set by Start; every deadline is on it
  std::shared_ptr<UcxContext> context_;
  std::unique_ptr<MemoryRegion> region_;
  std::unique_ptr<UcxWorker> worker_;  // progressed only by lane 0's thread after Start
  std::string worker_address_;
  // The two-sided protocol's context, the same memory registered in it, and its lanes.
  std::shared_ptr<UcxContext> push_context_;
  std::unique_ptr<MemoryRegion> push_region_;
  // GPU memory registered in the push context (AddDeviceRegion); set once before peers use it,
  // read by the lanes through device_view_.
  std::unique_ptr<MemoryRegion> device_region_;
  std::atomic<const MemoryRegion*> device_view_{nullptr};
  std::function<void()> bind_thread_;             // written before lanes_bound_ is published
  std::atomic<bool> lanes_bound_{false};
  std::vector<std::unique_ptr<Lane>> lanes_;  // fixed after Start
  std::string transports_;
  std::string one_sided_transports_;
  std::atomic<bool> stop_{false};
  std::atomic<SendAuthorizer*> authorizer_{nullptr};
  std::atomic<int64_t> send_timeout_ms_{60'000};

  mutable Mutex sends_mu_;
  std::unordered_map<Send*, std::unique_ptr<Send>> sends_ GUARDED_BY(sends_mu_);  // in flight, all lanes
  std::atomic<uint64_t> sends_completed_{0}, sends_failed_{0}, bytes_sent_{0};
  std::array<std::atomic<uint64_t>, kRefusalKinds> refused_{};

  mutable Mutex receives_mu_;
  std::condition_variable receive_done_;
  std::unordered_map<uint64_t, std::shared_ptr<Receive>> receives_ GUARDED_BY(receives_mu_);

  // Ranges of receives UCX has not completed (TrackLanding). A leaf: nothing is called under it.
  mutable Mutex landing_mu_{lock_order::kReceiveRanges};
  std::unordered_map<const void*, std::pair<const std::byte*, size_t>> landing_ GUARDED_BY(landing_mu_);

  // Eager requests (their per-lane state is in Lane).
  std::atomic<PutSink*> put_sink_{nullptr};
  std::atomic<GetSource*> get_source_{nullptr};
  std::atomic<uint64_t> eager_gets_sent_{0}, eager_gets_refused_{0};
  std::atomic<int64_t> eager_timeout_ms_{30'000};
  std::atomic<uint64_t> eager_stored_{0}, eager_refused_{0}, eager_failed_{0};
  Mutex verify_mu_;
  std::condition_variable verify_cv_;
  std::deque<EagerReceive*> to_verify_ GUARDED_BY(verify_mu_);  // bytes in, not yet committed
  bool verifiers_stop_ GUARDED_BY(verify_mu_) = false;
  std::vector<std::thread> verifiers_;    // started by SetPutSink, joined by Stop
};

}  // namespace kvstash::transfer
