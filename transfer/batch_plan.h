// How TransferEngine::Run deals a batch over its workers, as pure functions of the batch, the
// target and the pool (no UCX; tests/unit/transfer_plan_test.cc):
//
// * CheckBatch   refuses a target without a data plane and ops it must not attempt.
// * PlanLanes    a two-sided batch of several ops with no two-phase put goes to several of the
//                daemon's lanes at once, one engine worker each.
// * PlanSplit    ops larger than split_bytes are cut into pieces dealt over several workers;
//                MergePieces folds the pieces' statuses back into their ops.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "transfer/transfer_engine.h"

namespace kvstash::transfer {

// INVALID_ARGUMENT (nothing moved) for a target with no worker address or rkey (or, two-sided, no
// lane), an op with no local buffer, an eager op on a one-sided target, or a one-sided or
// two-phase op reaching outside the target's registered range (when the target names one).
Status CheckBatch(const RemoteTarget& target, std::span<const TransferOp> ops);

// One engine worker's share of a batch dealt over the daemon's lanes.
struct LaneGroup {
  size_t slot = 0;           // index of the engine worker in the pool
  std::string lane;          // the daemon lane it talks to (a push_worker_address)
  std::vector<size_t> ops;   // indexes into the batch
};
// The groups for `ops` when the batch spreads over lanes (two-sided, the daemon has more than one
// lane, the pool more than one worker, more than one op, no kPut); empty otherwise. `first` is
// the worker this call starts at. A batch with a device_local op is never dealt out (empty). Engine worker s always talks to lane start + s (start: the
// target's own lane), so a worker never alternates between lanes from call to call, which halved
// the reads of 4 concurrent 8-block readers (docs/BENCHMARKS.md, "Where the regression comes from").
std::vector<LaneGroup> PlanLanes(const RemoteTarget& target, std::span<const TransferOp> ops, size_t slots,
                                 size_t first);

// A batch cut into pieces: pieces[p] is part of ops[owner[p]]; per_worker[w] lists the pieces
// worker (first + w) % slots moves.
struct SplitPlan {
  std::vector<TransferOp> pieces;
  std::vector<size_t> owner;
  std::vector<std::vector<size_t>> per_worker;
};
// The split of `ops` over a pool of `slots` workers, or nullopt when no op is worth splitting
// (split_bytes 0, one worker, a device_local op in the batch, or no splittable op above split_bytes). Two-sided, only gets split:
// a put is one message into one receive the daemon posted, and eager ops name a whole block.
std::optional<SplitPlan> PlanSplit(std::span<const TransferOp> ops, Protocol protocol, size_t split_bytes,
                                   size_t slots);
// Each op's status: OK, or the first failure among its pieces.
void MergePieces(const SplitPlan& plan, std::span<TransferOp> ops);

}  // namespace kvstash::transfer
