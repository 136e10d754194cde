#include "membership/registrar.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace kvstash::membership {
namespace {

constexpr auto kFirstRetry = std::chrono::milliseconds(200);
constexpr uint64_t kRepeatErrorLogMs = 30'000;

uint64_t Ms(std::chrono::milliseconds d) { return static_cast<uint64_t>(d.count()); }

Status Validate(const RegistrarOptions& options) {
  KVSTASH_RETURN_IF_ERROR(ValidateName("cluster name", options.cluster));
  KVSTASH_RETURN_IF_ERROR(ValidateName("member id", options.record.id));
  if (options.lease_ttl_s < 1 || options.lease_ttl_s > 3600) return InvalidArgument("lease TTL must be 1..3600 s");
  if (options.clock == nullptr) return InvalidArgument("a registrar needs a clock");
  return Status::Ok();
}

}  // namespace

std::string_view ToString(RegistrationState state) {
  switch (state) {
    case RegistrationState::kPending:
      return "pending";
    case RegistrationState::kRegistered:
      return "registered";
    case RegistrationState::kEtcdUnreachable:
      return "etcd_unreachable";
    case RegistrationState::kConflict:
      return "conflict";
  }
  return "unknown";
}

Result<std::unique_ptr<Registrar>> Registrar::Start(const RegistrarOptions& options) {
  KVSTASH_RETURN_IF_ERROR(Validate(options));
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<EtcdClient> etcd, EtcdClient::Create(options.etcd));
  return Start(options, std::move(etcd));
}

Result<std::unique_ptr<Registrar>> Registrar::Start(const RegistrarOptions& options, std::unique_ptr<KvStore> store) {
  KVSTASH_RETURN_IF_ERROR(Validate(options));
  if (store == nullptr) return InvalidArgument("a registrar needs a store");
  std::unique_ptr<Registrar> r(new Registrar(options, std::move(store)));
  const Status first = r->Register();
  if (first.code() == StatusCode::kAlreadyExists) return first;
  if (!first.ok()) {
    spdlog::warn("etcd does not answer at start ({}); serving anyway, and registering member {} in cluster {} "
                 "once it does (retrying with backoff up to {} ms)",
                 first.message(), options.record.id, options.cluster, options.max_retry.count());
  }
  {
    // The caller logs a first success; the warning above is the first failure's log line.
    MutexLock lock(r->mu_);
    r->health_.state = first.ok() ? RegistrationState::kRegistered : RegistrationState::kPending;
    r->health_.detail = first.ok() ? std::string() : first.message();
    r->last_error_log_ms_ = r->options_.clock->NowMs();
    r->ScheduleNextLocked();
  }
  if (r->options_.background) {
    Registrar* raw = r.get();
    r->thread_ = std::thread([raw] { raw->Loop(); });
  }
  return r;
}

Registrar::Registrar(RegistrarOptions options, std::unique_ptr<KvStore> etcd)
    : options_(std::move(options)),
      etcd_(std::move(etcd)),
      key_(MemberKey(options_.cluster, options_.record.id)),
      drain_key_(DrainKey(options_.cluster, options_.record.id)),
      retry_(kFirstRetry) {}

Registrar::~Registrar() { Stop(); }

RegistrationHealth Registrar::Health() const {
  MutexLock lock(mu_);
  return health_;
}

uint64_t Registrar::NextRoundMs() const {
  MutexLock lock(mu_);
  return next_round_ms_;
}

Status Registrar::Publish(int64_t lease) {
  MemberRecord record = options_.record;
  KVSTASH_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> mark, etcd_->Get(drain_key_));
  if (mark) {
    Result<uint64_t> since = DrainMarkFromJson(mark->value);
    if (since.ok()) {
      record.state = MemberState::kDraining;
      record.draining_since_unix_ms = *since;
    } else {
      spdlog::warn("ignoring the drain mark {}: {}", drain_key_, since.status().message());
    }
  }
  KVSTASH_RETURN_IF_ERROR(etcd_->Put(key_, ToJson(record), lease));
  MutexLock lock(mu_);
  const bool draining = record.state == MemberState::kDraining;
  if (draining != health_.draining) {
    // An admin action taken through etcd (kvstash drain): the writer is whoever etcd admitted (with
    // --client-cert-auth, etcd names its certificate); here, when it took effect on this member.
    if (draining) {
      spdlog::warn("member {} of cluster {} is DRAINING: drain mark {} set at {} ms since the epoch (by an etcd writer)",
                   options_.record.id, options_.cluster, drain_key_, record.draining_since_unix_ms);
    } else if (health_.registrations > 0) {
      spdlog::warn("member {} of cluster {} is no longer draining: drain mark {} removed", options_.record.id,
                   options_.cluster, drain_key_);
    }
  }
  health_.draining = draining;
  ++health_.registrations;
  return Status::Ok();
}

