// SsdTier under power loss (issue 17): every write and sync of the segment files and of the
// RocksDB index goes through PowerFaults (tiers/fault_injection.h). A workload of demotion-sized
// batches that wraps the log several times (reclaims with reinsertion) is cut at every step in
// turn; what an unsynced write would lose is then lost, and the reopened tier must serve exactly
// the blocks it held at the cut, byte-exact, with no checksum failure (index and segments agree)
// — with `sync`. Without `sync` nothing is promised across a power cut but that no wrong byte is
// served. Single faults: a failed segment write, a failed fsync, a write cut short.
// The workload's blocks belong to three owners (tiers/ssd_tier.h "Owners and quotas"): one within
// a quota, so its oldest blocks are dropped for it and the rest are carried through reclaims, one
// unlimited and the raw key space; their labels are written at its start. After a cut every block
// comes back with its owner, and every owner of a block with its label.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/checksum.h"
#include "tests/unit/tier_test_support.h"
#include "tiers/fault_injection.h"
#include "tiers/ssd_tier.h"

namespace kvstash::tiers {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;

BlockKey K(uint64_t n) { return BlockKey::FromParts(0x90e4, n); }
uint64_t SizeOf(uint64_t n) { return 60 * kKiB + (n * 37 % 5) * 30 * kKiB + n % 7; }  // 60..180 KiB, ragged
// Block n's owner: 1 (a quota of 1 MiB: about eight of its blocks), 2 (unlimited) or none.
OwnerId OwnerOfId(uint64_t n) { return n % 3 == 1 ? 1 : n % 3 == 2 ? 2 : kNoOwner; }
const OwnerQuotas& Quotas() {
  static const OwnerQuotas* quotas = [] {
    auto* q = new OwnerQuotas;
    q->Set({{1, 1 * kMiB}});
    return q;
  }();
  return *quotas;
}

using testing::Pattern;
using testing::TempDir;

SsdTierOptions Options(const std::string& dir, bool sync) {
  SsdTierOptions o;
  o.dir = dir;
  o.segment_bytes = 1 * kMiB;
  o.capacity_bytes = 3 * kMiB;  // three segments: the workload wraps the log several times
  o.max_block_bytes = 256 * kKiB;
  o.queue_depth = 4;
  o.sync = sync;
  o.reinsert_min_hits = 1;
  o.reinsert_max_fraction = 0.3;
  o.quotas = &Quotas();
  return o;
}

SsdTierOptions Faulty(SsdTierOptions o, PowerFaults& pf) {
  o.engine_factory = pf.EngineFactory();
  o.index_env = pf.IndexEnv();
  return o;
}

std::unique_ptr<SsdTier> OpenOk(const SsdTierOptions& o) {
  auto t = SsdTier::Open(o);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? std::move(t).value() : nullptr;
}

std::vector<Status> WriteBatch(SsdTier& t, const std::vector<uint64_t>& ids) {
  std::vector<std::vector<std::byte>> bytes;
  std::vector<SsdWrite> writes;
  for (uint64_t id : ids) bytes.push_back(Pattern(K(id), SizeOf(id)));
  for (size_t i = 0; i < ids.size(); ++i) {
    writes.push_back({K(ids[i]), std::nullopt, bytes[i], SizeOf(ids[i]), BlockChecksum(bytes[i].data(), SizeOf(ids[i]))});
    writes.back().owner = OwnerOfId(ids[i]);
  }
  return t.Write(writes);
}

// Reads `id` back: OK and byte-exact, or a failure (never wrong bytes: Read verifies).
bool ReadsExact(SsdTier& t, uint64_t id) {
  std::vector<std::byte> out(SizeOf(id));
  auto info = t.Read(K(id), out);
  return info.ok() && out == Pattern(K(id), SizeOf(id));
}

constexpr uint64_t kBatches = 16;
constexpr uint64_t kPerBatch = 3;

// Demotion-sized batches through a tier of three segments; every fourth batch reads two recent
// blocks (hot: reinserted when their segment is reclaimed). Stops once the power is off.
void RunWorkload(SsdTier& t, PowerFaults& pf) {
  for (OwnerId owner : {1, 2}) {
    const Status labelled = t.LabelOwner(owner, "owner-" + std::to_string(owner));
    EXPECT_TRUE(labelled.ok() || pf.power_off()) << labelled.ToString();
  }
  for (uint64_t b = 0; b < kBatches && !pf.power_off(); ++b) {
    std::vector<uint64_t> ids;
    for (uint64_t i = 0; i < kPerBatch; ++i) ids.push_back(b * kPerBatch + i);
    const std::vector<Status> results = WriteBatch(t, ids);
    if (b % 4 == 3) {
      for (uint64_t id : {b * kPerBatch - 3, b * kPerBatch - 5}) {  // owners none and 1
        if (t.Contains(K(id))) {
          EXPECT_TRUE(ReadsExact(t, id) || pf.power_off()) << id;
        }
      }
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!pf.power_off()) {
        EXPECT_TRUE(results[i].ok()) << ids[i] << ": " << results[i].ToString();
      }
    }
  }
}

