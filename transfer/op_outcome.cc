#include "transfer/op_outcome.h"

#include <cstring>
#include <string>

#include "transfer/ucx_context.h"

namespace kvstash::transfer {
namespace {

// A request still in progress when the wait ended is reported as timed out.
ucs_status_t Ended(ucs_status_t status) { return status == UCS_INPROGRESS ? UCS_ERR_TIMED_OUT : status; }

// A get's (or an eager get's) outcome when it did not end with a whole answered block: refused,
// its request failed, the wrong number of bytes came, or its receive failed or timed out.
// `exact` = the get asked for exactly `length` bytes (a two-sided get; an eager get names room).
OpOutcome ReceiveOutcome(const TwoSidedState& s, size_t length, bool exact, std::string_view request) {
  if (s.answer.answered && !s.answer.status.ok()) return {s.answer.status};  // refused
  if (s.request != UCS_OK) return {FromUcs(Ended(s.request), request)};
  if (exact && s.recv == UCS_OK && s.received != length) {
    return {DataLoss("daemon sent " + std::to_string(s.received) + " bytes for a read of " + std::to_string(length))};
  }
  if (s.recv == UCS_ERR_MESSAGE_TRUNCATED) {
    return {DataLoss("daemon sent more bytes than the read of " + std::to_string(length) + " asked for")};
  }
  return {FromUcs(Ended(s.recv), "two-sided get")};
}

}  // namespace

Status FromUcs(ucs_status_t status, std::string_view what) {
  if (status == UCS_OK) return Status::Ok();
  if (status == UCS_ERR_CANCELED || status == UCS_ERR_TIMED_OUT) {
    return DeadlineExceeded(std::string(what) + " timed out");
  }
  return UcxError(StatusCode::kUnavailable, what, status);
}

Status OneSidedOutcome(OpKind kind, ucs_status_t op, ucs_status_t flush) {
  ucs_status_t s = op;
  if (s == UCS_OK && kind == OpKind::kPut) s = flush;  // a put is done when the flush is
  return FromUcs(Ended(s), kind == OpKind::kGet ? "one-sided get" : "one-sided put");
}

std::optional<push::PushAnswer> ReadAnswer(const void* header, size_t length) {
  push::PushAnswer answer;
  if (header == nullptr || length != sizeof(answer)) return std::nullopt;
  std::memcpy(&answer, header, sizeof(answer));
  if (answer.magic != push::kMagic) return std::nullopt;
  answer.message[sizeof(answer.message) - 1] = '\0';
  return answer;
}

DaemonAnswer DecodeAnswer(OpKind kind, const push::PushAnswer& answer) {
  const bool eager = kind == OpKind::kEagerPut || kind == OpKind::kEagerGet;
  if (eager && answer.code == 0) return {true, Status::Ok(), answer.size, answer.checksum};
  const StatusCode code = answer.code == 0 || answer.code > static_cast<uint32_t>(StatusCode::kDataLoss)
                              ? StatusCode::kInternal
                              : static_cast<StatusCode>(answer.code);
  return {true, Status(code, std::string(eager ? "daemon: " : "daemon refused the transfer: ") + answer.message)};
}

bool TwoSidedFinished(OpKind kind, const TwoSidedState& s) {
  const bool request_over = s.request != UCS_INPROGRESS;
  const bool failed_early = Failed(s.request);  // the daemon never heard of it
  switch (kind) {
    case OpKind::kEagerPut: {
      // The bytes have left and the daemon answered, or either send failed.
      const bool data_over = s.data != UCS_INPROGRESS;
      return (request_over && data_over && s.answer.answered) || failed_early || (request_over && Failed(s.data));
    }
    case OpKind::kEagerGet: {
      // The bytes and the answer (size, checksum) both; or a refusal; or a failure.
      const bool recv_over = s.recv != UCS_INPROGRESS;
      const bool refused = s.answer.answered && !s.answer.status.ok();
      return request_over && ((recv_over && (s.answer.answered || s.recv != UCS_OK)) || refused || failed_early);
    }
    case OpKind::kGet:
    case OpKind::kPut:  // nothing to receive: recv stays UCS_OK
      return request_over && (s.recv != UCS_INPROGRESS || s.answer.answered || failed_early);
  }
  return true;
}

bool TwoSidedBrokeTransport(const TwoSidedState& s) {
  const bool refused = s.answer.answered && !s.answer.status.ok();
  return Failed(s.request) || Failed(s.data) || (!refused && Failed(s.recv) && s.recv != UCS_ERR_MESSAGE_TRUNCATED);
}

bool TwoSidedOnlyReceiving(OpKind kind, const TwoSidedState& s) {
  return kind != OpKind::kPut && s.request != UCS_INPROGRESS && s.data != UCS_INPROGRESS;
}

OpOutcome TwoSidedGetOutcome(const TwoSidedState& s, size_t length) {
  return ReceiveOutcome(s, length, /*exact=*/true, "two-sided get request");
}

OpOutcome TwoSidedPutOutcome(const TwoSidedState& s) {
  // One eager tagged send: done when it completed locally (the daemon checks it at PutCommit).
  return {FromUcs(Ended(s.request), "two-sided put")};
}

OpOutcome EagerGetOutcome(const TwoSidedState& s, size_t length) {
  if (s.answer.answered && s.answer.status.ok() && s.recv == UCS_OK) {
    if (s.received != s.answer.size) {
      return {DataLoss("daemon sent " + std::to_string(s.received) + " bytes for a block of " +
                       std::to_string(s.answer.size))};
    }
    return {Status::Ok(), s.answer.size, s.answer.checksum};
  }
  if (!s.answer.answered && s.recv == UCS_OK) {
    return {DeadlineExceeded("eager get: the bytes came but the daemon's answer did not")};
  }
  return ReceiveOutcome(s, length, /*exact=*/false, "eager get request");
}

OpOutcome EagerPutOutcome(const TwoSidedState& s) {
  if (s.answer.answered) return {s.answer.status};
  if (Failed(s.request)) return {FromUcs(s.request, "eager put request")};
  if (Failed(s.data)) return {FromUcs(s.data, "eager put")};
  return {DeadlineExceeded("eager put: the daemon did not answer in time")};
}

OpOutcome TwoSidedOutcome(OpKind kind, const TwoSidedState& s, size_t length) {
  switch (kind) {
    case OpKind::kGet:
      return TwoSidedGetOutcome(s, length);
    case OpKind::kPut:
      return TwoSidedPutOutcome(s);
    case OpKind::kEagerGet:
      return EagerGetOutcome(s, length);
    case OpKind::kEagerPut:
      return EagerPutOutcome(s);
  }
  return {Internal("unknown transfer op kind")};
}

}  // namespace kvstash::transfer
