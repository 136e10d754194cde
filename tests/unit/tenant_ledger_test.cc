// TenantLedger (server/tenant_ledger.h): the quotas file's grammar, owners per tenant, reloads
// that keep the previous quotas on error, owners taken back from a durable tier and recorded
// there, and hit counts by tenant.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include <unistd.h>

#include "server/daemon_config.h"
#include "server/tenant_ledger.h"

namespace kvstash::server {
namespace {

TEST(TenantQuotasFileTest, ParsesTenantsSizesAndComments) {
  auto quotas = ParseTenantQuotas("# tenant dram\nteam-a 8GiB\n\n  team_b.x   4096  # four KiB\n", "q.txt");
  ASSERT_TRUE(quotas.ok()) << quotas.status().ToString();
  ASSERT_EQ(quotas->size(), 2u);
  EXPECT_EQ((*quotas)[0].tenant, "team-a");
  EXPECT_EQ((*quotas)[0].dram_bytes, 8ULL << 30);
  EXPECT_EQ((*quotas)[1].tenant, "team_b.x");
  EXPECT_EQ((*quotas)[1].dram_bytes, 4096u);
  EXPECT_EQ((*quotas)[1].ssd_bytes, 0u);  // no SSD column: unlimited there
}

TEST(TenantQuotasFileTest, TakesAnSsdColumnAndADashForNoLimit) {
  auto quotas = ParseTenantQuotas("# tenant dram ssd\nteam-a 8GiB 100GiB\nteam-b - 20GiB\nteam-c 1MiB -\n", "q.txt");
  ASSERT_TRUE(quotas.ok()) << quotas.status().ToString();
  ASSERT_EQ(quotas->size(), 3u);
  EXPECT_EQ((*quotas)[0].dram_bytes, 8ULL << 30);
  EXPECT_EQ((*quotas)[0].ssd_bytes, 100ULL << 30);
  EXPECT_EQ((*quotas)[1].dram_bytes, 0u);
  EXPECT_EQ((*quotas)[1].ssd_bytes, 20ULL << 30);
  EXPECT_EQ((*quotas)[2].dram_bytes, 1u << 20);
  EXPECT_EQ((*quotas)[2].ssd_bytes, 0u);
}

TEST(TenantQuotasFileTest, RefusesMalformedLinesNamingThem) {
  auto refused = [](std::string_view text, std::string_view expected) {
    auto quotas = ParseTenantQuotas(text, "q.txt");
    if (quotas.ok()) return ::testing::AssertionFailure() << "accepted: " << text;
    if (quotas.status().code() != StatusCode::kInvalidArgument ||
        quotas.status().message().find(expected) == std::string::npos) {
      return ::testing::AssertionFailure() << quotas.status().ToString();
    }
    return ::testing::AssertionSuccess();
  };
  EXPECT_TRUE(refused("team-a\n", "q.txt:1: expected '<tenant> <dram bytes|-> [<ssd bytes|->]'"));
  EXPECT_TRUE(refused("ok 1GiB\nteam-a 1GiB 2GiB extra\n", "q.txt:2: expected"));
  EXPECT_TRUE(refused("team-a 1GiB extra\n", "q.txt:1: not a byte size"));
  EXPECT_TRUE(refused("team-a - -\n", "q.txt:1: no tier is limited"));
  EXPECT_TRUE(refused("team-a -\n", "q.txt:1: no tier is limited"));
  EXPECT_TRUE(refused("team-a - 0\n", "q.txt:1: a quota of 0 bytes"));
  EXPECT_TRUE(refused("team/a 1GiB\n", "q.txt:1: a tenant is"));
  EXPECT_TRUE(refused("team-a lots\n", "q.txt:1:"));
  EXPECT_TRUE(refused("team-a 0\n", "q.txt:1: a quota of 0 bytes"));
  EXPECT_TRUE(refused("team-a 1GiB\nteam-a 2GiB\n", "q.txt:2: tenant 'team-a' is listed twice"));
}

TEST(TenantLedgerTest, OwnersAreStablePerTenantAndNoneForTheRawKeySpace) {
  TenantLedger ledger;
  const tiers::OwnerId a = ledger.OwnerOf("team-a");
  const tiers::OwnerId b = ledger.OwnerOf("team-b");
  EXPECT_NE(a, tiers::kNoOwner);
  EXPECT_NE(b, tiers::kNoOwner);
  EXPECT_NE(a, b);
  EXPECT_EQ(ledger.OwnerOf("team-a"), a);
  EXPECT_EQ(ledger.OwnerOf(""), tiers::kNoOwner);
  EXPECT_EQ(ledger.TenantOf(a), "team-a");
  EXPECT_EQ(ledger.TenantOf(tiers::kNoOwner), "");
  EXPECT_EQ(ledger.TenantOf(999), "");
  EXPECT_EQ(ledger.dram_quotas().QuotaOf(a), 0u);  // no quotas file: unlimited
}

TEST(TenantLedgerTest, ReloadAppliesANewFileAndKeepsTheOldOneOnError) {
  const std::string path = ::testing::TempDir() + "/kvstash_quotas_" + std::to_string(::getpid()) + ".txt";
  auto write = [&](const std::string& text) { std::ofstream(path, std::ios::trunc) << text; };
  write("team-a 1MiB\n");
  auto ledger = TenantLedger::Create(path);
  ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
  const tiers::OwnerId a = (*ledger)->OwnerOf("team-a");
  EXPECT_EQ((*ledger)->dram_quotas().QuotaOf(a), 1u << 20);

  write("team-a 2MiB\nteam-b 4KiB\n");
  ASSERT_TRUE((*ledger)->Reload().ok());
  EXPECT_EQ((*ledger)->dram_quotas().QuotaOf(a), 2u << 20);
  EXPECT_EQ((*ledger)->dram_quotas().QuotaOf((*ledger)->OwnerOf("team-b")), 4096u);

  write("team-a nonsense\n");
  EXPECT_EQ((*ledger)->Reload().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*ledger)->dram_quotas().QuotaOf(a), 2u << 20);  // the previous quotas stay in force

