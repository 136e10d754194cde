// The two ways block bytes travel: one-sided UCX (default) and inline gRPC (fallback, admin).
#include <cstring>
#include <optional>
#include <unordered_set>

#include "client/connection.h"
#include "common/checksum.h"
#include "common/read_grant.h"

namespace kvstash::client_internal {

Result<std::shared_ptr<transfer::TransferEngine>> EngineSource::GetOrCreate() {
  MutexLock lock(mu_);
  if (engine_) return engine_;
  transfer::TransferEngineOptions engine_options;
  engine_options.ucx.transports = options_.ucx_transports;
  engine_options.workers = options_.transfer_workers;
  engine_options.timeout_ms = options_.timeout_ms;
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<transfer::TransferEngine> created,
                           transfer::TransferEngine::Create(engine_options));
  engine_ = std::move(created);
  return engine_;
}

std::shared_ptr<transfer::TransferEngine> EngineSource::Existing() const {
  MutexLock lock(mu_);
  return engine_;
}

Status Connection::SetUpDataPath(EngineSource& engines) {
  if (options_.data_path == DataPath::kInline) return Status::Ok();
  v1::DataPlaneResponse dp;
  {
    auto ctx = Context();
    KVSTASH_RETURN_IF_ERROR(Call(stub_->DataPlane(ctx.get(), v1::DataPlaneRequest(), &dp), "data_plane"));
  }
  if (dp.default_lease_ms() > 0) lease_ms_ = dp.default_lease_ms();
  if (options_.lease_ms > 0) lease_ms_ = std::min<uint64_t>(options_.lease_ms, limits::kMaxLeaseMs);
  auto unavailable = [&](const std::string& why) {
    if (options_.data_path == DataPath::kUcx) {
      return Unavailable("UCX data plane to kvstashd at " + options_.address + " unavailable: " + why);
    }
    engine_.reset();
    return Status::Ok();  // kAuto: inline gRPC instead
  };
  if (!dp.ucx_available()) return unavailable("the daemon runs without UCX (--no-ucx)");
  if (dp.worker_address().empty() || dp.rkey().empty() || dp.probe_addr() == 0) {
    return unavailable("the daemon sent an incomplete data-plane description");
  }
  auto created = engines.GetOrCreate();
  if (!created.ok()) return unavailable(created.status().message());
  engine_ = std::move(*created);
  Result<transfer::Protocol> chosen = ChooseProtocol(dp);
  if (!chosen.ok()) {
    if (chosen.status().code() == StatusCode::kFailedPrecondition) return Status(chosen.status().code(), chosen.status().message());
    return unavailable(chosen.status().message());
  }
  protocol_ = *chosen;
  eager_ = protocol_ == transfer::Protocol::kTwoSided && dp.eager_requests();
  push_lane_ = dp.suggested_push_lane();
  const transfer::RemoteTarget described = TargetOf(dp);
  {
    MutexLock lock(target_mu_);
    target_ = described;
    instance_id_ = dp.instance_id();
    target_lane_ = LaneOf(dp);
  }
  // Probe: one 8-byte read with the chosen protocol proves that the endpoint, the rkey (or the
  // daemon's push service) and a transport all work. An all-zero grant asks for the probe bytes.
  uint64_t probe = 0;
  transfer::TransferOp op{transfer::OpKind::kGet, &probe, sizeof(probe), dp.probe_addr(), {}};
  Status run = engine_->Run(described, std::span(&op, 1));
  if (run.ok()) run = op.status;
  if (!run.ok()) return unavailable(run.message());
  ucx_transports_ = options_.ucx_transports.empty() ? "default" : options_.ucx_transports;
  return Status::Ok();
}

