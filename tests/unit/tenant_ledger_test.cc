// TenantLedger (server/tenant_ledger.h): the quotas file's grammar, owners per tenant, reloads
// that keep the previous quotas on error, and hit counts by tenant.
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
  EXPECT_TRUE(refused("team-a\n", "q.txt:1: expected '<tenant> <dram bytes>'"));
  EXPECT_TRUE(refused("ok 1GiB\nteam-a 1GiB extra\n", "q.txt:2: expected"));
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
