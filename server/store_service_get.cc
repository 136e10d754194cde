// StoreService's read handlers: Lookup, Get (inline bytes, or locate_only for one-sided reads) and
// ReleaseLeases.
#include <unordered_set>

#include "common/checksum.h"
#include "kvstash/limits.h"
#include "server/request_validation.h"
#include "server/store_service.h"
#include "server/store_service_internal.h"

namespace kvstash::server {

using store_internal::Serve;

// ---- Lookup -------------------------------------------------------------------------------

grpc::Status StoreService::Lookup(grpc::ServerContext* context, const v1::LookupRequest* req, v1::LookupResponse* resp) {
  auth::Principal principal;
  if (grpc::Status refused = Admit(context, auth::Role::kRead, "lookup", &principal); !refused.ok()) return refused;
  if (std::optional<TenantKeys> tenant = TenantScope(*context, principal)) {
    v1::LookupRequest scoped = *req;
    for (std::string& key : *scoped.mutable_keys()) tenant->ToStored(key);
    return Serve(metrics_, in_flight_, "lookup", [&] {
      KVSTASH_RETURN_IF_ERROR(DoLookup(scoped, *resp));
      RecordTenantHits(principal, resp->hit_blocks(), static_cast<uint64_t>(scoped.keys_size()) - resp->hit_blocks());
      for (v1::BlockInfo& info : *resp->mutable_blocks()) tenant->ToClient(info);
      return Status::Ok();
    });
  }
  return Serve(metrics_, in_flight_, "lookup", [&] { return DoLookup(*req, *resp); });
}

Status StoreService::DoLookup(const v1::LookupRequest& req, v1::LookupResponse& resp) {
  KVSTASH_ASSIGN_OR_RETURN(const std::vector<BlockKey> keys, ParseKeyBatch(req.keys(), "keys"));
  if (req.lease_ms() > limits::kMaxLeaseMs) {
    return InvalidArgument("lease_ms is " + std::to_string(req.lease_ms()) + "; the limit is " +
                           std::to_string(limits::kMaxLeaseMs));
  }
  uint32_t hits = 0;
  for (const BlockKey& key : keys) {
    std::optional<tiers::BlockMeta> meta = tier_.Find(key, req.lease_ms());
    if (!meta) break;  // only a prefix is useful: a missing block cuts the chain here
    FillInfo(*meta, *resp.add_blocks());
    CountHit(key);
    ++hits;
  }
  resp.set_hit_blocks(hits);
  metrics_.RecordLookupBlocks(hits, keys.size() - hits);
  return Status::Ok();
}

grpc::Status StoreService::Get(grpc::ServerContext* context, const v1::GetRequest* req, v1::GetResponse* resp) {
  auth::Principal principal;
  if (grpc::Status refused = Admit(context, auth::Role::kRead, "get", &principal); !refused.ok()) return refused;
  // HBM addresses go to trusted principals only (DataPlane says why).
  std::optional<v1::GetRequest> untrusted_copy;
  if (req->device_reader() && options_.authorizer != nullptr && principal.role != auth::Role::kAdmin) {
    untrusted_copy = *req;
    untrusted_copy->set_device_reader(false);
    req = &*untrusted_copy;
  }
  if (std::optional<TenantKeys> tenant = TenantScope(*context, principal)) {
    v1::GetRequest scoped = *req;
    for (std::string& key : *scoped.mutable_keys()) tenant->ToStored(key);
    return Serve(metrics_, in_flight_, "get", [&] {
      KVSTASH_RETURN_IF_ERROR(DoGet(scoped, *resp));
      uint64_t hits = 0, misses = 0;
      for (v1::GetResult& result : *resp->mutable_results()) {
        if (result.outcome() == v1::GetResult::FOUND) ++hits;
        if (result.outcome() == v1::GetResult::MISSING) ++misses;
        if (result.has_info()) tenant->ToClient(*result.mutable_info());
      }
      RecordTenantHits(principal, hits, misses);
      return Status::Ok();
    });
  }
  return Serve(metrics_, in_flight_, "get", [&] { return DoGet(*req, *resp); });
}

Status StoreService::DoGet(const v1::GetRequest& req, v1::GetResponse& resp) {
  KVSTASH_ASSIGN_OR_RETURN(const std::vector<BlockKey> keys, ParseKeyBatch(req.keys(), "keys"));
  if (req.lease_ms() > limits::kMaxLeaseMs) {
    return InvalidArgument("lease_ms is " + std::to_string(req.lease_ms()) + "; the limit is " +
                           std::to_string(limits::kMaxLeaseMs));
  }
  if (req.locate_only()) {
    if (!options_.data_plane.ucx) return FailedPrecondition("locate_only needs the UCX data plane, which is off");
    const uint64_t lease_ms = req.lease_ms() == 0 ? options_.default_lease_ms : req.lease_ms();
    resp.set_instance_id(options_.data_plane.instance_id);
    uint64_t hits = 0;
    // A device reader takes HBM copies in place (two-sided from GPU memory, no DRAM staging).
    const bool in_place = req.device_reader() && options_.data_plane.hbm_region_bytes > 0;
    for (const BlockKey& key : keys) {
      v1::GetResult* result = resp.add_results();
      if (std::optional<tiers::BlockMeta> meta =
              in_place ? tier_.FindForDeviceReader(key, lease_ms) : tier_.Find(key, lease_ms)) {
        result->set_outcome(v1::GetResult::FOUND);
        FillInfo(*meta, *result->mutable_info());
        CountHit(key);
        ++hits;
      } else {
        result->set_outcome(v1::GetResult::MISSING);
      }
    }
    metrics_.RecordGetBlocks(hits, keys.size() - hits);
    return Status::Ok();
  }
  uint64_t budget = limits::kMaxInlineBytes;
  uint64_t hits = 0, misses = 0;
  for (const BlockKey& key : keys) {
    v1::GetResult* result = resp.add_results();
    std::optional<tiers::BlockMeta> meta = tier_.Peek(key);
    if (!meta) {
      result->set_outcome(v1::GetResult::MISSING);
      ++misses;
      continue;
    }
    if (meta->size > budget) {
      result->set_outcome(v1::GetResult::DEFERRED);
      budget = 0;  // keep the response order simple: everything after is deferred too
      continue;
    }
    std::string* data = result->mutable_data();
    data->resize(meta->size);
    Result<tiers::BlockMeta> read = tier_.Read(key, std::span(reinterpret_cast<std::byte*>(data->data()), data->size()));
    if (!read.ok()) {
      // Evicted or removed (and perhaps re-put with another size) since Peek: a miss, never stale bytes.
      data->clear();
      result->set_outcome(v1::GetResult::MISSING);
      ++misses;
      continue;
    }
    data->resize(read->size);
    if (options_.verify_sends && BlockChecksum(data->data(), data->size()) != read->checksum) {
      // Changed since it was committed (a same-host peer's write, or memory damage): never sent.
      // Dropped where no reader holds it, so the next put of the key stores it afresh.
      data->clear();
      metrics_.RecordCorruptBlock();
      (void)tier_.Remove(key);
      result->set_outcome(v1::GetResult::MISSING);
      ++misses;
      continue;
    }
    budget -= read->size;
    result->set_outcome(v1::GetResult::FOUND);
    FillInfo(*read, *result->mutable_info());
    CountHit(key);
    ++hits;
  }
  metrics_.RecordGetBlocks(hits, misses);
  return Status::Ok();
}

// ---- Leases -------------------------------------------------------------------------------

grpc::Status StoreService::ReleaseLeases(grpc::ServerContext* context, const v1::ReleaseLeasesRequest* req,
                                         v1::ReleaseLeasesResponse* resp) {
  auth::Principal principal;
  if (grpc::Status refused = Admit(context, auth::Role::kRead, "release_leases", &principal); !refused.ok()) {
    return refused;
  }
  if (std::optional<TenantKeys> tenant = TenantScope(*context, principal)) {
    v1::ReleaseLeasesRequest scoped = *req;
    for (auto& lease : *scoped.mutable_leases()) tenant->ToStored(*lease.mutable_key());
    return Serve(metrics_, in_flight_, "release_leases", [&] { return DoReleaseLeases(scoped, *resp); });
  }
  return Serve(metrics_, in_flight_, "release_leases", [&] { return DoReleaseLeases(*req, *resp); });
}

Status StoreService::DoReleaseLeases(const v1::ReleaseLeasesRequest& req, v1::ReleaseLeasesResponse& resp) {
  KVSTASH_RETURN_IF_ERROR(CheckBatchCount(static_cast<size_t>(req.leases_size()), "leases"));
  std::vector<std::pair<BlockKey, uint64_t>> leases;
  std::unordered_set<BlockKey, BlockKeyHash> seen;
  for (int i = 0; i < req.leases_size(); ++i) {
    const std::string field = FieldAt("leases", static_cast<size_t>(i));
    KVSTASH_ASSIGN_OR_RETURN(BlockKey key, ParseKey(req.leases(i).key(), field + ".key"));
    if (!seen.insert(key).second) return InvalidArgument(field + " repeats key " + key.ToHex());
    leases.emplace_back(key, req.leases(i).lease_epoch());
  }
  uint32_t released = 0;
  for (const auto& [key, epoch] : leases) {
    if (tier_.ReleaseLease(key, epoch).ok()) ++released;
  }
  resp.set_released(released);
  return Status::Ok();
}

}  // namespace kvstash::server