Result<transfer::RemoteTarget> Connection::TargetFor(uint64_t incarnation) {
  {
    MutexLock lock(target_mu_);
    if (incarnation == instance_id_) return target_;
  }
  v1::DataPlaneResponse dp;
  auto ctx = Context();
  KVSTASH_RETURN_IF_ERROR(Call(stub_->DataPlane(ctx.get(), v1::DataPlaneRequest(), &dp), "data_plane"));
  if (!dp.ucx_available() || dp.instance_id() != incarnation) {
    return Unavailable("kvstashd at " + options_.address + " restarted while this request was in flight");
  }
  transfer::RemoteTarget old;
  {
    MutexLock lock(target_mu_);
    old = target_;
    target_ = TargetOf(dp);
    instance_id_ = dp.instance_id();
    target_lane_ = LaneOf(dp);
  }
  // The old incarnation is gone: release its endpoint and any mapping of its memory now.
  if (!old.worker_address.empty() && old.worker_address != dp.worker_address()) engine_->ForgetTarget(old);
  return TargetOf(dp);
}

transfer::RemoteTarget Connection::TargetOf(const v1::DataPlaneResponse& dp) const {
  // The registered range bounds every address this daemon hands out (checked before transfers).
  const std::string& push = dp.push_lane_addresses_size() > 0 ? dp.push_lane_addresses(static_cast<int>(LaneOf(dp)))
                                                               : dp.push_worker_address();
  transfer::RemoteTarget t{dp.worker_address(), dp.rkey(), dp.probe_addr(), dp.region_bytes(), protocol_, push};
  t.push_lane_addresses.assign(dp.push_lane_addresses().begin(), dp.push_lane_addresses().end());
  return t;
}

uint32_t Connection::LaneOf(const v1::DataPlaneResponse& dp) const {
  return push_lane_ < static_cast<uint32_t>(dp.push_lane_addresses_size()) ? push_lane_ : 0;
}

Result<transfer::Protocol> Connection::ChooseProtocol(const v1::DataPlaneResponse& dp) {
  UcxProtocol wanted = options_.ucx_protocol;
  if (wanted == UcxProtocol::kAuto) {
    if (dp.protocol() == "one-sided" || !dp.two_sided()) wanted = UcxProtocol::kOneSided;
    else if (dp.protocol() == "two-sided") wanted = UcxProtocol::kTwoSided;
  }
  switch (wanted) {
    case UcxProtocol::kOneSided: return transfer::Protocol::kOneSided;
    case UcxProtocol::kTwoSided:
      if (!dp.two_sided()) {
        return FailedPrecondition("kvstashd at " + options_.address +
                                  " serves no two-sided UCX transfers (it runs with --ucx-protocol one-sided)");
      }
      if (dp.push_worker_address().empty()) return Internal("daemon offered two-sided transfers without an address");
      return transfer::Protocol::kTwoSided;
    case UcxProtocol::kAuto: break;
  }
  // The daemon leaves it to us: one-sided where it is truly one-sided, two-sided where UCX would
  // emulate it (docs/DATA_PLANE.md has the measurements behind this rule).
  transfer::RemoteTarget probe{dp.worker_address(), dp.rkey(), dp.probe_addr(), dp.region_bytes(),
                               transfer::Protocol::kOneSided, dp.push_worker_address()};
  Result<transfer::Protocol> preferred = engine_->PreferredProtocol(probe);
  const bool can_push = !dp.push_worker_address().empty();
  // The daemon's one-sided worker speaks same-host shared memory only (transfer/transport_policy.h):
  // from another host, or with transports that exclude it, it cannot be reached at all.
  if (!preferred.ok()) return can_push ? Result<transfer::Protocol>(transfer::Protocol::kTwoSided) : preferred;
  if (*preferred == transfer::Protocol::kTwoSided && !can_push) return transfer::Protocol::kOneSided;
  return *preferred;
}

void Connection::AbortReservations(const std::vector<std::string>& handles) {
  if (handles.empty()) return;
  v1::PutAbortRequest abort;
  for (const std::string& handle : handles) abort.add_reservations(handle);
  v1::PutAbortResponse aborted;
  auto ctx = Context();
  (void)stub_->PutAbort(ctx.get(), abort, &aborted);
}

