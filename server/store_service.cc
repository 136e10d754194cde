// StoreService: construction, the member id and membership, and the helpers every handler shares
// (admission, tenant scoping, BlockInfo). The handlers live in store_service_get.cc (Lookup, Get,
// ReleaseLeases), store_service_put.cc (two-phase and inline puts) and store_service_admin.cc
// (Remove, Stat, Stats, List, Health, DataPlane).
#include "server/store_service.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "common/checksum.h"
#include "common/read_grant.h"
#include "server/store_service_internal.h"

namespace kvstash::server {
namespace store_internal {

v1::Tier ToProtoTier(tiers::TierKind kind) {
  switch (kind) {
    case tiers::TierKind::kHbm: return v1::TIER_HBM;
    case tiers::TierKind::kDram: return v1::TIER_DRAM;
    case tiers::TierKind::kSsd: return v1::TIER_SSD;
  }
  return v1::TIER_UNSPECIFIED;
}

}  // namespace store_internal

using store_internal::ToProtoTier;

Status ReadGrantChecker::AuthorizeSend(const std::byte* addr, size_t length, std::span<const std::byte> grant) {
  KVSTASH_ASSIGN_OR_RETURN(const ReadGrant decoded, DecodeReadGrant(grant));
  if (sealer_ != nullptr && !sealer_->Verify(grant)) {
    return PermissionDenied("read grant not sealed by this daemon: take it from a leasing Lookup or Get");
  }
  const BlockKey* key = &decoded.key;
  const bool on_device = hbm_ != nullptr && addr >= device_arena_.data() &&
                         addr < device_arena_.data() + device_arena_.size();
  if (on_device && (decoded.lease_epoch & tiers::kHbmLeaseEpochBit) == 0) {
    return FailedPrecondition("block " + key->ToHex() + " is not leased in GPU memory: locate it as a device reader");
  }
  const uint64_t epoch = on_device ? decoded.lease_epoch & ~tiers::kHbmLeaseEpochBit : decoded.lease_epoch;
  std::optional<tiers::BlockMeta> meta = on_device ? hbm_->Peek(*key) : tier_.Peek(*key);
  if (!meta || meta->data == nullptr) return NotFound("block " + key->ToHex() + " is not stored in memory here");
  // The lease is what keeps the bytes in place while they are sent. The tier's Peek does not
  // report the current lease epoch, so the check is: the reader claims a lease (non-zero epoch),
  // the block is leased right now, and — where the epoch is known — it is the reader's epoch.
  if (epoch == 0 || meta->lease_until_ms <= clock_->NowMs() || (meta->lease_epoch != 0 && meta->lease_epoch != epoch)) {
    return FailedPrecondition("block " + key->ToHex() + " is not leased (lease epoch " + std::to_string(epoch) +
                              " expired, released or never taken): locate it again");
  }
  const std::byte* begin = meta->data;
  if (addr < begin || length > meta->size || static_cast<uint64_t>(addr - begin) > meta->size - length) {
    return OutOfRange("range [+" + std::to_string(addr - begin) + ", " + std::to_string(length) +
                      " bytes) lies outside block " + key->ToHex() + " of " + std::to_string(meta->size) + " bytes");
  }
  // The whole block, even for a read of part of it: its checksum covers nothing smaller.
  if (verify_) {
    if (on_device) {
      // Streamed through pinned host chunks (HbmTier's ByteAccess): the device arena is not
      // host-addressable, and a same-host reader that mapped it through cuda_ipc could write it.
      Result<uint64_t> sum = hbm_bytes_->Checksum(begin, meta->size);
      if (!sum.ok()) return Unavailable("hashing block " + key->ToHex() + " in GPU memory: " + sum.status().message());
      if (*sum != meta->checksum) return DataLoss("block " + key->ToHex() + " failed its checksum on the daemon; not sent");
    } else if (BlockChecksum(begin, meta->size) != meta->checksum) {
      return DataLoss("block " + key->ToHex() + " failed its checksum on the daemon; not sent");
    }
  }
  return Status::Ok();
}

grpc::Status ToGrpc(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), status.message());
}

StoreService::StoreService(StoreServiceOptions options, tiers::Tier& tier, const tiers::TierStats& stats,
                           ServerMetrics& metrics)
    : options_(std::move(options)),
      tier_(tier),
      stats_(stats),
      metrics_(metrics),
      start_ms_(options_.clock->NowMs()),
      member_id_(options_.member_id) {}

