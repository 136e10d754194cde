// The outcome of each transfer op, as pure functions of what UCX and the daemon reported: the
// completion statuses of its requests and the daemon's answer (push_protocol.h). Nothing here calls
// UCX or touches memory, so every mapping from a transport status or a wire answer to the op's
// kvstash Status is unit-tested without a worker (tests/unit/transfer_outcome_test.cc).
//
// The types that post and progress the ops (one_sided_batch.h, two_sided_ops.h) record those
// statuses and ask these functions (a) whether an op needs anything more, (b) whether the peer
// must be treated as broken, and (c) what to report in TransferOp::status.
#pragma once

#include <ucs/type/status.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "kvstash/status.h"
#include "transfer/push_protocol.h"
#include "transfer/transfer_engine.h"

namespace kvstash::transfer {

// A UCX completion status as the op's Status: OK, DEADLINE_EXCEEDED for a cancelled or timed-out
// request, UNAVAILABLE (the peer failed) for anything else. `what` names the operation.
Status FromUcs(ucs_status_t status, std::string_view what);

// True for a request that has ended and did not succeed.
inline bool Failed(ucs_status_t status) { return status != UCS_OK && status != UCS_INPROGRESS; }

// One-sided get or put: `op` is the completion of its ucp_get_nbx/ucp_put_nbx (UCS_OK for a copy
// through mapped memory), `flush` that of the endpoint flush that makes a batch's puts visible at
// the daemon (UCS_OK when the batch had no put). Still in progress at the end = timed out.
Status OneSidedOutcome(OpKind kind, ucs_status_t op, ucs_status_t flush);

// The daemon's answer to a two-sided op, decoded (answered = false until one came).
struct DaemonAnswer {
  bool answered = false;
  Status status;          // OK: stored (eager put) or the block follows (eager get)
  uint64_t size = 0;      // eager get: the block's bytes
  uint64_t checksum = 0;  // eager get: their XXH3-64, as the daemon computed it
};

// A PushAnswer active-message header, checked (exact length, magic) and with its message
// NUL-terminated; nullopt for anything else, which the engine ignores.
std::optional<push::PushAnswer> ReadAnswer(const void* header, size_t length);
// What the answer means for an op of `kind`. Code 0 is success for an eager put or get; a
// two-sided get is only ever refused, so code 0 there is as malformed as a code beyond
// DATA_LOSS: both become INTERNAL.
DaemonAnswer DecodeAnswer(OpKind kind, const push::PushAnswer& answer);

// What a two-sided op (two-sided get or put, eager get or put) has seen so far. UCS_INPROGRESS:
// not over yet; a field an op kind does not use stays UCS_OK.
struct TwoSidedState {
  ucs_status_t request = UCS_INPROGRESS;  // get, eager ops: the request message; put: the tagged send
  ucs_status_t data = UCS_OK;             // eager put: the tagged send of the bytes
  ucs_status_t recv = UCS_INPROGRESS;     // get, eager get: the tag receive into the caller's buffer
  uint64_t received = 0;                  // bytes that receive took (valid when recv == UCS_OK)
  DaemonAnswer answer;
};

// Whether the op needs nothing more: its requests are over and, where the kind needs one, the
// daemon answered, or something failed that no answer can mend.
bool TwoSidedFinished(OpKind kind, const TwoSidedState& state);
// Whether the op saw a transport failure, after which the engine drops its endpoint to the peer.
// A refused get's cancelled receive and a truncated receive are not transport failures.
bool TwoSidedBrokeTransport(const TwoSidedState& state);
// Whether the op only waits for bytes or an answer to arrive (nothing of ours is still being sent):
// then an event always comes, and the waiting thread may sleep longer between looks.
bool TwoSidedOnlyReceiving(OpKind kind, const TwoSidedState& state);

// What the op reports once its wait is over (completed, failed or timed out), per kind. `length`
// is the op's; got_size/got_checksum are set only for a successful eager get.
struct OpOutcome {
  Status status;
  uint64_t got_size = 0;
  uint64_t got_checksum = 0;
};
OpOutcome TwoSidedGetOutcome(const TwoSidedState& state, size_t length);
OpOutcome TwoSidedPutOutcome(const TwoSidedState& state);
OpOutcome EagerGetOutcome(const TwoSidedState& state, size_t length);
OpOutcome EagerPutOutcome(const TwoSidedState& state);
// The one of the four above for `kind`.
OpOutcome TwoSidedOutcome(OpKind kind, const TwoSidedState& state, size_t length);

}  // namespace kvstash::transfer
