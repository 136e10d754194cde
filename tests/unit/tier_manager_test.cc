// TierManager: demotion of DRAM victims to SSD and promotion back (bytes served from the DRAM
// arena), dedup across tiers, leases and pins across tiers, a full demotion queue dropping victims
// without stalling puts, cancelling queued demotions, listing and accounting, restart, and parent
// links that would close a cycle across tiers.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "common/checksum.h"
#include "tests/unit/tier_test_support.h"
#include "tiers/tier_manager.h"

namespace kvstash::tiers {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kBlock = 64 * kKiB;

BlockKey K(uint64_t n) { return BlockKey::FromParts(0x7e1, n); }

using testing::Pattern;

using testing::TempDir;

// Holds every SSD write until opened; lets a test fill the demotion queue deterministically.
class Gate {
 public:
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Opens the gate when a test returns early (a failed ASSERT), so the manager's worker, held at
// the gate, lets the manager's destructor finish. Declare it after the manager.
struct OpenAtExit {
  Gate& gate;
  ~OpenAtExit() { gate.Open(); }
};

class GatedEngine final : public IoEngine {
 public:
  GatedEngine(std::unique_ptr<IoEngine> inner, Gate* gate) : inner_(std::move(inner)), gate_(gate) {}
  std::string_view name() const override { return "gated"; }
  bool buffers_registered() const override { return inner_->buffers_registered(); }
  Status Run(std::span<IoOp> ops) override {
    for (const IoOp& op : ops) {
      if (op.write) {
        gate_->Wait();
        break;
      }
    }
    return inner_->Run(ops);
  }

 private:
  std::unique_ptr<IoEngine> inner_;
  Gate* gate_;
};

class TierManagerTest : public ::testing::Test {
 protected:
  TierManagerOptions Options(uint64_t dram_bytes = 1 * kMiB, bool with_ssd = true) {
    TierManagerOptions o;
    o.dram.capacity_bytes = dram_bytes;
    o.dram.max_block_bytes = 1 * kMiB;
    o.dram.eviction_policy = policy_;
    o.dram.huge_pages = HugePages::kOff;
    o.dram.index_shards = 4;
    o.dram.clock = &clock_;
    if (with_ssd) {
      SsdTierOptions s;
      s.dir = dir_.path();
      s.segment_bytes = 4 * kMiB;
      s.capacity_bytes = 32 * kMiB;
      s.max_block_bytes = 1 * kMiB;
      s.queue_depth = 8;
      o.ssd = s;
      o.demotion_queue_bytes = 8 * kMiB;
    }
    return o;
  }

  std::unique_ptr<TierManager> Make(const TierManagerOptions& o) {
    auto m = TierManager::Create(o);
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? std::move(m).value() : nullptr;
  }

