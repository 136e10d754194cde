// StoreService's administrative handlers: Remove, Stat, Stats, List, Health and DataPlane.
#include <spdlog/spdlog.h>

#include "kvstash/limits.h"
#include "server/request_validation.h"
#include "server/store_service.h"
#include "server/store_service_internal.h"
#include "server/version.h"

namespace kvstash::server {

using store_internal::Serve;
using store_internal::ToProtoTier;

// ---- Remove / Stat / Stats / List / Health ------------------------------------------------

grpc::Status StoreService::Remove(grpc::ServerContext* context, const v1::RemoveRequest* req, v1::RemoveResponse* resp) {
  auth::Principal principal;
  if (grpc::Status refused = Admit(context, auth::Role::kWrite, "remove", &principal); !refused.ok()) return refused;
  if (options_.authorizer != nullptr) {
    spdlog::info("remove of {} keys by tenant {} ({}) from {}", req->keys_size(), principal.tenant,
                 auth::ToString(principal.role), context->peer());
  }
  if (std::optional<TenantKeys> tenant = TenantScope(*context, principal)) {
    v1::RemoveRequest scoped = *req;
    for (std::string& key : *scoped.mutable_keys()) tenant->ToStored(key);
    return Serve(metrics_, in_flight_, "remove", [&] { return DoRemove(scoped, *resp); });
  }
  return Serve(metrics_, in_flight_, "remove", [&] { return DoRemove(*req, *resp); });
}

Status StoreService::DoRemove(const v1::RemoveRequest& req, v1::RemoveResponse& resp) {
  KVSTASH_ASSIGN_OR_RETURN(const std::vector<BlockKey> keys, ParseKeyBatch(req.keys(), "keys"));
  // Refuse the whole request if any block is leased, before removing anything.
  const uint64_t now = options_.clock->NowMs();
  for (size_t i = 0; i < keys.size(); ++i) {
    std::optional<tiers::BlockMeta> meta = tier_.Peek(keys[i]);
    if (meta && meta->lease_until_ms > now) {
      return FailedPrecondition(FieldAt("keys", i) + ": block " + keys[i].ToHex() + " is leased for another " +
                                std::to_string(meta->lease_until_ms - now) + " ms; nothing was removed");
    }
  }
  for (const BlockKey& key : keys) {
    const Status removed = tier_.Remove(key);
    if (removed.ok()) {
      resp.add_outcomes(v1::RemoveResponse::REMOVED);
    } else if (removed.code() == StatusCode::kNotFound) {
      resp.add_outcomes(v1::RemoveResponse::MISSING);
    } else {
      // A lease taken after the check above; blocks before this one are already removed.
      return Status(removed.code(), "block " + key.ToHex() + ": " + removed.message());
    }
  }
  return Status::Ok();
}

grpc::Status StoreService::Stat(grpc::ServerContext* context, const v1::StatRequest* req, v1::StatResponse* resp) {
  auth::Principal principal;
  if (grpc::Status refused = Admit(context, auth::Role::kRead, "stat", &principal); !refused.ok()) return refused;
  if (std::optional<TenantKeys> tenant = TenantScope(*context, principal)) {
    v1::StatRequest scoped = *req;
    for (std::string& key : *scoped.mutable_keys()) tenant->ToStored(key);
    return Serve(metrics_, in_flight_, "stat", [&] {
      KVSTASH_RETURN_IF_ERROR(DoStat(scoped, *resp));
      for (auto& entry : *resp->mutable_entries()) {
        if (entry.has_info()) tenant->ToClient(*entry.mutable_info());
      }
      return Status::Ok();
    });
  }
  return Serve(metrics_, in_flight_, "stat", [&] { return DoStat(*req, *resp); });
}

Status StoreService::DoStat(const v1::StatRequest& req, v1::StatResponse& resp) {
  KVSTASH_ASSIGN_OR_RETURN(const std::vector<BlockKey> keys, ParseKeyBatch(req.keys(), "keys"));
  for (const BlockKey& key : keys) {
    auto* entry = resp.add_entries();
    if (std::optional<tiers::BlockMeta> meta = tier_.Peek(key)) {
      entry->set_found(true);
      FillInfo(*meta, *entry->mutable_info());
    }
  }
  return Status::Ok();
}

grpc::Status StoreService::Stats(grpc::ServerContext* context, const v1::StatsRequest*, v1::StatsResponse* resp) {
  if (grpc::Status refused = Admit(context, auth::Role::kAdmin, "stats"); !refused.ok()) return refused;
  return Serve(metrics_, in_flight_, "stats", [&] { return DoStats(*resp); });
}

Status StoreService::DoStats(v1::StatsResponse& resp) {
  resp.set_version(kVersion);
  resp.set_member_id(member_id());
  resp.set_uptime_ms(options_.clock->NowMs() - start_ms_);
  const tiers::TierUsage usage = stats_.Usage();
  const tiers::TierCounters counters = stats_.Counters();
  for (const tiers::TierUsageEntry& entry : stats_.UsageByTier()) {
    v1::TierStats* t = resp.add_tiers();
    t->set_tier(ToProtoTier(entry.kind));
    t->set_capacity_bytes(entry.usage.capacity_bytes);
    t->set_used_bytes(entry.usage.used_bytes);
    t->set_reserved_bytes(entry.usage.reserved_bytes);
    t->set_blocks(entry.usage.blocks);
    t->set_leased_blocks(entry.usage.leased_blocks);
    t->set_pinned_blocks(entry.usage.pinned_blocks);
    if (entry.kind == tiers::TierKind::kDram) {
      t->set_evictions(counters.evicted_capacity + counters.evicted_fragmentation);
      t->set_eviction_policy(options_.eviction_policy);
      t->set_huge_pages(options_.huge_pages);
    } else if (entry.kind == tiers::TierKind::kHbm) {
      const tiers::TierCounters hbm = stats_.HbmCounters();
      t->set_evictions(hbm.evicted_capacity + hbm.evicted_fragmentation);  // each one demoted to DRAM or dropped
      t->set_eviction_policy(stats_.hbm_policy_name());
    } else {
      t->set_evictions(stats_.ManagerCounters().ssd.blocks_reclaimed);
      t->set_eviction_policy("fifo segments, hot reinsertion");
    }
  }
  resp.set_lookup_hit_blocks(metrics_.lookup_hit_blocks());
  resp.set_lookup_miss_blocks(metrics_.lookup_miss_blocks());
  resp.set_get_hits(metrics_.get_hits());
  resp.set_get_misses(metrics_.get_misses());
  resp.set_puts_stored(metrics_.puts_stored());
  resp.set_puts_deduplicated(metrics_.puts_deduplicated());
  resp.set_reservations_open(usage.reservations);
  resp.set_data_plane(options_.data_plane.ucx ? "ucx (" + options_.data_plane.transports + ")" : "inline");
  resp.set_gpu_data_path(options_.data_plane.gpu_data_path);
  resp.set_hbm_serving(options_.data_plane.hbm_serving);
  resp.set_membership(membership());
  for (const tiers::BlockMeta& meta : stats_.Hottest(kHottestBlocks)) {
    if (meta.hits > 0) FillInfo(meta, *resp.add_hottest());
  }
  resp.set_put_bytes_inline(metrics_.put_bytes_inline());
  resp.set_put_bytes_one_sided(metrics_.put_bytes_one_sided());
  resp.set_put_bytes_two_sided(metrics_.put_bytes_two_sided());
  if (options_.data_plane.transfer != nullptr) {
    const transfer::TwoSidedCounters pushed = options_.data_plane.transfer->counters();
    resp.set_get_bytes_two_sided(pushed.bytes_sent);
    resp.set_two_sided_sends_in_flight(pushed.sends_in_flight);
    resp.set_two_sided_rejected(pushed.requests_rejected);
    resp.set_two_sided_receives_open(pushed.receives_open);
    resp.set_eager_puts_stored(pushed.eager_puts_stored);
    resp.set_eager_puts_refused(pushed.eager_puts_refused);
    resp.set_eager_puts_failed(pushed.eager_puts_failed);
    resp.set_eager_gets_sent(pushed.eager_gets_sent);
    resp.set_eager_gets_refused(pushed.eager_gets_refused);
    for (size_t i = 0; i < transfer::kRefusalKinds; ++i) {
      (*resp.mutable_refused_messages())[std::string(transfer::RefusalName(static_cast<transfer::Refusal>(i)))] =
          pushed.refused[i];
    }
    resp.set_one_sided_transports(options_.data_plane.transfer->one_sided_transports());
  }
  resp.set_corrupt_blocks(metrics_.corrupt_blocks());
  return Status::Ok();
}

grpc::Status StoreService::List(grpc::ServerContext* context, const v1::ListRequest* req, v1::ListResponse* resp) {
  if (grpc::Status refused = Admit(context, auth::Role::kAdmin, "list"); !refused.ok()) return refused;
  return Serve(metrics_, in_flight_, "list", [&] { return DoList(*req, *resp); });
}

Status StoreService::DoList(const v1::ListRequest& req, v1::ListResponse& resp) {
  KVSTASH_ASSIGN_OR_RETURN(std::optional<BlockKey> after, ParseOptionalKey(req.start_after(), "start_after"));
  if (req.limit() > limits::kMaxListLimit) {
    return InvalidArgument("limit is " + std::to_string(req.limit()) + "; the limit is " +
                           std::to_string(limits::kMaxListLimit));
  }
  const uint32_t limit = req.limit() == 0 ? limits::kDefaultListLimit : req.limit();
  tiers::ListPage page = tier_.List(after, limit);
  for (const tiers::BlockMeta& meta : page.blocks) FillInfo(meta, *resp.add_blocks());
  if (page.next_after) resp.set_next_start_after(std::string(page.next_after->AsBytes()));
  return Status::Ok();
}

grpc::Status StoreService::Health(grpc::ServerContext* context, const v1::HealthRequest*, v1::HealthResponse* resp) {
  if (grpc::Status refused = Admit(context, auth::Role::kRead, "health"); !refused.ok()) return refused;
  return Serve(metrics_, in_flight_, "health", [&] {
    resp->set_serving(true);
    resp->set_version(kVersion);
    resp->set_member_id(member_id());
    return Status::Ok();
  });
}

grpc::Status StoreService::DataPlane(grpc::ServerContext* context, const v1::DataPlaneRequest*, v1::DataPlaneResponse* resp) {
  auth::Principal principal;
  if (grpc::Status refused = Admit(context, auth::Role::kRead, "data_plane", &principal); !refused.ok()) return refused;
  return Serve(metrics_, in_flight_, "data_plane", [&] {
    const DataPlaneInfo& dp = options_.data_plane;
    // The one-sided plane's remote key reaches the whole arena, every tenant's blocks and writes
    // included: with tokens on, only admin principals (the operator's trusted engines) get it.
    // Tenants get the two-sided plane alone, where the daemon sends only blocks named by a grant
    // it sealed for them and receives only into reservations their checked PutBegin opened — or,
    // without it, the inline path, whose every key is scoped to them (docs/SECURITY.md).
    const bool trusted = options_.authorizer == nullptr || principal.role == auth::Role::kAdmin;
    const bool offer_ucx = dp.ucx && (trusted || two_sided());
    resp->set_ucx_available(offer_ucx);
    resp->set_default_lease_ms(options_.default_lease_ms);
    if (offer_ucx) {
      if (trusted) {
        resp->set_worker_address(dp.worker_address);
        resp->set_rkey(dp.packed_rkey);
      }
      resp->set_transports(dp.transports);
      resp->set_ucx_version(dp.ucx_version);
      resp->set_probe_addr(dp.probe_addr);
      resp->set_instance_id(dp.instance_id);
      resp->set_region_bytes(dp.region_bytes);
      resp->set_two_sided(two_sided());
      if (two_sided()) {
        resp->set_push_worker_address(dp.transfer->push_worker_address());
        for (const std::string& address : dp.transfer->push_worker_addresses()) resp->add_push_lane_addresses(address);
        resp->set_suggested_push_lane(static_cast<uint32_t>(next_lane_.fetch_add(1, std::memory_order_relaxed) %
                                                            dp.transfer->lanes()));
        resp->set_eager_requests(dp.transfer->serves_eager_requests());
      }
      resp->set_protocol(trusted ? std::string(Name(dp.protocol)) : "two-sided");
      // A reader that receives from the HBM arena through cuda_ipc maps the whole arena (CUDA IPC
      // exports allocations, not ranges): only trusted principals are offered it (docs/SECURITY.md).
      if (trusted && two_sided() && dp.hbm_region_bytes > 0) {
        resp->set_hbm_region_base(dp.hbm_region_base);
        resp->set_hbm_region_bytes(dp.hbm_region_bytes);
      }
      resp->set_hbm_serving(trusted || dp.hbm_region_bytes == 0
                                ? dp.hbm_serving
                                : "staged: HBM blocks are sent from GPU memory to trusted engines only");
    }
    return Status::Ok();
  });
}

}  // namespace kvstash::server
