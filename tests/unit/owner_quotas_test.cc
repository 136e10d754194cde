// DramTier's owners and quotas (tiers/owner_quotas.h): an owner over its quota evicts its own
// blocks and no one else's; an owner that cannot make room is refused and nothing changes; an
// owner within its quota is protected from other owners' evictions; the accounting follows
// reserve, commit, abort, expiry, remove and eviction.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "common/checksum.h"
#include "tests/unit/tier_test_support.h"
#include "tiers/dram_tier.h"

namespace kvstash::tiers {
namespace {

constexpr uint64_t kBlock = 4096;  // one allocation granule: bytes as allocated = bytes asked
constexpr OwnerId kAlice = 1, kBob = 2, kCarol = 3;

BlockKey K(OwnerId owner, uint64_t n) { return BlockKey::FromParts(0x5157 + owner, n); }

class OwnerQuotasTest : public ::testing::Test {
 protected:
  std::unique_ptr<DramTier> Make(uint64_t capacity_blocks) {
    DramTierOptions o;
    o.capacity_bytes = capacity_blocks * kBlock;
    o.high_watermark = 1.0;  // evict only when the allocator is full: the test counts blocks exactly
    o.low_watermark = 1.0;
    o.eviction_policy = EvictionPolicyKind::kLru;
    o.huge_pages = HugePages::kOff;
    o.index_shards = 4;
    o.clock = &clock_;
    o.quotas = &quotas_;
    auto tier = DramTier::Create(o);
    EXPECT_TRUE(tier.ok()) << tier.status().ToString();
    return std::move(tier).value();
  }

