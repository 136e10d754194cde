// The pure first step of every request a peer sends the TransferServer's push workers
// (transfer/push_protocol.h): the envelope check and copy of the header out of the message, and
// the field checks made before anything is looked up, reserved or sent. No UCX calls, so that a
// fuzzer (fuzz/wire_header_fuzz.cc) can reach all of it; the handlers in push_gets.cc and
// push_puts.cc call these and act on the answers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "kvstash/block_key.h"
#include "kvstash/result.h"
#include "transfer/push_protocol.h"
#include "transfer/transfer_server.h"

namespace kvstash::transfer::wire {

// An active message as UCX delivered it to a request handler.
struct RequestEnvelope {
  const void* header = nullptr;
  size_t header_length = 0;
  size_t payload_length = 0;  // bytes after the header
  bool rendezvous = false;    // sent with UCX's rendezvous protocol
  bool can_reply = false;     // came with a reply endpoint
};

// The request header, when the message is one of ours: exactly sizeof(Header) bytes of header, no
// payload, sent eagerly, and a reply endpoint to answer on. Otherwise nullopt, and `why` says how
// (kRendezvous, or kMalformed): such a message is dropped, there is nobody to tell. Defined for
// push::PushRequest, push::GetRequest and push::PutRequest. The fields are not yet checked.
template <typename Header>
std::optional<Header> DecodeRequest(const RequestEnvelope& envelope, Refusal& why);

// A two-sided get: INVALID_ARGUMENT for an unknown version; OUT_OF_RANGE unless
// [remote_addr, remote_addr + length) is non-empty and lies inside [base, base + region_length).
Status CheckPushRequest(const push::PushRequest& req, uint64_t base, uint64_t region_length);
// The liveness probe: at most 8 bytes at the region's start with an all-zero grant, served
// without asking the SendAuthorizer. REQUIRES: CheckPushRequest(req, base, ...) is OK.
bool IsProbe(const push::PushRequest& req, uint64_t base);

// An eager get: INVALID_ARGUMENT for an unknown version or a receive of no bytes.
Status CheckGetRequest(const push::GetRequest& req);

// An eager put as the PutSink sees it, read from the header whatever CheckPutRequest says.
EagerPut EagerPutOf(const push::PutRequest& req);
// An eager put: INVALID_ARGUMENT for an unknown version or flags, both reuse advices at once, or
// a size outside 1 .. region_length.
Status CheckPutRequest(const push::PutRequest& req, uint64_t region_length);

BlockKey KeyFromWire(const std::byte (&bytes)[BlockKey::kSize]);

}  // namespace kvstash::transfer::wire
