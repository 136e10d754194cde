// The wire format of kvstash's two-sided ("daemon-pushed") transfers, shared by the client engine
// (transfer_engine.cc) and the daemon (transfer_server.cc). Internal to transfer/.
//
// Get: the client posts a tag receive straight into its destination buffer, then sends the daemon
// a PushRequest (a header-only UCX active message, kPushRequestAm, with a reply endpoint). The
// daemon checks the range and the grant (lease) and answers with one tagged send from its
// registered arena under reply_tag — or, when it refuses, with a PushReject (kPushRejectAm) naming
// the reason, so the client cancels its receive at once instead of waiting for a timeout.
//
// Put: PutBegin has the daemon post a tag receive into the reserved region under a random tag it
// returns; the client sends the block with that tag; PutCommit waits for the receive and checks
// the checksum. No message of this file is involved.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace kvstash::transfer::push {

inline constexpr uint16_t kPushRequestAm = 1;  // client -> daemon
inline constexpr uint16_t kPushRejectAm = 2;   // daemon -> client
inline constexpr uint32_t kMagic = 0x4b565031;      // "KVP1": version of this layout
inline constexpr size_t kGrantBytes = 24;           // opaque to transfer/: see TransferOp::grant

// Both sides of a connection run the same binary layout (little-endian hosts only, as UCX itself
// assumes for its own headers); every field is validated by the receiver.
struct PushRequest {
  uint32_t magic = kMagic;
  uint32_t reserved = 0;
  uint64_t reply_tag = 0;    // the tag of the client's posted receive
  uint64_t remote_addr = 0;  // start of the bytes in the daemon's registered memory
  uint64_t length = 0;       // bytes to send; the client's receive holds exactly this many
  std::byte grant[kGrantBytes] = {};
};

struct PushReject {
  uint32_t magic = kMagic;
  uint32_t code = 0;  // a kvstash StatusCode
  uint64_t reply_tag = 0;
  char message[192] = {};  // NUL-terminated
};

static_assert(std::is_trivially_copyable_v<PushRequest> && sizeof(PushRequest) == 56);
static_assert(std::is_trivially_copyable_v<PushReject> && sizeof(PushReject) == 208);

}  // namespace kvstash::transfer::push