Status Connection::PutRound(std::span<const PutItem> items, const PutOptions& put_options,
                              std::vector<PutOutcome>& outcomes) {
  v1::PutBeginRequest begin;
  begin.set_timeout_ms(options_.reservation_timeout_ms);
  const bool two_sided = engine_ && protocol_ == transfer::Protocol::kTwoSided;
  begin.set_two_sided(two_sided);
  if (two_sided) {
    MutexLock lock(target_mu_);
    begin.set_push_lane(target_lane_);
  }
  for (const PutItem& item : items) {
    v1::PutBeginItem* p = begin.add_items();
    p->set_key(std::string(item.key.AsBytes()));
    p->set_size(item.data.size());
    if (item.parent) p->set_parent(std::string(item.parent->AsBytes()));
  }
  v1::PutBeginResponse begun;
  {
    auto ctx = Context();
    KVSTASH_RETURN_IF_ERROR(Call(stub_->PutBegin(ctx.get(), begin, &begun), "put_begin"));
  }
  if (begun.results_size() != static_cast<int>(items.size())) return Internal("daemon answered a malformed put_begin");

  v1::PutCommitRequest commit;
  commit.set_pin(put_options.pin);
  if (put_options.advice) {
    commit.set_advice(*put_options.advice == ReuseAdvice::kLikely ? v1::REUSE_ADVICE_LIKELY
                                                                   : v1::REUSE_ADVICE_UNLIKELY);
  }
  std::vector<std::string> reserved;
  std::vector<transfer::TransferOp> writes;
  for (size_t i = 0; i < items.size(); ++i) {
    const auto& r = begun.results(static_cast<int>(i));
    switch (r.outcome()) {
      case v1::PutBeginResult::RESERVED: {
        v1::PutCommitItem* c = commit.add_items();
        c->set_reservation(r.reservation());
        c->set_checksum(BlockChecksum(items[i].data.data(), items[i].data.size()));
        reserved.push_back(r.reservation());
        if (engine_) {
          if (r.remote_addr() == 0 || (two_sided && r.push_tag() == 0)) {
            AbortReservations(reserved);
            return Internal("daemon reserved space without an address (or tag) for the UCX path");
          }
          // UCX only reads the source of a put; the const_cast does not license a write.
          writes.push_back({transfer::OpKind::kPut, const_cast<std::byte*>(items[i].data.data()),
                            items[i].data.size(), r.remote_addr(), {}});
          writes.back().tag = r.push_tag();
        } else {
          c->set_data(items[i].data.data(), items[i].data.size());
        }
        outcomes.push_back(PutOutcome::kStored);
        break;
      }
      case v1::PutBeginResult::EXISTS: outcomes.push_back(PutOutcome::kExists); break;
      case v1::PutBeginResult::BUSY: outcomes.push_back(PutOutcome::kBusy); break;
      case v1::PutBeginResult::NO_SPACE: outcomes.push_back(PutOutcome::kNoSpace); break;
      default: AbortReservations(reserved); return Internal("daemon answered an unknown put_begin outcome");
    }
  }
  if (commit.items_size() == 0) return Status::Ok();
  if (!writes.empty()) {
    Result<transfer::RemoteTarget> to = TargetFor(begun.instance_id());
    Status st = to.ok() ? engine_->Run(*to, writes) : to.status();
    for (const auto& w : writes) {
      if (st.ok() && !w.status.ok()) st = w.status;
    }
    if (!st.ok()) {
      AbortReservations(reserved);
      return Status(st.code(), "writing blocks to kvstashd at " + options_.address + ": " + st.message());
    }
  }
  v1::PutCommitResponse done;
  auto ctx = Context();
  const Status st = Call(stub_->PutCommit(ctx.get(), commit, &done), "put_commit");
  if (!st.ok()) AbortReservations(reserved);
  return st;
}

