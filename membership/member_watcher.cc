#include "membership/member_watcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace kvstash::membership {

Result<std::unique_ptr<MemberWatcher>> MemberWatcher::Start(const EtcdOptions& etcd,
                                                            const std::string& cluster,
                                                            OnChange on_change, AtStart at_start) {
  KVSTASH_RETURN_IF_ERROR(ValidateName("cluster name", cluster));
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<EtcdClient> client, EtcdClient::Create(etcd));
  return Start(std::move(client), cluster, std::move(on_change), at_start);
}

Result<std::unique_ptr<MemberWatcher>> MemberWatcher::Start(std::unique_ptr<KvStore> store, const std::string& cluster,
                                                            OnChange on_change, AtStart at_start, const Clock* clock) {
  KVSTASH_RETURN_IF_ERROR(ValidateName("cluster name", cluster));
  if (store == nullptr || clock == nullptr) return InvalidArgument("a member watcher needs a store and a clock");
  std::unique_ptr<MemberWatcher> w(new MemberWatcher(std::move(store), cluster, std::move(on_change), clock));
  int64_t revision = 0;
  if (Status loaded = w->Reload(revision); !loaded.ok()) {
    if (at_start == AtStart::kRequireEtcd) return loaded;
    spdlog::warn("member watch for cluster {}: {}; reading the members once etcd answers", cluster,
                 loaded.message());
    revision = 0;  // Run reads the members first
  }
  MemberWatcher* raw = w.get();
  w->thread_ = std::thread([raw, revision] { raw->Run(revision); });
  return w;
}

MemberWatcher::MemberWatcher(std::unique_ptr<KvStore> etcd, std::string cluster, OnChange on_change,
                             const Clock* clock)
    : etcd_(std::move(etcd)),
      clock_(clock),
      cluster_(std::move(cluster)),
      prefix_(MembersPrefix(cluster_)),
      on_change_(std::move(on_change)) {}

MemberWatcher::~MemberWatcher() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  etcd_->CancelWatch();
  if (thread_.joinable()) thread_.join();
}

std::vector<MemberRecord> MemberWatcher::Members() const {
  MutexLock lock(mu_);
  std::vector<MemberRecord> out;
  for (const auto& [key, record] : members_) out.push_back(record);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

void MemberWatcher::Notify() {
  if (on_change_) on_change_(Members());
}

bool MemberWatcher::WaitOnClock(std::chrono::milliseconds delay) {
  const uint64_t deadline = clock_->NowMs() + static_cast<uint64_t>(delay.count());
  MutexLock lock(mu_);
  for (uint64_t now = clock_->NowMs(); !stopping_ && now < deadline; now = clock_->NowMs()) {
    lock.WaitFor(cv_, std::chrono::milliseconds(deadline - now), [this] { mu_.AssertHeld(); return stopping_; });
  }
  return !stopping_;
}

Status MemberWatcher::Reload(int64_t& revision) {
  KVSTASH_ASSIGN_OR_RETURN(EtcdRange range, etcd_->RangePrefix(prefix_));
  std::map<std::string, MemberRecord> fresh;
  for (const EtcdKeyValue& kv : range.kvs) {
    Result<MemberRecord> record = MemberRecordFromJson(kv.value);
    if (!record.ok()) {
      spdlog::warn("ignoring etcd key {}: {}", kv.key, record.status().message());
      continue;
    }
    fresh.emplace(kv.key, std::move(*record));
  }
  {
    MutexLock lock(mu_);
    members_ = std::move(fresh);
  }
  revision = range.revision;
  Notify();
  return Status::Ok();
}

void MemberWatcher::Run(int64_t revision) {
  auto backoff = std::chrono::milliseconds(100);
  while (revision == 0) {  // etcd did not answer at Start
    if (!WaitOnClock(backoff)) return;
    if (Reload(revision).ok()) break;
    revision = 0;
    backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
  }
  backoff = std::chrono::milliseconds(100);
  while (true) {
    int64_t last = revision;
    Status st = etcd_->Watch(prefix_, revision + 1, [&](const std::vector<EtcdEvent>& events) {
      {
        MutexLock lock(mu_);
        if (stopping_) return false;
        for (const EtcdEvent& e : events) {
          last = std::max(last, e.kv.mod_revision);
          if (e.type == EtcdEvent::Type::kDelete) {
            members_.erase(e.kv.key);
            continue;
          }
          Result<MemberRecord> record = MemberRecordFromJson(e.kv.value);
          if (!record.ok()) {
            spdlog::warn("ignoring etcd key {}: {}", e.kv.key, record.status().message());
            members_.erase(e.kv.key);
            continue;
          }
          members_[e.kv.key] = std::move(*record);
        }
      }
      Notify();
      return true;
    });
    revision = last;
    if (st.code() == StatusCode::kDeadlineExceeded)
      continue;  // an idle stream: watch on from `revision`
    {
      MutexLock lock(mu_);
      if (stopping_) return;
      if (!st.ok())
        spdlog::warn("member watch for cluster {}: {}; reading the members again", cluster_,
                     st.message());
    }
    if (!WaitOnClock(backoff)) return;
    backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
    Status reloaded = Reload(revision);
    if (reloaded.ok()) backoff = std::chrono::milliseconds(100);
  }
}

}  // namespace kvstash::membership
