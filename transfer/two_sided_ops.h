// The two-sided ("daemon-pushed") ops of the engine, one type per kind (push_protocol.h has the
// messages, transfer_engine.h the protocol):
//
//   TwoSidedGet  a tag receive into the caller's buffer, then a PushRequest carrying the grant;
//                the daemon sends the bytes, or refuses with a PushAnswer.
//   TwoSidedPut  one tagged send under the tag of the receive the daemon posted at PutBegin.
//   EagerGet     a tag receive, then a GetRequest naming the key; the daemon sends the block and
//                answers with its size and checksum, or refuses.
//   EagerPut     a PutRequest, then the bytes as a tagged send; the daemon answers.
//
// Each is posted once (Post), polled until it needs nothing more (Complete), and then reports its
// outcome (Finish) through the pure functions of op_outcome.h. Requests carry no callbacks (their
// state is polled), so a request that outlives its op — a receive UCX had already matched when it
// was cancelled — is released by UCX on completion without touching freed memory.
//
// Thread-safety: none. Every method is called by the holder of the worker's mutex, and the
// daemon's answers arrive inside that worker's Progress() (AnswerBook).
#pragma once

#include <ucp/api/ucp.h>

#include <cstdint>
#include <memory>
#include <unordered_map>

#include "transfer/op_outcome.h"
#include "transfer/transfer_engine.h"
#include "transfer/ucx_worker.h"

namespace kvstash::transfer {

class TwoSidedOp;

// One worker's ops that wait for a daemon answer, by the tag the answer names. Tags are never
// reused by a worker; the first is random, so tags of this process never meet those of an
// earlier one at a daemon.
class AnswerBook {
 public:
  AnswerBook();
  uint64_t NextTag() { return next_tag_++; }
  void Expect(uint64_t tag, TwoSidedOp* op) { waiting_.emplace(tag, op); }
  void Forget(uint64_t tag) { waiting_.erase(tag); }
  // Delivers a PushAnswer header to the op it names; ignores anything else (not ours, or late:
  // the op already ended).
  void Deliver(const void* header, size_t length);

 private:
  std::unordered_map<uint64_t, TwoSidedOp*> waiting_;
  uint64_t next_tag_;
};

// What posting needs. REQUIRES: the holder of the worker's mutex builds and uses it.
struct PostContext {
  UcxWorker& worker;
  ucp_ep_h ep;
  AnswerBook& answers;
  ucp_mem_h memh;  // a registration covering the op's local range, or null (UCX registers it)
};

class TwoSidedOp {
 public:
  // The type for op.kind. REQUIRES: op outlives the returned object.
  static std::unique_ptr<TwoSidedOp> For(TransferOp& op);
  // Frees the op's requests (UCX releases those still in flight when they complete).
  virtual ~TwoSidedOp();
  TwoSidedOp(const TwoSidedOp&) = delete;
  TwoSidedOp& operator=(const TwoSidedOp&) = delete;

  const TransferOp& op() const { return op_; }
  // Posts the op's receive and messages on ctx.ep. Called once.
  virtual void Post(const PostContext& ctx) = 0;
  // Polls its requests; true when it needs nothing more (op_outcome.h: TwoSidedFinished).
  bool Complete();
  // The daemon's answer, from AnswerBook::Deliver.
  void Answer(const push::PushAnswer& answer) { state_.answer = DecodeAnswer(op_.kind, answer); }
  bool BrokeTransport() const { return TwoSidedBrokeTransport(state_); }
  bool OnlyReceiving() const { return TwoSidedOnlyReceiving(op_.kind, state_); }
  // After the wait: cancels a receive that will not be satisfied (refused, failed, timed out) so
  // the caller gets its buffer back, ...
  void CancelReceive(ucp_worker_h worker);
  // ... then records how the cancelled receive ended ...
  void SettleReceive();
  // ... and stops expecting an answer.
  void ForgetAnswer(AnswerBook& answers);
  // True while its receive may still write into the caller's buffer: UCX had matched it (a
  // multi-fragment or rendezvous message had begun to arrive), so the cancel could not stop it.
  bool ReceiveInFlight() const { return recv_ != nullptr && state_.recv == UCS_INPROGRESS; }
  // Writes the op's status (and an eager get's size and checksum).
  void Finish();

 protected:
  explicit TwoSidedOp(TransferOp& op) : op_(op) {}
  // Posts a receive of the op's buffer under a fresh tag and registers for the answer; false (and
  // the state says why) when UCX refused the receive.
  bool PostReceive(const PostContext& ctx, uint64_t tag);
  // Records the immediate result of a send into `status`, keeping its request if still in flight.
  static void Sent(ucs_status_ptr_t r, void** request, ucs_status_t* status);
  // Active messages carrying a request: header only, eager, with a reply endpoint.
  static ucs_status_ptr_t SendRequest(const PostContext& ctx, uint16_t id, const void* header, size_t length);
  void ExpectAnswer(AnswerBook& answers, uint64_t tag);

  TransferOp& op_;
  TwoSidedState state_;
  void* request_send_ = nullptr;  // get, eager ops: the request message; put: the tagged send
  void* data_send_ = nullptr;     // eager put: the tagged send of the bytes
  void* recv_ = nullptr;          // get, eager get: the tag receive into op_.local
  ucp_tag_recv_info_t recv_info_{};
  bool expects_answer_ = false;
  uint64_t answer_tag_ = 0;
};

}  // namespace kvstash::transfer
