#include "membership/registrar.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace kvstash::membership {

Result<std::unique_ptr<Registrar>> Registrar::Start(const RegistrarOptions& options) {
  KVSTASH_RETURN_IF_ERROR(ValidateName("cluster name", options.cluster));
  KVSTASH_RETURN_IF_ERROR(ValidateName("member id", options.record.id));
  if (options.lease_ttl_s < 1 || options.lease_ttl_s > 3600)
    return InvalidArgument("lease TTL must be 1..3600 s");
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<EtcdClient> etcd, EtcdClient::Create(options.etcd));
  std::unique_ptr<Registrar> r(new Registrar(options, std::move(etcd)));
  // Another live daemon with the same id would have its record overwritten: refuse instead.
  KVSTASH_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> existing, r->etcd_->Get(r->key_));
  if (existing) {
    Result<MemberRecord> other = MemberRecordFromJson(existing->value);
    if (!other.ok() || other->grpc_address != options.record.grpc_address) {
      return AlreadyExists("member id '" + options.record.id +
                           "' is already registered in cluster '" + options.cluster + "' by " +
                           (other.ok() ? other->grpc_address : "another process"));
    }
  }
  KVSTASH_RETURN_IF_ERROR(r->Register());
  Registrar* raw = r.get();
  r->thread_ = std::thread([raw] { raw->KeepAliveLoop(); });
  return r;
}

Registrar::Registrar(RegistrarOptions options, std::unique_ptr<EtcdClient> etcd)
    : options_(std::move(options)),
      etcd_(std::move(etcd)),
      key_(MemberKey(options_.cluster, options_.record.id)) {}

Registrar::~Registrar() { Stop(); }

int64_t Registrar::lease_id() const {
  std::lock_guard lock(mu_);
  return lease_id_;
}

Status Registrar::Register() {
  KVSTASH_ASSIGN_OR_RETURN(int64_t lease, etcd_->LeaseGrant(options_.lease_ttl_s));
  Status put = etcd_->Put(key_, ToJson(options_.record), lease);
  if (!put.ok()) {
    (void)etcd_->LeaseRevoke(lease);
    return put;
  }
  std::lock_guard lock(mu_);
  lease_id_ = lease;
  return Status::Ok();
}

void Registrar::KeepAliveLoop() {
  const auto interval =
      std::chrono::milliseconds(std::max<int64_t>(200, options_.lease_ttl_s * 1000 / 3));
  std::unique_lock lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, interval, [this] { return stopping_; });
    if (stopping_) break;
    const int64_t lease = lease_id_;
    lock.unlock();
    Status st = Status::Ok();
    if (lease != 0) {
      Result<int64_t> ttl = etcd_->LeaseKeepAlive(lease);
      st = ttl.status();
    }
    if (lease == 0 || st.code() == StatusCode::kNotFound) {
      if (lease != 0)
        spdlog::warn("etcd lease of member {} expired; registering again", options_.record.id);
      st = Register();
      if (st.ok())
        spdlog::info("registered again as {} in cluster {}", options_.record.id, options_.cluster);
      else {
        std::lock_guard relock(mu_);
        lease_id_ = 0;
      }
    }
    if (!st.ok())
      spdlog::warn("etcd keep-alive for member {}: {}", options_.record.id, st.message());
    lock.lock();
  }
}

void Registrar::Stop() {
  int64_t lease = 0;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    lease = lease_id_;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (lease != 0) {
    Status st = etcd_->LeaseRevoke(lease);
    if (!st.ok()) spdlog::warn("could not revoke etcd lease on stop: {}", st.message());
  }
}

}  // namespace kvstash::membership