  static Status Put(DramTier& tier, OwnerId owner, const BlockKey& key, uint64_t size = kBlock) {
    KVSTASH_ASSIGN_OR_RETURN(Reservation r, tier.Reserve(key, size, std::nullopt, 10'000, owner));
    EXPECT_EQ(r.owner, owner);
    const auto bytes = testing::Pattern(key, size);
    std::memcpy(r.data, bytes.data(), size);
    return tier.Commit(r.id, BlockChecksum(bytes.data(), size), false).status();
  }

  static bool Intact(DramTier& tier, const BlockKey& key, uint64_t size = kBlock) {
    std::vector<std::byte> out(size);
    return tier.Read(key, out).ok() && out == testing::Pattern(key, size);
  }

  static OwnerUsage UsageOf(const DramTier& tier, OwnerId owner) {
    for (const OwnerUsage& u : tier.OwnerUsages()) {
      if (u.owner == owner) return u;
    }
    return OwnerUsage{owner};
  }

  ManualClock clock_;
  OwnerQuotas quotas_;
};

TEST_F(OwnerQuotasTest, QuotaTableAnswersZeroForUnlistedOwnersAndNoOwner) {
  quotas_.Set({{kAlice, 5 * kBlock}, {kNoOwner, kBlock}});
  EXPECT_EQ(quotas_.QuotaOf(kAlice), 5 * kBlock);
  EXPECT_EQ(quotas_.QuotaOf(kBob), 0u);
  EXPECT_EQ(quotas_.QuotaOf(kNoOwner), 0u);  // the raw key space is never limited
  quotas_.Set({});
  EXPECT_EQ(quotas_.QuotaOf(kAlice), 0u);
}

TEST_F(OwnerQuotasTest, OwnerOverItsQuotaEvictsItsOwnBlocksOnly) {
  auto tier = Make(32);
  quotas_.Set({{kAlice, 4 * kBlock}});
  for (uint64_t i = 0; i < 6; ++i) ASSERT_TRUE(Put(*tier, kBob, K(kBob, i)).ok());
  for (uint64_t i = 0; i < 10; ++i) {
    ASSERT_TRUE(Put(*tier, kAlice, K(kAlice, i)).ok()) << i;
    clock_.AdvanceMs(1);
  }
  // Alice holds her 4 newest blocks (LRU order within her own); Bob lost nothing.
  for (uint64_t i = 0; i < 6; ++i) EXPECT_FALSE(tier->Peek(K(kAlice, i)).has_value()) << i;
  for (uint64_t i = 6; i < 10; ++i) EXPECT_TRUE(Intact(*tier, K(kAlice, i))) << i;
  for (uint64_t i = 0; i < 6; ++i) EXPECT_TRUE(Intact(*tier, K(kBob, i))) << i;
  const OwnerUsage alice = UsageOf(*tier, kAlice);
  EXPECT_EQ(alice.bytes, 4 * kBlock);
  EXPECT_EQ(alice.blocks, 4u);
  EXPECT_EQ(alice.evictions, 6u);
  EXPECT_EQ(alice.quota_rejections, 0u);
  EXPECT_EQ(UsageOf(*tier, kBob).evictions, 0u);
  EXPECT_EQ(UsageOf(*tier, kBob).bytes, 6 * kBlock);
}

TEST_F(OwnerQuotasTest, OwnerThatCannotMakeRoomIsRefusedAndNothingChanges) {
  auto tier = Make(32);
  quotas_.Set({{kAlice, 2 * kBlock}});
  ASSERT_TRUE(Put(*tier, kAlice, K(kAlice, 0)).ok());
  ASSERT_TRUE(Put(*tier, kAlice, K(kAlice, 1)).ok());
  ASSERT_TRUE(Put(*tier, kBob, K(kBob, 0)).ok());
  // Both of Alice's blocks are leased: none of hers may go, and Bob's are not hers to take.
  ASSERT_TRUE(tier->Find(K(kAlice, 0), 60'000).has_value());
  ASSERT_TRUE(tier->Find(K(kAlice, 1), 60'000).has_value());
  const TierUsage before = tier->Usage();
  Result<Reservation> refused = tier->Reserve(K(kAlice, 2), kBlock, std::nullopt, 10'000, kAlice);
  ASSERT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("quota"), std::string::npos) << refused.status().ToString();
  // A block larger than the whole quota is refused without evicting anything.
  EXPECT_EQ(tier->Reserve(K(kAlice, 3), 3 * kBlock, std::nullopt, 10'000, kAlice).status().code(),
            StatusCode::kResourceExhausted);
  EXPECT_TRUE(Intact(*tier, K(kAlice, 0)));
  EXPECT_TRUE(Intact(*tier, K(kAlice, 1)));
  EXPECT_TRUE(Intact(*tier, K(kBob, 0)));
  EXPECT_EQ(tier->Usage().used_bytes, before.used_bytes);
  EXPECT_EQ(tier->Usage().blocks, before.blocks);
  EXPECT_EQ(UsageOf(*tier, kAlice).quota_rejections, 2u);
  EXPECT_EQ(UsageOf(*tier, kAlice).bytes, 2 * kBlock);
  // Once a lease ends, the next put makes room from Alice's own blocks.
  clock_.AdvanceMs(60'001);
  EXPECT_TRUE(Put(*tier, kAlice, K(kAlice, 2)).ok());
  EXPECT_EQ(UsageOf(*tier, kAlice).bytes, 2 * kBlock);
  EXPECT_TRUE(Intact(*tier, K(kBob, 0)));
}

TEST_F(OwnerQuotasTest, ShareWithinItsQuotaIsProtectedFromOtherOwners) {
  auto tier = Make(16);
  quotas_.Set({{kAlice, 6 * kBlock}});
  for (uint64_t i = 0; i < 6; ++i) ASSERT_TRUE(Put(*tier, kAlice, K(kAlice, i)).ok());
  clock_.AdvanceMs(1);
  // Bob (no quota) and the raw key space fill the rest, then keep putting: the tier is full and
  // Alice's blocks are the least recently used, yet only Bob's and unowned blocks are evicted.
  for (uint64_t i = 0; i < 40; ++i) {
    ASSERT_TRUE(Put(*tier, i % 2 == 0 ? kBob : kNoOwner, K(i % 2 == 0 ? kBob : kNoOwner, i)).ok()) << i;
    clock_.AdvanceMs(1);
  }
  for (uint64_t i = 0; i < 6; ++i) EXPECT_TRUE(Intact(*tier, K(kAlice, i))) << i;
  EXPECT_EQ(UsageOf(*tier, kAlice).evictions, 0u);
  EXPECT_GT(UsageOf(*tier, kBob).evictions, 0u);
  // Carol, unlimited, is as unprotected as Bob.
  ASSERT_TRUE(Put(*tier, kCarol, K(kCarol, 0)).ok());
  for (uint64_t i = 40; i < 60; ++i) ASSERT_TRUE(Put(*tier, kBob, K(kBob, i)).ok());
  EXPECT_FALSE(tier->Peek(K(kCarol, 0)).has_value());

  // Lowered below what she holds, Alice loses the protection until she is back under it.
  quotas_.Set({{kAlice, 2 * kBlock}});
  for (uint64_t i = 60; i < 70; ++i) ASSERT_TRUE(Put(*tier, kBob, K(kBob, i)).ok());
  EXPECT_LE(UsageOf(*tier, kAlice).bytes, 2 * kBlock);
  EXPECT_GT(UsageOf(*tier, kAlice).evictions, 0u);
}

TEST_F(OwnerQuotasTest, OwnersThatFillTheTierWithProtectedSharesRefuseOthers) {
  auto tier = Make(8);
  quotas_.Set({{kAlice, 4 * kBlock}, {kBob, 4 * kBlock}});
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(Put(*tier, kAlice, K(kAlice, i)).ok());
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(Put(*tier, kBob, K(kBob, i)).ok());
  // Carol may evict neither share: refused, counted, nothing evicted.
  EXPECT_EQ(tier->Reserve(K(kCarol, 0), kBlock, std::nullopt, 10'000, kCarol).status().code(),
            StatusCode::kResourceExhausted);
  EXPECT_EQ(UsageOf(*tier, kCarol).quota_rejections, 1u);
  EXPECT_EQ(tier->Usage().blocks, 8u);
  // Alice at her quota evicts her own block to make room, not Bob's.
  ASSERT_TRUE(Put(*tier, kAlice, K(kAlice, 4)).ok());
  for (uint64_t i = 0; i < 4; ++i) EXPECT_TRUE(Intact(*tier, K(kBob, i))) << i;
  EXPECT_EQ(UsageOf(*tier, kAlice).evictions, 1u);
}

TEST_F(OwnerQuotasTest, AccountingFollowsEveryWayBytesComeAndGo) {
  auto tier = Make(32);
  quotas_.Set({{kAlice, 8 * kBlock}});
  // Reserved bytes count against the quota before they are committed.
  Result<Reservation> open = tier->Reserve(K(kAlice, 0), 2 * kBlock, std::nullopt, 100, kAlice);
  ASSERT_TRUE(open.ok());
  EXPECT_EQ(UsageOf(*tier, kAlice).bytes, 2 * kBlock);
  EXPECT_EQ(UsageOf(*tier, kAlice).blocks, 0u);
  ASSERT_TRUE(tier->Abort(open->id).ok());
  EXPECT_EQ(UsageOf(*tier, kAlice).bytes, 0u);
  // An expired reservation gives its bytes back to the owner too.
  ASSERT_TRUE(tier->Reserve(K(kAlice, 1), kBlock, std::nullopt, 100, kAlice).ok());
  clock_.AdvanceMs(101);
  EXPECT_EQ(tier->ReclaimExpired(), 1u);
  EXPECT_EQ(UsageOf(*tier, kAlice).bytes, 0u);
  // Committed, then removed.
  ASSERT_TRUE(Put(*tier, kAlice, K(kAlice, 2), 3 * kBlock).ok());
  EXPECT_EQ(UsageOf(*tier, kAlice).bytes, 3 * kBlock);
  EXPECT_EQ(UsageOf(*tier, kAlice).blocks, 1u);
  EXPECT_EQ(tier->Peek(K(kAlice, 2))->owner, kAlice);
  ASSERT_TRUE(tier->Remove(K(kAlice, 2)).ok());
  EXPECT_EQ(UsageOf(*tier, kAlice).bytes, 0u);
  EXPECT_EQ(UsageOf(*tier, kAlice).blocks, 0u);
  EXPECT_EQ(UsageOf(*tier, kAlice).evictions, 0u);  // a remove is not an eviction
  // The raw key space is never accounted as an owner.
  ASSERT_TRUE(Put(*tier, kNoOwner, K(kNoOwner, 0)).ok());
  for (const OwnerUsage& u : tier->OwnerUsages()) EXPECT_NE(u.owner, kNoOwner);
}

}  // namespace
}  // namespace kvstash::tiers
