#include "client/cluster_router.h"

#include <algorithm>
#include <future>
#include <random>
#include <unordered_map>

#include "membership/member_watcher.h"

namespace kvstash::client_internal {
namespace {

constexpr auto kRetryOpen = std::chrono::milliseconds(250);
// Lookup rounds during a grace period; each round settles at least the first unsettled key.
constexpr size_t kMaxLookupRounds = 64;
// Remove also asks the members after the owner in rendezvous order: the daemons copy hot blocks to
// at most 8 members in all.
constexpr uint32_t kMaxRemoveCopies = 7;

// Errors the caller must see: the request itself is wrong. Everything else (the member is down,
// timed out, restarted, answered nonsense) is answered as a miss.
bool IsRequestError(const Status& st) {
  return st.code() == StatusCode::kInvalidArgument || st.code() == StatusCode::kFailedPrecondition;
}

// Runs fn(0..n-1), n-1 of them on their own threads and one on this thread.
void RunParallel(size_t n, const std::function<void(size_t)>& fn) {
  std::vector<std::future<void>> others;
  for (size_t i = 1; i < n; ++i) others.push_back(std::async(std::launch::async, fn, i));
  if (n > 0) fn(0);
  for (auto& f : others) f.get();
}

// Groups of indices by the address they go to, in first-seen order.
struct Groups {
  std::vector<std::string> addresses;
  std::vector<std::vector<size_t>> indices;
  void Add(const std::string& address, size_t i) {
    auto it = std::find(addresses.begin(), addresses.end(), address);
    if (it == addresses.end()) {
      addresses.push_back(address);
      indices.emplace_back();
      it = addresses.end() - 1;
    }
    indices[static_cast<size_t>(it - addresses.begin())].push_back(i);
  }
};

// "<id> at <address>" for a member of the snapshot; the address alone for one that left it.
std::string NameOf(const ClusterView::Snapshot& snap, const std::string& address) {
  for (const MemberInfo& m : snap.members) {
    if (m.address == address) return "member " + m.id + " at " + address;
  }
  return "member at " + address;
}

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

Result<LookupResult> ClusterRouter::Lookup(std::span<const BlockKey> chain, uint64_t lease_ms) {
  if (chain.empty()) return LookupResult{};
  if (chain.size() > limits::kMaxBatchKeys) {
    return InvalidArgument("a lookup takes at most " + std::to_string(limits::kMaxBatchKeys) +
                           " keys");
  }
  auto snap = view_.Current();
  if (snap->empty()) return LookupResult{};
  const size_t n = chain.size();
  std::vector<std::vector<std::string>> sources(n);
  for (size_t i = 0; i < n; ++i) sources[i] = snap->Sources(chain[i]);
  std::vector<size_t> tried(n, 0);  // sources that answered "absent" (or could not be reached)
  std::vector<std::optional<BlockInfo>> hits(n);
  size_t prefix = 0;
  for (size_t round = 0; round < kMaxLookupRounds; ++round) {
    // Ask each unsettled key from the first gap on at its next source.
    Groups groups;
    for (size_t i = prefix; i < n; ++i) {
      if (!hits[i] && tried[i] < sources[i].size()) groups.Add(sources[i][tried[i]], i);
    }
    if (groups.addresses.empty()) break;
    std::vector<Status> errors(groups.addresses.size());
    std::vector<LookupResult> answers(groups.addresses.size());
    RunParallel(groups.addresses.size(), [&](size_t g) {
      std::shared_ptr<Connection> conn = ConnectionTo(groups.addresses[g]);
      if (!conn) {
        errors[g] = Unavailable("unreachable");
        return;
      }
      std::vector<BlockKey> keys;
      for (size_t i : groups.indices[g]) keys.push_back(chain[i]);
      Result<LookupResult> r = conn->Lookup(keys, lease_ms);
      if (r.ok())
        answers[g] = std::move(*r);
      else
        errors[g] = r.status();
    });
    for (size_t g = 0; g < groups.addresses.size(); ++g) {
      if (IsRequestError(errors[g])) return errors[g];
      const auto& idx = groups.indices[g];
      if (!errors[g].ok()) {
        for (size_t i : idx) ++tried[i];
        continue;
      }
      // The daemon stops at its first miss: before it hits, at it "absent", after it unknown.
      const size_t h = std::min(answers[g].hit_blocks, idx.size());
      for (size_t k = 0; k < h; ++k) hits[idx[k]] = std::move(answers[g].blocks[k]);
      if (h < idx.size()) ++tried[idx[h]];
    }
    while (prefix < n && hits[prefix]) ++prefix;
    if (prefix == n || tried[prefix] >= sources[prefix].size()) break;
  }
  LookupResult result;
  result.hit_blocks = prefix;
  std::unordered_map<std::string, std::vector<BlockInfo>> stray_leases;  // hits past the prefix
  for (size_t i = 0; i < n; ++i) {
    if (!hits[i]) continue;
    NoteReplicas(*hits[i]);
    if (i < prefix)
      result.blocks.push_back(std::move(*hits[i]));
    else if (hits[i]->lease_epoch != 0)
      stray_leases[hits[i]->member].push_back(std::move(*hits[i]));
  }
  for (auto& [address, blocks] : stray_leases) {
    if (auto conn = ConnectionTo(address)) {
      std::vector<std::pair<BlockKey, uint64_t>> leases;
      for (const auto& b : blocks) leases.emplace_back(b.key, b.lease_epoch);
      conn->ReleaseLeasesAsync(leases);
    }
  }
  return result;
}

Result<PutResult> ClusterRouter::Put(std::span<const PutItem> items,
                                     const PutOptions& put_options) {
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].data.empty() || items[i].data.size() > limits::kMaxBlockBytes) {
      return InvalidArgument("item " + std::to_string(i) + ": a block must be 1 B .. 64 MiB, not " +
                             std::to_string(items[i].data.size()) + " bytes");
    }
  }
  PutResult result;
  result.outcomes.assign(items.size(), PutOutcome::kUnreachable);
  auto snap = view_.Current();
  if (!snap->empty()) {
    Groups groups;
    for (size_t i = 0; i < items.size(); ++i) groups.Add(snap->current.Owner(items[i].key), i);
    std::vector<Status> errors(groups.addresses.size());
    std::vector<uint8_t> answered(groups.addresses.size(), 0);
    RunParallel(groups.addresses.size(), [&](size_t g) {
      std::shared_ptr<Connection> conn = ConnectionTo(groups.addresses[g]);
      if (!conn) return;  // stays kUnreachable
      std::vector<PutItem> sub;
      for (size_t i : groups.indices[g]) sub.push_back(items[i]);
      Result<PutResult> r = conn->Put(sub, put_options);
      if (!r.ok()) {
        errors[g] = r.status();
        return;
      }
      answered[g] = 1;
      for (size_t k = 0; k < sub.size() && k < r->outcomes.size(); ++k)
        result.outcomes[groups.indices[g][k]] = r->outcomes[k];
    });
    for (const Status& st : errors) {
      if (IsRequestError(st)) return st;
    }
    for (size_t g = 0; g < groups.addresses.size(); ++g) {
      if (!answered[g]) result.unreachable.push_back(NameOf(*snap, groups.addresses[g]));
    }
  }
  client_internal::CountOutcomes(result);
  return result;
}

