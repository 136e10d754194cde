// The data path's setup (contract in client/connection.h): the shared UCX engine, the daemon's
// data-plane description and its target (re-fetched when the daemon restarted), the protocol
// (one-sided or two-sided) chosen once at connect. Block bytes travel one-sided or two-sided over
// UCX (default) or inline in gRPC (fallback, admin): puts in data_path_put.cc, gets and lease
// releases in data_path_get.cc.
#include "client/connection.h"

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
  // A daemon with tokens gives tenants the two-sided plane only (no worker address or rkey for
  // one-sided access to its arena; docs/SECURITY.md).
  const bool one_sided_offered = !dp.worker_address().empty() && !dp.rkey().empty();
  if (dp.probe_addr() == 0 || (!one_sided_offered && (!dp.two_sided() || dp.push_worker_address().empty()))) {
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
    hbm_base_ = dp.hbm_region_base();
    hbm_bytes_ = dp.hbm_region_bytes();
  }
  two_sided_offered_ = dp.two_sided() && !dp.push_worker_address().empty();
  moves_device_memory_ = engine_->moves_device_memory();
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
    hbm_base_ = dp.hbm_region_base();
    hbm_bytes_ = dp.hbm_region_bytes();
  }
  // The old incarnation is gone: release its endpoints and any mapping of its memory now.
  if ((!old.worker_address.empty() && old.worker_address != dp.worker_address()) ||
      (!old.push_worker_address.empty() && old.push_worker_address != dp.push_worker_address())) {
    engine_->ForgetTarget(old);
  }
  return TargetOf(dp);
}

Status Connection::DeviceGetsPossible() const {
  if (!engine_) return FailedPrecondition("a get into device memory needs the UCX data path (this client reads inline)");
  if (!moves_device_memory_) {
    return FailedPrecondition("this client's UCX " + transfer::UcxContext::Version() +
                              " cannot move CUDA memory (build one with deploy/build-ucx-cuda.sh); stage through "
                              "host memory");
  }
  if (!two_sided_offered_) {
    return FailedPrecondition("kvstashd at " + options_.address +
                              " serves no two-sided reads (--ucx-protocol one-sided), which device memory needs");
  }
  return Status::Ok();
}

Result<std::pair<transfer::RemoteTarget, transfer::RemoteTarget>> Connection::DeviceTargetsFor(uint64_t incarnation) {
  KVSTASH_ASSIGN_OR_RETURN(transfer::RemoteTarget dram, TargetFor(incarnation));
  dram.protocol = transfer::Protocol::kTwoSided;
  transfer::RemoteTarget hbm = dram;
  {
    MutexLock lock(target_mu_);
    hbm.base = hbm_base_;
    hbm.length = hbm_bytes_;
  }
  return std::make_pair(std::move(dram), std::move(hbm));
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
  if (dp.worker_address().empty() || dp.rkey().empty()) {  // two-sided only (a tenant, tokens on)
    if (wanted == UcxProtocol::kOneSided) {
      return FailedPrecondition("kvstashd at " + options_.address +
                                " offers this token no one-sided UCX access (its tenants read and write two-sided; "
                                "docs/SECURITY.md)");
    }
    wanted = UcxProtocol::kTwoSided;
  }
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

}  // namespace kvstash::client_internal