Status Connection::PutRoundEager(std::span<const PutItem> items, const PutOptions& put_options,
                                 std::vector<PutOutcome>& outcomes) {
  std::unordered_set<BlockKey, BlockKeyHash> seen;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!seen.insert(items[i].key).second) {
      return InvalidArgument("item " + std::to_string(i) + " repeats key " + items[i].key.ToHex());
    }
  }
  transfer::RemoteTarget to;
  {
    MutexLock lock(target_mu_);
    to = target_;
  }
  std::vector<transfer::TransferOp> ops(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    transfer::TransferOp& op = ops[i];
    op.kind = transfer::OpKind::kEagerPut;
    // UCX only reads the source of a put; the const_cast does not license a write.
    op.local = const_cast<std::byte*>(items[i].data.data());
    op.length = items[i].data.size();
    op.key = items[i].key;
    op.parent = items[i].parent;
    op.pin = put_options.pin;  // the engine hashes each block just before sending it
    op.advice = put_options.advice;
  }
  KVSTASH_RETURN_IF_ERROR(engine_->Run(to, ops));
  std::vector<std::optional<PutOutcome>> answered(items.size());
  std::vector<PutItem> retry;
  for (size_t i = 0; i < items.size(); ++i) {
    const Status& st = ops[i].status;
    switch (st.code()) {
      case StatusCode::kOk: answered[i] = PutOutcome::kStored; break;
      case StatusCode::kAlreadyExists: answered[i] = PutOutcome::kExists; break;
      case StatusCode::kAborted: answered[i] = PutOutcome::kBusy; break;
      case StatusCode::kResourceExhausted: answered[i] = PutOutcome::kNoSpace; break;
      case StatusCode::kUnavailable:
      case StatusCode::kDeadlineExceeded: retry.push_back(items[i]); break;  // the transport, not the put
      default:
        return Status(st.code(), "eager put of block " + items[i].key.ToHex() + " to kvstashd at " + options_.address +
                                     ": " + st.message());
    }
  }
  std::vector<PutOutcome> retried;
  if (!retry.empty()) KVSTASH_RETURN_IF_ERROR(PutRound(retry, put_options, retried));
  size_t next_retried = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    outcomes.push_back(answered[i] ? *answered[i] : retried[next_retried++]);
  }
  return Status::Ok();
}

Status Connection::GetRoundInline(std::span<GetItem> items, const std::vector<size_t>& indices,
                                    std::vector<size_t>& deferred) {
  v1::GetRequest req;
  for (size_t i : indices) req.add_keys(std::string(items[i].key.AsBytes()));
  v1::GetResponse resp;
  auto ctx = Context();
  KVSTASH_RETURN_IF_ERROR(Call(stub_->Get(ctx.get(), req, &resp), "get"));
  if (resp.results_size() != static_cast<int>(indices.size())) return Internal("daemon answered a malformed get");
  for (size_t j = 0; j < indices.size(); ++j) {
    GetItem& item = items[indices[j]];
    const v1::GetResult& r = resp.results(static_cast<int>(j));
    if (r.outcome() == v1::GetResult::DEFERRED) {
      deferred.push_back(indices[j]);
      continue;
    }
    item.found = false;
    item.size = 0;
    if (r.outcome() != v1::GetResult::FOUND) {
      item.status = NotFound("block " + item.key.ToHex() + " is not stored");
      continue;
    }
    const std::string& data = r.data();
    if (data.size() != r.info().size()) {
      item.status = DataLoss("daemon sent " + std::to_string(data.size()) + " bytes for a block of " +
                             std::to_string(r.info().size()));
      continue;
    }
    if (data.size() > item.buffer.size()) {
      item.status = OutOfRange("block " + item.key.ToHex() + " is " + std::to_string(data.size()) +
                               " bytes; the buffer holds " + std::to_string(item.buffer.size()));
      continue;
    }
    if (options_.verify_checksums && BlockChecksum(data.data(), data.size()) != r.info().checksum()) {
      item.status = DataLoss("block " + item.key.ToHex() + " failed its checksum");
      continue;
    }
    std::memcpy(item.buffer.data(), data.data(), data.size());
    item.found = true;
    item.size = data.size();
    item.status = Status::Ok();
  }
  return Status::Ok();
}