Status ClusterRouter::Get(std::span<GetItem> items) {
  auto snap = view_.Current();
  std::vector<std::vector<std::string>> sources(items.size());
  std::vector<size_t> next(items.size(), 0);
  std::vector<std::string> unreachable(items.size());  // a source of item i that did not answer
  for (size_t i = 0; i < items.size(); ++i) {
    items[i].found = false;
    items[i].size = 0;
    items[i].status = NotFound("block " + items[i].key.ToHex() + " is not stored");
    const BlockInfo* loc = items[i].located;
    if (loc != nullptr && loc->key == items[i].key && !loc->member.empty())
      sources[i] = {loc->member};
    else if (!snap->empty())
      sources[i] = ReadSources(*snap, items[i].key);
  }
  while (true) {
    Groups groups;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].found && items[i].status.code() == StatusCode::kNotFound &&
          next[i] < sources[i].size()) {
        groups.Add(sources[i][next[i]++], i);
      }
    }
    if (groups.addresses.empty()) break;
    std::vector<Status> errors(groups.addresses.size());
    RunParallel(groups.addresses.size(), [&](size_t g) {
      std::shared_ptr<Connection> conn = ConnectionTo(groups.addresses[g]);
      if (!conn) {  // misses; the next source may have them
        for (size_t i : groups.indices[g]) unreachable[i] = groups.addresses[g];
        return;
      }
      std::vector<GetItem> sub;
      for (size_t i : groups.indices[g]) {
        sub.push_back(items[i]);
        // A location from another daemon means nothing here.
        if (sub.back().located != nullptr && sub.back().located->member != groups.addresses[g])
          sub.back().located = nullptr;
      }
      std::shared_ptr<Slot> slot;
      {
        MutexLock lock(mu_);
        if (auto it = slots_.find(groups.addresses[g]); it != slots_.end()) slot = it->second;
      }
      if (slot) slot->in_flight += static_cast<int64_t>(sub.size());
      const Status st = conn->Get(sub);
      if (slot) slot->in_flight -= static_cast<int64_t>(sub.size());
      if (!st.ok()) {
        errors[g] = st;
        for (size_t i : groups.indices[g]) unreachable[i] = groups.addresses[g];
        return;
      }
      for (size_t k = 0; k < sub.size(); ++k) {
        GetItem& item = items[groups.indices[g][k]];
        item.found = sub[k].found;
        item.size = sub[k].size;
        item.status = sub[k].status;
        // A read that failed in transit is a miss, like a member that is down.
        if (!item.found && item.status.code() == StatusCode::kUnavailable)
          item.status = NotFound(item.status.message());
      }
    });
    for (const Status& st : errors) {
      if (IsRequestError(st)) return st;
    }
  }
  // A miss where a source did not answer may be that member's block: say so, naming it.
  for (size_t i = 0; i < items.size(); ++i) {
    if (!items[i].found && items[i].status.code() == StatusCode::kNotFound && !unreachable[i].empty()) {
      items[i].status = Unavailable("block " + items[i].key.ToHex() + " not found; " + NameOf(*snap, unreachable[i]) +
                                    " did not answer (down or unreachable from here)");
    }
  }
  // Blocks found at a previous owner are handed to their new owner (the pull of a join), so that
  // they are found there once the grace period is over. Best effort: a failure is only a later
  // miss.
  Groups repairs;
  for (size_t i = 0; i < items.size(); ++i) {
    // Replicated keys are read from any copy on purpose: only a previous owner's hit is pulled.
    if (items[i].found && next[i] > 1 && items[i].located == nullptr &&
        ReplicasOf(items[i].key) == 0) {
      repairs.Add(sources[i][0], i);
    }
  }
  RunParallel(repairs.addresses.size(), [&](size_t g) {
    std::shared_ptr<Connection> conn = ConnectionTo(repairs.addresses[g]);
    if (!conn) return;
    std::vector<PutItem> puts;
    for (size_t i : repairs.indices[g])
      puts.push_back({items[i].key, std::nullopt, items[i].buffer.first(items[i].size)});
    (void)conn->Put(puts, PutOptions{});
  });
  return Status::Ok();
}