Status Registrar::Register() {
  // Another live daemon with the same id would have its record overwritten: refuse instead. The
  // same address is this daemon's previous life (a restart within the old lease's TTL).
  KVSTASH_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> existing, etcd_->Get(key_));
  if (existing) {
    Result<MemberRecord> other = MemberRecordFromJson(existing->value);
    if (!other.ok() || other->grpc_address != options_.record.grpc_address) {
      return AlreadyExists("member id '" + options_.record.id + "' is already registered in cluster '" +
                           options_.cluster + "' by " + (other.ok() ? other->grpc_address : "another process"));
    }
  }
  KVSTASH_ASSIGN_OR_RETURN(int64_t lease, etcd_->LeaseGrant(options_.lease_ttl_s));
  if (Status st = Publish(lease); !st.ok()) {
    (void)etcd_->LeaseRevoke(lease);
    return st;
  }
  MutexLock lock(mu_);
  lease_id_ = lease;
  return Status::Ok();
}

Status Registrar::Maintain(int64_t lease) {
  Result<int64_t> ttl = etcd_->LeaseKeepAlive(lease);
  if (ttl.status().code() == StatusCode::kNotFound) {
    spdlog::warn("etcd lease of member {} expired (etcd unreachable for longer than the {} s TTL?); registering again",
                 options_.record.id, options_.lease_ttl_s);
    {
      MutexLock lock(mu_);
      lease_id_ = 0;
    }
    return Register();
  }
  KVSTASH_RETURN_IF_ERROR(ttl.status());
  KVSTASH_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> current, etcd_->Get(key_));
  if (!current) {
    spdlog::warn("the etcd record of member {} disappeared while its lease lives (deleted, or revoked by another "
                 "process); publishing it again",
                 options_.record.id);
    return Publish(lease);
  }
  Result<MemberRecord> record = MemberRecordFromJson(current->value);
  if (!record.ok() || record->grpc_address != options_.record.grpc_address) {
    return AlreadyExists("member id '" + options_.record.id + "' was taken over by " +
                         (record.ok() ? record->grpc_address : "a record that does not parse") +
                         "; this daemon is out of cluster '" + options_.cluster +
                         "' until that member leaves (then it registers again)");
  }
  // Republish when the record is under another lease or its drain state is not the mark's.
  KVSTASH_ASSIGN_OR_RETURN(std::optional<EtcdKeyValue> mark, etcd_->Get(drain_key_));
  const bool marked = mark.has_value() && DrainMarkFromJson(mark->value).ok();
  if (current->lease != lease || marked != (record->state == MemberState::kDraining)) return Publish(lease);
  return Status::Ok();
}

void Registrar::Note(const Status& round) {
  MutexLock lock(mu_);
  const RegistrationState before = health_.state;
  if (round.ok()) {
    health_.state = RegistrationState::kRegistered;
    health_.detail.clear();
  } else if (round.code() == StatusCode::kAlreadyExists) {
    health_.state = RegistrationState::kConflict;
    health_.detail = round.message();
  } else {
    health_.state = health_.registrations == 0 ? RegistrationState::kPending : RegistrationState::kEtcdUnreachable;
    health_.detail = round.message();
  }
  const uint64_t now = options_.clock->NowMs();
  if (health_.state == RegistrationState::kRegistered) {
    if (before != RegistrationState::kRegistered)
      spdlog::info("member {} is registered in cluster {}", options_.record.id, options_.cluster);
    return;
  }
  if (health_.state == before && now - last_error_log_ms_ < kRepeatErrorLogMs) return;
  last_error_log_ms_ = now;
  if (health_.state == RegistrationState::kConflict)
    spdlog::error("member {} is NOT in cluster {}: {}", options_.record.id, options_.cluster, health_.detail);
  else
    spdlog::warn("member {}: etcd: {}", options_.record.id, health_.detail);
}

void Registrar::ScheduleNextLocked() {
  const auto interval = std::chrono::milliseconds(std::max<int64_t>(200, options_.lease_ttl_s * 1000 / 3));
  const auto max_retry = std::max(kFirstRetry, std::min(options_.max_retry, interval));
  std::chrono::milliseconds wait = interval;
  if (health_.state == RegistrationState::kRegistered) {
    retry_ = kFirstRetry;
  } else {
    wait = retry_;
    retry_ = std::min(retry_ * 2, max_retry);
  }
  next_round_ms_ = options_.clock->NowMs() + Ms(wait);
}

void Registrar::RunRound() {
  int64_t lease = 0;
  {
    MutexLock lock(mu_);
    lease = lease_id_;
  }
  const Status round = lease == 0 ? Register() : Maintain(lease);
  Note(round);
  MutexLock lock(mu_);
  ScheduleNextLocked();
}

bool Registrar::RunDueRound() {
  {
    MutexLock lock(mu_);
    if (stopping_ || options_.clock->NowMs() < next_round_ms_) return false;
  }
  RunRound();
  return true;
}

void Registrar::Loop() {
  MutexLock lock(mu_);
  while (!stopping_) {
    const uint64_t now = options_.clock->NowMs();
    if (now < next_round_ms_) {
      lock.WaitFor(cv_, std::chrono::milliseconds(next_round_ms_ - now), [this] { mu_.AssertHeld(); return stopping_; });
      continue;
    }
    lock.Unlock();
    RunRound();
    lock.Lock();
  }
}

void Registrar::Stop() {
  {
    MutexLock lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  int64_t lease = 0;
  {
    MutexLock lock(mu_);
    lease = lease_id_;
  }
  if (lease != 0) {
    Status st = etcd_->LeaseRevoke(lease);
    if (!st.ok()) spdlog::warn("could not revoke etcd lease on stop: {}", st.message());
  }
}

}  // namespace kvstash::membership
