#include "client/cluster_view.h"

#include <algorithm>

namespace kvstash::client_internal {

std::vector<std::string> ClusterView::Snapshot::Sources(const BlockKey& key) const {
  std::vector<std::string> out;
  if (current.ring.empty()) return out;
  out.push_back(current.Owner(key));
  for (const Ring& r : previous) {
    if (r.ring.empty()) continue;
    const std::string& owner = r.Owner(key);
    // A previous owner that left the member set (stopped or dead) holds nothing worth a call.
    const bool present = std::any_of(members.begin(), members.end(),
                                     [&](const MemberInfo& m) { return m.address == owner; });
    if (present && std::find(out.begin(), out.end(), owner) == out.end()) out.push_back(owner);
  }
  return out;
}

uint64_t ClusterView::WallClockMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

std::vector<std::string> ClusterView::Snapshot::Copies(const BlockKey& key,
                                                       uint32_t replicas) const {
  std::vector<std::string> out;
  for (size_t i : current.ring.Order(key, size_t{replicas} + 1))
    out.push_back(current.addresses[i]);
  return out;
}

ClusterView::Ring ClusterView::BeforeDrains(const std::vector<MemberInfo>& members, TimePoint now,
                                            uint64_t now_unix_ms) const {
  const auto grace_ms = static_cast<uint64_t>(grace_.count());
  uint64_t longest_left_ms = 0;  // the grace left of the most recent drain
  std::vector<RendezvousMember> ring;
  Ring r;
  for (const MemberInfo& m : members) {  // ordered by id
    if (!(m.weight > 0)) continue;
    if (m.draining) {
      const uint64_t since = m.draining_since_unix_ms;
      const uint64_t age_ms = now_unix_ms > since ? now_unix_ms - since : 0;
      if (since == 0 || age_ms >= grace_ms) continue;
      longest_left_ms = std::max(longest_left_ms, grace_ms - age_ms);
    }
    ring.push_back({m.id, m.weight});
    r.addresses.push_back(m.address);
  }
  if (longest_left_ms == 0) return Ring{};
  r.ring = RendezvousRing(std::move(ring));
  r.until = now + std::chrono::milliseconds(longest_left_ms);
  return r;
}

void ClusterView::Update(std::vector<MemberInfo> members, TimePoint now, uint64_t now_unix_ms) {
  std::sort(members.begin(), members.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  auto next = std::make_shared<Snapshot>();
  std::vector<RendezvousMember> serving;
  for (const MemberInfo& m : members) {
    if (m.draining || !(m.weight > 0)) continue;
    serving.push_back({m.id, m.weight});
    next->current.addresses.push_back(m.address);
  }
  next->current.ring = RendezvousRing(std::move(serving));
  // The rings as they were before each member that joined within the grace period (by join
  // time): a client that started after those joins still knows where the moved keys were.
  std::vector<Ring> before_joins;
  {
    std::vector<const MemberInfo*> serving_members;
    for (const MemberInfo& m : members) {
      if (!m.draining && m.weight > 0) serving_members.push_back(&m);
    }
    std::sort(serving_members.begin(), serving_members.end(),
              [](const MemberInfo* x, const MemberInfo* y) {
                return x->started_unix_ms < y->started_unix_ms;
              });
    const auto grace_ms = static_cast<uint64_t>(grace_.count());
    for (size_t j = serving_members.size(); j-- > 1 && before_joins.size() < kMaxPrevious;) {
      const MemberInfo& joiner = *serving_members[j];
      const uint64_t age_ms =
          now_unix_ms > joiner.started_unix_ms ? now_unix_ms - joiner.started_unix_ms : 0;
      if (joiner.started_unix_ms == 0 || age_ms >= grace_ms) break;
      std::vector<const MemberInfo*> before;
      for (size_t k = 0; k < j; ++k) {
        if (serving_members[k]->started_unix_ms < joiner.started_unix_ms)
          before.push_back(serving_members[k]);
      }
      if (before.empty()) continue;
      std::sort(before.begin(), before.end(),
                [](const MemberInfo* x, const MemberInfo* y) { return x->id < y->id; });
      Ring r;
      std::vector<RendezvousMember> earlier;
      for (const MemberInfo* m : before) {
        earlier.push_back({m->id, m->weight});
        r.addresses.push_back(m->address);
      }
      r.ring = RendezvousRing(std::move(earlier));
      r.until = now + std::chrono::milliseconds(grace_ms - age_ms);
      before_joins.push_back(std::move(r));
    }
  }
  Ring before_drains = BeforeDrains(members, now, now_unix_ms);
  if (!before_drains.ring.empty()) before_joins.insert(before_joins.begin(), std::move(before_drains));
  next->members = std::move(members);

  MutexLock lock(mu_);
  const Snapshot& old = *snapshot_;
  bool changed = old.current.ring.size() != next->current.ring.size() ||
                 old.current.addresses != next->current.addresses;
  for (size_t i = 0; !changed && i < old.current.ring.size(); ++i) {
    changed = old.current.ring.member(i).id != next->current.ring.member(i).id ||
              old.current.ring.member(i).weight != next->current.ring.member(i).weight;
  }
  if (changed && !old.current.ring.empty()) {
    Ring before = old.current;
    before.until = now + grace_;
    next->previous.push_back(std::move(before));
  }
  auto known = [&](const Ring& r) {
    return std::any_of(next->previous.begin(), next->previous.end(),
                       [&](const Ring& p) { return p.addresses == r.addresses; });
  };
  for (const Ring& r : old.previous) {
    if (r.until > now && next->previous.size() < kMaxPrevious && !known(r))
      next->previous.push_back(r);
  }
  for (Ring& r : before_joins) {
    if (next->previous.size() < 2 * kMaxPrevious && !known(r))
      next->previous.push_back(std::move(r));
  }
  snapshot_ = std::move(next);
}

std::shared_ptr<const ClusterView::Snapshot> ClusterView::Current(TimePoint now) const {
  MutexLock lock(mu_);
  bool expired = false;
  for (const Ring& r : snapshot_->previous) expired = expired || r.until <= now;
  if (!expired) return snapshot_;
  auto pruned = std::make_shared<Snapshot>(*snapshot_);
  std::erase_if(pruned->previous, [now](const Ring& r) { return r.until <= now; });
  return pruned;
}

}  // namespace kvstash::client_internal