Status ClusterRouter::ReleaseLeases(std::span<const BlockInfo> blocks) {
  auto snap = view_.Current();
  Groups groups;
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i].lease_epoch == 0) continue;
    if (!blocks[i].member.empty())
      groups.Add(blocks[i].member, i);
    else if (!snap->empty())
      groups.Add(snap->current.Owner(blocks[i].key), i);
  }
  std::vector<Status> errors(groups.addresses.size());
  RunParallel(groups.addresses.size(), [&](size_t g) {
    std::shared_ptr<Connection> conn = ConnectionTo(groups.addresses[g]);
    if (!conn) return;  // the lease ends on its own
    std::vector<BlockInfo> sub;
    for (size_t i : groups.indices[g]) sub.push_back(blocks[i]);
    errors[g] = conn->ReleaseLeases(sub);
  });
  for (const Status& st : errors) {
    if (IsRequestError(st)) return st;
  }
  return Status::Ok();
}

Result<std::vector<RemoveOutcome>> ClusterRouter::Remove(std::span<const BlockKey> keys) {
  std::vector<RemoveOutcome> outcomes(keys.size(), RemoveOutcome::kMissing);
  auto snap = view_.Current();
  if (snap->empty()) return outcomes;
  // Every source: a key still held by its previous owner must not be found there afterwards.
  Groups groups;
  for (size_t i = 0; i < keys.size(); ++i) {
    // The owner, previous owners in grace, and where the owner may have copied a hot block.
    std::vector<std::string> where = snap->Sources(keys[i]);
    for (std::string& c : snap->Copies(keys[i], kMaxRemoveCopies)) {
      if (std::find(where.begin(), where.end(), c) == where.end()) where.push_back(std::move(c));
    }
    for (const std::string& s : where) groups.Add(s, i);
  }
  std::vector<Status> errors(groups.addresses.size());
  std::mutex out_mu;
  RunParallel(groups.addresses.size(), [&](size_t g) {
    std::shared_ptr<Connection> conn = ConnectionTo(groups.addresses[g]);
    if (!conn) return;
    std::vector<BlockKey> sub;
    for (size_t i : groups.indices[g]) sub.push_back(keys[i]);
    Result<std::vector<RemoveOutcome>> r = conn->Remove(sub);
    if (!r.ok()) {
      errors[g] = r.status();
      return;
    }
    std::lock_guard lock(out_mu);
    for (size_t k = 0; k < sub.size() && k < r->size(); ++k) {
      if ((*r)[k] == RemoveOutcome::kRemoved)
        outcomes[groups.indices[g][k]] = RemoveOutcome::kRemoved;
    }
  });
  for (const Status& st : errors) {
    if (IsRequestError(st)) return st;
  }
  return outcomes;
}

