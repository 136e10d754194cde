// The tier byte-access seam (tiers/byte_access.h) that HbmTier rests on, through DramTier with a
// CPU-inaccessible stand-in (everywhere), and HbmTier itself on a GPU (skipped with the reason
// without one).
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <random>
#include <vector>

#include "common/checksum.h"
#include "common/clock.h"
#include "tiers/byte_access.h"
#include "tiers/dram_tier.h"
#ifdef KVSTASH_HAVE_CUDA
#include "gpu/cuda_util.h"
#include "gpu/hbm_tier.h"
#endif

namespace kvstash {
namespace {

BlockKey Key(uint64_t i) { return BlockKey::FromParts(i, i * 7 + 1); }

std::vector<std::byte> Bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = std::byte(rng() | 1);
  return v;
}

// Host memory that pretends the CPU cannot touch it: every tier access must come through here.
class CountingBytes final : public tiers::ByteAccess {
 public:
  bool host_addressable() const override { return false; }
  Status CopyOut(std::byte* dst, const std::byte* src, uint64_t size) const override {
    ++copies;
    if (fail) return Internal("injected copy failure");
    std::memcpy(dst, src, size);
    return Status::Ok();
  }
  Status CopyIn(std::byte* dst, const std::byte* src, uint64_t size) const override {
    ++copies;
    if (fail) return Internal("injected copy failure");
    std::memcpy(dst, src, size);
    return Status::Ok();
  }
  Result<uint64_t> Checksum(const std::byte* src, uint64_t size) const override {
    ++hashes;
    if (fail) return Internal("injected hash failure");
    return BlockChecksum(src, size);
  }
  mutable std::atomic<int> copies{0}, hashes{0};
  std::atomic<bool> fail{false};
};

TEST(TierByteAccess, DramTierGoesThroughTheSeamAndReportsItsKind) {
  std::vector<std::byte> arena(64 << 10);
  CountingBytes bytes;
  ManualClock clock(1000);
  std::vector<std::vector<std::byte>> evicted;
  tiers::DramTierOptions o;
  o.capacity_bytes = arena.size();
  o.clock = &clock;
  o.byte_access = &bytes;
  o.tier_kind = tiers::TierKind::kHbm;
  o.eviction_policy = tiers::EvictionPolicyKind::kLru;
  o.on_evict = [&](const tiers::BlockMeta&, std::span<const std::byte> b) { evicted.emplace_back(b.begin(), b.end()); };
  EXPECT_EQ(tiers::DramTier::Create(o).status().code(), StatusCode::kInvalidArgument);  // needs external_arena
  o.external_arena = arena.data();
  auto tier = tiers::DramTier::Create(o);
  ASSERT_TRUE(tier.ok()) << tier.status().ToString();
  tiers::DramTier& t = **tier;
  EXPECT_EQ(t.kind(), tiers::TierKind::kHbm);

  const auto data = Bytes(5000, 1);
  auto r = t.Reserve(Key(1), data.size(), std::nullopt, 0);
  ASSERT_TRUE(r.ok());
  std::memcpy(r->data, data.data(), data.size());
  bytes.fail = true;
  EXPECT_EQ(t.Commit(r->id, BlockChecksum(data.data(), data.size()), false).status().code(), StatusCode::kInternal);
  bytes.fail = false;
  EXPECT_TRUE(t.GetReservation(r->id).ok());  // still open after a failed hash
  auto meta = t.Commit(r->id, BlockChecksum(data.data(), data.size()), false);
  ASSERT_TRUE(meta.ok()) << meta.status().ToString();
  EXPECT_EQ(meta->tier, tiers::TierKind::kHbm);
  EXPECT_EQ(bytes.hashes.load(), 2);

  std::vector<std::byte> out(data.size());
  ASSERT_TRUE(t.Read(Key(1), out).ok());
  EXPECT_EQ(out, data);
  EXPECT_EQ(bytes.copies.load(), 1);
  bytes.fail = true;
  EXPECT_EQ(t.Read(Key(1), out).status().code(), StatusCode::kInternal);
  bytes.fail = false;
  EXPECT_EQ(t.Find(Key(1), 0)->tier, tiers::TierKind::kHbm);

  // Fill until the first block is evicted: the hook gets a copy made through the seam.
  for (uint64_t i = 2; evicted.empty() && i < 100; ++i) {
    clock.AdvanceMs(1);
    auto ri = t.Reserve(Key(i), 8192, std::nullopt, 0);
    ASSERT_TRUE(ri.ok()) << ri.status().ToString();
    const auto d = Bytes(8192, i);
    std::memcpy(ri->data, d.data(), d.size());
    ASSERT_TRUE(t.Commit(ri->id, BlockChecksum(d.data(), d.size()), false).ok());
  }
  ASSERT_FALSE(evicted.empty());
  EXPECT_EQ(evicted.front(), data);
}

TEST(TierByteAccess, SsdKindIsRefused) {
  tiers::DramTierOptions o;
  o.capacity_bytes = 1 << 20;
  o.tier_kind = tiers::TierKind::kSsd;
  EXPECT_EQ(tiers::DramTier::Create(o).status().code(), StatusCode::kInvalidArgument);
}

#ifdef KVSTASH_HAVE_CUDA

class HbmTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const gpu::DeviceSummary d = gpu::ProbeDevices();
    if (d.count == 0) GTEST_SKIP() << "no CUDA device: " << d.reason;
  }
};

