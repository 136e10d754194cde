// `kvstash status`: daemon health and the counters of Client::Stats.
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

// Hits over every block read, lookups and gets together.
std::string HitRatioLine(const StoreStats& s) {
  const uint64_t hits = s.lookup_hit_blocks + s.get_hits;
  const uint64_t reads = hits + s.lookup_miss_blocks + s.get_misses;
  if (reads == 0) return "no reads yet";
  return FormatFixed(100.0 * Ratio(hits, reads), 1) + "% of " + std::to_string(reads) +
         " block reads (lookups and gets)";
}

nlohmann::json TierJson(const TierStats& t) {
  return {{"tier", std::string(ToString(t.tier))},
          {"capacity_bytes", t.capacity_bytes},
          {"used_bytes", t.used_bytes},
          {"reserved_bytes", t.reserved_bytes},
          {"blocks", t.blocks},
          {"leased_blocks", t.leased_blocks},
          {"pinned_blocks", t.pinned_blocks},
          {"evictions", t.evictions},
          {"eviction_policy", t.eviction_policy},
          {"huge_pages", t.huge_pages}};
}

nlohmann::json HottestJson(const StoreStats& stats) {
  nlohmann::json out = nlohmann::json::array();
  for (const BlockInfo& b : stats.hottest) {
    out.push_back({{"key", b.key.ToHex()}, {"hits", b.hits}, {"size", b.size}, {"age_ms", b.age_ms}});
  }
  return out;
}

// Block bytes by how they moved, and the two-sided protocol's request counters.
nlohmann::json TransfersJson(const StoreStats& stats) {
  return {{"put_bytes",
           {{"inline", stats.put_bytes_inline},
            {"one_sided", stats.put_bytes_one_sided},
            {"two_sided", stats.put_bytes_two_sided}}},
          {"get_bytes_two_sided", stats.get_bytes_two_sided},
          {"two_sided_sends_in_flight", stats.two_sided_sends_in_flight},
          {"two_sided_rejected", stats.two_sided_rejected},
          {"two_sided_receives_open", stats.two_sided_receives_open},
          {"eager_puts",
           {{"stored", stats.eager_puts_stored},
            {"refused", stats.eager_puts_refused},
            {"failed", stats.eager_puts_failed}}},
          {"eager_gets", {{"sent", stats.eager_gets_sent}, {"refused", stats.eager_gets_refused}}},
          {"refused_messages", stats.refused_messages},
          {"corrupt_blocks", stats.corrupt_blocks},
          {"one_sided_transports", stats.one_sided_transports}};
}

// "12 (malformed 10, unknown_message 2)", or "none".
std::string RefusedLine(const StoreStats& stats) {
  uint64_t total = 0;
  std::string parts;
  for (const auto& [reason, count] : stats.refused_messages) {
    if (count == 0) continue;
    total += count;
    parts += (parts.empty() ? "" : ", ") + reason + " " + std::to_string(count);
  }
  std::string line = total == 0 ? std::string("none") : std::to_string(total) + " (" + parts + ")";
  if (stats.corrupt_blocks > 0) line += "; " + std::to_string(stats.corrupt_blocks) + " corrupt blocks not sent inline";
  return line;
}

nlohmann::json StatusJson(const std::string& address, const HealthInfo& health,
                          const StoreStats& stats) {
  nlohmann::json tiers = nlohmann::json::array();
  for (const TierStats& t : stats.tiers) tiers.push_back(TierJson(t));
  const uint64_t lookups = stats.lookup_hit_blocks + stats.lookup_miss_blocks;
  return {{"address", address},
          {"serving", health.serving},
          {"version", stats.version},
          {"member_id", stats.member_id},
          {"membership", stats.membership},
          {"uptime_ms", stats.uptime_ms},
          {"tiers", tiers},
          {"lookup",
           {{"hit_blocks", stats.lookup_hit_blocks},
            {"miss_blocks", stats.lookup_miss_blocks},
            {"hit_ratio", Ratio(stats.lookup_hit_blocks, lookups)}}},
          {"get", {{"hits", stats.get_hits}, {"misses", stats.get_misses}}},
          {"put", {{"stored", stats.puts_stored}, {"deduplicated", stats.puts_deduplicated}}},
          {"reservations_open", stats.reservations_open},
          {"data_plane", stats.data_plane},
          {"transfers", TransfersJson(stats)},
          {"gpu_data_path", stats.gpu_data_path},
          {"hbm_serving", stats.hbm_serving},
          {"hottest", HottestJson(stats)}};
}

