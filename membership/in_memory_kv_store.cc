// InMemoryKvStore implementation (contract in membership/in_memory_kv_store.h).
#include "membership/in_memory_kv_store.h"

#include <atomic>

namespace kvstash::membership {

// One client connection: the store's calls under its name, with its own watch cancellation.
class InMemoryKvStore::Client final : public KvStore {
 public:
  Client(InMemoryKvStore& store, std::string name) : store_(store), name_(std::move(name)) {}

  Result<int64_t> LeaseGrant(int64_t ttl_s) override {
    if (ttl_s < 1) return InvalidArgument("lease TTL must be at least 1 s");
    MutexLock lock(store_.mu_);
    KVSTASH_RETURN_IF_ERROR(store_.Admit(name_));
    const int64_t id = store_.next_lease_++;
    store_.leases_[id] = Lease{ttl_s, store_.clock_->NowMs() + static_cast<uint64_t>(ttl_s) * 1000, {}};
    return id;
  }

  Result<int64_t> LeaseKeepAlive(int64_t lease_id) override {
    MutexLock lock(store_.mu_);
    KVSTASH_RETURN_IF_ERROR(store_.Admit(name_));
    auto it = store_.leases_.find(lease_id);
    if (it == store_.leases_.end()) return NotFound("lease " + std::to_string(lease_id) + " has expired");
    it->second.expires_ms = store_.clock_->NowMs() + static_cast<uint64_t>(it->second.ttl_s) * 1000;
    return it->second.ttl_s;
  }

  Status LeaseRevoke(int64_t lease_id) override {
    {
      MutexLock lock(store_.mu_);
      KVSTASH_RETURN_IF_ERROR(store_.Admit(name_));
      auto it = store_.leases_.find(lease_id);
      if (it == store_.leases_.end()) return NotFound("lease " + std::to_string(lease_id) + " not found");
      store_.RevokeLocked(it);
    }
    store_.changed_.notify_all();
    return Status::Ok();
  }

  Status Put(const std::string& key, const std::string& value, int64_t lease_id, bool keep_lease) override {
    {
      MutexLock lock(store_.mu_);
      KVSTASH_RETURN_IF_ERROR(store_.Admit(name_));
      auto existing = store_.kvs_.find(key);
      if (keep_lease) {
        if (existing == store_.kvs_.end()) return NotFound("key " + key + " not found (ignore_lease)");
        lease_id = existing->second.lease;
      } else if (lease_id != 0 && !store_.leases_.contains(lease_id)) {
        return NotFound("lease " + std::to_string(lease_id) + " not found");
      }
      if (existing != store_.kvs_.end() && existing->second.lease != lease_id) {
        if (auto old = store_.leases_.find(existing->second.lease); old != store_.leases_.end()) {
          old->second.keys.erase(key);
        }
      }
      const int64_t revision = ++store_.revision_;
      EtcdKeyValue kv{key, value, revision, lease_id};
      store_.kvs_[key] = kv;
      if (lease_id != 0) store_.leases_[lease_id].keys.insert(key);
      store_.history_.emplace_back(revision, EtcdEvent{EtcdEvent::Type::kPut, std::move(kv)});
    }
    store_.changed_.notify_all();
    return Status::Ok();
  }

  Result<EtcdRange> RangePrefix(const std::string& prefix) override {
    MutexLock lock(store_.mu_);
    KVSTASH_RETURN_IF_ERROR(store_.Admit(name_));
    EtcdRange range;
    range.revision = store_.revision_;
    for (auto it = store_.kvs_.lower_bound(prefix); it != store_.kvs_.end() && it->first.starts_with(prefix); ++it) {
      range.kvs.push_back(it->second);
    }
    return range;
  }

  Result<std::optional<EtcdKeyValue>> Get(const std::string& key) override {
    MutexLock lock(store_.mu_);
    KVSTASH_RETURN_IF_ERROR(store_.Admit(name_));
    auto it = store_.kvs_.find(key);
    if (it == store_.kvs_.end()) return std::optional<EtcdKeyValue>();
    return std::optional<EtcdKeyValue>(it->second);
  }

  Status Delete(const std::string& key) override {
    {
      MutexLock lock(store_.mu_);
      KVSTASH_RETURN_IF_ERROR(store_.Admit(name_));
      store_.DeleteLocked(key);
    }
    store_.changed_.notify_all();
    return Status::Ok();
  }