Status Connection::GetRoundUcx(std::span<GetItem> items, const std::vector<size_t>& indices) {
  struct Located {
    size_t item;
    uint64_t size, checksum, remote_addr, lease_epoch;
    bool own_lease;  // taken by this call, so released by it
  };
  std::vector<Located> located;
  std::vector<size_t> to_locate;
  uint64_t incarnation = 0;  // of the addresses located by this call
  {
    MutexLock lock(target_mu_);
    incarnation = instance_id_;  // pre-located items came from a Lookup against the current target
  }
  std::vector<size_t> by_key;  // asked for by key over the two-sided protocol (no locate RPC)
  for (size_t i : indices) {
    const BlockInfo* info = items[i].located;
    if (info != nullptr && info->key == items[i].key && info->remote_addr != 0) {
      located.push_back({i, info->size, info->checksum, info->remote_addr, info->lease_epoch, false});
    } else if (eager_ && !items[i].buffer.empty()) {
      by_key.push_back(i);
    } else {
      to_locate.push_back(i);
    }
  }
  // What the daemon could not send this way (held below DRAM, or the transfer failed) is located.
  if (!by_key.empty()) KVSTASH_RETURN_IF_ERROR(GetByKey(items, by_key, to_locate));
  // The daemon starts a lease after it receives the request, so it runs at least until
  // sent + lease_ms by our clock: a read that finishes before then read leased bytes.
  const auto sent = std::chrono::steady_clock::now();
  if (!to_locate.empty()) {
    v1::GetRequest req;
    for (size_t i : to_locate) req.add_keys(std::string(items[i].key.AsBytes()));
    req.set_locate_only(true);
    req.set_lease_ms(lease_ms_);
    v1::GetResponse resp;
    auto ctx = Context();
    KVSTASH_RETURN_IF_ERROR(Call(stub_->Get(ctx.get(), req, &resp), "get"));
    if (resp.results_size() != static_cast<int>(to_locate.size())) return Internal("daemon answered a malformed get");
    incarnation = resp.instance_id();
    for (size_t j = 0; j < to_locate.size(); ++j) {
      const v1::GetResult& r = resp.results(static_cast<int>(j));
      GetItem& item = items[to_locate[j]];
      if (r.outcome() != v1::GetResult::FOUND) {
        item.found = false;
        item.size = 0;
        item.status = NotFound("block " + item.key.ToHex() + " is not stored");
        continue;
      }
      located.push_back({to_locate[j], r.info().size(), r.info().checksum(), r.info().remote_addr(),
                         r.info().lease_epoch(), true});
    }
  }
  std::vector<transfer::TransferOp> reads;
  std::vector<size_t> read_of;  // reads[k] serves located[read_of[k]]
  std::vector<std::pair<BlockKey, uint64_t>> to_release;
  for (size_t l = 0; l < located.size(); ++l) {
    const Located& loc = located[l];
    GetItem& item = items[loc.item];
    item.found = false;
    item.size = 0;
    if (loc.own_lease && loc.lease_epoch != 0) to_release.emplace_back(item.key, loc.lease_epoch);
    if (loc.size == 0 || loc.size > limits::kMaxBlockBytes || loc.remote_addr == 0) {
      item.status = DataLoss("daemon described block " + item.key.ToHex() + " incompletely");
      continue;
    }
    if (loc.size > item.buffer.size()) {
      item.status = OutOfRange("block " + item.key.ToHex() + " is " + std::to_string(loc.size) +
                               " bytes; the buffer holds " + std::to_string(item.buffer.size()));
      continue;
    }
    reads.push_back({transfer::OpKind::kGet, item.buffer.data(), loc.size, loc.remote_addr, {}});
    reads.back().grant = EncodeReadGrant(item.key, loc.lease_epoch);  // what a two-sided read shows the daemon
    read_of.push_back(l);
  }
  Status run = Status::Ok();
  if (!reads.empty()) {
    Result<transfer::RemoteTarget> from = TargetFor(incarnation);
    run = from.ok() ? engine_->Run(*from, reads) : from.status();
  }
  const bool within_lease = std::chrono::steady_clock::now() < sent + std::chrono::milliseconds(lease_ms_);
  ReleaseLeasesAsync(to_release);
  for (size_t k = 0; k < reads.size(); ++k) {
    const Located& loc = located[read_of[k]];
    GetItem& item = items[loc.item];
    const Status st = run.ok() ? reads[k].status : run;
    if (!st.ok()) {
      // The daemon went away or the transfer failed: a miss, never an error for the whole call.
      // A two-sided read the daemon refused (the block moved or its lease ended) is a plain miss.
      const bool refused = st.code() == StatusCode::kNotFound || st.code() == StatusCode::kFailedPrecondition ||
                           st.code() == StatusCode::kOutOfRange;
      item.status = refused ? NotFound("block " + item.key.ToHex() + " is no longer readable: " + st.message())
                            : Unavailable("reading block " + item.key.ToHex() + ": " + st.message());
      continue;
    }
    if (options_.verify_checksums) {
      if (BlockChecksum(reads[k].local, reads[k].length) != loc.checksum) {
        item.status = DataLoss("block " + item.key.ToHex() + " failed its checksum (moved while read)");
        continue;
      }
    } else if (loc.own_lease && !within_lease) {
      item.status = NotFound("block " + item.key.ToHex() + " was read after its lease ran out");
      continue;
    }
    item.found = true;
    item.size = reads[k].length;
    item.status = Status::Ok();
  }
  return Status::Ok();
}

