// ClusterRouter: the Client operations over a cluster. Each call takes the current member
// snapshot (client/cluster_view.h), groups its keys by owner, asks the owners in parallel (one RPC
// batch per owner), and falls back to previous owners during a join's grace period. A member that
// cannot be reached turns into misses (Get: UNAVAILABLE per item, naming it) and
// PutOutcome::kUnreachable; only request errors (INVALID_ARGUMENT, FAILED_PRECONDITION) fail a
// call. While etcd does not answer, the last member set seen stays in use. The member set comes from an etcd watch (membership/member_watcher.h) or a fixed
// peer list. A block that a Get found at a previous owner is then put to its new owner (the new
// owner "pulls" it through the reader), so it stays a hit once the grace period is over. Keys that
// the daemons report as replicated (hot blocks) are read from any of their copies, least-loaded
// first (by this client's RPCs in flight to each member).
//
// Thread-safety: every public method is safe for concurrent use by multiple threads. Member
// updates arrive on the watcher's thread.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "client/cluster_view.h"
#include "common/mutex.h"
#include "client/connection.h"
#include "kvstash/client.h"

namespace kvstash::membership {
class MemberWatcher;
}

namespace kvstash::client_internal {

class ClusterRouter {
 public:
  // Reads the members (etcd: UNAVAILABLE when it cannot be reached) and opens connections to them.
  static Result<std::unique_ptr<ClusterRouter>> Start(const ClientOptions& options,
                                                      EngineSource& engines);
  ~ClusterRouter();

  Result<LookupResult> Lookup(std::span<const BlockKey> chain, uint64_t lease_ms);
  Result<PutResult> Put(std::span<const PutItem> items, const PutOptions& put_options);
  Status Get(std::span<GetItem> items);
  Status ReleaseLeases(std::span<const BlockInfo> blocks);
  Result<std::vector<RemoveOutcome>> Remove(std::span<const BlockKey> keys);
  Result<std::vector<std::optional<BlockInfo>>> Stat(std::span<const BlockKey> keys);
  Result<StoreStats> Stats();
  Result<ListResult> List(const std::optional<BlockKey>& start_after, uint32_t limit);
  Result<HealthInfo> Health();
  std::vector<MemberInfo> Members() const;
  std::vector<MemberStats> ClusterStats();
  std::string OwnerOf(const BlockKey& key) const;

 private:
  ClusterRouter(const ClientOptions& options, EngineSource& engines);
  void OnMembers(std::vector<MemberInfo> members);
  // The connection to `address`, opened on first use; null when the daemon cannot be reached now
  // (a failed open is retried at most every kRetryOpenMs).
  std::shared_ptr<Connection> ConnectionTo(const std::string& address);

  // Remembers keys the daemons report as replicated (BlockInfo.replicas), for spreading reads.
  void NoteReplicas(const BlockInfo& info);
  uint32_t ReplicasOf(const BlockKey& key) const;
  // Where a Get looks for `key`: its copies least-loaded first when it is replicated, then the
  // owner and the previous owners in grace.
  std::vector<std::string> ReadSources(const ClusterView::Snapshot& snap, const BlockKey& key);
  int64_t Load(const std::string& address);

  struct Slot {
    std::atomic<int64_t> in_flight{0};  // Get RPCs running against this member from this client
    Mutex open_mu;                      // one opener at a time
    std::shared_ptr<Connection> conn;   // guarded by the router's mu_ (not expressible here)
    std::chrono::steady_clock::time_point failed_at GUARDED_BY(open_mu){};
  };

  const ClientOptions options_;
  EngineSource& engines_;
  ClusterView view_;
  mutable Mutex mu_;
  std::map<std::string, std::shared_ptr<Slot>> slots_ GUARDED_BY(mu_);  // by address
  static constexpr size_t kMaxHotKeys = 65'536;
  mutable Mutex hot_mu_;
  std::unordered_map<BlockKey, uint32_t, BlockKeyHash> hot_ GUARDED_BY(hot_mu_);  // key -> replicas
  std::unique_ptr<membership::MemberWatcher> watcher_;        // null with static peers
};

}  // namespace kvstash::client_internal
