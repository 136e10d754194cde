// Internal to transfer/: the TransferServer's private structures and the helpers its three source
// files share — transfer_server.cc (start, lanes, progress, counters), push_gets.cc (two-sided and
// eager gets: requests, sends, answers) and push_puts.cc (two-phase receives, eager puts and their
// verifier threads).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "transfer/push_protocol.h"
#include "transfer/transfer_server.h"
#include "transfer/wire_header_check.h"

namespace kvstash::transfer::server_internal {

// The request header of an active message, when the message is one of ours (the envelope's
// checks are wire::DecodeRequest's); anything else is refused (`why` says how) and dropped.
template <typename Header>
inline std::optional<Header> ReadRequest(const void* header, size_t header_length, size_t length,
                                         const ucp_am_recv_param_t* param, Refusal& why) {
  wire::RequestEnvelope envelope;
  envelope.header = header;
  envelope.header_length = header_length;
  envelope.payload_length = length;
  envelope.rendezvous = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
  envelope.can_reply = (param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) != 0 && param->reply_ep != nullptr;
  return wire::DecodeRequest<Header>(envelope, why);
}

using wire::KeyFromWire;

}  // namespace kvstash::transfer::server_internal

namespace kvstash::transfer {

// One push worker and the thread that progresses it. Each lane serves the peers connected to its
// worker; lane 0's thread also progresses the one-sided worker.
struct TransferServer::Lane {
  TransferServer* server = nullptr;
  size_t index = 0;
  std::unique_ptr<UcxWorker> worker;  // thread-shared (Signal, and the accessors' addresses)
  std::string address;
  std::thread thread;
  std::atomic<size_t> sends_in_flight{0};  // of sends posted on this lane
  bool device_bound = false;  // this lane's thread ran the device region's bind_thread
  // Touched by this lane's thread only (handlers and callbacks run inside its progress).
  std::unordered_map<uint64_t, std::unique_ptr<EagerReceive>> eager;  // open receives, by data tag
  std::vector<EagerReceive*> eager_ended;                             // receives whose callback ran
  std::atomic<size_t> eager_open{0};                                  // eager.size(), for counters()
  // Guarded by the server's mutexes, named in comments rather than GUARDED_BY: the code reaches
  // them through `this` of TransferServer, which the analysis cannot equate with `lane->server`.
  std::vector<EagerReceive*> verified;  // guarded by server->verify_mu_; committed or refused, to answer
  std::vector<std::shared_ptr<Receive>> to_post;    // guarded by server->receives_mu_
  std::vector<std::shared_ptr<Receive>> to_cancel;  // guarded by server->receives_mu_
};

struct TransferServer::Send {
  TransferServer* server = nullptr;
  Lane* lane = nullptr;
  void* request = nullptr;
  ucp_ep_h ep = nullptr;
  uint64_t start_ms = 0;  // on the server's clock
  size_t bytes = 0;
  bool abandoned = false;  // its endpoint was closed under it; guarded by server->sends_mu_ (as above)
  std::optional<std::pair<BlockKey, uint64_t>> release;  // an eager get's lease, ended with the send
};

struct TransferServer::Receive {
  TransferServer* server = nullptr;
  Lane* lane = nullptr;
  uint64_t tag = 0;
  std::byte* at = nullptr;
  size_t length = 0;
  uint64_t deadline_ms = 0;  // on the server's clock; expired once it is past
  void* request = nullptr;               // guarded by receives_mu_; set by the progress thread
  bool posting = false;                  // guarded by receives_mu_: the progress thread is posting it
  bool withdrawn = false;                // guarded by receives_mu_: cancelled while being posted
  // Guarded by receives_mu_: ucp_request_cancel was called while UCX still had the receive (it was
  // matched, so the cancel did nothing): OnReceived frees the request when UCX completes it.
  bool cancel_issued = false;
  ucs_status_t status = UCS_INPROGRESS;  // guarded by receives_mu_
  size_t received = 0;                   // guarded by receives_mu_
};

// One eager put's receive; progress thread only.
struct TransferServer::EagerReceive {
  TransferServer* server = nullptr;
  Lane* lane = nullptr;
  uint64_t tag = 0;
  EagerPut put;
  uint64_t reservation_id = 0;
  std::byte* at = nullptr;  // null: a refused put whose bytes are dropped
  ucp_ep_h reply_ep = nullptr;
  uint64_t deadline_ms = 0;  // on the server's clock; cancelled once it is past
  void* request = nullptr;
  ucs_status_t status = UCS_INPROGRESS;
  size_t received = 0;
  bool cancelled = false;
  Status outcome;  // set by a verifier thread (PutSink::Commit)
};

}  // namespace kvstash::transfer
