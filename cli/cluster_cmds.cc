// `kvstash --etcd ... status` (the cluster view) and `kvstash drain MEMBER`.
#include <algorithm>
#include <iostream>

#include "cli/commands.h"
#include "cli/output.h"
#include "cli/session.h"
#include "common/units.h"
#include "membership/etcd_client.h"
#include "membership/member_record.h"

namespace kvstash::cli {
namespace {

double Ratio(uint64_t part, uint64_t whole) {
  return whole == 0 ? 0.0 : static_cast<double>(part) / static_cast<double>(whole);
}

struct Totals {
  std::vector<TierStats> tiers;
  uint64_t lookup_hits = 0, lookup_misses = 0, get_hits = 0, get_misses = 0, leased = 0,
           reservations = 0;
  size_t reachable = 0, draining = 0;
};

Totals Sum(const std::vector<MemberStats>& members) {
  Totals t;
  for (const MemberStats& m : members) {
    if (m.member.draining) ++t.draining;
    if (!m.reachable) continue;
    ++t.reachable;
    const StoreStats& s = m.stats;
    t.lookup_hits += s.lookup_hit_blocks;
    t.lookup_misses += s.lookup_miss_blocks;
    t.get_hits += s.get_hits;
    t.get_misses += s.get_misses;
    t.reservations += s.reservations_open;
    for (const TierStats& tier : s.tiers) {
      t.leased += tier.leased_blocks;
      auto it = std::find_if(t.tiers.begin(), t.tiers.end(),
                             [&](const TierStats& x) { return x.tier == tier.tier; });
      if (it == t.tiers.end()) {
        t.tiers.push_back(tier);
        continue;
      }
      it->capacity_bytes += tier.capacity_bytes;
      it->used_bytes += tier.used_bytes;
      it->blocks += tier.blocks;
      it->evictions += tier.evictions;
    }
  }
  return t;
}

uint64_t Blocks(const StoreStats& s) {
  uint64_t n = 0;
  for (const TierStats& t : s.tiers) n += t.blocks;
  return n;
}

// The cluster's hottest blocks: each reachable member's own list merged, most hits first.
std::vector<std::pair<std::string, BlockInfo>> Hottest(const std::vector<MemberStats>& members, size_t n) {
  std::vector<std::pair<std::string, BlockInfo>> all;
  for (const MemberStats& m : members) {
    if (!m.reachable) continue;
    for (const BlockInfo& b : m.stats.hottest) all.emplace_back(m.member.id, b);
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.second.hits > b.second.hits; });
  if (all.size() > n) all.resize(n);
  return all;
}

nlohmann::json HottestJson(const std::vector<MemberStats>& members) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [member, b] : Hottest(members, 10)) {
    out.push_back({{"key", b.key.ToHex()}, {"member", member}, {"hits", b.hits}, {"size", b.size}});
  }
  return out;
}

nlohmann::json ClusterJson(const std::string& cluster, const std::vector<MemberStats>& members,
                           const Totals& t) {
  nlohmann::json list = nlohmann::json::array();
  for (const MemberStats& m : members) {
    nlohmann::json tiers = nlohmann::json::array();
    for (const TierStats& tier : m.stats.tiers) {
      tiers.push_back({{"tier", std::string(ToString(tier.tier))},
                       {"capacity_bytes", tier.capacity_bytes},
                       {"used_bytes", tier.used_bytes},
                       {"blocks", tier.blocks},
                       {"leased_blocks", tier.leased_blocks},
                       {"evictions", tier.evictions}});
    }
    const uint64_t lookups = m.stats.lookup_hit_blocks + m.stats.lookup_miss_blocks;
    list.push_back({{"id", m.member.id},
                    {"address", m.member.address},
                    {"metrics_address", m.member.metrics_address},
                    {"state", m.member.draining ? "draining" : "serving"},
                    {"weight", m.member.weight},
                    {"reachable", m.reachable},
                    {"error", m.error},
                    {"uptime_ms", m.stats.uptime_ms},
                    {"tiers", tiers},
                    {"lookup_hit_ratio", Ratio(m.stats.lookup_hit_blocks, lookups)},
                    {"reservations_open", m.stats.reservations_open}});
  }
  nlohmann::json tiers = nlohmann::json::array();
  for (const TierStats& tier : t.tiers) {
    tiers.push_back({{"tier", std::string(ToString(tier.tier))},
                     {"capacity_bytes", tier.capacity_bytes},
                     {"used_bytes", tier.used_bytes},
                     {"blocks", tier.blocks}});
  }
  return {{"cluster", cluster},
          {"members", list},
          {"reachable_members", t.reachable},
          {"draining_members", t.draining},
          {"tiers", tiers},
          {"lookup",
           {{"hit_blocks", t.lookup_hits},
            {"miss_blocks", t.lookup_misses},
            {"hit_ratio", Ratio(t.lookup_hits, t.lookup_hits + t.lookup_misses)}}},
          {"get", {{"hits", t.get_hits}, {"misses", t.get_misses}}},
          {"leases", {{"leased_blocks", t.leased}, {"reservations_open", t.reservations}}},
          {"hottest", HottestJson(members)}};
}

