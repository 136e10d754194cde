// `kvstash --etcd ... status`: the cluster view.
#include <algorithm>
#include <iostream>

#include "cli/commands.h"
#include "cli/output.h"
#include "cli/session.h"
#include "common/units.h"

namespace kvstash::cli {
namespace {

double Ratio(uint64_t part, uint64_t whole) {
  return whole == 0 ? 0.0 : static_cast<double>(part) / static_cast<double>(whole);
}

// Hits over every read: blocks found by lookups plus gets that found their block.
struct HitCount {
  uint64_t hits = 0, reads = 0;
  void Add(const StoreStats& s) {
    hits += s.lookup_hit_blocks + s.get_hits;
    reads += s.lookup_hit_blocks + s.lookup_miss_blocks + s.get_hits + s.get_misses;
  }
  std::string Percent() const {
    return reads == 0 ? std::string("-") : FormatFixed(100.0 * Ratio(hits, reads), 1) + "%";
  }
};

HitCount HitsOf(const StoreStats& s) {
  HitCount h;
  h.Add(s);
  return h;
}

// The registration word of a member's Stats.membership ("registered", "conflict", ...).
std::string RegistrationOf(const MemberStats& m) {
  if (!m.reachable) return "-";
  const std::string& text = m.stats.membership;
  if (text.empty()) return "?";  // a daemon older than this field
  return text.substr(0, text.find_first_of(" :"));
}

struct Totals {
  std::vector<TierStats> tiers;
  uint64_t lookup_hits = 0, lookup_misses = 0, get_hits = 0, get_misses = 0, leased = 0,
           reservations = 0;
  size_t reachable = 0, draining = 0;
  HitCount hits;
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
    t.hits.Add(s);
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
                    {"hit_ratio", Ratio(HitsOf(m.stats).hits, HitsOf(m.stats).reads)},
                    {"membership", m.stats.membership},
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
          {"hits", {{"hits", t.hits.hits}, {"reads", t.hits.reads}, {"hit_ratio", Ratio(t.hits.hits, t.hits.reads)}}},
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
  // One column per tier any member has: each tier's use is its own (a full DRAM tier must not
  // hide behind an empty SSD).
  std::vector<std::string> header = {"member", "address", "state", "etcd", "weight"};
  std::vector<A> align = {A::kLeft, A::kLeft, A::kLeft, A::kLeft, A::kRight};
  for (const TierStats& tier : t.tiers) {
    header.push_back(std::string(ToString(tier.tier)) + " used/capacity");
    align.push_back(A::kRight);
  }
  for (const char* h : {"blocks", "leased", "hit%", "uptime"}) {
    header.push_back(h);
    align.push_back(A::kRight);
  }
  Table table(header, align);
  for (const MemberStats& m : members) {
    const std::string state = !m.reachable        ? "UNREACHABLE"
                              : m.member.draining ? "draining"
                                                  : "serving";
    std::vector<std::string> row = {m.member.id, m.member.address, state, RegistrationOf(m),
                                    FormatFixed(m.member.weight, 2)};
    uint64_t leased = 0;
    for (const TierStats& tier : m.stats.tiers) leased += tier.leased_blocks;
    for (const TierStats& kind : t.tiers) {
      auto it = std::find_if(m.stats.tiers.begin(), m.stats.tiers.end(),
                             [&](const TierStats& x) { return x.tier == kind.tier; });
      row.push_back(it == m.stats.tiers.end()
                        ? std::string("-")
                        : FormatBytes(it->used_bytes) + " / " + FormatBytes(it->capacity_bytes) + " (" +
                              FormatFixed(100.0 * Ratio(it->used_bytes, it->capacity_bytes), 0) + "%)");
    }
    row.push_back(std::to_string(Blocks(m.stats)));
    row.push_back(std::to_string(leased));
    row.push_back(HitsOf(m.stats).Percent());
    row.push_back(m.reachable ? FormatUptime(m.stats.uptime_ms) : std::string("-"));
    table.AddRow(row);
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
       {"hit ratio", t.hits.reads == 0 ? std::string("no reads yet")
                                       : t.hits.Percent() + " of " + std::to_string(t.hits.reads) +
                                             " block reads (lookups and gets)"},
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
  for (const MemberStats& m : members) {
    const std::string registration = RegistrationOf(m);
    if (registration != "registered" && registration != "?") {
      return ReportFailure(kCommand, Unavailable("member " + m.member.id + " reports its registration as " +
                                                 m.stats.membership));
    }
  }
  return kExitOk;
}

}  // namespace kvstash::cli
