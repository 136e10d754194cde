// The wire format of kvstash's two-sided ("daemon-pushed") transfers, shared by the client engine
// (two_sided_ops.cc) and the daemon (transfer_server.cc). Internal to transfer/.
//
// Get: the client posts a tag receive straight into its destination buffer, then sends the daemon
// a PushRequest (a header-only UCX active message, kPushRequestAm, with a reply endpoint). The
// daemon checks the range and the grant (lease) and answers with one tagged send from its
// registered arena under reply_tag — or, when it refuses, with a PushAnswer (kPushAnswerAm) naming
// the reason, so the client cancels its receive at once instead of waiting for a timeout.
//
// Two-phase put: PutBegin has the daemon post a tag receive into the reserved region under a
// random tag it returns; the client sends the block with that tag; PutCommit waits for the receive
// and checks the checksum. No message of this file is involved.
//
// Eager get (one round, no RPC): the client posts a tag receive into its buffer and sends a
// GetRequest naming the key. The daemon leases the block if it is in its registered memory, sends
// it under reply_tag and answers with a PushAnswer carrying the block's size and checksum (code 0),
// or refuses (NOT_FOUND: a miss; FAILED_PRECONDITION: stored elsewhere, ask with a locate RPC;
// OUT_OF_RANGE: larger than the receive). It ends the lease when the send has completed.
//
// Eager put (one round, no RPC): the client sends a PutRequest (header-only active message with a
// reply endpoint) and, right behind it, the block's bytes as a tagged message under data_tag. The
// daemon reserves room and posts the receive for data_tag while handling the header (so the bytes,
// which follow on the same connection, land straight in the reserved region), verifies the
// checksum when they have arrived, commits, and answers with a PushAnswer under data_tag: code 0
// = stored, ALREADY_EXISTS, ABORTED (busy), RESOURCE_EXHAUSTED, or the reason it failed. A refused
// put's bytes are received into nothing (a truncating receive) so they never linger in UCX.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace kvstash::transfer::push {

inline constexpr uint16_t kPushRequestAm = 1;  // client -> daemon
inline constexpr uint16_t kPushAnswerAm = 2;   // daemon -> client
inline constexpr uint16_t kPutRequestAm = 3;   // client -> daemon
inline constexpr uint16_t kGetRequestAm = 4;   // client -> daemon
inline constexpr uint32_t kMagic = 0x4b565031;      // "KVP1": version of this layout
inline constexpr size_t kGrantBytes = 40;           // opaque to transfer/: see TransferOp::grant

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

// A get's refusal, an eager get's answer (code 0: the block follows; size and checksum set) or an
// eager put's outcome (code 0 = stored).
struct PushAnswer {
  uint32_t magic = kMagic;
  uint32_t code = 0;  // a kvstash StatusCode
  uint64_t reply_tag = 0;
  uint64_t size = 0;      // eager get: bytes of the block
  uint64_t checksum = 0;  // eager get: its XXH3-64
  char message[192] = {};  // NUL-terminated
};

struct GetRequest {
  uint32_t magic = kMagic;
  uint32_t reserved = 0;
  uint64_t reply_tag = 0;   // the tag of the client's posted receive
  uint64_t max_length = 0;  // bytes that receive holds
  std::byte key[16] = {};
};

inline constexpr uint32_t kPutPin = 1;        // PutRequest::flags: pin the block
inline constexpr uint32_t kPutHasParent = 2;  // PutRequest::flags: `parent` is set
inline constexpr uint32_t kPutAdviseLikely = 4;    // PutRequest::flags: ReuseAdvice::kLikely
inline constexpr uint32_t kPutAdviseUnlikely = 8;  // PutRequest::flags: ReuseAdvice::kUnlikely (not both)
inline constexpr uint32_t kPutKnownFlags = kPutPin | kPutHasParent | kPutAdviseLikely | kPutAdviseUnlikely;

struct PutRequest {
  uint32_t magic = kMagic;
  uint32_t flags = 0;
  uint64_t data_tag = 0;  // the bytes follow under this tag; the answer names it too
  uint64_t size = 0;      // bytes of the block; the tagged message must carry exactly this many
  uint64_t checksum = 0;  // XXH3-64 of the bytes (common/checksum.h)
  std::byte key[16] = {};
  std::byte parent[16] = {};
};

static_assert(std::is_trivially_copyable_v<PushRequest> && sizeof(PushRequest) == 72);
static_assert(std::is_trivially_copyable_v<PushAnswer> && sizeof(PushAnswer) == 224);
static_assert(std::is_trivially_copyable_v<GetRequest> && sizeof(GetRequest) == 40);
static_assert(std::is_trivially_copyable_v<PutRequest> && sizeof(PutRequest) == 64);

}  // namespace kvstash::transfer::push
