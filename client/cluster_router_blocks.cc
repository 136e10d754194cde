// ClusterRouter's data path (contract in client/cluster_router.h): each call groups its keys by
// owner in the current snapshot and asks the owners in parallel, one RPC batch each. Lookup settles
// a chain's longest prefix across owners and, during a join's grace, previous owners; Get reads
// replicated keys from their least-loaded copy, falls back to previous owners, and puts a block
// found there to its new owner; a member that cannot be reached turns into misses.
#include "client/cluster_router.h"

#include <algorithm>
#include <unordered_map>

#include "client/cluster_router_internal.h"

namespace kvstash::client_internal {

using router_detail::Groups;
using router_detail::IsRequestError;
using router_detail::kMaxLookupRounds;
using router_detail::NameOf;
using router_detail::RunParallel;

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

}  // namespace kvstash::client_internal