void PrintCluster(const std::string& cluster, const std::vector<MemberStats>& members,
                  const Totals& t) {
  PrintFields(std::cout,
              {{"cluster", cluster},
               {"members", std::to_string(members.size()) + " (" + std::to_string(t.reachable) +
                               " reachable, " + std::to_string(t.draining) + " draining)"}});
  std::cout << '\n';
  using A = Table::Align;
  Table table({"member", "address", "state", "weight", "capacity", "used", "use%", "blocks",
               "leased", "hit%", "uptime"},
              {A::kLeft, A::kLeft, A::kLeft, A::kRight, A::kRight, A::kRight, A::kRight, A::kRight,
               A::kRight, A::kRight, A::kRight});
  for (const MemberStats& m : members) {
    const std::string state = !m.reachable        ? "UNREACHABLE"
                              : m.member.draining ? "draining"
                                                  : "serving";
    uint64_t cap = 0, used = 0, leased = 0;
    for (const TierStats& tier : m.stats.tiers) {
      cap += tier.capacity_bytes;
      used += tier.used_bytes;
      leased += tier.leased_blocks;
    }
    const uint64_t lookups = m.stats.lookup_hit_blocks + m.stats.lookup_miss_blocks;
    table.AddRow(
        {m.member.id, m.member.address, state, FormatFixed(m.member.weight, 2), FormatBytes(cap),
         FormatBytes(used), FormatFixed(100.0 * Ratio(used, cap), 1) + "%",
         std::to_string(Blocks(m.stats)), std::to_string(leased),
         lookups == 0 ? std::string("-")
                      : FormatFixed(100.0 * Ratio(m.stats.lookup_hit_blocks, lookups), 1) + "%",
         m.reachable ? FormatUptime(m.stats.uptime_ms) : std::string("-")});
  }
  table.Print(std::cout);
  std::cout << '\n';
  Table tiers({"tier", "capacity", "used", "use%", "blocks", "evictions"},
              {A::kLeft, A::kRight, A::kRight, A::kRight, A::kRight, A::kRight});
  for (const TierStats& tier : t.tiers) {
    tiers.AddRow({std::string(ToString(tier.tier)), FormatBytes(tier.capacity_bytes),
                  FormatBytes(tier.used_bytes),
                  FormatFixed(100.0 * Ratio(tier.used_bytes, tier.capacity_bytes), 1) + "%",
                  std::to_string(tier.blocks), std::to_string(tier.evictions)});
  }
  tiers.Print(std::cout);
  std::cout << '\n';
  const uint64_t lookups = t.lookup_hits + t.lookup_misses;
  PrintFields(
      std::cout,
      {{"lookups",
        std::to_string(t.lookup_hits) + " hit / " + std::to_string(t.lookup_misses) +
            " missed blocks (" +
            (lookups == 0 ? std::string("no lookups yet")
                          : FormatFixed(100.0 * Ratio(t.lookup_hits, lookups), 1) + "% hit ratio") +
            ")"},
       {"gets", std::to_string(t.get_hits) + " hits / " + std::to_string(t.get_misses) + " misses"},
       {"leases", std::to_string(t.leased) + " blocks leased, " + std::to_string(t.reservations) +
                      " put reservations open"}});
  const auto hottest = Hottest(members, 10);
  if (!hottest.empty()) {
    std::cout << "\nhottest blocks\n";
    Table hot({"key", "member", "hits", "size"}, {A::kLeft, A::kLeft, A::kRight, A::kRight});
    for (const auto& [member, b] : hottest) {
      hot.AddRow({b.key.ToHex(), member, std::to_string(b.hits), FormatBytes(b.size)});
    }
    hot.Print(std::cout);
  }
}

}  // namespace

int RunClusterStatus(const GlobalOptions& global) {
  constexpr std::string_view kCommand = "status";
  Session session = Connect(kCommand, global);
  if (!session) return session.exit_code;
  const std::vector<MemberStats> members = session.client->ClusterStats();
  const Totals totals = Sum(members);
  if (global.json)
    PrintJson(ClusterJson(global.cluster, members, totals));
  else
    PrintCluster(global.cluster, members, totals);
  if (members.empty())
    return ReportFailure(kCommand, Unavailable("cluster " + global.cluster + " has no members"));
  if (totals.reachable < members.size()) {
    return ReportFailure(kCommand, Unavailable(std::to_string(members.size() - totals.reachable) +
                                               " member(s) cannot be reached"));
  }
  return kExitOk;
}

int RunDrain(const GlobalOptions& global, const DrainCommand& cmd) {
  constexpr std::string_view kCommand = "drain";
  const std::vector<std::string> endpoints = EtcdEndpoints(global);
  if (endpoints.empty())
    return ReportUsage(kCommand, "drain needs the cluster's etcd (--etcd or $KVSTASH_ETCD)");
  if (Status st = membership::ValidateName("member id", cmd.member); !st.ok())
    return ReportUsage(kCommand, st.message());
  membership::EtcdOptions options;
  options.endpoints = endpoints;
  options.timeout_ms = global.timeout_ms;
  auto etcd = membership::EtcdClient::Create(options);
  if (!etcd.ok()) return ReportUsage(kCommand, etcd.status().message());
  const std::string key = membership::MemberKey(global.cluster, cmd.member);
  auto current = (*etcd)->Get(key);
  if (!current.ok()) return ReportFailure(kCommand, current.status());
  if (!*current)
    return ReportFailure(kCommand,
                         NotFound("no member '" + cmd.member + "' in cluster " + global.cluster));
  auto record = membership::MemberRecordFromJson((*current)->value);
  if (!record.ok()) return ReportFailure(kCommand, record.status());
  record->state = cmd.undo ? membership::MemberState::kServing : membership::MemberState::kDraining;
  // The record stays attached to the member's own lease: it still vanishes if the member dies.
  if (Status st = (*etcd)->Put(key, membership::ToJson(*record), 0, /*keep_lease=*/true);
      !st.ok()) {
    return ReportFailure(kCommand, st);
  }
  if (global.json) {
    PrintJson({{"member", cmd.member},
               {"cluster", global.cluster},
               {"state", std::string(ToString(record->state))}});
  } else {
    std::cout << "member " << cmd.member << " is " << ToString(record->state) << '\n';
  }
  return kExitOk;
}

}  // namespace kvstash::cli
