// The grant a two-sided UCX read carries to the daemon (transfer::TransferOp::grant): the block's
// key and the lease epoch its reader holds. The client encodes it, the daemon decodes it and
// serves the read only while that lease runs (server/store_service.h: ReadGrantChecker).
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

inline constexpr size_t kReadGrantBytes = 24;

inline std::array<std::byte, kReadGrantBytes> EncodeReadGrant(const BlockKey& key, uint64_t lease_epoch) {
  std::array<std::byte, kReadGrantBytes> grant{};
  const std::string_view bytes = key.AsBytes();
  std::memcpy(grant.data(), bytes.data(), 16);
  std::memcpy(grant.data() + 16, &lease_epoch, sizeof(lease_epoch));
  return grant;
}

struct ReadGrant {
  BlockKey key;
  uint64_t lease_epoch = 0;
};

inline Result<ReadGrant> DecodeReadGrant(std::span<const std::byte> grant) {
  if (grant.size() != kReadGrantBytes) return InvalidArgument("malformed read grant");
  Result<BlockKey> key = BlockKey::FromBytes(std::string_view(reinterpret_cast<const char*>(grant.data()), 16));
  if (!key.ok()) return InvalidArgument("malformed read grant: " + key.status().message());
  ReadGrant decoded{*key, 0};
  std::memcpy(&decoded.lease_epoch, grant.data() + 16, sizeof(decoded.lease_epoch));
  return decoded;
}

}  // namespace kvstash
