// UcxWorker: one UCP worker with its endpoint cache (keyed by the peer's packed worker address,
// which peers exchange over the gRPC control plane) and remote-key cache (per endpoint, keyed by
// the packed rkey).
//
// Progress model: a worker makes progress only when its owner calls Progress() (or WaitForEvent
// then Progress). Every method except Signal() must be called by one thread at a time — the
// TransferEngine serialises each worker under its own mutex; the TransferServer gives its worker
// a dedicated progress thread. Signal() may be called from any thread to wake WaitForEvent.
// A worker created with `shared` = true (UCS_THREAD_MODE_MULTI) additionally lets other threads
// post operations on handle() directly (the daemon posts put receives from its RPC threads).
#pragma once

#include <ucp/api/ucp.h>

#include <chrono>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>

#include "common/clock.h"
#include "transfer/ucx_context.h"

namespace kvstash::transfer {

class UcxWorker {
 public:
  // `clock` times the connection handshake of Endpoint(); it must outlive the worker.
  static Result<std::unique_ptr<UcxWorker>> Create(std::shared_ptr<UcxContext> context, bool shared = false,
                                                   const Clock* clock = SteadyClock::Default());
  ~UcxWorker();
  UcxWorker(const UcxWorker&) = delete;
  UcxWorker& operator=(const UcxWorker&) = delete;

  ucp_worker_h handle() const { return worker_; }
  // This worker's packed address, for peers to create endpoints to it.
  const std::string& address() const { return address_; }

  // The endpoint to the peer, created on first use with its connection handshake completed
  // (given up after 10 s on the worker's clock).
  // INVALID_ARGUMENT for an empty address; UNAVAILABLE when the peer cannot be reached.
  Result<ucp_ep_h> Endpoint(const std::string& peer_address);
  // The unpacked rkey for `packed_rkey` on the endpoint to `peer_address`.
  Result<ucp_rkey_h> RemoteKey(const std::string& peer_address, const std::string& packed_rkey);
  // True once an operation to this peer failed or timed out (the endpoint is then rebuilt).
  bool PeerFailed(const std::string& peer_address) const;
  // True when UCX's endpoint to the peer has lanes with native one-sided operations (shared
  // memory, RDMA); false when it would emulate them with messages (tcp). Creates the endpoint.
  Result<bool> HasNativeRma(const std::string& peer_address);
  void MarkFailed(const std::string& peer_address);
  // Forgets the peer: destroys its rkeys and closes its endpoint (forcefully when it failed).
  void DropPeer(const std::string& peer_address);

  // Active-message handlers (UCP_FEATURE_AM): `handlers` for their ids, `others` for every other
  // one of the 65536 ids a peer can send, all with `arg`. Covering every id is what keeps a peer's
  // message safe: UCX 1.13 reads the handler entry of an id beyond its table before checking the
  // id (ucp_am_handler_common, ucp_am_rndv_process_rts), so an unknown id crashed the receiver.
  // `others` should drop the message (return UCS_OK without receiving it).
  Status SetMessageHandlers(std::span<const std::pair<uint16_t, ucp_am_recv_callback_t>> handlers, void* arg,
                            ucp_am_recv_callback_t others);
  // An `others` that drops every message.
  static ucs_status_t DropMessage(void* arg, const void* header, size_t header_length, void* data, size_t length,
                                  const ucp_am_recv_param_t* param);

  // One round of progress; returns the number of events processed.
  unsigned Progress() { return ucp_worker_progress(worker_); }
  // Sleeps until the worker has something to progress, Signal() is called, or `timeout` passes
  // (microsecond resolution: a short timeout is a cheap way to yield the CPU without spinning).
  // REQUIRES: the context was created with wakeup.
  Status WaitForEvent(std::chrono::microseconds timeout);
  // The same for several workers at once (one thread progressing them all).
  static Status WaitForEvents(std::initializer_list<UcxWorker*> workers, std::chrono::microseconds timeout);
  void Signal() { ucp_worker_signal(worker_); }

 private:
  struct Peer {
    ucp_ep_h ep = nullptr;
    bool failed = false;
    std::unordered_map<std::string, ucp_rkey_h> rkeys;
  };
  void ClosePeer(Peer& peer);

  UcxWorker() = default;
  std::shared_ptr<UcxContext> context_;
  const Clock* clock_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  std::string address_;
  std::unordered_map<std::string, std::unique_ptr<Peer>> peers_;
};

}  // namespace kvstash::transfer
