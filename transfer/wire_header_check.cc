// The push workers' request decoding and field checks (contract in transfer/wire_header_check.h).
#include "transfer/wire_header_check.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <span>
#include <string>

namespace kvstash::transfer::wire {

template <typename Header>
std::optional<Header> DecodeRequest(const RequestEnvelope& envelope, Refusal& why) {
  if (envelope.rendezvous) {
    why = Refusal::kRendezvous;  // returning without receiving lets UCX complete the sender's request
    return std::nullopt;
  }
  if (envelope.header == nullptr || envelope.header_length != sizeof(Header) || envelope.payload_length != 0 ||
      !envelope.can_reply) {
    why = Refusal::kMalformed;
    return std::nullopt;
  }
  Header h;
  std::memcpy(&h, envelope.header, sizeof(h));
  return h;
}

template std::optional<push::PushRequest> DecodeRequest<push::PushRequest>(const RequestEnvelope&, Refusal&);
template std::optional<push::GetRequest> DecodeRequest<push::GetRequest>(const RequestEnvelope&, Refusal&);
template std::optional<push::PutRequest> DecodeRequest<push::PutRequest>(const RequestEnvelope&, Refusal&);

Status CheckPushRequest(const push::PushRequest& req, uint64_t base, uint64_t region_length) {
  if (req.magic != push::kMagic) return InvalidArgument("unknown push-request version");
  if (req.length == 0 || req.remote_addr < base || req.length > region_length ||
      req.remote_addr - base > region_length - req.length) {
    return OutOfRange("range [" + std::to_string(req.remote_addr) + ", +" + std::to_string(req.length) +
                      ") is empty or lies outside the daemon's registered memory");
  }
  return Status::Ok();
}

bool IsProbe(const push::PushRequest& req, uint64_t base) {
  const std::span<const std::byte> grant(req.grant, sizeof(req.grant));
  return req.remote_addr == base && req.length <= 8 &&
         std::all_of(grant.begin(), grant.end(), [](std::byte b) { return b == std::byte{0}; });
}

Status CheckGetRequest(const push::GetRequest& req) {
  if (req.magic != push::kMagic) return InvalidArgument("unknown get-request version");
  if (req.max_length == 0) return InvalidArgument("a get needs room for at least one byte");
  return Status::Ok();
}

EagerPut EagerPutOf(const push::PutRequest& req) {
  EagerPut put;
  put.key = KeyFromWire(req.key);
  if ((req.flags & push::kPutHasParent) != 0) put.parent = KeyFromWire(req.parent);
  put.size = req.size;
  put.checksum = req.checksum;
  put.pin = (req.flags & push::kPutPin) != 0;
  if ((req.flags & push::kPutAdviseLikely) != 0) put.advice = ReuseAdvice::kLikely;
  if ((req.flags & push::kPutAdviseUnlikely) != 0) put.advice = ReuseAdvice::kUnlikely;
  return put;
}

Status CheckPutRequest(const push::PutRequest& req, uint64_t region_length) {
  if (req.magic != push::kMagic) return InvalidArgument("unknown put-request version");
  if ((req.flags & ~push::kPutKnownFlags) != 0) {
    return InvalidArgument("unknown put-request flags " + std::to_string(req.flags));
  }
  if ((req.flags & push::kPutAdviseLikely) != 0 && (req.flags & push::kPutAdviseUnlikely) != 0) {
    return InvalidArgument("a put cannot be advised both likely and unlikely to be reused");
  }
  if (req.size == 0 || req.size > region_length) {
    return InvalidArgument("a block of " + std::to_string(req.size) + " bytes cannot be stored here");
  }
  return Status::Ok();
}

BlockKey KeyFromWire(const std::byte (&bytes)[BlockKey::kSize]) {
  std::array<uint8_t, BlockKey::kSize> raw;
  std::memcpy(raw.data(), bytes, raw.size());
  return BlockKey(raw);
}

}  // namespace kvstash::transfer::wire
