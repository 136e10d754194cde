// InMemoryKvStore: an etcd of a test's own (the KvStore semantics of membership/kv_store.h, in
// memory), whose leases expire by a Clock the test drives. The Registrar and MemberWatcher unit
// tests run on it; real etcd stays in the integration tests.
//
// The store plays the etcd server; Connect hands out clients (KvStore), each with its own name,
// CancelWatch and reachability, so a test can cut one member off etcd while the others keep it.
// Leases: a lease expires when the clock reaches its last grant or keep-alive plus its TTL; expiry
// is applied at the start of every client call and by ExpireLeases, which a test calls after
// advancing the clock (a running Watch sees the deletions then). Revisions start at 1; nothing is
// ever compacted.
//
// Thread-safety: every method of the store and of its clients may be called from any thread; a
// client's Watch blocks its thread (waiting for a change, not polling). The store must outlive its
// clients, and no Watch may run when it is destroyed.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/mutex.h"
#include "membership/kv_store.h"

namespace kvstash::membership {

class InMemoryKvStore {
 public:
  explicit InMemoryKvStore(const Clock* clock) : clock_(clock) {}
  InMemoryKvStore(const InMemoryKvStore&) = delete;
  InMemoryKvStore& operator=(const InMemoryKvStore&) = delete;

  // A client of this store called `name` (names need not be unique; reachability is per name).
  std::unique_ptr<KvStore> Connect(std::string name);

  // While false, every call of the clients called `name` answers UNAVAILABLE and their running
  // watches end with UNAVAILABLE (a partition between those clients and etcd).
  void SetReachable(const std::string& name, bool reachable) EXCLUDES(mu_);
  // Applies lease expiry as of the clock's now: every lease whose TTL ran out is revoked and its
  // keys deleted (delete events for watchers).
  void ExpireLeases() EXCLUDES(mu_);

  // Blocks until calls of the clients called `name` have been refused as unreachable `count` times
  // in all (a test's way to know that a client noticed the partition).
  void AwaitRefusals(const std::string& name, uint64_t count) const EXCLUDES(mu_);

  // The store as it is, without a client (and without applying expiry).
  std::optional<EtcdKeyValue> Peek(const std::string& key) const EXCLUDES(mu_);
  size_t lease_count() const EXCLUDES(mu_);
  int64_t revision() const EXCLUDES(mu_);

 private:
  class Client;
  struct Lease {
    int64_t ttl_s = 0;
    uint64_t expires_ms = 0;
    std::set<std::string> keys;
  };

  // UNAVAILABLE when `name` is cut off; otherwise applies expiry. REQUIRES: mu_.
  Status Admit(const std::string& name) REQUIRES(mu_);
  void ExpireLocked() REQUIRES(mu_);
  // Deletes a key (an event, a new revision); nothing when it is absent.
  void DeleteLocked(const std::string& key) REQUIRES(mu_);
  // Ends a lease and deletes its keys.
  void RevokeLocked(std::map<int64_t, Lease>::iterator it) REQUIRES(mu_);
  // Every event under `prefix` at revision `from` or later.
  std::vector<EtcdEvent> EventsSince(const std::string& prefix, int64_t from) const REQUIRES(mu_);

  const Clock* const clock_;
  mutable Mutex mu_;
  mutable std::condition_variable changed_;  // an event, a reachability change, a refusal, a cancel
  std::map<std::string, EtcdKeyValue> kvs_ GUARDED_BY(mu_);
  std::map<int64_t, Lease> leases_ GUARDED_BY(mu_);
  std::vector<std::pair<int64_t, EtcdEvent>> history_ GUARDED_BY(mu_);  // (revision, event), in order
  std::set<std::string> unreachable_ GUARDED_BY(mu_);
  std::map<std::string, uint64_t> refusals_ GUARDED_BY(mu_);
  int64_t revision_ GUARDED_BY(mu_) = 1;
  int64_t next_lease_ GUARDED_BY(mu_) = 7'000;
};

}  // namespace kvstash::membership
