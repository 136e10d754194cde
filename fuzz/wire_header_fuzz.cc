// The headers peers send the daemon's push workers (transfer/push_protocol.h) as the TransferServer
// reads them (transfer/wire_header_check.h): the envelope check and copy, then the field checks of a
// two-sided get (PushRequest), an eager get (GetRequest) and an eager put (PutRequest). A header
// the checks accept names only what the daemon may act on: a non-empty range inside the registered
// region (checked here in 128-bit arithmetic), a receive of at least one byte, known put flags with
// at most one reuse advice and a size within the region; EagerPutOf reads back what the flags say.
//
// Input: byte 0 picks the message (bits 0-1) and its envelope (bit 2 rendezvous, bit 3 no reply
// endpoint, bit 4 a payload); byte 1 the region's size (2^(12 + byte % 30) bytes); the rest is the
// header as it came off the wire.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "transfer/wire_header_check.h"

namespace {

using namespace kvstash::transfer;
using U128 = unsigned __int128;

constexpr uint64_t kBase = 0x7f0000000000;  // where the fuzzed region starts

template <typename Header>
std::optional<Header> Decode(const wire::RequestEnvelope& envelope) {
  Refusal why = Refusal::kUnknownMessage;
  std::optional<Header> h = wire::DecodeRequest<Header>(envelope, why);
  const bool well_formed = !envelope.rendezvous && envelope.header != nullptr &&
                           envelope.header_length == sizeof(Header) && envelope.payload_length == 0 &&
                           envelope.can_reply;
  if (h.has_value() != well_formed) std::abort();
  if (h && std::memcmp(&*h, envelope.header, sizeof(Header)) != 0) std::abort();
  if (!h && why != (envelope.rendezvous ? Refusal::kRendezvous : Refusal::kMalformed)) std::abort();
  return h;
}

void CheckPush(const push::PushRequest& req, uint64_t region) {
  const kvstash::Status s = wire::CheckPushRequest(req, kBase, region);
  if (!s.ok()) {
    const bool version = req.magic != push::kMagic;
    if (s.code() != (version ? kvstash::StatusCode::kInvalidArgument : kvstash::StatusCode::kOutOfRange)) std::abort();
    return;
  }
  if (req.magic != push::kMagic || req.length == 0 || req.remote_addr < kBase ||
      U128{req.remote_addr} + req.length > U128{kBase} + region) {
    std::abort();
  }
  if (wire::IsProbe(req, kBase) && (req.remote_addr != kBase || req.length > 8)) std::abort();
}

void CheckGet(const push::GetRequest& req) {
  const kvstash::Status s = wire::CheckGetRequest(req);
  if (s.ok() != (req.magic == push::kMagic && req.max_length > 0)) std::abort();
  if (!s.ok() && s.code() != kvstash::StatusCode::kInvalidArgument) std::abort();
}

void CheckPut(const push::PutRequest& req, uint64_t region) {
  const kvstash::Status s = wire::CheckPutRequest(req, region);
  const bool likely = (req.flags & push::kPutAdviseLikely) != 0;
  const bool unlikely = (req.flags & push::kPutAdviseUnlikely) != 0;
  const bool good = req.magic == push::kMagic && (req.flags & ~push::kPutKnownFlags) == 0 && !(likely && unlikely) &&
                    req.size > 0 && req.size <= region;
  if (s.ok() != good) std::abort();
  if (!s.ok() && s.code() != kvstash::StatusCode::kInvalidArgument) std::abort();
  const EagerPut put = wire::EagerPutOf(req);
  if (std::memcmp(put.key.AsBytes().data(), req.key, sizeof(req.key)) != 0) std::abort();
  if (put.parent.has_value() != ((req.flags & push::kPutHasParent) != 0)) std::abort();
  if (put.parent && std::memcmp(put.parent->AsBytes().data(), req.parent, sizeof(req.parent)) != 0) std::abort();
  if (put.size != req.size || put.checksum != req.checksum || put.pin != ((req.flags & push::kPutPin) != 0)) {
    std::abort();
  }
  if (good && put.advice.has_value() != (likely || unlikely)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  wire::RequestEnvelope envelope;
  envelope.rendezvous = (data[0] & 4) != 0;
  envelope.can_reply = (data[0] & 8) == 0;
  envelope.payload_length = (data[0] & 16) != 0 ? 1 : 0;
  envelope.header = size > 2 ? data + 2 : nullptr;
  envelope.header_length = size - 2;
  const uint64_t region = uint64_t{1} << (12 + data[1] % 30);
  switch (data[0] & 3) {
    case 0:
      if (auto h = Decode<push::PushRequest>(envelope)) CheckPush(*h, region);
      break;
    case 1:
      if (auto h = Decode<push::GetRequest>(envelope)) CheckGet(*h);
      break;
    default:
      if (auto h = Decode<push::PutRequest>(envelope)) CheckPut(*h, region);
      break;
  }
  return 0;
}
