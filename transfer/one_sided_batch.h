// OneSidedBatch: the one-sided gets and puts of one Run() call on one worker (transfer_engine.h).
// Post() moves each op — a plain memcpy when UCX maps the daemon's memory into this process
// (ucp_rkey_ptr), else ucp_get_nbx/ucp_put_nbx — and flushes the endpoint when the batch has a
// put, so that puts are visible at the daemon before the call returns. Complete() progresses the
// worker until every request is over or the deadline passes, closing the endpoint on a failure.
// Outcome() writes each op's status (op_outcome.h: OneSidedOutcome).
//
// Thread-safety: none; the caller holds the worker's mutex from Post() to destruction.
#pragma once

#include <ucp/api/ucp.h>

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "transfer/progress_loop.h"
#include "transfer/transfer_engine.h"
#include "transfer/ucx_worker.h"

namespace kvstash::transfer {

// A registration of this process covering [p, p + n), or null (UCX then registers the range).
using MemhLookup = std::function<ucp_mem_h(const void* p, size_t n)>;

class OneSidedBatch {
 public:
  // `find_memh` is asked for the registration of each op that is posted (not copied).
  // REQUIRES: every argument outlives the batch.
  OneSidedBatch(UcxWorker& worker, ucp_ep_h ep, ucp_rkey_h rkey, std::span<TransferOp*> ops,
                const MemhLookup& find_memh);
  // Frees the requests (cancelled by Complete() if they had not ended).
  ~OneSidedBatch();
  OneSidedBatch(const OneSidedBatch&) = delete;
  OneSidedBatch& operator=(const OneSidedBatch&) = delete;

  void Post();
  // Waits for every op and the flush. On a timeout or a failed request the peer at
  // `peer_address` is marked failed, outstanding requests are cancelled and its endpoint dropped,
  // so the next call reconnects.
  void Complete(const Deadline& deadline, const std::string& peer_address);
  // Sets ops[i]->status for every op.
  void Outcome();

 private:
  // A request's completion, written by UCX's callback (which runs inside Progress()).
  struct Completion {
    ucs_status_t status = UCS_INPROGRESS;
  };
  static void OnComplete(void* request, ucs_status_t status, void* user_data);
  // Moves or posts ops_[i]; false when it was a copy through mapped memory (nothing posted).
  bool PostOne(size_t i);
  bool Pending() const;
  bool AnyFailed() const;

  UcxWorker& worker_;
  ucp_ep_h ep_;
  ucp_rkey_h rkey_;
  std::span<TransferOp*> ops_;
  const MemhLookup& find_memh_;
  std::vector<Completion> completions_;  // per op; never resized after construction (UCX holds pointers)
  std::vector<void*> requests_;          // per op: its request, or null when it ended at once
  Completion flush_;
  void* flush_request_ = nullptr;
};

}  // namespace kvstash::transfer
