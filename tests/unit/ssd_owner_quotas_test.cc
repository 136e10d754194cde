// SsdTier's owners and quotas (tiers/ssd_tier.h "Owners and quotas"): each block's owner is kept
// in its record and its owner's label in the index, both recovered at Open; an owner over its
// quota drops its own oldest blocks; an owner within its quota keeps its blocks through reclaims
// that other owners' writes cause, and loses that protection once it holds more than its quota.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/checksum.h"
#include "tests/unit/tier_test_support.h"
#include "tiers/ssd_tier.h"

namespace kvstash::tiers {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kBlock = 64 * kKiB;  // a multiple of 4 KiB: padded size == size
constexpr OwnerId kA = 1, kB = 2;

BlockKey K(uint64_t n) { return BlockKey::FromParts(0x0e1, n); }

using testing::Pattern;
using testing::TempDir;

SsdTierOptions Options(const std::string& dir, const OwnerQuotas* quotas) {
  SsdTierOptions o;
  o.dir = dir;
  o.segment_bytes = 4 * kBlock;   // four blocks a segment
  o.capacity_bytes = 16 * kBlock;  // four segments
  o.max_block_bytes = kBlock;
  o.queue_depth = 4;
  o.reinsert_min_hits = 0;  // no hot reinsertion: what survives a reclaim is what quotas protect
  o.quotas = quotas;
  return o;
}

std::unique_ptr<SsdTier> OpenOk(const SsdTierOptions& o) {
  auto t = SsdTier::Open(o);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? std::move(t).value() : nullptr;
}

Status Put(SsdTier& t, uint64_t id, OwnerId owner, uint64_t size = kBlock) {
  const auto bytes = Pattern(K(id), size);
  SsdWrite w{K(id), std::nullopt, bytes, size, BlockChecksum(bytes.data(), size)};
  w.owner = owner;
  return t.Write(w);
}

bool ReadsExact(SsdTier& t, uint64_t id, uint64_t size = kBlock) {
  std::vector<std::byte> out(size);
  auto info = t.Read(K(id), out);
  return info.ok() && out == Pattern(K(id), size);
}

OwnerUsage UsageOf(const SsdTier& t, OwnerId owner) {
  for (const OwnerUsage& u : t.OwnerUsages()) {
    if (u.owner == owner) return u;
  }
  return OwnerUsage{owner};
}

// A block carried by a reclaim is not on the SSD until the carry is written, so a write of the
// same key in that call is planned too and the key is indexed twice in one batch. The second entry
// must replace the first whole: before, the first stayed in its segment's key set and in the
// owner's usage, the owner's blocks were counted twice, and a later reclaim of that segment
// deleted the current record of the block (lost at the next open).
TEST(SsdOwnerQuotasTest, AKeyWrittenWhileItsCarryIsPendingIsKeptOnce) {
  TempDir dir;
  OwnerQuotas quotas;
  quotas.Set({{kB, 4 * kBlock}});
  const SsdTierOptions o = Options(dir.path(), &quotas);
  {
    auto t = OpenOk(o);
    ASSERT_TRUE(t);
    ASSERT_TRUE(Put(*t, 100, kB).ok());                                   // segment 0, protected
    for (uint64_t id = 1; id < 16; ++id) ASSERT_TRUE(Put(*t, id, kA).ok());  // the log is full
    // One call: the first block reclaims segment 0 (carrying K(100)), the second is K(100) again.
    const auto x = Pattern(K(200), kBlock);
    const auto again = Pattern(K(100), kBlock);
    SsdWrite writes[2] = {SsdWrite{K(200), std::nullopt, x, kBlock, BlockChecksum(x.data(), kBlock)},
                          SsdWrite{K(100), std::nullopt, again, kBlock, BlockChecksum(again.data(), kBlock)}};
    writes[0].owner = kA;
    writes[1].owner = kB;
    const std::vector<Status> out = t->Write(writes);
    ASSERT_TRUE(out[0].ok()) << out[0].ToString();
    EXPECT_TRUE(out[1].ok() || out[1].code() == StatusCode::kAlreadyExists) << out[1].ToString();
    EXPECT_EQ(UsageOf(*t, kB).blocks, 1u);
    EXPECT_EQ(UsageOf(*t, kB).bytes, kBlock);
    EXPECT_TRUE(ReadsExact(*t, 100));
    // Two more laps of the log by kA: every reclaim keeps K(100), and its record with it.
    for (uint64_t id = 300; id < 332; ++id) ASSERT_TRUE(Put(*t, id, kA).ok());
    EXPECT_EQ(UsageOf(*t, kB).blocks, 1u);
    EXPECT_TRUE(ReadsExact(*t, 100));
  }
  auto t = OpenOk(o);
  ASSERT_TRUE(t);
  EXPECT_EQ(UsageOf(*t, kB).blocks, 1u);
  EXPECT_TRUE(ReadsExact(*t, 100)) << "the block's record was lost";
}

TEST(SsdOwnerQuotasTest, OwnersAndLabelsAreRecoveredAtOpen) {
  TempDir dir;
  {
    auto t = OpenOk(Options(dir.path(), nullptr));
    ASSERT_TRUE(t);
    EXPECT_EQ(t->LabelOwner(kNoOwner, "x").code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(t->LabelOwner(kA, "").code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(t->LabelOwner(kA, std::string(256, 'a')).code(), StatusCode::kInvalidArgument);
    ASSERT_TRUE(t->LabelOwner(kA, "team-a").ok());
    ASSERT_TRUE(t->LabelOwner(kB, "team-b").ok());
    ASSERT_TRUE(t->LabelOwner(kB, "team-b").ok());  // the same label again: nothing to write
    for (uint64_t id = 0; id < 3; ++id) ASSERT_TRUE(Put(*t, id, kA).ok());
    ASSERT_TRUE(Put(*t, 3, kB, 5000).ok());
    ASSERT_TRUE(Put(*t, 4, kNoOwner).ok());
    EXPECT_EQ(UsageOf(*t, kA).blocks, 3u);
    EXPECT_EQ(UsageOf(*t, kA).bytes, 3 * kBlock);
    EXPECT_EQ(UsageOf(*t, kB).bytes, 8 * kKiB);  // padded to 4 KiB
    ASSERT_EQ(t->OwnerUsages().size(), 2u);      // kNoOwner is not reported
  }
  auto t = OpenOk(Options(dir.path(), nullptr));
  ASSERT_TRUE(t);
  const std::vector<std::pair<OwnerId, std::string>> labels{{kA, "team-a"}, {kB, "team-b"}};
  EXPECT_EQ(t->OwnerLabels(), labels);
  EXPECT_EQ(UsageOf(*t, kA).blocks, 3u);
  EXPECT_EQ(UsageOf(*t, kA).bytes, 3 * kBlock);
  EXPECT_EQ(UsageOf(*t, kB).blocks, 1u);
  EXPECT_EQ(t->Lookup(K(0))->owner, kA);
  EXPECT_EQ(t->Lookup(K(3))->owner, kB);
  EXPECT_EQ(t->Lookup(K(4))->owner, kNoOwner);
  ASSERT_TRUE(t->Remove(K(0)).ok());
  EXPECT_EQ(UsageOf(*t, kA).blocks, 2u);
}

TEST(SsdOwnerQuotasTest, AnOwnerOverItsQuotaDropsItsOwnOldestBlocks) {
  TempDir dir;
  OwnerQuotas quotas;
  quotas.Set({{kA, 3 * kBlock}});
  {
    auto t = OpenOk(Options(dir.path(), &quotas));
    ASSERT_TRUE(t);
    ASSERT_TRUE(Put(*t, 100, kB).ok());  // another owner's block, older than all of A's
    for (uint64_t id = 0; id < 5; ++id) ASSERT_TRUE(Put(*t, id, kA).ok()) << id;
    for (uint64_t id : {0, 1}) EXPECT_FALSE(t->Contains(K(id))) << id;
    for (uint64_t id : {2, 3, 4}) EXPECT_TRUE(ReadsExact(*t, id)) << id;
    EXPECT_TRUE(ReadsExact(*t, 100));
    EXPECT_EQ(UsageOf(*t, kA).bytes, 3 * kBlock);
    EXPECT_EQ(UsageOf(*t, kA).evictions, 2u);
    EXPECT_EQ(UsageOf(*t, kB).evictions, 0u);

    // A block larger than the quota is refused and drops nothing.
    quotas.Set({{kA, kBlock / 2}});
    EXPECT_EQ(Put(*t, 9, kA).code(), StatusCode::kResourceExhausted);
    EXPECT_EQ(UsageOf(*t, kA).quota_rejections, 1u);
    EXPECT_EQ(UsageOf(*t, kA).blocks, 3u);
    quotas.Set({{kA, 3 * kBlock}});

    // In one call, the items that do not fit beside the ones planned before them are refused.
    std::vector<std::vector<std::byte>> bytes;
    std::vector<SsdWrite> writes;
    for (uint64_t id = 10; id < 14; ++id) bytes.push_back(Pattern(K(id), kBlock));
    for (uint64_t i = 0; i < 4; ++i) {
      writes.push_back({K(10 + i), std::nullopt, bytes[i], kBlock, BlockChecksum(bytes[i].data(), kBlock)});
      writes.back().owner = kA;
    }
    const std::vector<Status> results = t->Write(writes);
    for (uint64_t i = 0; i < 3; ++i) EXPECT_TRUE(results[i].ok()) << i << ": " << results[i].ToString();
    EXPECT_EQ(results[3].code(), StatusCode::kResourceExhausted);
    for (uint64_t id : {2, 3, 4}) EXPECT_FALSE(t->Contains(K(id))) << id;
    EXPECT_EQ(UsageOf(*t, kA).bytes, 3 * kBlock);
  }
  // The drops were written with the batches: a restart does not bring them back.
  auto t = OpenOk(Options(dir.path(), &quotas));
  ASSERT_TRUE(t);
  EXPECT_EQ(UsageOf(*t, kA).bytes, 3 * kBlock);
  for (uint64_t id : {10, 11, 12}) EXPECT_TRUE(ReadsExact(*t, id)) << id;
  EXPECT_TRUE(ReadsExact(*t, 100));
}

// Owner A (3 blocks, within a quota of 3) and owner B (unlimited) share a log of 16 blocks; B then
// writes three laps' worth. `protect` sets A's quota; without it A's blocks go with their segment.
void RunLaps(bool protect) {
  TempDir dir;
  OwnerQuotas quotas;
  if (protect) quotas.Set({{kA, 3 * kBlock}});
  auto t = OpenOk(Options(dir.path(), &quotas));
  ASSERT_TRUE(t);
  for (uint64_t id = 0; id < 3; ++id) ASSERT_TRUE(Put(*t, id, kA).ok());
  for (uint64_t id = 100; id < 148; ++id) ASSERT_TRUE(Put(*t, id, kB).ok()) << id;
  ASSERT_GE(t->Counters().segments_reclaimed, 8u);
  EXPECT_GT(UsageOf(*t, kB).evictions, 0u);
  EXPECT_FALSE(t->Contains(K(100)));  // B's own oldest are gone
  for (uint64_t id = 140; id < 148; ++id) EXPECT_TRUE(ReadsExact(*t, id)) << id;
  for (uint64_t id = 0; id < 3; ++id) {
    if (protect) {
      EXPECT_TRUE(ReadsExact(*t, id)) << "A's protected block " << id << " was dropped by B's writes";
    } else {
      EXPECT_FALSE(t->Contains(K(id))) << id;
    }
  }
  if (!protect) return;
  EXPECT_EQ(UsageOf(*t, kA).evictions, 0u);
  EXPECT_GE(t->Counters().blocks_kept_for_owners, 3u);

  // A's quota lowered below what it holds: unprotected until back under, so B's next lap takes
  // A's blocks with their segments.
  quotas.Set({{kA, kBlock}});
  for (uint64_t id = 200; id < 220; ++id) ASSERT_TRUE(Put(*t, id, kB).ok()) << id;
  for (uint64_t id = 0; id < 3; ++id) EXPECT_FALSE(t->Contains(K(id))) << id;
  EXPECT_EQ(UsageOf(*t, kA).evictions, 3u);
}

TEST(SsdOwnerQuotasTest, AnOwnerWithinItsQuotaKeepsItsBlocksThroughOthersReclaims) { RunLaps(true); }

TEST(SsdOwnerQuotasTest, WithoutAQuotaTheSameBlocksAgeOut) { RunLaps(false); }

}  // namespace
}  // namespace kvstash::tiers
