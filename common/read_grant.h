// The grant a two-sided UCX read carries to the daemon (transfer::TransferOp::grant): the block's
// key, the lease epoch its reader holds and, from a daemon with tokens on, a MAC over both.
//
// Layout (kReadGrantBytes): key (16 bytes) | lease epoch (8, little-endian) | seal (16).
// * Unsealed (a daemon without tokens, where every caller may read every block anyway): the
//   client writes key and epoch itself (EncodeReadGrant) and the seal is zero.
// * Sealed (tokens on; common/read_grant_seal.h): the daemon hands the whole grant out in
//   BlockInfo.read_grant of a leasing Lookup or Get, the seal being HMAC-SHA-256 of key and epoch
//   under a secret drawn at its start. The client passes it back as it is. Nobody without the
//   secret can make one for a block the daemon did not grant it (docs/SECURITY.md).
// The daemon decodes it and serves the read only while that lease runs (server/store_service.h:
// ReadGrantChecker).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "kvstash/block_key.h"
#include "kvstash/result.h"

namespace kvstash {

inline constexpr size_t kReadGrantKeyBytes = 16;
inline constexpr size_t kReadGrantSealedBytes = 24;  // key and epoch: what the seal covers
inline constexpr size_t kReadGrantSealBytes = 16;
inline constexpr size_t kReadGrantBytes = kReadGrantSealedBytes + kReadGrantSealBytes;
using ReadGrantBytes = std::array<std::byte, kReadGrantBytes>;

// An unsealed grant (zero seal): accepted only by a daemon without tokens.
inline ReadGrantBytes EncodeReadGrant(const BlockKey& key, uint64_t lease_epoch) {
  ReadGrantBytes grant{};
  const std::string_view bytes = key.AsBytes();
  std::memcpy(grant.data(), bytes.data(), kReadGrantKeyBytes);
  std::memcpy(grant.data() + kReadGrantKeyBytes, &lease_epoch, sizeof(lease_epoch));
  return grant;
}

struct ReadGrant {
  BlockKey key;
  uint64_t lease_epoch = 0;
};

// Reads key and epoch; says nothing about the seal (ReadGrantSealer::Verify does).
inline Result<ReadGrant> DecodeReadGrant(std::span<const std::byte> grant) {
  if (grant.size() != kReadGrantBytes) return InvalidArgument("malformed read grant");
  Result<BlockKey> key =
      BlockKey::FromBytes(std::string_view(reinterpret_cast<const char*>(grant.data()), kReadGrantKeyBytes));
  if (!key.ok()) return InvalidArgument("malformed read grant: " + key.status().message());
  ReadGrant decoded{*key, 0};
  std::memcpy(&decoded.lease_epoch, grant.data() + kReadGrantKeyBytes, sizeof(decoded.lease_epoch));
  return decoded;
}

}  // namespace kvstash
