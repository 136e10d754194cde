// Replicator: hot-block replicas. The daemon counts hits per key (HotKeyTracker); when a key it
// owns crosses `hot_rate` accesses per second, the Replicator copies the block to the next
// `copies - 1` members in the key's rendezvous order (common/rendezvous.h) with inline Store.Put
// RPCs, and remembers for `remember_ms` how many copies it made. Clients learn that count from
// BlockInfo.replicas and spread their reads over the copies, least-loaded first. Blocks are
// immutable per key, so a copy is never stale.
//
// The member set comes from an etcd watch on the cluster (membership/member_watcher.h), or from a
// fixed peer list for standalone daemons.
//
// Thread-safety: OnHit and ReplicasOf are called from gRPC handler threads concurrently; they
// never block on the network (a bounded queue feeds one worker thread). Start and Stop are called
// by the daemon's owning thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "common/metrics.h"
#include "common/tls.h"
#include "common/mutex.h"
#include "common/rendezvous.h"
#include "kvstash/v1/store.grpc.pb.h"
#include "membership/member_watcher.h"
#include "server/replication/hot_key_tracker.h"
#include "server/store_service.h"
#include "tiers/tier.h"

namespace kvstash::server {

struct ReplicatorOptions {
  uint32_t copies = 2;            // total copies of a hot block, the owner's included (2..8)
  uint32_t hot_rate = 100;        // accesses per second that make a key hot
  uint64_t remember_ms = 60'000;  // how long a replicated key is reported (and not copied again)
  size_t queue_limit = 4096;      // hot keys waiting to be copied; more are dropped (counted)
  membership::EtcdOptions etcd;  // the member set comes from etcd...
  std::string cluster;
  std::vector<std::string> static_peers;  // ...or, when this is set, is these gRPC addresses (ids = addresses)
  uint64_t rpc_timeout_ms = 5'000;
  const Clock* clock = SteadyClock::Default();
  tls::ClientFiles peer_tls;  // towards the peers (docs/SECURITY.md); all empty = plaintext
  std::string peer_token;     // an admin bearer token the peers accept; empty = none sent
};

class Replicator final : public AccessHooks {
 public:
  // Registers its metrics; copies nothing until Start.
  Replicator(ReplicatorOptions options, tiers::Tier& tier, metrics::Registry& registry);
  ~Replicator() override;  // Stop()

  // Follows the cluster's members and starts the worker. `self_id` is this daemon's member id.
  Status Start(const std::string& self_id);
  void Stop();

  void OnHit(const BlockKey& key) override;
  uint32_t ReplicasOf(const BlockKey& key) const override;

 private:
  struct Ring {
    RendezvousRing ring;
    std::vector<std::string> addresses;
  };
  void OnMembers(const std::vector<membership::MemberRecord>& records);
  void WorkerLoop();
  void Replicate(const BlockKey& key);
  v1::Store::Stub* StubFor(const std::string& address);

  const ReplicatorOptions options_;
  tiers::Tier& tier_;
  HotKeyTracker tracker_;
  metrics::Counter& hot_keys_;
  metrics::Counter& dropped_;
  metrics::Family<metrics::Counter>& copies_;
  metrics::Gauge& replicated_keys_;

  mutable Mutex mu_;
  std::condition_variable cv_;
  bool stopping_ GUARDED_BY(mu_) = false;
  std::string self_id_ GUARDED_BY(mu_);
  std::shared_ptr<const Ring> ring_ GUARDED_BY(mu_);
  std::deque<BlockKey> queue_ GUARDED_BY(mu_);
  std::unordered_set<BlockKey, BlockKeyHash> queued_ GUARDED_BY(mu_);
  struct Made {
    uint32_t copies = 0;
    uint64_t until_ms = 0;
  };
  std::unordered_map<BlockKey, Made, BlockKeyHash> replicated_ GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<v1::Store::Stub>> stubs_;  // worker thread only
  std::shared_ptr<grpc::ChannelCredentials> credentials_;           // set by Start, before the worker
  std::unique_ptr<membership::MemberWatcher> watcher_;
  std::thread worker_;
};

}  // namespace kvstash::server