void StoreService::SetMemberId(std::string member_id) {
  MutexLock lock(member_id_mu_);
  member_id_ = std::move(member_id);
}

void StoreService::SetMembershipSource(std::function<std::string()> source) {
  MutexLock lock(member_id_mu_);
  membership_ = std::move(source);
}

std::string StoreService::membership() const {
  std::function<std::string()> source;
  {
    MutexLock lock(member_id_mu_);
    source = membership_;
  }
  return source ? source() : std::string("standalone");
}

std::string StoreService::member_id() const {
  MutexLock lock(member_id_mu_);
  return member_id_;
}

void StoreService::FillInfo(const tiers::BlockMeta& meta, v1::BlockInfo& info) const {
  info.set_key(std::string(meta.key.AsBytes()));
  info.set_size(meta.size);
  info.set_checksum(meta.checksum);
  info.set_tier(ToProtoTier(meta.tier));
  info.set_generation(meta.generation);
  info.set_lease_until_ms(meta.lease_until_ms);
  if (meta.parent) info.set_parent(std::string(meta.parent->AsBytes()));
  info.set_pinned(meta.pinned);
  info.set_hits(meta.hits);
  const uint64_t now = options_.clock->NowMs();
  info.set_age_ms(now > meta.created_ms ? now - meta.created_ms : 0);
  if (options_.data_plane.ucx) info.set_remote_addr(reinterpret_cast<uint64_t>(meta.data));
  info.set_lease_epoch(meta.lease_epoch);
  if (options_.grant_sealer != nullptr && meta.lease_epoch != 0 && meta.data != nullptr) {
    const ReadGrantBytes grant = options_.grant_sealer->Seal(meta.key, meta.lease_epoch);
    info.set_read_grant(reinterpret_cast<const char*>(grant.data()), grant.size());
  }
  if (options_.access_hooks != nullptr) info.set_replicas(options_.access_hooks->ReplicasOf(meta.key));
}

grpc::Status StoreService::Admit(const grpc::ServerContext* context, auth::Role needed, std::string_view op,
                                 auth::Principal* who) {
  if (options_.authorizer == nullptr) {
    if (who != nullptr) *who = auth::Principal{"", auth::Role::kAdmin, {}};
    return grpc::Status::OK;
  }
  Result<auth::Principal> principal = options_.authorizer->Admit(*context, needed);
  if (!principal.ok()) {
    metrics_.RecordRefusal(op, principal.status());
    spdlog::debug("{} refused to {}: {}", op, context->peer(), principal.status().ToString());
    return ToGrpc(principal.status());
  }
  if (std::optional<std::string> shared = SharedNamespaceOf(*context)) {
    const bool joined = principal->role == auth::Role::kAdmin ||
                        std::find(principal->shared.begin(), principal->shared.end(), *shared) != principal->shared.end();
    const Status refused =
        !auth::ValidSharedNamespace(*shared)
            ? InvalidArgument(std::string(auth::kSharedNamespaceHeader) + " is 1..64 of A-Z a-z 0-9 . _ -")
        : !joined ? PermissionDenied("tenant " + principal->tenant + " has not joined the shared namespace " + *shared)
                  : Status::Ok();
    if (!refused.ok()) {
      metrics_.RecordRefusal(op, refused);
      return ToGrpc(refused);
    }
  }
  if (who != nullptr) *who = std::move(*principal);
  return grpc::Status::OK;
}

std::optional<std::string> StoreService::SharedNamespaceOf(const grpc::ServerContext& context) {
  const auto& metadata = context.client_metadata();
  const auto header = metadata.find(auth::kSharedNamespaceHeader);
  if (header == metadata.end()) return std::nullopt;
  return std::string(header->second.data(), header->second.size());
}

std::optional<TenantKeys> StoreService::TenantScope(const grpc::ServerContext& context,
                                                    const auth::Principal& principal) const {
  if (options_.authorizer == nullptr) return std::nullopt;
  // Admit checked the name and the caller's membership. "/" is in no tenant's name, so a shared
  // namespace's keys never collide with a tenant's.
  if (std::optional<std::string> shared = SharedNamespaceOf(context)) return TenantKeys("shared/" + *shared);
  if (principal.role == auth::Role::kAdmin) return std::nullopt;
  return TenantKeys(principal.tenant);
}

}  // namespace kvstash::server
