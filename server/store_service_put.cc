// StoreService's write handlers: the two-phase put (PutBegin, PutCommit, PutAbort; one-sided or
// two-sided bytes) and the inline Put.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <unordered_set>

#include "common/checksum.h"
#include "kvstash/limits.h"
#include "server/request_validation.h"
#include "server/store_service.h"
#include "server/store_service_internal.h"

namespace kvstash::server {
namespace {

// How long PutCommit waits for the bytes of a two-sided put that the client already sent.
constexpr auto kReceiveWait = std::chrono::seconds(10);

}  // namespace

using store_internal::Serve;

// ---- Two-phase put ------------------------------------------------------------------------

grpc::Status StoreService::PutBegin(grpc::ServerContext* context, const v1::PutBeginRequest* req,
                                    v1::PutBeginResponse* resp) {
  auth::Principal principal;
  if (grpc::Status refused = Admit(context, auth::Role::kWrite, "put_begin", &principal); !refused.ok()) return refused;
  if (std::optional<TenantKeys> tenant = TenantScope(*context, principal)) {
    v1::PutBeginRequest scoped = *req;
    for (v1::PutBeginItem& item : *scoped.mutable_items()) {
      tenant->ToStored(*item.mutable_key());
      if (!item.parent().empty()) tenant->ToStored(*item.mutable_parent());
    }
    return Serve(metrics_, in_flight_, "put_begin",
                 [&] { return DoPutBegin(context->peer(), scoped, *resp, OwnerOf(principal)); });
  }
  return Serve(metrics_, in_flight_, "put_begin", [&] { return DoPutBegin(context->peer(), *req, *resp); });
}

Status StoreService::DoPutBegin(const std::string& session, const v1::PutBeginRequest& req,
                                v1::PutBeginResponse& resp, tiers::OwnerId owner) {
  KVSTASH_RETURN_IF_ERROR(CheckBatchCount(static_cast<size_t>(req.items_size()), "items"));
  if (req.timeout_ms() > limits::kMaxReservationTimeoutMs) {
    return InvalidArgument("timeout_ms is " + std::to_string(req.timeout_ms()) + "; the limit is " +
                           std::to_string(limits::kMaxReservationTimeoutMs));
  }
  const uint64_t timeout_ms =
      req.timeout_ms() == 0 ? options_.default_reservation_timeout_ms
                            : std::min<uint64_t>(req.timeout_ms(), options_.max_reservation_timeout_ms);
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
    Result<tiers::Reservation> reservation = tier_.Reserve(item.key, item.size, item.parent, timeout_ms, owner);
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
  if (req->replica() && principal.role != auth::Role::kAdmin) {
    // A tenant's token would store the copy under a key derived for that tenant: useless, and
    // charged to it. The peer's --peer-token-file must hold an admin token.
    const Status refused = PermissionDenied("a replica put needs an admin token; tenant " + principal.tenant +
                                            " holds a " + std::string(auth::ToString(principal.role)) + " token");
    metrics_.RecordRefusal("put", refused);
    return ToGrpc(refused);
  }
  if (std::optional<TenantKeys> tenant = TenantScope(*context, principal)) {
    v1::PutRequest scoped = *req;  // copies the inline bytes too: the price of a tenant's inline put
    for (v1::PutItem& item : *scoped.mutable_items()) {
      tenant->ToStored(*item.mutable_key());
      if (!item.parent().empty()) tenant->ToStored(*item.mutable_parent());
    }
    return Serve(metrics_, in_flight_, "put", [&] { return DoPut(scoped, *resp, OwnerOf(principal)); });
  }
  return Serve(metrics_, in_flight_, "put", [&] { return DoPut(*req, *resp); });
}

Status StoreService::DoPut(const v1::PutRequest& req, v1::PutResponse& resp, tiers::OwnerId owner) {
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
        tier_.Reserve(item.key, data.size(), item.parent, options_.default_reservation_timeout_ms, owner);
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

}  // namespace kvstash::server