  write("");  // every tenant unlimited again
  ASSERT_TRUE((*ledger)->Reload().ok());
  EXPECT_EQ((*ledger)->dram_quotas().QuotaOf(a), 0u);
  std::remove(path.c_str());
  EXPECT_EQ(TenantLedger::Create(path).status().code(), StatusCode::kInvalidArgument);  // unreadable
}

TEST(TenantLedgerTest, OwnersRecoveredFromATierAreKeptAndNewOnesRecorded) {
  const std::string path = ::testing::TempDir() + "/kvstash_quotas_adopt_" + std::to_string(::getpid()) + ".txt";
  std::ofstream(path, std::ios::trunc) << "team-a 1MiB 8MiB\nteam-c - 2MiB\n";
  auto ledger = TenantLedger::Create(path);
  ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
  std::vector<std::pair<tiers::OwnerId, std::string>> recorded;
  bool refuse = false;
  (*ledger)->AdoptOwners({{7, "team-a"}, {3, "team-b"}, {9, "bad/name"}, {4, "team-a"}}, {12},
                         [&](tiers::OwnerId owner, const std::string& tenant) {
                           if (refuse) return Unavailable("index refuses writes");
                           recorded.emplace_back(owner, tenant);
                           return Status::Ok();
                         });
  EXPECT_EQ((*ledger)->OwnerOf("team-a"), 7u);  // the same owner as before the restart
  EXPECT_EQ((*ledger)->OwnerOf("team-b"), 3u);
  EXPECT_EQ((*ledger)->TenantOf(9), "");        // an invalid name is not taken back
  EXPECT_EQ((*ledger)->TenantOf(4), "");        // nor a second owner for one tenant
  EXPECT_EQ((*ledger)->dram_quotas().QuotaOf(7), 1u << 20);
  EXPECT_EQ((*ledger)->ssd_quotas().QuotaOf(7), 8u << 20);
  EXPECT_TRUE(recorded.empty());  // taken back, not assigned: nothing to record

  // A new tenant gets an owner past every one in use (12: a block of an unlabelled owner), its
  // quota from its first write, and is recorded before OwnerOf returns.
  const tiers::OwnerId c = (*ledger)->OwnerOf("team-c");
  EXPECT_EQ(c, 13u);
  EXPECT_EQ((*ledger)->ssd_quotas().QuotaOf(c), 2u << 20);
  EXPECT_EQ((*ledger)->dram_quotas().QuotaOf(c), 0u);
  ASSERT_EQ(recorded.size(), 1u);
  EXPECT_EQ(recorded[0], std::make_pair(c, std::string("team-c")));

  // A refused record is retried at the tenant's next write until it gets through.
  refuse = true;
  const tiers::OwnerId d = (*ledger)->OwnerOf("team-d");
  EXPECT_EQ((*ledger)->OwnerOf("team-d"), d);
  EXPECT_EQ(recorded.size(), 1u);
  refuse = false;
  EXPECT_EQ((*ledger)->OwnerOf("team-d"), d);
  ASSERT_EQ(recorded.size(), 2u);
  EXPECT_EQ(recorded[1], std::make_pair(d, std::string("team-d")));
  EXPECT_EQ((*ledger)->OwnerOf("team-d"), d);
  EXPECT_EQ(recorded.size(), 2u);  // once recorded, never again
  std::remove(path.c_str());
}

TEST(TenantLedgerTest, CountsHitsByTenantAndIgnoresTheRawKeySpace) {
  TenantLedger ledger;
  ledger.RecordHits("team-b", 3, 1);
  ledger.RecordHits("team-a", 1, 0);
  ledger.RecordHits("team-b", 2, 2);
  ledger.RecordHits("", 5, 5);
  const auto hits = ledger.HitsByTenant();
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_EQ(hits[0].tenant, "team-a");
  EXPECT_EQ(hits[0].hits, 1u);
  EXPECT_EQ(hits[1].tenant, "team-b");
  EXPECT_EQ(hits[1].hits, 5u);
  EXPECT_EQ(hits[1].misses, 3u);
}

TEST(TenantLedgerTest, DaemonRefusesQuotasWithoutTokens) {
  DaemonConfig config;
  config.quotas_file = "quotas.txt";
  const Status refused = config.Validate();
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("--quotas-file) needs security.tokens_file"), std::string::npos) << refused.ToString();
  config.tokens_file = "tokens.txt";
  EXPECT_TRUE(config.Validate().ok()) << config.Validate().ToString();
}

}  // namespace
}  // namespace kvstash::server