std::set<BlockKey> KeysOf(const SsdTier& t) {
  std::set<BlockKey> keys;
  for (const SsdBlockInfo& info : t.List(std::nullopt, 1'000'000)) keys.insert(info.key);
  return keys;
}

uint64_t IdOf(const BlockKey& key) { return key.Low(); }

// Cuts the power at `step` of the workload (counted from the tier's open), loses what was not
// synced, reopens and checks. Returns false when the workload ended before that step.
bool CutAndCheck(uint64_t step, bool sync) {
  TempDir dir;
  PowerFaults pf;
  auto t = OpenOk(Faulty(Options(dir.path(), sync), pf));
  if (!t) return false;
  pf.PowerOffAtStep(pf.steps() + step);
  RunWorkload(*t, pf);
  if (!pf.power_off()) return false;
  const std::set<BlockKey> held = KeysOf(*t);  // what the tier said it held at the cut
  EXPECT_TRUE(pf.LoseUnsyncedSegmentWrites().ok());
  t.reset();
  EXPECT_TRUE(pf.LoseUnsyncedIndexData().ok());
  pf.PowerOn();

  auto again = OpenOk(Options(dir.path(), sync));
  if (!again) return true;
  const std::set<BlockKey> recovered = KeysOf(*again);
  if (sync) {
    // Exactly what the tier held, but for blocks owner 1's quota dropped in a batch the cut kept
    // from the index (their deletion goes with the batch): those come back whole.
    for (const BlockKey& key : held) {
      EXPECT_TRUE(recovered.contains(key)) << "step " << step << ": block " << IdOf(key) << " was lost";
    }
    for (const BlockKey& key : recovered) {
      if (!held.contains(key)) {
        EXPECT_EQ(OwnerOfId(IdOf(key)), 1u) << "step " << step << ": " << IdOf(key) << " is back";
      }
      EXPECT_TRUE(ReadsExact(*again, IdOf(key))) << "step " << step << ": block " << IdOf(key) << " is not back";
    }
    EXPECT_EQ(again->Counters().checksum_failures, 0u) << "step " << step << ": index and segments disagree";
  } else {
    // Nothing is promised but that no wrong byte is served: a block reads exact or is dropped.
    for (const BlockKey& key : recovered) {
      EXPECT_LT(IdOf(key), kBatches * kPerBatch);
      std::vector<std::byte> out(SizeOf(IdOf(key)));
      auto info = again->Read(key, out);
      if (info.ok()) {
        EXPECT_TRUE(out == Pattern(key, SizeOf(IdOf(key)))) << "step " << step << ": wrong bytes served";
      } else {
        EXPECT_EQ(info.status().code(), StatusCode::kDataLoss) << info.status().ToString();
      }
    }
  }
  // Every block is back with its owner, and every owner of a block with its label.
  std::set<OwnerId> labelled;
  for (const auto& [owner, label] : again->OwnerLabels()) {
    EXPECT_EQ(label, "owner-" + std::to_string(owner));
    labelled.insert(owner);
  }
  for (const BlockKey& key : recovered) {
    const std::optional<SsdBlockInfo> info = again->Lookup(key);
    if (!info) continue;  // dropped by a checksum failure (without sync)
    EXPECT_EQ(info->owner, OwnerOfId(IdOf(key))) << "step " << step << ": block " << IdOf(key);
    if (info->owner != kNoOwner) {
      EXPECT_TRUE(labelled.contains(info->owner)) << "step " << step;
    }
  }
  // The log goes on after the recovered frontier without harming what came back.
  for (uint64_t id = 1000; id < 1004; ++id) EXPECT_TRUE(WriteBatch(*again, {id})[0].ok());
  for (uint64_t id = 1000; id < 1004; ++id) EXPECT_TRUE(ReadsExact(*again, id));
  const std::set<BlockKey> after = KeysOf(*again);
  for (const BlockKey& key : after) EXPECT_TRUE(ReadsExact(*again, IdOf(key))) << "step " << step << " " << IdOf(key);
  return true;
}

