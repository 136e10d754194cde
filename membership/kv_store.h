// KvStore: the key-value calls membership needs from etcd (v3 semantics: revisions, leases,
// prefix ranges and watches), as an interface. EtcdClient (membership/etcd_client.h) speaks them
// to a real etcd; InMemoryKvStore (membership/in_memory_kv_store.h) keeps them in memory with
// leases that expire by a Clock, so the Registrar and the MemberWatcher are unit-tested without an
// etcd process (real etcd stays in the integration tests).
//
// Semantics every implementation keeps:
//   * every Put or Delete that changes something bumps the store's revision; a key's mod_revision is
//     the revision of its last Put; a range answers with the revision it reflects;
//   * a key put under a lease is deleted when the lease expires or is revoked (a delete event);
//   * Watch reports, in order, every change at or after start_revision to keys under the prefix.
// Errors: UNAVAILABLE when the store cannot be reached; NOT_FOUND as each method says.
//
// Thread-safety: every method except Watch may be called from any thread concurrently. Watch
// blocks its calling thread; CancelWatch (any thread) ends it.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kvstash/result.h"

namespace kvstash::membership {

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t mod_revision = 0;
  int64_t lease = 0;
};

struct EtcdRange {
  std::vector<EtcdKeyValue> kvs;
  int64_t revision = 0;  // the store revision the answer reflects
};

struct EtcdEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  EtcdKeyValue kv;  // for kDelete only the key (and revision) are set
};

class KvStore {
 public:
  using OnEvents = std::function<bool(const std::vector<EtcdEvent>&)>;

  virtual ~KvStore() = default;

  // A new lease of `ttl_s` seconds; returns its id (never 0).
  virtual Result<int64_t> LeaseGrant(int64_t ttl_s) = 0;
  // Refreshes the lease; returns its remaining TTL in seconds, or NOT_FOUND when the lease
  // expired or was revoked.
  virtual Result<int64_t> LeaseKeepAlive(int64_t lease_id) = 0;
  // Ends the lease now, deleting its keys.
  virtual Status LeaseRevoke(int64_t lease_id) = 0;

  // Puts key=value, attached to `lease_id` (0 = no lease). With keep_lease the key keeps the lease
  // it already has (etcd's ignore_lease); NOT_FOUND when it does not exist then.
  virtual Status Put(const std::string& key, const std::string& value, int64_t lease_id = 0,
                     bool keep_lease = false) = 0;
  // Every key starting with `prefix`, in key order.
  virtual Result<EtcdRange> RangePrefix(const std::string& prefix) = 0;
  virtual Result<std::optional<EtcdKeyValue>> Get(const std::string& key) = 0;
  virtual Status Delete(const std::string& key) = 0;

  // Watches every key starting with `prefix` from `start_revision` on, calling `on_events` for
  // each batch (on this thread) until the callback returns false, CancelWatch is called, or the
  // stream fails. Returns OK after a cancel or a callback's false, DEADLINE_EXCEEDED after a while
  // without any message (watch again from the last revision seen), UNAVAILABLE when the stream
  // broke (the caller re-reads with RangePrefix and watches again), OUT_OF_RANGE when
  // start_revision was compacted away.
  virtual Status Watch(const std::string& prefix, int64_t start_revision, const OnEvents& on_events) = 0;
  // Ends a Watch running on another thread (and any later Watch at once). Idempotent.
  virtual void CancelWatch() = 0;
};

}  // namespace kvstash::membership
