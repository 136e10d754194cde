// ClusterRouter's management calls (contract in client/cluster_router.h): Remove (at the owner,
// previous owners in grace and the members a hot block may have been copied to), Stat, the summed
// Stats and per-member ClusterStats, List across members in key order, and Health.
#include "client/cluster_router.h"

#include <algorithm>
#include <unordered_map>

#include "client/cluster_router_internal.h"

namespace kvstash::client_internal {

using router_detail::Groups;
using router_detail::IsRequestError;
using router_detail::kMaxRemoveCopies;
using router_detail::RunParallel;

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
