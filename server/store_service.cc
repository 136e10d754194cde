#include "server/store_service.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstring>
#include <unordered_set>

#include "common/checksum.h"
#include "common/read_grant.h"
#include "kvstash/limits.h"
#include "server/request_validation.h"
#include "server/version.h"

namespace kvstash::server {
namespace {

using Clock = std::chrono::steady_clock;

v1::Tier ToProtoTier(tiers::TierKind kind) {
  switch (kind) {
    case tiers::TierKind::kHbm: return v1::TIER_HBM;
    case tiers::TierKind::kDram: return v1::TIER_DRAM;
    case tiers::TierKind::kSsd: return v1::TIER_SSD;
  }
  return v1::TIER_UNSPECIFIED;
}

// Times one handler and records it, whatever the outcome; counts it as in flight meanwhile.
template <typename Fn>
grpc::Status Serve(ServerMetrics& metrics, std::atomic<int64_t>& in_flight, std::string_view op, Fn&& body) {
  in_flight.fetch_add(1, std::memory_order_relaxed);
  struct Done {
    std::atomic<int64_t>& n;
    ~Done() { n.fetch_sub(1, std::memory_order_release); }
  } done{in_flight};
  const auto start = Clock::now();
  Status status;
  try {
    status = body();
  } catch (const std::bad_alloc&) {
    status = ResourceExhausted("daemon out of memory while serving " + std::string(op));
  }
  metrics.RecordOp(op, status, std::chrono::duration<double>(Clock::now() - start).count());
  return ToGrpc(status);
}

// How long PutCommit waits for the bytes of a two-sided put that the client already sent.
constexpr auto kReceiveWait = std::chrono::seconds(10);

}  // namespace

Status ReadGrantChecker::AuthorizeSend(const std::byte* addr, size_t length, std::span<const std::byte> grant) {
  KVSTASH_ASSIGN_OR_RETURN(const ReadGrant decoded, DecodeReadGrant(grant));
  const BlockKey* key = &decoded.key;
  const uint64_t epoch = decoded.lease_epoch;
  std::optional<tiers::BlockMeta> meta = tier_.Peek(*key);
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
  if (verify_ && BlockChecksum(begin, meta->size) != meta->checksum) {
    return DataLoss("block " + key->ToHex() + " failed its checksum on the daemon; not sent");
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
  if (options_.access_hooks != nullptr) info.set_replicas(options_.access_hooks->ReplicasOf(meta.key));
}

grpc::Status StoreService::Admit(const grpc::ServerContext* context, auth::Role needed, std::string_view op,
                                 auth::Principal* who) {
  if (options_.authorizer == nullptr) {
    if (who != nullptr) *who = auth::Principal{"", auth::Role::kAdmin};
    return grpc::Status::OK;
  }
  Result<auth::Principal> principal = options_.authorizer->Admit(*context, needed);
  if (!principal.ok()) {
    metrics_.RecordRefusal(op, principal.status());
    spdlog::debug("{} refused to {}: {}", op, context->peer(), principal.status().ToString());
    return ToGrpc(principal.status());
  }
  if (who != nullptr) *who = std::move(*principal);
  return grpc::Status::OK;
}

std::optional<TenantKeys> StoreService::TenantScope(const auth::Principal& principal) const {
  if (options_.authorizer == nullptr || principal.role == auth::Role::kAdmin) return std::nullopt;
  return TenantKeys(principal.tenant);
}

// ---- Lookup -------------------------------------------------------------------------------

grpc::Status StoreService::Lookup(grpc::ServerContext* context, const v1::LookupRequest* req, v1::LookupResponse* resp) {
  auth::Principal principal;
  if (grpc::Status refused = Admit(context, auth::Role::kRead, "lookup", &principal); !refused.ok()) return refused;
  if (std::optional<TenantKeys> tenant = TenantScope(principal)) {
    v1::LookupRequest scoped = *req;
    for (std::string& key : *scoped.mutable_keys()) tenant->ToStored(key);
    return Serve(metrics_, in_flight_, "lookup", [&] {
      KVSTASH_RETURN_IF_ERROR(DoLookup(scoped, *resp));
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

// ---- Two-phase put ------------------------------------------------------------------------

grpc::Status StoreService::PutBegin(grpc::ServerContext* context, const v1::PutBeginRequest* req,
                                    v1::PutBeginResponse* resp) {
  auth::Principal principal;
  if (grpc::Status refused = Admit(context, auth::Role::kWrite, "put_begin", &principal); !refused.ok()) return refused;
  if (std::optional<TenantKeys> tenant = TenantScope(principal)) {
    v1::PutBeginRequest scoped = *req;
    for (v1::PutBeginItem& item : *scoped.mutable_items()) {
      tenant->ToStored(*item.mutable_key());
      if (!item.parent().empty()) tenant->ToStored(*item.mutable_parent());
    }
    return Serve(metrics_, in_flight_, "put_begin", [&] { return DoPutBegin(context->peer(), scoped, *resp); });
  }
  return Serve(metrics_, in_flight_, "put_begin", [&] { return DoPutBegin(context->peer(), *req, *resp); });
}

Status StoreService::DoPutBegin(const std::string& session, const v1::PutBeginRequest& req,
                                v1::PutBeginResponse& resp) {
  KVSTASH_RETURN_IF_ERROR(CheckBatchCount(static_cast<size_t>(req.items_size()), "items"));
  if (req.timeout_ms() > limits::kMaxReservationTimeoutMs) {
    return InvalidArgument("timeout_ms is " + std::to_string(req.timeout_ms()) + "; the limit is " +
                           std::to_string(limits::kMaxReservationTimeoutMs));
  }
  const uint64_t timeout_ms = req.timeout_ms() == 0 ? options_.default_reservation_timeout_ms : req.timeout_ms();
  if (req.two_sided() && !two_sided()) {
    return FailedPrecondition("two_sided: this daemon does not serve the two-sided UCX protocol");
  }
  if (req.two_sided() && req.push_lane() >= options_.data_plane.transfer->lanes()) {
    return InvalidArgument("push_lane is " + std::to_string(req.push_lane()) + "; this daemon has " +
                           std::to_string(options_.data_plane.transfer->lanes()) + " lanes");
  }

  struct Parsed {
    BlockKey key;
    std::optional<BlockKey> parent;
    uint64_t size;
  };
  std::vector<Parsed> items;
  items.reserve(static_cast<size_t>(req.items_size()));
  std::unordered_set<BlockKey, BlockKeyHash> seen;
  for (int i = 0; i < req.items_size(); ++i) {
    const auto& item = req.items(i);
    const std::string field = FieldAt("items", static_cast<size_t>(i));
    KVSTASH_ASSIGN_OR_RETURN(BlockKey key, ParseKey(item.key(), field + ".key"));
    KVSTASH_ASSIGN_OR_RETURN(std::optional<BlockKey> parent, ParseOptionalKey(item.parent(), field + ".parent"));
    KVSTASH_RETURN_IF_ERROR(CheckBlockSize(item.size(), options_.max_block_bytes, field + ".size"));
    if (!seen.insert(key).second) return InvalidArgument(field + " repeats key " + key.ToHex());
    items.push_back({key, parent, item.size()});
  }

  uint64_t deduplicated = 0;
  std::vector<std::pair<std::string, ReservationHandles::Entry>> opened;
  resp.set_instance_id(options_.data_plane.instance_id);
  auto still_open = [&](uint64_t id) { return tier_.GetReservation(id).ok(); };
  for (const Parsed& item : items) {
    v1::PutBeginResult* result = resp.add_results();
    Result<tiers::Reservation> reservation = tier_.Reserve(item.key, item.size, item.parent, timeout_ms);
    if (reservation.ok()) {
      ReservationHandles::Entry entry;
      entry.id = reservation->id;
      entry.session = session;
      entry.two_sided = req.two_sided();
      entry.deadline_ms = reservation->deadline_ms;
      if (entry.two_sided) {
        entry.push_tag = ReservationHandles::RandomTag();
      } else {
        // Bytes written one-sided cannot be proven to have arrived: clear the region, so that a
        // commit of bytes never written publishes zeros, never a removed block's bytes. (A
        // two-sided commit needs the whole receive; inline and eager puts fill the region.)
        std::memset(reservation->data, 0, reservation->size);
      }
      std::string handle = handles_.Open(entry, options_.clock->NowMs(), still_open);
      opened.emplace_back(handle, entry);
      result->set_outcome(v1::PutBeginResult::RESERVED);
      result->set_reservation(handle);
      result->set_deadline_ms(reservation->deadline_ms);
      if (options_.data_plane.ucx) result->set_remote_addr(reinterpret_cast<uint64_t>(reservation->data));
      if (entry.two_sided) {
        // The receive lives no longer than the reservation; its region is quarantined after that.
        const Status posted = options_.data_plane.transfer->ExpectReceive(
            entry.push_tag, reservation->data, reservation->size, std::chrono::milliseconds(timeout_ms), req.push_lane());
        if (!posted.ok()) {
          Unwind(opened);
          return posted;
        }
        result->set_push_tag(entry.push_tag);
      }
      continue;
    }
    switch (reservation.status().code()) {
      case StatusCode::kAlreadyExists:
        result->set_outcome(v1::PutBeginResult::EXISTS);
        ++deduplicated;
        break;
      case StatusCode::kAborted: result->set_outcome(v1::PutBeginResult::BUSY); break;
      case StatusCode::kResourceExhausted: result->set_outcome(v1::PutBeginResult::NO_SPACE); break;
      default:
        // Unexpected: give back what this request opened so it leaves nothing behind.
        Unwind(opened);
        return reservation.status();
    }
  }
  metrics_.RecordPuts(0, deduplicated);
  return Status::Ok();
}

void StoreService::Unwind(const std::vector<std::pair<std::string, ReservationHandles::Entry>>& opened) {
  for (const auto& [handle, entry] : opened) {
    if (entry.two_sided) options_.data_plane.transfer->CancelReceive(entry.push_tag);
    (void)tier_.Abort(entry.id);
    handles_.Close(handle);
  }
}

grpc::Status StoreService::PutCommit(grpc::ServerContext* context, const v1::PutCommitRequest* req,
                                     v1::PutCommitResponse*) {
  if (grpc::Status refused = Admit(context, auth::Role::kWrite, "put_commit"); !refused.ok()) return refused;
  return Serve(metrics_, in_flight_, "put_commit", [&] { return DoPutCommit(context->peer(), *req); });
}

Status StoreService::DoPutCommit(const std::string& session, const v1::PutCommitRequest& req) {
  KVSTASH_RETURN_IF_ERROR(CheckBatchCount(static_cast<size_t>(req.items_size()), "items"));
  KVSTASH_ASSIGN_OR_RETURN(const std::optional<ReuseAdvice> advice, ParseAdvice(req.advice(), "advice"));
  // Check the whole batch before committing any of it, so a bad item changes nothing. The tier
  // hashes each block again as it commits it, so a batch of one is left to that check alone.
  // No message names a checksum the daemon computed: that would hand out a hash of bytes the
  // caller has not written (a removed block's, once), to retry with.
  const bool check_first = req.items_size() > 1;
  struct Checked {
    std::string handle;
    ReservationHandles::Entry entry;
    tiers::Reservation reservation;
  };
  std::vector<Checked> checked;
  checked.reserve(static_cast<size_t>(req.items_size()));
  std::unordered_set<std::string> seen;
  uint64_t inline_bytes = 0;
  for (int i = 0; i < req.items_size(); ++i) {
    const auto& item = req.items(i);
    const std::string field = FieldAt("items", static_cast<size_t>(i));
    if (!seen.insert(item.reservation()).second) return InvalidArgument(field + " repeats a reservation");
    Result<ReservationHandles::Entry> entry = handles_.Find(item.reservation(), session);
    if (!entry.ok()) return Status(entry.status().code(), field + ": " + entry.status().message());
    Result<tiers::Reservation> reservation = tier_.GetReservation(entry->id);
    if (!reservation.ok()) {
      return NotFound(field + ": the reservation is no longer open (expired, or ended by another request)");
    }
    inline_bytes += item.data().size();
    if (inline_bytes > limits::kMaxInlineBytes) {
      return InvalidArgument("inline data exceeds " + std::to_string(limits::kMaxInlineBytes) + " bytes");
    }
    if (!item.data().empty()) {
      if (entry->two_sided) {
        return InvalidArgument(field + ": a two-sided reservation's bytes come through its receive, not inline");
      }
      if (item.data().size() != reservation->size) {
        return InvalidArgument(field + ".data is " + std::to_string(item.data().size()) +
                               " bytes; the reservation is " + std::to_string(reservation->size));
      }
      if (check_first && BlockChecksum(item.data().data(), item.data().size()) != item.checksum()) {
        return DataLoss(field + ": data does not match checksum " + std::to_string(item.checksum()));
      }
    } else {
      if (entry->two_sided) {
        // Every byte of the region must have come through the receive before it is hashed.
        const Status arrived = options_.data_plane.transfer->AwaitReceive(entry->push_tag, kReceiveWait);
        if (!arrived.ok()) return Status(arrived.code(), field + ": " + arrived.message());
      }
      if (check_first && BlockChecksum(reservation->data, reservation->size) != item.checksum()) {
        return DataLoss(field + ": reserved region does not match checksum " + std::to_string(item.checksum()));
      }
    }
    checked.push_back({item.reservation(), *entry, *reservation});
  }
  uint64_t stored = 0, bytes_inline = 0, bytes_one_sided = 0, bytes_two_sided = 0;
  for (int i = 0; i < req.items_size(); ++i) {
    const auto& item = req.items(i);
    const Checked& c = checked[static_cast<size_t>(i)];
    if (c.entry.two_sided) options_.data_plane.transfer->CancelReceive(c.entry.push_tag);
    if (!item.data().empty()) std::memcpy(c.reservation.data, item.data().data(), c.reservation.size);
    Result<tiers::BlockMeta> committed = tier_.Commit(c.entry.id, item.checksum(), req.pin());
    if (committed.ok()) handles_.Close(c.handle);
    if (committed.ok() && advice) {
      (void)tier_.Advise(c.reservation.key, *advice);
      metrics_.RecordAdvice(*advice, 1);
    }
    if (!committed.ok()) {
      // A reservation that expired after the check, or a single block whose bytes do not match;
      // earlier items stay committed.
      metrics_.RecordPuts(stored, 0);
      metrics_.RecordPutBytes(bytes_inline, bytes_one_sided);
      metrics_.RecordPutBytesTwoSided(bytes_two_sided);
      return Status(committed.status().code(),
                    FieldAt("items", static_cast<size_t>(i)) + ": " + committed.status().message());
    }
    ++stored;
    (!item.data().empty() ? bytes_inline : c.entry.two_sided ? bytes_two_sided : bytes_one_sided) += c.reservation.size;
  }
  metrics_.RecordPuts(stored, 0);
  metrics_.RecordPutBytes(bytes_inline, bytes_one_sided);
  metrics_.RecordPutBytesTwoSided(bytes_two_sided);
  return Status::Ok();
}

grpc::Status StoreService::PutAbort(grpc::ServerContext* context, const v1::PutAbortRequest* req,
                                    v1::PutAbortResponse* resp) {
  if (grpc::Status refused = Admit(context, auth::Role::kWrite, "put_abort"); !refused.ok()) return refused;
  return Serve(metrics_, in_flight_, "put_abort", [&] { return DoPutAbort(context->peer(), *req, *resp); });
}

Status StoreService::DoPutAbort(const std::string& session, const v1::PutAbortRequest& req,
                                v1::PutAbortResponse& resp) {
  KVSTASH_RETURN_IF_ERROR(CheckBatchCount(static_cast<size_t>(req.reservations_size()), "reservations"));
  std::unordered_set<std::string> seen;
  for (int i = 0; i < req.reservations_size(); ++i) {
    if (!seen.insert(req.reservations(i)).second) {
      return InvalidArgument(FieldAt("reservations", static_cast<size_t>(i)) + " is repeated");
    }
  }
  uint32_t aborted = 0;
  for (const std::string& handle : req.reservations()) {
    // Another connection's handle, or a malformed one, is simply not ours to abort.
    Result<ReservationHandles::Entry> entry = handles_.Find(handle, session);
    if (!entry.ok()) continue;
    // Withdraw a two-sided receive first, so nothing lands in the region once it is free.
    if (entry->two_sided) options_.data_plane.transfer->CancelReceive(entry->push_tag);
    if (tier_.Abort(entry->id).ok()) ++aborted;
    handles_.Close(handle);
  }
  resp.set_aborted(aborted);
  return Status::Ok();
}

// ---- Inline put / get ---------------------------------------------------------------------

grpc::Status StoreService::Put(grpc::ServerContext* context, const v1::PutRequest* req, v1::PutResponse* resp) {
  auth::Principal principal;
  if (grpc::Status refused = Admit(context, auth::Role::kWrite, "put", &principal); !refused.ok()) return refused;
  if (std::optional<TenantKeys> tenant = TenantScope(principal)) {
    v1::PutRequest scoped = *req;  // copies the inline bytes too: the price of a tenant's inline put
    for (v1::PutItem& item : *scoped.mutable_items()) {
      tenant->ToStored(*item.mutable_key());
      if (!item.parent().empty()) tenant->ToStored(*item.mutable_parent());
    }
    return Serve(metrics_, in_flight_, "put", [&] { return DoPut(scoped, *resp); });
  }
  return Serve(metrics_, in_flight_, "put", [&] { return DoPut(*req, *resp); });
}

Status StoreService::DoPut(const v1::PutRequest& req, v1::PutResponse& resp) {
  KVSTASH_RETURN_IF_ERROR(CheckBatchCount(static_cast<size_t>(req.items_size()), "items"));
  KVSTASH_ASSIGN_OR_RETURN(const std::optional<ReuseAdvice> advice, ParseAdvice(req.advice(), "advice"));
  struct Parsed {
    BlockKey key;
    std::optional<BlockKey> parent;
    uint64_t checksum;
  };
  std::vector<Parsed> items;
  items.reserve(static_cast<size_t>(req.items_size()));
  std::unordered_set<BlockKey, BlockKeyHash> seen;
  uint64_t total = 0;
  for (int i = 0; i < req.items_size(); ++i) {
    const auto& item = req.items(i);
    const std::string field = FieldAt("items", static_cast<size_t>(i));
    KVSTASH_ASSIGN_OR_RETURN(BlockKey key, ParseKey(item.key(), field + ".key"));
    KVSTASH_ASSIGN_OR_RETURN(std::optional<BlockKey> parent, ParseOptionalKey(item.parent(), field + ".parent"));
    KVSTASH_RETURN_IF_ERROR(CheckBlockSize(item.data().size(), options_.max_block_bytes, field + ".data"));
    if (!seen.insert(key).second) return InvalidArgument(field + " repeats key " + key.ToHex());
    total += item.data().size();
    if (total > limits::kMaxInlineBytes) {
      return InvalidArgument("inline data exceeds " + std::to_string(limits::kMaxInlineBytes) + " bytes");
    }
    const uint64_t checksum = BlockChecksum(item.data().data(), item.data().size());
    if (item.checksum() != 0 && item.checksum() != checksum) {
      return DataLoss(field + ": data does not match checksum " + std::to_string(item.checksum()));
    }
    items.push_back({key, parent, checksum});
  }
  uint64_t stored = 0, deduplicated = 0, bytes = 0;
  for (int i = 0; i < req.items_size(); ++i) {
    const Parsed& item = items[static_cast<size_t>(i)];
    const std::string& data = req.items(i).data();
    Result<tiers::Reservation> reservation =
        tier_.Reserve(item.key, data.size(), item.parent, options_.default_reservation_timeout_ms);
    if (!reservation.ok()) {
      switch (reservation.status().code()) {
        case StatusCode::kAlreadyExists:
          resp.add_outcomes(v1::PutResponse::EXISTS);
          ++deduplicated;
          continue;
        case StatusCode::kAborted: resp.add_outcomes(v1::PutResponse::BUSY); continue;
        case StatusCode::kResourceExhausted: resp.add_outcomes(v1::PutResponse::NO_SPACE); continue;
        default: metrics_.RecordPuts(stored, deduplicated); return reservation.status();
      }
    }
    std::memcpy(reservation->data, data.data(), data.size());
    Result<tiers::BlockMeta> committed = tier_.Commit(reservation->id, item.checksum, req.pin());
    if (committed.ok() && advice) {
      (void)tier_.Advise(item.key, *advice);
      metrics_.RecordAdvice(*advice, 1);
    }
    if (!committed.ok()) {
      (void)tier_.Abort(reservation->id);
      metrics_.RecordPuts(stored, deduplicated);
      return committed.status();
    }
    resp.add_outcomes(v1::PutResponse::STORED);
    ++stored;
    bytes += data.size();
  }
  metrics_.RecordPuts(stored, deduplicated);
  metrics_.RecordPutBytes(bytes, 0);
  return Status::Ok();
}

grpc::Status StoreService::Get(grpc::ServerContext* context, const v1::GetRequest* req, v1::GetResponse* resp) {
  auth::Principal principal;
  if (grpc::Status refused = Admit(context, auth::Role::kRead, "get", &principal); !refused.ok()) return refused;
  if (std::optional<TenantKeys> tenant = TenantScope(principal)) {
    v1::GetRequest scoped = *req;
    for (std::string& key : *scoped.mutable_keys()) tenant->ToStored(key);
    return Serve(metrics_, in_flight_, "get", [&] {
      KVSTASH_RETURN_IF_ERROR(DoGet(scoped, *resp));
      for (v1::GetResult& result : *resp->mutable_results()) {
        if (result.has_info()) tenant->ToClient(*result.mutable_info());
      }
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
    for (const BlockKey& key : keys) {
      v1::GetResult* result = resp.add_results();
      if (std::optional<tiers::BlockMeta> meta = tier_.Find(key, lease_ms)) {
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
  if (std::optional<TenantKeys> tenant = TenantScope(principal)) {
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

// ---- Remove / Stat / Stats / List / Health ------------------------------------------------

grpc::Status StoreService::Remove(grpc::ServerContext* context, const v1::RemoveRequest* req, v1::RemoveResponse* resp) {
  auth::Principal principal;
  if (grpc::Status refused = Admit(context, auth::Role::kWrite, "remove", &principal); !refused.ok()) return refused;
  if (options_.authorizer != nullptr) {
    spdlog::info("remove of {} keys by tenant {} ({}) from {}", req->keys_size(), principal.tenant,
                 auth::ToString(principal.role), context->peer());
  }
  if (std::optional<TenantKeys> tenant = TenantScope(principal)) {
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
  if (std::optional<TenantKeys> tenant = TenantScope(principal)) {
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

}  // namespace kvstash::server

namespace kvstash::server {

grpc::Status StoreService::DataPlane(grpc::ServerContext* context, const v1::DataPlaneRequest*, v1::DataPlaneResponse* resp) {
  auth::Principal principal;
  if (grpc::Status refused = Admit(context, auth::Role::kRead, "data_plane", &principal); !refused.ok()) return refused;
  return Serve(metrics_, in_flight_, "data_plane", [&] {
    const DataPlaneInfo& dp = options_.data_plane;
    // The remote key below reaches the whole arena, every tenant's blocks and writes included:
    // with tokens on, only admin principals (the operator's trusted engines) get it; tenants
    // use the inline path, whose every key is scoped to them (docs/SECURITY.md).
    const bool offer_ucx = dp.ucx && (options_.authorizer == nullptr || principal.role == auth::Role::kAdmin);
    resp->set_ucx_available(offer_ucx);
    resp->set_default_lease_ms(options_.default_lease_ms);
    if (offer_ucx) {
      resp->set_worker_address(dp.worker_address);
      resp->set_rkey(dp.packed_rkey);
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
      resp->set_protocol(dp.protocol);
    }
    return Status::Ok();
  });
}

}  // namespace kvstash::server