Result<std::vector<std::optional<BlockInfo>>> ClusterRouter::Stat(std::span<const BlockKey> keys) {
  std::vector<std::optional<BlockInfo>> out(keys.size());
  auto snap = view_.Current();
  if (snap->empty()) return out;
  std::vector<std::vector<std::string>> sources(keys.size());
  std::vector<size_t> next(keys.size(), 0);
  for (size_t i = 0; i < keys.size(); ++i) sources[i] = snap->Sources(keys[i]);
  while (true) {
    Groups groups;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (!out[i] && next[i] < sources[i].size()) groups.Add(sources[i][next[i]++], i);
    }
    if (groups.addresses.empty()) return out;
    std::vector<Status> errors(groups.addresses.size());
    RunParallel(groups.addresses.size(), [&](size_t g) {
      std::shared_ptr<Connection> conn = ConnectionTo(groups.addresses[g]);
      if (!conn) return;
      std::vector<BlockKey> sub;
      for (size_t i : groups.indices[g]) sub.push_back(keys[i]);
      Result<std::vector<std::optional<BlockInfo>>> r = conn->Stat(sub);
      if (!r.ok()) {
        errors[g] = r.status();
        return;
      }
      for (size_t k = 0; k < sub.size() && k < r->size(); ++k) {
        if ((*r)[k]) NoteReplicas(*(*r)[k]);
        out[groups.indices[g][k]] = std::move((*r)[k]);
      }
    });
    for (const Status& st : errors) {
      if (IsRequestError(st)) return st;
    }
  }
}

std::vector<MemberStats> ClusterRouter::ClusterStats() {
  const std::vector<MemberInfo> members = Members();
  std::vector<MemberStats> out(members.size());
  RunParallel(members.size(), [&](size_t i) {
    out[i].member = members[i];
    std::shared_ptr<Connection> conn = ConnectionTo(members[i].address);
    if (!conn) {
      out[i].error = "cannot reach kvstashd at " + members[i].address;
      return;
    }
    Result<StoreStats> s = conn->Stats();
    if (!s.ok()) {
      out[i].error = s.status().message();
      return;
    }
    out[i].reachable = true;
    out[i].stats = std::move(*s);
  });
  return out;
}