uint64_t WorkloadSteps(bool sync) {
  TempDir dir;
  PowerFaults pf;
  auto t = OpenOk(Faulty(Options(dir.path(), sync), pf));
  if (!t) return 0;
  const uint64_t base = pf.steps();
  RunWorkload(*t, pf);
  EXPECT_GE(t->Counters().segments_reclaimed, 3u) << "the workload must wrap the log";
  EXPECT_GE(t->Counters().blocks_reinserted, 1u) << "the workload must reinsert hot blocks";
  EXPECT_GE(t->Counters().blocks_kept_for_owners, 1u) << "the workload must carry a protected owner's blocks";
  const std::vector<OwnerUsage> usage = t->OwnerUsages();
  EXPECT_TRUE(!usage.empty() && usage[0].owner == 1 && usage[0].evictions >= 1)
      << "the workload must drop blocks for owner 1's quota";
  return pf.steps() - base;
}

TEST(SsdPowerLossTest, WithSyncEveryStepOfDemotionAndReclaimKeepsWhatWasAcknowledged) {
  const uint64_t steps = WorkloadSteps(true);
  ASSERT_GT(steps, 40u);
  // Every step of the workload: each segment write, each fsync, each WAL append and sync —
  // through a demotion batch and through reclaims (index deletes, reinsertion writes).
  uint64_t cut = 0;
  for (uint64_t step = 1; step <= steps; ++step) {
    cut += CutAndCheck(step, true) ? 1 : 0;
    if (HasFailure()) break;  // one step's report is enough
  }
  EXPECT_EQ(cut, steps);
  RecordProperty("steps", static_cast<int>(steps));
}

TEST(SsdPowerLossTest, WithoutSyncNoWrongByteIsServed) {
  const uint64_t steps = WorkloadSteps(false);
  ASSERT_GT(steps, 20u);
  for (uint64_t step = 1; step <= steps; step += std::max<uint64_t>(1, steps / 25)) {
    EXPECT_TRUE(CutAndCheck(step, false));
    if (HasFailure()) break;
  }
}

// A batch of three: steps 1-3 are its segment writes, 4 its fsync (with sync), then the index.
class SsdSingleFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    t_ = OpenOk(Faulty(Options(dir_.path(), true), pf_));
    ASSERT_TRUE(t_);
    ASSERT_TRUE(WriteBatch(*t_, {100})[0].ok());
    base_ = pf_.steps();
  }
  // Every block but `lost` is back after a clean restart; `lost` is not.
  void ExpectAfterRestart(const std::set<uint64_t>& present, const std::set<uint64_t>& absent) {
    t_.reset();
    auto t = OpenOk(Options(dir_.path(), true));
    ASSERT_TRUE(t);
    for (uint64_t id : present) EXPECT_TRUE(ReadsExact(*t, id)) << id;
    for (uint64_t id : absent) EXPECT_FALSE(t->Contains(K(id))) << id;
    EXPECT_EQ(t->Counters().checksum_failures, 0u);
  }
  TempDir dir_;
  PowerFaults pf_;
  std::unique_ptr<SsdTier> t_;
  uint64_t base_ = 0;
};

TEST_F(SsdSingleFaultTest, AFailedSegmentWriteFailsOnlyItsBlock) {
  pf_.FailStep(base_ + 2);
  const std::vector<Status> r = WriteBatch(*t_, {1, 2, 3});
  EXPECT_TRUE(r[0].ok());
  EXPECT_EQ(r[1].code(), StatusCode::kInternal) << r[1].ToString();
  EXPECT_TRUE(r[2].ok());
  EXPECT_FALSE(t_->Contains(K(2)));
  ExpectAfterRestart({100, 1, 3}, {2});
}

TEST_F(SsdSingleFaultTest, AFailedFsyncFailsTheWholeBatch) {
  pf_.FailStep(base_ + 4);
  const std::vector<Status> r = WriteBatch(*t_, {1, 2, 3});
  for (const Status& st : r) EXPECT_FALSE(st.ok());
  for (uint64_t id : {1, 2, 3}) EXPECT_FALSE(t_->Contains(K(id)));
  ASSERT_TRUE(WriteBatch(*t_, {4})[0].ok());  // the next batch goes through
  ExpectAfterRestart({100, 4}, {1, 2, 3});
}

// A segment write the device cuts short must never be indexed: its tail is stale bytes.
TEST_F(SsdSingleFaultTest, AShortSegmentWriteIsNeverIndexed) {
  pf_.ShortWriteAtStep(base_ + 1);
  const std::vector<Status> r = WriteBatch(*t_, {1});
  EXPECT_FALSE(r[0].ok()) << "a torn write was acknowledged";
  EXPECT_FALSE(t_->Contains(K(1)));
  ASSERT_TRUE(WriteBatch(*t_, {2})[0].ok());
  EXPECT_TRUE(ReadsExact(*t_, 2));
  ExpectAfterRestart({100, 2}, {1});
}

}  // namespace
}  // namespace kvstash::tiers
