// ClusterRouter's member side (contract in client/cluster_router.h): Start (an etcd watch or a
// fixed peer list), member updates into the ClusterView, connections to members opened on first
// use and retried after a failure, replica bookkeeping, and where a read looks for a key. The
// calls themselves are in cluster_router_blocks.cc and cluster_router_admin.cc.
#include "client/cluster_router.h"

#include <algorithm>
#include <random>
#include <unordered_map>

#include "client/cluster_router_internal.h"
#include "membership/member_watcher.h"

namespace kvstash::client_internal {

using router_detail::RunParallel;

namespace {

constexpr auto kRetryOpen = std::chrono::milliseconds(250);

MemberInfo FromRecord(const membership::MemberRecord& r) {
  MemberInfo m;
  m.id = r.id;
  m.address = r.grpc_address;
  m.metrics_address = r.metrics_address;
  m.weight = r.weight;
  m.draining = r.state == membership::MemberState::kDraining;
  m.dram_capacity_bytes = r.dram_capacity_bytes;
  m.ssd_capacity_bytes = r.ssd_capacity_bytes;
  m.hbm_capacity_bytes = r.hbm_capacity_bytes;
  m.started_unix_ms = r.started_unix_ms;
  m.draining_since_unix_ms = r.draining_since_unix_ms;
  return m;
}

}  // namespace

ClusterRouter::ClusterRouter(const ClientOptions& options, EngineSource& engines)
    : options_(options),
      engines_(engines),
      view_(std::chrono::milliseconds(options.join_grace_ms)) {}

ClusterRouter::~ClusterRouter() { watcher_.reset(); }

Result<std::unique_ptr<ClusterRouter>> ClusterRouter::Start(const ClientOptions& options,
                                                            EngineSource& engines) {
  std::unique_ptr<ClusterRouter> router(new ClusterRouter(options, engines));
  ClusterRouter* raw = router.get();
  if (!options.etcd_endpoints.empty()) {
    membership::EtcdOptions etcd;
    etcd.endpoints = options.etcd_endpoints;
    etcd.ca_file = options.etcd_tls_ca_file;
    etcd.cert_file = options.etcd_tls_cert_file;
    etcd.key_file = options.etcd_tls_key_file;
    etcd.timeout_ms = std::min<uint64_t>(options.timeout_ms, 5'000);
    KVSTASH_ASSIGN_OR_RETURN(
        router->watcher_,
        membership::MemberWatcher::Start(
            etcd, options.cluster, [raw](const std::vector<membership::MemberRecord>& records) {
              std::vector<MemberInfo> members;
              for (const auto& r : records) members.push_back(FromRecord(r));
              raw->OnMembers(std::move(members));
            }));
  } else {
    std::vector<MemberInfo> members;
    for (const std::string& peer : options.peers) {
      if (peer.empty() || peer.find(':') == std::string::npos)
        return InvalidArgument("peer must be HOST:PORT, not '" + peer + "'");
      MemberInfo m;
      m.id = peer;
      m.address = peer;
      members.push_back(std::move(m));
    }
    router->OnMembers(std::move(members));
  }
  // Open every member's connection up front (in parallel, best effort): the first calls then
  // find them ready, and the data path is known.
  const std::vector<MemberInfo> members = router->Members();
  RunParallel(members.size(), [&](size_t i) { (void)raw->ConnectionTo(members[i].address); });
  return router;
}

void ClusterRouter::OnMembers(std::vector<MemberInfo> members) {
  std::vector<std::shared_ptr<Slot>> dropped;  // destroyed outside the lock
  {
    MutexLock lock(mu_);
    for (auto it = slots_.begin(); it != slots_.end();) {
      const bool present = std::any_of(members.begin(), members.end(),
                                       [&](const MemberInfo& m) { return m.address == it->first; });
      if (present) {
        ++it;
        continue;
      }
      dropped.push_back(std::move(it->second));
      it = slots_.erase(it);
    }
  }
  // A departed member stays reachable through the previous ring during the grace period: its
  // slot is simply opened again on demand.
  view_.Update(std::move(members));
}

std::shared_ptr<Connection> ClusterRouter::ConnectionTo(const std::string& address) {
  std::shared_ptr<Slot> slot;
  {
    MutexLock lock(mu_);
    auto& s = slots_[address];
    if (!s) s = std::make_shared<Slot>();
    if (s->conn) return s->conn;
    slot = s;
  }
  MutexLock open_lock(slot->open_mu);
  {
    MutexLock lock(mu_);
    if (slot->conn) return slot->conn;
  }
  const auto now = std::chrono::steady_clock::now();
  if (now - slot->failed_at < kRetryOpen) return nullptr;
  Result<std::shared_ptr<Connection>> opened = Connection::Open(options_, address, engines_);
  if (!opened.ok()) {
    slot->failed_at = now;
    return nullptr;
  }
  MutexLock lock(mu_);
  slot->conn = *opened;
  return slot->conn;
}

std::vector<MemberInfo> ClusterRouter::Members() const { return view_.Current()->members; }

void ClusterRouter::NoteReplicas(const BlockInfo& info) {
  MutexLock lock(hot_mu_);
  if (info.replicas == 0) {
    hot_.erase(info.key);
    return;
  }
  if (hot_.size() >= kMaxHotKeys && hot_.count(info.key) == 0)
    hot_.clear();  // bounded; relearnt from lookups
  hot_[info.key] = info.replicas;
}

uint32_t ClusterRouter::ReplicasOf(const BlockKey& key) const {
  MutexLock lock(hot_mu_);
  auto it = hot_.find(key);
  return it == hot_.end() ? 0 : it->second;
}

int64_t ClusterRouter::Load(const std::string& address) {
  MutexLock lock(mu_);
  auto it = slots_.find(address);
  return it == slots_.end() ? 0 : it->second->in_flight.load();
}

std::vector<std::string> ClusterRouter::ReadSources(const ClusterView::Snapshot& snap,
                                                    const BlockKey& key) {
  std::vector<std::string> sources = snap.Sources(key);
  const uint32_t replicas = ReplicasOf(key);
  if (replicas == 0 || snap.empty()) return sources;
  std::vector<std::string> copies = snap.Copies(key, replicas);
  // Equal loads (an idle client) are broken at random, so reads spread even one at a time.
  thread_local std::minstd_rand rng(std::random_device{}());
  std::shuffle(copies.begin(), copies.end(), rng);
  std::vector<std::pair<int64_t, std::string>> by_load;
  for (auto& c : copies) by_load.emplace_back(Load(c), std::move(c));
  std::stable_sort(by_load.begin(), by_load.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  for (auto& [load, address] : by_load) out.push_back(std::move(address));
  for (auto& s : sources) {
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(std::move(s));
  }
  return out;
}

std::string ClusterRouter::OwnerOf(const BlockKey& key) const {
  auto snap = view_.Current();
  if (snap->empty()) return "";
  return snap->current.ring.member(snap->current.ring.Owner(key)).id;
}

}  // namespace kvstash::client_internal