Status Connection::GetByKey(std::span<GetItem> items, const std::vector<size_t>& indices,
                            std::vector<size_t>& to_locate) {
  transfer::RemoteTarget from;
  {
    MutexLock lock(target_mu_);
    from = target_;
  }
  std::vector<transfer::TransferOp> ops(indices.size());
  for (size_t j = 0; j < indices.size(); ++j) {
    GetItem& item = items[indices[j]];
    ops[j].kind = transfer::OpKind::kEagerGet;
    ops[j].local = item.buffer.data();
    ops[j].length = item.buffer.size();
    ops[j].key = item.key;
  }
  const Status run = engine_->Run(from, ops);
  for (size_t j = 0; j < indices.size(); ++j) {
    GetItem& item = items[indices[j]];
    const transfer::TransferOp& op = ops[j];
    item.found = false;
    item.size = 0;
    const Status& st = run.ok() ? op.status : run;
    switch (st.code()) {
      case StatusCode::kOk:
        // The daemon held the block's lease until its send completed: with checksums off, these
        // bytes were leased while they moved.
        if (options_.verify_checksums && BlockChecksum(item.buffer.data(), op.got_size) != op.got_checksum) {
          item.status = DataLoss("block " + item.key.ToHex() + " failed its checksum");
          break;
        }
        item.found = true;
        item.size = op.got_size;
        item.status = Status::Ok();
        break;
      case StatusCode::kNotFound: item.status = NotFound("block " + item.key.ToHex() + " is not stored"); break;
      case StatusCode::kOutOfRange: item.status = OutOfRange(st.message()); break;
      case StatusCode::kDataLoss: item.status = st; break;
      default:
        // Not in DRAM (FAILED_PRECONDITION), the daemon restarted, the transfer failed: the usual
        // way, which locates (moving the block into DRAM) and refreshes the daemon's address.
        to_locate.push_back(indices[j]);
    }
  }
  return Status::Ok();
}

void Connection::ReleaseLeasesAsync(const std::vector<std::pair<BlockKey, uint64_t>>& leases) {
  if (leases.empty()) return;
  struct Pending {
    grpc::ClientContext ctx;
    v1::ReleaseLeasesRequest req;
    v1::ReleaseLeasesResponse resp;
  };
  auto* call = new Pending();
  call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(options_.timeout_ms));
  Authorize(call->ctx);
  for (const auto& [key, epoch] : leases) {
    auto* lease = call->req.add_leases();
    lease->set_key(std::string(key.AsBytes()));
    lease->set_lease_epoch(epoch);
  }
  {
    MutexLock lock(releases_mu_);
    ++releases_in_flight_;
  }
  stub_->async()->ReleaseLeases(&call->ctx, &call->req, &call->resp, [this, call](grpc::Status) {
    delete call;
    MutexLock lock(releases_mu_);
    --releases_in_flight_;
    releases_done_.notify_all();
  });
}

void Connection::WaitForReleases() {
  MutexLock lock(releases_mu_);
  // Each release carries a deadline of timeout_ms, so this wait ends; the bound is a backstop.
  lock.WaitFor(releases_done_, std::chrono::milliseconds(options_.timeout_ms) * 2, [this] {
    releases_mu_.AssertHeld();  // a wait predicate runs with the mutex held
    return releases_in_flight_ == 0;
  });
}

}  // namespace kvstash::client_internal