void PrintStatus(const std::string& address, const HealthInfo& health, const StoreStats& stats) {
  const uint64_t lookups = stats.lookup_hit_blocks + stats.lookup_miss_blocks;
  PrintFields(std::cout, {{"daemon", address + (health.serving ? "  serving" : "  NOT SERVING")},
                          {"version", stats.version},
                          {"member", stats.member_id},
                          {"membership", stats.membership.empty() ? std::string("-") : stats.membership},
                          {"uptime", FormatUptime(stats.uptime_ms)},
                          {"data plane", stats.data_plane},
                          {"one-sided", stats.one_sided_transports.empty() ? std::string("-")
                                        : stats.one_sided_transports == "self"
                                            ? std::string("none (every peer two-sided)")
                                            : stats.one_sided_transports + " (same-host peers only)"},
                          {"gpu data", stats.gpu_data_path},
                          {"hbm serving", stats.hbm_serving.empty() ? "no HBM tier" : stats.hbm_serving}});
  std::cout << '\n';
  using A = Table::Align;
  Table table({"tier", "capacity", "used", "use%", "reserved", "blocks", "leased", "pinned",
               "evictions", "policy", "huge-pages"},
              {A::kLeft, A::kRight, A::kRight, A::kRight, A::kRight, A::kRight, A::kRight,
               A::kRight, A::kRight, A::kLeft, A::kLeft});
  for (const TierStats& t : stats.tiers) {
    table.AddRow({std::string(ToString(t.tier)), FormatBytes(t.capacity_bytes),
                  FormatBytes(t.used_bytes),
                  FormatFixed(100.0 * Ratio(t.used_bytes, t.capacity_bytes), 1) + "%",
                  FormatBytes(t.reserved_bytes), std::to_string(t.blocks),
                  std::to_string(t.leased_blocks), std::to_string(t.pinned_blocks),
                  std::to_string(t.evictions), t.eviction_policy, t.huge_pages ? "yes" : "no"});
  }
  table.Print(std::cout);
  std::cout << '\n';
  PrintFields(
      std::cout,
      {{"lookups",
        std::to_string(stats.lookup_hit_blocks) + " hit / " +
            std::to_string(stats.lookup_miss_blocks) + " missed blocks (" +
            (lookups == 0 ? std::string("no lookups yet")
                          : FormatFixed(100.0 * Ratio(stats.lookup_hit_blocks, lookups), 1) +
                                "% hit ratio") +
            ")"},
       {"gets",
        std::to_string(stats.get_hits) + " hits / " + std::to_string(stats.get_misses) + " misses"},
       {"hit ratio", HitRatioLine(stats)},
       {"puts", std::to_string(stats.puts_stored) + " stored / " +
                    std::to_string(stats.puts_deduplicated) + " deduplicated"},
       {"reservations", std::to_string(stats.reservations_open) + " open"},
       {"put bytes", FormatBytes(stats.put_bytes_inline) + " inline / " + FormatBytes(stats.put_bytes_one_sided) +
                         " one-sided / " + FormatBytes(stats.put_bytes_two_sided) + " two-sided"},
       {"eager", std::to_string(stats.eager_puts_stored) + " puts stored, " +
                     std::to_string(stats.eager_puts_refused + stats.eager_puts_failed) + " refused or failed; " +
                     std::to_string(stats.eager_gets_sent) + " gets sent, " +
                     std::to_string(stats.eager_gets_refused) + " refused"},
       {"refused msgs", RefusedLine(stats)}});
  if (!stats.hottest.empty()) {
    std::cout << "\nhottest blocks\n";
    Table hot({"key", "hits", "size"}, {Table::Align::kLeft, Table::Align::kRight, Table::Align::kRight});
    for (const BlockInfo& b : stats.hottest) {
      hot.AddRow({b.key.ToHex(), std::to_string(b.hits), FormatBytes(b.size)});
    }
    hot.Print(std::cout);
  }
}

}  // namespace

int RunStatus(const GlobalOptions& global) {
  constexpr std::string_view kCommand = "status";
  if (!EtcdEndpoints(global).empty()) return RunClusterStatus(global);
  Session session = Connect(kCommand, global);
  if (!session) return session.exit_code;
  auto health = session.client->Health();
  if (!health.ok()) return ReportFailure(kCommand, health.status());
  auto stats = session.client->Stats();
  if (!stats.ok()) return ReportFailure(kCommand, stats.status());
  if (global.json) {
    PrintJson(StatusJson(session.address, *health, *stats));
  } else {
    PrintStatus(session.address, *health, *stats);
  }
  if (!health->serving) return ReportFailure(kCommand, Unavailable("daemon reports it is not serving"));
  // A daemon of a cluster that is not registered serves nobody who finds it through etcd.
  if (!stats->membership.empty() && stats->membership != "standalone" &&
      stats->membership.rfind("registered", 0) != 0) {
    return ReportFailure(kCommand, Unavailable("daemon is not in its cluster: " + stats->membership));
  }
  return kExitOk;
}

}  // namespace kvstash::cli