  Status Watch(const std::string& prefix, int64_t start_revision, const OnEvents& on_events) override {
    MutexLock lock(store_.mu_);
    int64_t next = start_revision > 0 ? start_revision : store_.revision_ + 1;
    for (;;) {
      if (cancelled_.load()) return Status::Ok();
      KVSTASH_RETURN_IF_ERROR(store_.Admit(name_));
      std::vector<EtcdEvent> batch = store_.EventsSince(prefix, next);
      next = store_.revision_ + 1;
      if (batch.empty()) {
        lock.Wait(store_.changed_);
        continue;
      }
      lock.Unlock();
      const bool more = on_events(batch);
      lock.Lock();
      if (!more) return Status::Ok();
    }
  }

  void CancelWatch() override {
    cancelled_.store(true);
    { MutexLock lock(store_.mu_); }  // a Watch between its check and its wait sees the notify
    store_.changed_.notify_all();
  }

 private:
  InMemoryKvStore& store_;
  const std::string name_;
  std::atomic<bool> cancelled_{false};
};

std::unique_ptr<KvStore> InMemoryKvStore::Connect(std::string name) {
  return std::make_unique<Client>(*this, std::move(name));
}

void InMemoryKvStore::SetReachable(const std::string& name, bool reachable) {
  {
    MutexLock lock(mu_);
    if (reachable) {
      unreachable_.erase(name);
    } else {
      unreachable_.insert(name);
    }
  }
  changed_.notify_all();
}

void InMemoryKvStore::ExpireLeases() {
  {
    MutexLock lock(mu_);
    ExpireLocked();
  }
  changed_.notify_all();
}

void InMemoryKvStore::AwaitRefusals(const std::string& name, uint64_t count) const {
  MutexLock lock(mu_);
  lock.Wait(changed_, [&] {
    mu_.AssertHeld();
    auto it = refusals_.find(name);
    return it != refusals_.end() && it->second >= count;
  });
}

std::optional<EtcdKeyValue> InMemoryKvStore::Peek(const std::string& key) const {
  MutexLock lock(mu_);
  auto it = kvs_.find(key);
  if (it == kvs_.end()) return std::nullopt;
  return it->second;
}

size_t InMemoryKvStore::lease_count() const {
  MutexLock lock(mu_);
  return leases_.size();
}

int64_t InMemoryKvStore::revision() const {
  MutexLock lock(mu_);
  return revision_;
}

Status InMemoryKvStore::Admit(const std::string& name) {
  if (unreachable_.contains(name)) {
    ++refusals_[name];
    changed_.notify_all();
    return Unavailable("etcd is unreachable from " + name);
  }
  ExpireLocked();
  return Status::Ok();
}

void InMemoryKvStore::ExpireLocked() {
  const uint64_t now = clock_->NowMs();
  for (auto it = leases_.begin(); it != leases_.end();) {
    auto next = std::next(it);
    if (now >= it->second.expires_ms) RevokeLocked(it);
    it = next;
  }
}

void InMemoryKvStore::DeleteLocked(const std::string& key) {
  auto it = kvs_.find(key);
  if (it == kvs_.end()) return;
  if (auto lease = leases_.find(it->second.lease); lease != leases_.end()) lease->second.keys.erase(key);
  kvs_.erase(it);
  const int64_t revision = ++revision_;
  EtcdEvent event;
  event.type = EtcdEvent::Type::kDelete;
  event.kv.key = key;
  event.kv.mod_revision = revision;
  history_.emplace_back(revision, std::move(event));
}

void InMemoryKvStore::RevokeLocked(std::map<int64_t, Lease>::iterator it) {
  const std::set<std::string> keys = std::move(it->second.keys);
  leases_.erase(it);
  for (const std::string& key : keys) DeleteLocked(key);
}

std::vector<EtcdEvent> InMemoryKvStore::EventsSince(const std::string& prefix, int64_t from) const {
  std::vector<EtcdEvent> out;
  for (const auto& [revision, event] : history_) {
    if (revision >= from && event.kv.key.starts_with(prefix)) out.push_back(event);
  }
  return out;
}

}  // namespace kvstash::membership