Result<StoreStats> ClusterRouter::Stats() {
  StoreStats total;
  size_t reachable = 0;
  const std::vector<MemberStats> all = ClusterStats();
  for (const MemberStats& m : all) {
    if (!m.reachable) continue;
    ++reachable;
    const StoreStats& s = m.stats;
    if (total.version.empty()) total.version = s.version;
    if (total.data_plane.empty()) total.data_plane = s.data_plane;
    total.uptime_ms = std::max(total.uptime_ms, s.uptime_ms);
    for (const TierStats& t : s.tiers) {
      auto it = std::find_if(total.tiers.begin(), total.tiers.end(),
                             [&](const TierStats& x) { return x.tier == t.tier; });
      if (it == total.tiers.end()) {
        total.tiers.push_back(t);
        continue;
      }
      it->capacity_bytes += t.capacity_bytes;
      it->used_bytes += t.used_bytes;
      it->reserved_bytes += t.reserved_bytes;
      it->blocks += t.blocks;
      it->leased_blocks += t.leased_blocks;
      it->pinned_blocks += t.pinned_blocks;
      it->evictions += t.evictions;
    }
    total.lookup_hit_blocks += s.lookup_hit_blocks;
    total.lookup_miss_blocks += s.lookup_miss_blocks;
    total.get_hits += s.get_hits;
    total.get_misses += s.get_misses;
    total.puts_stored += s.puts_stored;
    total.puts_deduplicated += s.puts_deduplicated;
    total.reservations_open += s.reservations_open;
    total.put_bytes_inline += s.put_bytes_inline;
    total.put_bytes_one_sided += s.put_bytes_one_sided;
    total.put_bytes_two_sided += s.put_bytes_two_sided;
    total.get_bytes_two_sided += s.get_bytes_two_sided;
    total.two_sided_sends_in_flight += s.two_sided_sends_in_flight;
    total.two_sided_rejected += s.two_sided_rejected;
    total.two_sided_receives_open += s.two_sided_receives_open;
    total.eager_puts_stored += s.eager_puts_stored;
    total.eager_puts_refused += s.eager_puts_refused;
    total.eager_puts_failed += s.eager_puts_failed;
    total.eager_gets_sent += s.eager_gets_sent;
    total.eager_gets_refused += s.eager_gets_refused;
    for (const auto& [reason, count] : s.refused_messages) total.refused_messages[reason] += count;
    total.corrupt_blocks += s.corrupt_blocks;
    if (total.one_sided_transports.empty()) total.one_sided_transports = s.one_sided_transports;
  }
  if (reachable == 0 && !all.empty())
    return Unavailable("no member of cluster " + options_.cluster + " answers");
  total.member_id = "cluster " + options_.cluster + " (" + std::to_string(reachable) + " of " +
                    std::to_string(all.size()) + " members)";
  return total;
}

Result<ListResult> ClusterRouter::List(const std::optional<BlockKey>& start_after, uint32_t limit) {
  if (limit == 0 || limit > limits::kMaxListLimit) {
    return InvalidArgument("list limit must be 1.." + std::to_string(limits::kMaxListLimit));
  }
  const std::vector<MemberInfo> members = Members();
  std::vector<Result<ListResult>> pages(members.size(), Unavailable("unreachable"));
  RunParallel(members.size(), [&](size_t i) {
    if (std::shared_ptr<Connection> conn = ConnectionTo(members[i].address))
      pages[i] = conn->List(start_after, limit);
  });
  std::vector<BlockInfo> merged;
  bool more = false;
  // A member with more pages has keys past its last one: nothing beyond the smallest such key is
  // known to be complete.
  std::optional<BlockKey> cutoff;
  for (auto& p : pages) {
    if (!p.ok()) {
      if (IsRequestError(p.status())) return p.status();
      continue;
    }
    if (p->next_start_after && !p->blocks.empty() && (!cutoff || p->blocks.back().key < *cutoff)) {
      cutoff = p->blocks.back().key;
    }
    more = more || p->next_start_after.has_value();
    for (auto& b : p->blocks) merged.push_back(std::move(b));
  }
  if (cutoff) std::erase_if(merged, [&](const BlockInfo& b) { return *cutoff < b.key; });
  std::sort(merged.begin(), merged.end(),
            [](const BlockInfo& a, const BlockInfo& b) { return a.key < b.key; });
  // The same key may sit at two members (a previous owner): list it once.
  merged.erase(std::unique(merged.begin(), merged.end(),
                           [](const BlockInfo& a, const BlockInfo& b) { return a.key == b.key; }),
               merged.end());
  ListResult result;
  if (merged.size() > limit) {
    merged.resize(limit);
    more = true;
  }
  result.blocks = std::move(merged);
  if (more && !result.blocks.empty()) result.next_start_after = result.blocks.back().key;
  return result;
}

Result<HealthInfo> ClusterRouter::Health() {
  const std::vector<MemberInfo> members = Members();
  HealthInfo health;
  health.member_id = "cluster " + options_.cluster;
  std::vector<Result<HealthInfo>> answers(members.size(), Unavailable("unreachable"));
  RunParallel(members.size(), [&](size_t i) {
    if (std::shared_ptr<Connection> conn = ConnectionTo(members[i].address))
      answers[i] = conn->Health();
  });
  for (const auto& a : answers) {
    if (a.ok() && a->serving) {
      health.serving = true;
      if (health.version.empty()) health.version = a->version;
    }
  }
  return health;
}

}  // namespace kvstash::client_internal