TEST(HbmTierNoDevice, CreateSaysWhy) {
  const gpu::DeviceSummary d = gpu::ProbeDevices();
  gpu::HbmTierOptions o;
  o.tier.capacity_bytes = 1 << 20;
  if (d.count == 0) {
    EXPECT_EQ(gpu::HbmTier::Create(o).status().code(), StatusCode::kUnavailable);
  } else {
    o.device = d.count;
    EXPECT_EQ(gpu::HbmTier::Create(o).status().code(), StatusCode::kInvalidArgument);
  }
}

// Writes `data` into a fresh reservation (device memory) and commits it.
Result<tiers::BlockMeta> Put(tiers::Tier& t, const BlockKey& key, const std::vector<std::byte>& data, bool pin = false) {
  KVSTASH_ASSIGN_OR_RETURN(tiers::Reservation r, t.Reserve(key, data.size(), std::nullopt, 0));
  if (!gpu::IsDevicePointer(r.data)) return Internal("reservation is not device memory");
  KVSTASH_RETURN_IF_ERROR(gpu::CudaStatus(cudaMemcpy(r.data, data.data(), data.size(), cudaMemcpyHostToDevice), "put"));
  return t.Commit(r.id, BlockChecksum(data.data(), data.size()), pin);
}

TEST_F(HbmTierTest, BlocksLiveInDeviceMemoryUnderTheTierContract) {
  ManualClock clock(1000);
  std::vector<std::pair<BlockKey, std::vector<std::byte>>> evicted;
  gpu::HbmTierOptions o;
  o.tier.capacity_bytes = 64ULL << 20;
  o.tier.max_block_bytes = 16ULL << 20;
  o.tier.clock = &clock;
  o.tier.eviction_policy = tiers::EvictionPolicyKind::kLru;
  o.tier.on_evict = [&](const tiers::BlockMeta& m, std::span<const std::byte> b) {
    evicted.emplace_back(m.key, std::vector<std::byte>(b.begin(), b.end()));
  };
  auto created = gpu::HbmTier::Create(o);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  gpu::HbmTier& t = **created;
  EXPECT_EQ(t.kind(), tiers::TierKind::kHbm);
  EXPECT_TRUE(gpu::IsDevicePointer(t.arena_base()));
  EXPECT_EQ(t.arena_bytes(), 64ULL << 20);

  // A 9 MiB block: hashed in several pinned chunks.
  const auto big = Bytes((9ULL << 20) + 123, 42);
  auto meta = Put(t, Key(1), big);
  ASSERT_TRUE(meta.ok()) << meta.status().ToString();
  EXPECT_EQ(meta->tier, tiers::TierKind::kHbm);
  EXPECT_EQ(meta->checksum, BlockChecksum(big.data(), big.size()));
  EXPECT_EQ(t.Reserve(Key(1), 10, std::nullopt, 0).status().code(), StatusCode::kAlreadyExists);

  // Read to host and to device memory.
  std::vector<std::byte> out(big.size(), std::byte{0xA5});
  ASSERT_TRUE(t.Read(Key(1), out).ok());
  EXPECT_EQ(out, big);
  auto dev = gpu::DeviceBuffer::Allocate(big.size());
  ASSERT_TRUE(dev.ok());
  ASSERT_TRUE(t.Read(Key(1), std::span<std::byte>(dev->data(), dev->size())).ok());
  std::vector<std::byte> back(big.size());
  ASSERT_EQ(cudaMemcpy(back.data(), dev->data(), back.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(back, big);
  std::vector<std::byte> small(10);
  EXPECT_EQ(t.Read(Key(1), small).status().code(), StatusCode::kOutOfRange);

  // A wrong checksum leaves the reservation open; rewriting and committing again works.
  const auto data = Bytes(100000, 7);
  auto r = t.Reserve(Key(2), data.size(), Key(1), 0);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(cudaMemcpy(r->data, data.data(), data.size(), cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(t.Commit(r->id, 12345, false).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(t.Counters().checksum_mismatches, 1u);
  auto m2 = t.Commit(r->id, BlockChecksum(data.data(), data.size()), false);
  ASSERT_TRUE(m2.ok()) << m2.status().ToString();
  EXPECT_EQ(m2->parent, Key(1));

  // Leases: a leased block is not removed and not evicted.
  auto found = t.Find(Key(2), 5000);
  ASSERT_TRUE(found.has_value());
  EXPECT_TRUE(gpu::IsDevicePointer(found->data));
  EXPECT_EQ(t.Remove(Key(2)).code(), StatusCode::kFailedPrecondition);

  // Fill the tier with 4 MiB blocks: the oldest unleased block (key 1) is evicted first, and the
  // eviction hook receives its bytes copied to the host.
  for (uint64_t i = 10; i < 40; ++i) {
    clock.AdvanceMs(1);
    auto mi = Put(t, Key(i), Bytes(4ULL << 20, i));
    ASSERT_TRUE(mi.ok()) << mi.status().ToString();
  }
  ASSERT_FALSE(evicted.empty());
  EXPECT_EQ(evicted.front().first, Key(1));
  EXPECT_EQ(evicted.front().second, big);
  EXPECT_TRUE(t.Peek(Key(2)).has_value());  // leased
  EXPECT_FALSE(t.Peek(Key(1)).has_value());
  const tiers::TierUsage u = t.Usage();
  EXPECT_LE(u.used_bytes, u.capacity_bytes);
  EXPECT_EQ(u.leased_blocks, 1u);
  EXPECT_GT(t.Counters().evicted_bytes, 0u);

  ASSERT_TRUE(t.ReleaseLease(Key(2), found->lease_epoch).ok());
  EXPECT_TRUE(t.Remove(Key(2)).ok());
  const tiers::ListPage page = t.List(std::nullopt, 1000);
  EXPECT_EQ(page.blocks.size(), u.blocks - 1);
  for (const auto& b : page.blocks) EXPECT_EQ(b.tier, tiers::TierKind::kHbm);

  // Expired reservations are reclaimed; Abort returns the region.
  auto r3 = t.Reserve(Key(3), 4096, std::nullopt, 10);
  auto r4 = t.Reserve(Key(4), 4096, std::nullopt, 0);
  ASSERT_TRUE(r3.ok() && r4.ok());
  EXPECT_TRUE(t.Abort(r4->id).ok());
  clock.AdvanceMs(100);
  EXPECT_EQ(t.ReclaimExpired(), 1u);
  EXPECT_EQ(t.Usage().reservations, 0u);
}

#endif  // KVSTASH_HAVE_CUDA

}  // namespace
}  // namespace kvstash