  static Result<BlockMeta> Put(Tier& tier, const BlockKey& key, uint64_t size = kBlock, bool pin = false,
                               const std::optional<BlockKey>& parent = std::nullopt) {
    KVSTASH_ASSIGN_OR_RETURN(Reservation r, tier.Reserve(key, size, parent, 10'000));
    const auto bytes = Pattern(key, size);
    std::memcpy(r.data, bytes.data(), size);
    return tier.Commit(r.id, BlockChecksum(bytes.data(), size), pin);
  }

  // Holds every SSD write at `gate` until it opens.
  static void GateSsdWrites(TierManagerOptions& o, Gate& gate) {
    o.ssd->engine_factory = [&gate](const IoEngineOptions& eo) -> Result<std::unique_ptr<IoEngine>> {
      KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<IoEngine> inner, MakeUringEngine(eo));
      return std::unique_ptr<IoEngine>(std::make_unique<GatedEngine>(std::move(inner), &gate));
    };
  }

  // A manager whose SSD writes wait at `gate` (one block per batch), after 24 puts: the first
  // victims are held at the gate or queued. Null (with a failure recorded) if a put failed.
  std::unique_ptr<TierManager> MakeGatedWithVictims(Gate& gate) {
    TierManagerOptions o = Options();
    o.demotion_batch_blocks = 1;
    GateSsdWrites(o, gate);
    auto m = Make(o);
    if (!m) return nullptr;
    for (uint64_t i = 0; i < 24; ++i) {
      if (auto put = Put(*m, K(i)); !put.ok()) {
        ADD_FAILURE() << "put " << i << ": " << put.status().ToString();
        gate.Open();
        return nullptr;
      }
    }
    return m;
  }

  // Find must hand out a DRAM address whose bytes are the block's.
  static void ExpectServedFromDram(TierManager& m, const BlockKey& key, uint64_t size = kBlock) {
    auto meta = m.Find(key, 0);
    ASSERT_TRUE(meta) << key.ToHex();
    EXPECT_EQ(meta->tier, TierKind::kDram);
    const std::byte* base = m.dram().arena_base();
    ASSERT_GE(meta->data, base);
    ASSERT_LE(meta->data + size, base + m.dram().arena_bytes());
    EXPECT_EQ(std::memcmp(meta->data, Pattern(key, size).data(), size), 0);
  }

  ManualClock clock_;
  TempDir dir_;
  EvictionPolicyKind policy_ = EvictionPolicyKind::kLru;  // DRAM's (and a test HBM's) eviction policy
};

TEST_F(TierManagerTest, DramOnlyIsAPlainDramTier) {
  auto m = Make(Options(1 * kMiB, false));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->ssd(), nullptr);
  for (uint64_t i = 0; i < 40; ++i) ASSERT_TRUE(Put(*m, K(i)).ok());
  EXPECT_FALSE(m->Find(K(0), 0));  // evicted, nowhere to go
  ExpectServedFromDram(*m, K(39));
  EXPECT_EQ(m->UsageByTier().size(), 1u);
}

TEST_F(TierManagerTest, VictimsDemoteAndPromoteBackByteExact) {
  auto m = Make(Options());
  ASSERT_TRUE(m);
  for (uint64_t i = 0; i < 64; ++i) ASSERT_TRUE(Put(*m, K(i)).ok());  // 4 MiB through 1 MiB of DRAM
  m->DrainDemotions();
  const TierManagerCounters c = m->ManagerCounters();
  EXPECT_GT(c.demoted, 40u);
  EXPECT_EQ(c.demotions_dropped_full, 0u);
  EXPECT_EQ(c.demotions_failed, 0u);
  ASSERT_FALSE(m->dram().Peek(K(0)));
  ASSERT_TRUE(m->ssd()->Contains(K(0)));
  auto peek = m->Peek(K(0));
  ASSERT_TRUE(peek);
  EXPECT_EQ(peek->tier, TierKind::kSsd);

  // Find promotes: the block is in DRAM afterwards, at an arena address, with its bytes.
  for (uint64_t i = 0; i < 8; ++i) ExpectServedFromDram(*m, K(i));
  EXPECT_GE(m->ManagerCounters().promotions, 8u);
  // Read promotes too.
  std::vector<std::byte> out(kBlock);
  auto read = m->Read(K(20), out);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->tier, TierKind::kDram);
  EXPECT_TRUE(out == Pattern(K(20), kBlock));
  // Evicting a promoted block again costs no SSD write (the SSD kept its copy).
  const uint64_t demoted_before = m->ManagerCounters().demoted;
  for (uint64_t i = 100; i < 120; ++i) ASSERT_TRUE(Put(*m, K(i)).ok());
  m->DrainDemotions();
  EXPECT_GT(m->ManagerCounters().demotions_already_on_ssd, 0u);
  EXPECT_LT(m->ManagerCounters().demoted - demoted_before, 20u);
  // Every block ever put is still served, from whichever tier holds it.
  for (uint64_t i = 0; i < 64; ++i) ExpectServedFromDram(*m, K(i));
  for (uint64_t i = 100; i < 120; ++i) ExpectServedFromDram(*m, K(i));
}

TEST_F(TierManagerTest, ReserveDedupsAgainstSsd) {
  auto m = Make(Options());
  ASSERT_TRUE(m);
  for (uint64_t i = 0; i < 40; ++i) ASSERT_TRUE(Put(*m, K(i)).ok());
  m->DrainDemotions();
  ASSERT_TRUE(m->ssd()->Contains(K(0)));
  EXPECT_EQ(m->Reserve(K(0), kBlock, std::nullopt, 1000).status().code(), StatusCode::kAlreadyExists);
}

TEST_F(TierManagerTest, LeasesAndPinsAcrossTiers) {
  auto m = Make(Options());
  ASSERT_TRUE(m);
  for (uint64_t i = 0; i < 40; ++i) ASSERT_TRUE(Put(*m, K(i)).ok());
  m->DrainDemotions();
  ASSERT_FALSE(m->dram().Peek(K(0)));

  // A lease taken through an SSD hit lands on the promoted DRAM copy and keeps it there.
  auto leased = m->Find(K(0), 60'000);
  ASSERT_TRUE(leased);
  EXPECT_EQ(leased->tier, TierKind::kDram);
  EXPECT_GT(leased->lease_epoch, 0u);
  ASSERT_TRUE(m->SetPinned(K(1), true).ok());  // promotes and pins
  EXPECT_TRUE(m->dram().Peek(K(1))->pinned);
  for (uint64_t i = 200; i < 260; ++i) ASSERT_TRUE(Put(*m, K(i)).ok());  // churn DRAM
  EXPECT_TRUE(m->dram().Peek(K(0)));
  EXPECT_TRUE(m->dram().Peek(K(1)));
  EXPECT_EQ(m->Find(K(0), 0)->data, leased->data);  // never moved while leased

  // A leased block cannot be removed from any tier.
  EXPECT_EQ(m->Remove(K(0)).code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(m->ssd()->Contains(K(0)));
  ASSERT_TRUE(m->ReleaseLease(K(0), leased->lease_epoch).ok());
  ASSERT_TRUE(m->Remove(K(0)).ok());
  EXPECT_FALSE(m->Peek(K(0)));
  EXPECT_FALSE(m->ssd()->Contains(K(0)));
  EXPECT_EQ(m->Remove(K(0)).code(), StatusCode::kNotFound);

  // A release for a block that is only on SSD is accepted.
  m->DrainDemotions();
  for (uint64_t i = 2; i < 40; ++i) {
    if (!m->dram().Peek(K(i)) && m->ssd()->Contains(K(i))) {
      EXPECT_TRUE(m->ReleaseLease(K(i), 1).ok());
      break;
    }
  }
}

TEST_F(TierManagerTest, FullDemotionQueueDropsVictimsWithoutStallingPuts) {
  Gate gate;
  TierManagerOptions o = Options();
  o.demotion_queue_bytes = 4 * kBlock;
  o.ssd->max_block_bytes = kBlock;
  o.demotion_batch_blocks = 2;
  GateSsdWrites(o, gate);
  auto m = Make(o);
  ASSERT_TRUE(m);
  OpenAtExit open_at_exit{gate};
  // The SSD accepts nothing yet: every put must still succeed at once.
  for (uint64_t i = 0; i < 64; ++i) ASSERT_TRUE(Put(*m, K(i)).ok());
  EXPECT_GT(m->ManagerCounters().demotions_dropped_full, 0u);
  gate.Open();
  m->DrainDemotions();
  const TierManagerCounters c = m->ManagerCounters();
  EXPECT_EQ(c.demotions_queued, c.demoted + c.demotions_failed + c.demotions_cancelled);
  EXPECT_LE(c.demoted, 6u);  // at most the queue plus one batch in flight
}

TEST_F(TierManagerTest, RemoveCancelsAQueuedDemotion) {
  Gate gate;
  auto m = MakeGatedWithVictims(gate);
  ASSERT_TRUE(m);
  OpenAtExit open_at_exit{gate};
  ASSERT_GT(m->ManagerCounters().demotions_queued, 3u);
  // K(0) and K(3) were evicted first; each is either held at the gate or still queued.
  ASSERT_FALSE(m->dram().Peek(K(0)));
  ASSERT_FALSE(m->dram().Peek(K(3)));
  ASSERT_TRUE(m->Remove(K(0)).ok());
  ASSERT_TRUE(m->Remove(K(3)).ok());
  gate.Open();
  m->DrainDemotions();
  EXPECT_FALSE(m->ssd()->Contains(K(0)));
  EXPECT_FALSE(m->ssd()->Contains(K(3)));
  EXPECT_FALSE(m->Find(K(0), 0));
  EXPECT_FALSE(m->Find(K(3), 0));
  EXPECT_EQ(m->ManagerCounters().demotions_cancelled, 2u);
  ExpectServedFromDram(*m, K(1));
}

// A victim still waiting for the SSD writer is found: copied back from its staging copy.
TEST_F(TierManagerTest, AVictimWaitingForTheSsdIsStillFound) {
  Gate gate;
  auto m = MakeGatedWithVictims(gate);
  ASSERT_TRUE(m);
  OpenAtExit open_at_exit{gate};
  ASSERT_GT(m->ManagerCounters().demotions_queued, 2u);
  // The worker holds the first victim at the gate; the most recently evicted one is queued.
  std::optional<BlockKey> waiting;
  for (uint64_t i = 24; i-- > 0;) {
    if (!m->dram().Peek(K(i))) {
      waiting = K(i);
      break;
    }
  }
  ASSERT_TRUE(waiting);
  ASSERT_FALSE(m->ssd()->Contains(*waiting));
  ExpectServedFromDram(*m, *waiting);
  std::vector<std::byte> out(kBlock);
  auto read = m->Read(*waiting, out);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_TRUE(out == Pattern(*waiting, kBlock));
  gate.Open();
  m->DrainDemotions();
  EXPECT_EQ(m->ManagerCounters().demotions_failed, 0u);
}

// Issue 17: acknowledged blocks read as misses while they waited in the demotion queue — Peek
// (inline gets, stat) did not look there, and Read gave up when DRAM had no room to promote.
TEST_F(TierManagerTest, AcknowledgedVictimsStayReadableWhileTheyWaitForTheSsd) {
  Gate gate;
  auto m = MakeGatedWithVictims(gate);
  ASSERT_TRUE(m);
  OpenAtExit open_at_exit{gate};
  std::vector<BlockKey> in_dram;
  std::optional<BlockKey> waiting;  // evicted last: queued behind the one held at the gate
  for (uint64_t i = 0; i < 24; ++i) {
    auto meta = m->Peek(K(i));
    ASSERT_TRUE(meta) << "acknowledged block " << i << " reads as a miss";
    EXPECT_EQ(meta->size, kBlock);
    EXPECT_EQ(meta->checksum, BlockChecksum(Pattern(K(i), kBlock).data(), kBlock));
    if (m->dram().Peek(K(i))) {
      in_dram.push_back(K(i));
    } else {
      EXPECT_EQ(meta->tier, TierKind::kSsd);
      EXPECT_FALSE(m->ssd()->Contains(K(i)));
      waiting = K(i);
    }
  }
  ASSERT_TRUE(waiting);
  // DRAM can take nothing: every block leased, the free space reserved.
  for (const BlockKey& key : in_dram) ASSERT_TRUE(m->dram().Find(key, 600'000));
  std::vector<uint64_t> reservations;
  for (uint64_t i = 1000; i < 1100; ++i) {
    auto r = m->dram().Reserve(K(i), kBlock, std::nullopt, 600'000);
    if (!r.ok()) break;
    reservations.push_back(r->id);
  }
  ASSERT_FALSE(m->dram().Reserve(K(2000), kBlock, std::nullopt, 600'000).ok());
  std::vector<std::byte> out(kBlock);
  auto read = m->Read(*waiting, out);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_TRUE(out == Pattern(*waiting, kBlock));
  EXPECT_EQ(m->ManagerCounters().demotion_queue_reads, 1u);
  for (uint64_t id : reservations) ASSERT_TRUE(m->dram().Abort(id).ok());
  gate.Open();
  m->DrainDemotions();
  EXPECT_EQ(m->ManagerCounters().demotions_failed, 0u);
  for (uint64_t i = 0; i < 24; ++i) EXPECT_TRUE(m->Peek(K(i))) << i;
}

// Issue 17: SSD blocks reported `age` equal to the clock (no creation time on the SSD path).
// A block's creation time goes down with it, and survives a restart.
TEST_F(TierManagerTest, BlocksOnSsdKeepTheirCreationTime) {
  {
    auto m = Make(Options());
    ASSERT_TRUE(m);
    ASSERT_TRUE(Put(*m, K(0)).ok());
    clock_.AdvanceMs(5000);
    for (uint64_t i = 1; i < 40; ++i) ASSERT_TRUE(Put(*m, K(i)).ok());
    m->DrainDemotions();
    ASSERT_FALSE(m->dram().Peek(K(0)));
    ASSERT_TRUE(m->ssd()->Contains(K(0)));
    auto meta = m->Peek(K(0));
    ASSERT_TRUE(meta);
    EXPECT_EQ(meta->tier, TierKind::kSsd);
    const uint64_t age = clock_.NowMs() - meta->created_ms;
    EXPECT_GE(age, 5000u);
    EXPECT_LT(age, 65'000u);
  }
  auto m = Make(Options());
  ASSERT_TRUE(m);
  auto meta = m->Peek(K(0));
  ASSERT_TRUE(meta);
  const uint64_t age = clock_.NowMs() - meta->created_ms;
  EXPECT_GE(age, 5000u);
  EXPECT_LT(age, 65'000u);
}

// Parent cycles across tiers (issue 13): A -> B went to SSD, then B -> A was put into DRAM, which
// held no A and so had nothing to refuse. Promoting A must not close the cycle in DRAM (prefix
// eviction could then take neither block): the copy is made without the link DRAM refuses.
TEST_F(TierManagerTest, PromotionLeavesOutALinkThatWouldCloseACycle) {
  policy_ = EvictionPolicyKind::kPrefix;
  auto m = Make(Options());
  ASSERT_TRUE(m);
  const BlockKey a = K(1), b = K(2);
  ASSERT_TRUE(Put(*m, a, kBlock, false, b).ok());
  for (uint64_t i = 100; i < 124; ++i) ASSERT_TRUE(Put(*m, K(i)).ok());  // 16 blocks fit; A is the coldest
  m->DrainDemotions();
  ASSERT_FALSE(m->dram().Peek(a));
  ASSERT_TRUE(m->ssd()->Contains(a));
  auto put_b = Put(*m, b, kBlock, false, a);
  ASSERT_TRUE(put_b.ok()) << put_b.status().ToString();
  ASSERT_TRUE(m->dram().Peek(b));

  ExpectServedFromDram(*m, a);  // promoted from SSD
  auto promoted = m->dram().Peek(a);
  ASSERT_TRUE(promoted);
  EXPECT_FALSE(promoted->parent);
  EXPECT_EQ(m->ManagerCounters().promotions_failed, 0u);
  // Both leave DRAM when room is needed.
  for (uint64_t i = 200; i < 240; ++i) ASSERT_TRUE(Put(*m, K(i)).ok());
  EXPECT_FALSE(m->dram().Peek(a));
  EXPECT_FALSE(m->dram().Peek(b));
}

TEST_F(TierManagerTest, ListAndUsageCoverBothTiers) {
  auto m = Make(Options());
  ASSERT_TRUE(m);
  for (uint64_t i = 0; i < 40; ++i) ASSERT_TRUE(Put(*m, K(i)).ok());
  m->DrainDemotions();
  std::set<BlockKey> seen;
  std::optional<BlockKey> after;
  for (;;) {
    ListPage page = m->List(after, 7);
    for (const BlockMeta& b : page.blocks) {
      EXPECT_TRUE(seen.insert(b.key).second) << "listed twice";
      if (after) {
        EXPECT_GT(b.key, *after);
      }
    }
    if (!page.next_after) break;
    after = page.next_after;
  }
  EXPECT_EQ(seen.size(), 40u);
  auto by_tier = m->UsageByTier();
  ASSERT_EQ(by_tier.size(), 2u);
  EXPECT_EQ(by_tier[0].kind, TierKind::kDram);
  EXPECT_EQ(by_tier[1].kind, TierKind::kSsd);
  EXPECT_EQ(by_tier[1].usage.capacity_bytes, 32 * kMiB);
  EXPECT_GT(by_tier[1].usage.blocks, 20u);
  const TierUsage total = m->Usage();
  EXPECT_EQ(total.capacity_bytes, by_tier[0].usage.capacity_bytes + by_tier[1].usage.capacity_bytes);
  EXPECT_EQ(total.blocks, by_tier[0].usage.blocks + by_tier[1].usage.blocks);
}

TEST_F(TierManagerTest, SsdContentsSurviveARestart) {
  {
    auto m = Make(Options());
    ASSERT_TRUE(m);
    for (uint64_t i = 0; i < 64; ++i) ASSERT_TRUE(Put(*m, K(i)).ok());
  }  // the destructor writes what is still queued
  auto m = Make(Options());
  ASSERT_TRUE(m);
  uint64_t served = 0;
  for (uint64_t i = 0; i < 48; ++i) {
    if (m->ssd()->Contains(K(i))) {
      ExpectServedFromDram(*m, K(i));
      ++served;
    }
  }
  EXPECT_GT(served, 40u);
}

}  // namespace
}  // namespace kvstash::tiers

// ---- HBM above DRAM ------------------------------------------------------------------------
// The HBM tier here is a DramTier over host memory that claims to be device memory (every access
// through ByteAccess, eviction hook fed a copy), which is exactly how gpu/HbmTier drives DramTier.

namespace kvstash::tiers {
namespace {

using testing::FakeDeviceBytes;

class TierManagerHbmTest : public TierManagerTest {
 protected:
  // HBM of `hbm_bytes` over fake device memory above `dram_bytes` of DRAM (and an SSD if asked).
  TierManagerOptions HbmOptions(uint64_t hbm_bytes, uint64_t dram_bytes, bool with_ssd) {
    TierManagerOptions o = Options(dram_bytes, with_ssd);
    hbm_arena_.assign(hbm_bytes, std::byte{0});
    o.hbm = [this, hbm_bytes, like = o.dram](EvictHook on_evict) -> Result<HbmAttachment> {
      DramTierOptions h = like;
      h.capacity_bytes = hbm_bytes;
      h.external_arena = hbm_arena_.data();
      h.byte_access = &bytes_;
      h.tier_kind = TierKind::kHbm;
      h.on_evict = std::move(on_evict);
      KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<DramTier> tier, DramTier::Create(h));
      HbmAttachment a;
      a.policy_name = std::string(tier->policy_name());
      a.tier = std::move(tier);
      a.bytes = &bytes_;
      a.arena = std::span<std::byte>(hbm_arena_);
      return a;
    };
    return o;
  }

  bool InHbm(const std::byte* p) const {
    return p >= hbm_arena_.data() && p < hbm_arena_.data() + hbm_arena_.size();
  }

  std::vector<std::byte> hbm_arena_;
  FakeDeviceBytes bytes_;
};

TEST_F(TierManagerHbmTest, NewBlocksLandInHbmAndTheLandingRegionGoesBack) {
  auto m = Make(HbmOptions(1 * kMiB, 1 * kMiB, false));
  ASSERT_TRUE(m);
  ASSERT_NE(m->hbm(), nullptr);
  auto placed = Put(*m, K(1));
  ASSERT_TRUE(placed.ok()) << placed.status().ToString();
  EXPECT_EQ(placed->tier, TierKind::kHbm);
  EXPECT_TRUE(InHbm(placed->data));
  EXPECT_EQ(bytes_.copies_in.load(), 1);
  EXPECT_FALSE(m->dram().Peek(K(1)));
  const TierUsage dram = m->dram().Usage();
  EXPECT_EQ(dram.used_bytes, 0u);  // the DRAM reservation was given back
  EXPECT_EQ(dram.reservations, 0u);
  EXPECT_EQ(m->Peek(K(1))->tier, TierKind::kHbm);
  EXPECT_EQ(m->Reserve(K(1), kBlock, std::nullopt, 1000).status().code(), StatusCode::kAlreadyExists);
  // Inline reads copy straight out of HBM.
  std::vector<std::byte> out(kBlock);
  auto read = m->Read(K(1), out);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->tier, TierKind::kHbm);
  EXPECT_TRUE(out == Pattern(K(1), kBlock));
  EXPECT_EQ(m->ManagerCounters().hbm_placed, 1u);
  EXPECT_EQ(m->ManagerCounters().hbm_reads, 1u);
  const auto by_tier = m->UsageByTier();
  ASSERT_EQ(by_tier.size(), 2u);
  EXPECT_EQ(by_tier[0].kind, TierKind::kHbm);
  EXPECT_EQ(by_tier[0].usage.blocks, 1u);
  EXPECT_EQ(by_tier[1].kind, TierKind::kDram);
}

TEST_F(TierManagerHbmTest, ADeviceReaderLeasesTheHbmCopyInPlaceAndReleasesItThere) {
  // HBM of three blocks: two fit under the high watermark, a third put evicts one.
  auto m = Make(HbmOptions(3 * kBlock, 1 * kMiB, false));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->hbm_arena().data(), hbm_arena_.data());
  EXPECT_EQ(m->hbm_arena().size(), hbm_arena_.size());
  EXPECT_NE(m->hbm_bytes(), nullptr);
  ASSERT_TRUE(Put(*m, K(1)).ok());
  ASSERT_TRUE(Put(*m, K(2)).ok());
  std::optional<BlockMeta> direct = m->FindForDeviceReader(K(1), 60'000);
  ASSERT_TRUE(direct);
  EXPECT_EQ(direct->tier, TierKind::kHbm);
  EXPECT_TRUE(InHbm(direct->data));  // in place: no DRAM copy was made
  EXPECT_FALSE(m->dram().Peek(K(1)));
  EXPECT_EQ(m->ManagerCounters().hbm_promotions, 0u);
  EXPECT_EQ(m->ManagerCounters().hbm_direct_finds, 1u);
  ASSERT_NE(direct->lease_epoch & kHbmLeaseEpochBit, 0u);
  EXPECT_EQ(std::memcmp(direct->data, Pattern(K(1), kBlock).data(), kBlock), 0);
  // While leased, a third block evicts the other one, never the leased copy, though the leased
  // one is the least recently used.
  ASSERT_TRUE(m->hbm()->Find(K(2), 0));
  ASSERT_TRUE(Put(*m, K(3)).ok());
  ASSERT_TRUE(m->hbm()->Peek(K(1)));
  EXPECT_EQ(std::memcmp(direct->data, Pattern(K(1), kBlock).data(), kBlock), 0);
  EXPECT_FALSE(m->hbm()->Peek(K(2)));
  // The release ends the HBM lease (the epoch's bit routes it there); then K(1) may go.
  EXPECT_TRUE(m->ReleaseLease(K(1), direct->lease_epoch).ok());
  EXPECT_EQ(m->hbm()->Peek(K(1))->lease_until_ms, 0u);
  // A DRAM-only lookup still stages: Find promotes into DRAM as before.
  std::optional<BlockMeta> staged = m->Find(K(1), 0);
  ASSERT_TRUE(staged);
  EXPECT_EQ(staged->tier, TierKind::kDram);
  EXPECT_EQ(staged->lease_epoch & kHbmLeaseEpochBit, 0u);
  // A block not in HBM is found as Find finds it.
  std::optional<BlockMeta> missing = m->FindForDeviceReader(K(99), 1000);
  EXPECT_FALSE(missing);
}

TEST_F(TierManagerHbmTest, BadChecksumLeavesTheReservationOpenAndNothingInHbm) {
  auto m = Make(HbmOptions(1 * kMiB, 1 * kMiB, false));
  ASSERT_TRUE(m);
  auto r = m->Reserve(K(2), kBlock, std::nullopt, 10'000);
  ASSERT_TRUE(r.ok());
  const auto bytes = Pattern(K(2), kBlock);
  std::memcpy(r->data, bytes.data(), kBlock);
  EXPECT_EQ(m->Commit(r->id, 12345, false).status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(m->GetReservation(r->id).ok());
  EXPECT_FALSE(m->Peek(K(2)));
  EXPECT_EQ(m->hbm()->Usage().used_bytes, 0u);
  auto committed = m->Commit(r->id, BlockChecksum(bytes.data(), kBlock), false);
  ASSERT_TRUE(committed.ok());
  EXPECT_EQ(committed->tier, TierKind::kHbm);
}

TEST_F(TierManagerHbmTest, FindServesAnHbmBlockFromADramCopyAndLeasesIt) {
  auto m = Make(HbmOptions(1 * kMiB, 1 * kMiB, false));
  ASSERT_TRUE(m);
  ASSERT_TRUE(Put(*m, K(3)).ok());
  auto leased = m->Find(K(3), 60'000);
  ASSERT_TRUE(leased);
  EXPECT_EQ(leased->tier, TierKind::kDram);
  EXPECT_GT(leased->lease_epoch, 0u);
  ExpectServedFromDram(*m, K(3));
  EXPECT_TRUE(m->hbm()->Peek(K(3)));  // inclusive: HBM keeps its copy
  EXPECT_EQ(m->ManagerCounters().hbm_promotions, 1u);
  ASSERT_TRUE(m->Find(K(3), 0));
  EXPECT_EQ(m->ManagerCounters().hbm_promotions, 1u);  // the DRAM copy answers re-reads

  // Leased: Remove changes nothing on any tier.
  EXPECT_EQ(m->Remove(K(3)).code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(m->hbm()->Peek(K(3)));
  EXPECT_TRUE(m->dram().Peek(K(3)));
  ASSERT_TRUE(m->ReleaseLease(K(3), leased->lease_epoch).ok());
  ASSERT_TRUE(m->Remove(K(3)).ok());
  EXPECT_FALSE(m->hbm()->Peek(K(3)));
  EXPECT_FALSE(m->dram().Peek(K(3)));
  EXPECT_EQ(m->Remove(K(3)).code(), StatusCode::kNotFound);
}

TEST_F(TierManagerHbmTest, HbmVictimsAreDemotedToDramByteExact) {
  auto m = Make(HbmOptions(512 * kKiB, 2 * kMiB, false));  // 8 blocks of HBM
  ASSERT_TRUE(m);
  for (uint64_t i = 0; i < 24; ++i) ASSERT_TRUE(Put(*m, K(i)).ok());
  const TierManagerCounters c = m->ManagerCounters();
  EXPECT_EQ(c.hbm_placed, 24u);
  EXPECT_GT(c.hbm_demoted, 12u);
  EXPECT_EQ(c.hbm_demotions_dropped, 0u);
  EXPECT_GT(m->HbmCounters().evicted_capacity, 0u);
  EXPECT_EQ(m->Peek(K(0))->tier, TierKind::kDram);
  EXPECT_EQ(m->Peek(K(23))->tier, TierKind::kHbm);
  for (uint64_t i = 0; i < 24; ++i) ExpectServedFromDram(*m, K(i));
  // The listing has every block once, in key order.
  ListPage page = m->List(std::nullopt, 100);
  EXPECT_EQ(page.blocks.size(), 24u);
  EXPECT_FALSE(page.next_after);
  for (size_t i = 1; i < page.blocks.size(); ++i) EXPECT_LT(page.blocks[i - 1].key, page.blocks[i].key);
}

TEST_F(TierManagerHbmTest, PinnedHbmFullFallsBackToDram) {
  auto m = Make(HbmOptions(256 * kKiB, 1 * kMiB, false));  // 4 blocks of HBM
  ASSERT_TRUE(m);
  for (uint64_t i = 0; i < 4; ++i) {
    auto placed = Put(*m, K(i), kBlock, /*pin=*/true);
    ASSERT_TRUE(placed.ok());
    EXPECT_EQ(placed->tier, TierKind::kHbm);
  }
  // HBM is full of pinned blocks, none of which may be evicted: the block stays in DRAM.
  auto fallback = Put(*m, K(9));
  ASSERT_TRUE(fallback.ok()) << fallback.status().ToString();
  EXPECT_EQ(fallback->tier, TierKind::kDram);
  EXPECT_EQ(m->ManagerCounters().hbm_place_fallbacks, 1u);
  EXPECT_TRUE(m->hbm()->Peek(K(0))->pinned);
  // Unpinning reaches HBM through the manager; then the blocks may go.
  ASSERT_TRUE(m->SetPinned(K(0), false).ok());
  EXPECT_FALSE(m->hbm()->Peek(K(0))->pinned);
}

TEST_F(TierManagerHbmTest, HbmToDramToSsdKeepsEveryBlock) {
  auto m = Make(HbmOptions(512 * kKiB, 1 * kMiB, true));
  ASSERT_TRUE(m);
  for (uint64_t i = 0; i < 64; ++i) ASSERT_TRUE(Put(*m, K(i)).ok());  // 4 MiB through 1.5 MiB of memory
  m->DrainDemotions();
  const TierManagerCounters c = m->ManagerCounters();
  EXPECT_GT(c.hbm_demoted, 40u);
  EXPECT_GT(c.demoted, 30u);
  EXPECT_EQ(c.demotions_dropped_full, 0u);
  const auto by_tier = m->UsageByTier();
  ASSERT_EQ(by_tier.size(), 3u);
  EXPECT_EQ(by_tier[0].kind, TierKind::kHbm);
  EXPECT_EQ(by_tier[1].kind, TierKind::kDram);
  EXPECT_EQ(by_tier[2].kind, TierKind::kSsd);
  EXPECT_EQ(m->Peek(K(0))->tier, TierKind::kSsd);
  for (uint64_t i = 0; i < 64; ++i) {
    std::vector<std::byte> out(kBlock);
    auto read = m->Read(K(i), out);
    ASSERT_TRUE(read.ok()) << i << ": " << read.status().ToString();
    EXPECT_TRUE(out == Pattern(K(i), kBlock)) << i;
  }
  ListPage page = m->List(std::nullopt, 1000);
  EXPECT_EQ(page.blocks.size(), 64u);
  // A DRAM read copy of a block HBM still holds is not written to SSD when DRAM evicts it.
  for (uint64_t i = 60; i < 64; ++i) ASSERT_TRUE(m->Find(K(i), 0));
  for (uint64_t i = 100; i < 112; ++i) ASSERT_TRUE(Put(*m, K(i)).ok());
  m->DrainDemotions();
  EXPECT_GE(m->ManagerCounters().demotions_skipped_in_hbm + m->ManagerCounters().demotions_already_on_ssd, 1u);
}

// Parent cycles with HBM (issue 13): new blocks land in HBM, which refuses B -> A while it holds
// A -> B; B then stays in DRAM (a placement fallback). When A leaves HBM, DRAM refuses A -> B in
// turn, and A's copy is made without the link rather than dropped. No tier holds a cycle, every
// block is still served, and A does leave HBM.
TEST_F(TierManagerHbmTest, ParentCycleAcrossHbmAndDramPinsNothing) {
  policy_ = EvictionPolicyKind::kPrefix;
  auto m = Make(HbmOptions(512 * kKiB, 1 * kMiB, false));  // 8 blocks of HBM
  ASSERT_TRUE(m);
  const BlockKey a = K(1), b = K(2);
  auto put_a = Put(*m, a, kBlock, false, b);
  ASSERT_TRUE(put_a.ok()) << put_a.status().ToString();
  EXPECT_EQ(put_a->tier, TierKind::kHbm);
  auto put_b = Put(*m, b, kBlock, false, a);
  ASSERT_TRUE(put_b.ok()) << put_b.status().ToString();
  EXPECT_EQ(put_b->tier, TierKind::kDram);
  EXPECT_EQ(m->ManagerCounters().hbm_place_fallbacks, 1u);

  for (uint64_t i = 100; i < 116; ++i) ASSERT_TRUE(Put(*m, K(i)).ok());  // twice what HBM holds
  EXPECT_FALSE(m->hbm()->Peek(a));
  EXPECT_EQ(m->ManagerCounters().hbm_demotions_dropped, 0u);
  auto demoted = m->dram().Peek(a);
  ASSERT_TRUE(demoted);
  EXPECT_FALSE(demoted->parent);
  ExpectServedFromDram(*m, a);
  ExpectServedFromDram(*m, b);
}

}  // namespace
}  // namespace kvstash::tiers
