// TwoSidedBatch: the two-sided ops of one Run() call on one worker (transfer_engine.h), each one
// of the types of two_sided_ops.h. Post() posts them in order; Complete() progresses the worker
// until each needs nothing more or the deadline passes, then cancels the receives that will not
// be satisfied and, after a transport failure or a timeout, closes the endpoint to the daemon's
// lane so the next call reconnects; Outcome() writes each op's status.
//
// The caller's buffers are the caller's again when Complete returns — except where
// ReceivesStillLanding() says so: UCX cannot cancel a receive it has begun to fill, and closing
// our endpoint does not stop the daemon's sends (they come over the daemon's own connection), so
// such a receive is given a grace period to finish and, failing that, the worker is retired.
//
// Thread-safety: none; the caller holds the worker's mutex (which also guards `answers`) from
// Post() to destruction.
#pragma once

#include <ucp/api/ucp.h>

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "transfer/one_sided_batch.h"
#include "transfer/progress_loop.h"
#include "transfer/transfer_engine.h"
#include "transfer/two_sided_ops.h"
#include "transfer/ucx_worker.h"

namespace kvstash::transfer {

class TwoSidedBatch {
 public:
  // `find_memh` is asked for the registration of each op's local range as it is posted.
  // REQUIRES: every argument outlives the batch.
  TwoSidedBatch(UcxWorker& worker, ucp_ep_h ep, AnswerBook& answers, std::span<TransferOp*> ops,
                const MemhLookup& find_memh);

  void Post();
  // Waits (the deadline should start after Post: an eager put hashes its block while posting).
  // `peer_address` is the daemon lane the endpoint leads to.
  // `grace` bounds the extra wait for receives the cancel could not stop.
  void Complete(const Deadline& deadline, const Deadline& grace, const std::string& peer_address);
  // Sets every op's status (and an eager get's size and checksum).
  void Outcome();
  // True when, after Complete, a receive UCX had already matched was still landing in a caller's
  // buffer when its grace period ran out: the worker must never be progressed again (its progress
  // is what writes those bytes), or they would land in memory the caller has been given back.
  bool ReceivesStillLanding() const { return still_landing_; }

 private:
  // After a run of idle rounds, sleeps on the worker's event fd rather than spin, so that the
  // daemon and the other clients get the CPU.
  void Idle(unsigned events);

  UcxWorker& worker_;
  ucp_ep_h ep_;
  AnswerBook& answers_;
  const MemhLookup& find_memh_;
  std::vector<std::unique_ptr<TwoSidedOp>> ops_;
  std::vector<size_t> open_;  // ops that still need something
  unsigned idle_rounds_ = 0;
  bool still_landing_ = false;
};

}  // namespace kvstash::transfer
