// ReadGrantChecker (server/store_service.h), the check before every two-sided send, with a device
// arena beside the DRAM one (TransferServer::AddDeviceRegion): grants for HBM copies must name the
// HBM lease (tiers::kHbmLeaseEpochBit), stay inside the block, hold a live lease, and the bytes
// must still match their checksum, hashed through the tier's ByteAccess. The "device" here is host
// memory behind a ByteAccess that claims the CPU cannot touch it, so the checker may only reach it
// through that seam.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <vector>

#include "common/checksum.h"
#include "common/clock.h"
#include "common/read_grant.h"
#include "server/store_service.h"
#include "tests/unit/tier_test_support.h"
#include "tiers/dram_tier.h"

namespace kvstash::server {
namespace {

constexpr uint64_t kBlock = 64 << 10;

using tiers::testing::FakeDeviceBytes;

BlockKey K(uint64_t i) { return BlockKey::FromParts(i, i * 13 + 5); }

std::vector<std::byte> Pattern(uint64_t seed) {
  std::vector<std::byte> v(kBlock);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::byte(static_cast<uint8_t>(seed * 31 + i * 7));
  return v;
}

class ReadGrantCheckerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tiers::DramTierOptions d;
    d.capacity_bytes = 1 << 20;
    auto dram = tiers::DramTier::Create(d);
    ASSERT_TRUE(dram.ok());
    dram_ = std::move(*dram);
    hbm_arena_.assign(1 << 20, std::byte{0});
    tiers::DramTierOptions h = d;
    h.external_arena = hbm_arena_.data();
    h.byte_access = &device_bytes_;
    h.tier_kind = tiers::TierKind::kHbm;
    h.huge_pages = tiers::HugePages::kOff;
    auto hbm = tiers::DramTier::Create(h);
    ASSERT_TRUE(hbm.ok()) << hbm.status().ToString();
    hbm_ = std::move(*hbm);
    checker_ = std::make_unique<ReadGrantChecker>(*dram_, SteadyClock::Default());
    checker_->SetDeviceArena(std::span<std::byte>(hbm_arena_), hbm_.get(), &device_bytes_);
  }

  // Puts `key` into `tier`, copying its bytes through `bytes` when given.
  void Put(tiers::Tier& tier, const BlockKey& key, const tiers::ByteAccess* bytes) {
    const std::vector<std::byte> data = Pattern(key.Low());
    auto r = tier.Reserve(key, kBlock, std::nullopt, 10'000);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    if (bytes != nullptr) ASSERT_TRUE(bytes->CopyIn(r->data, data.data(), kBlock).ok());
    else std::memcpy(r->data, data.data(), kBlock);
    ASSERT_TRUE(tier.Commit(r->id, BlockChecksum(data.data(), kBlock), false).ok());
  }

  Status Ask(const std::byte* addr, size_t length, const BlockKey& key, uint64_t epoch) {
    const ReadGrantBytes grant = EncodeReadGrant(key, epoch);
    return checker_->AuthorizeSend(addr, length, grant);
  }

  std::vector<std::byte> hbm_arena_;
  FakeDeviceBytes device_bytes_;
  std::unique_ptr<tiers::DramTier> dram_;
  std::unique_ptr<tiers::DramTier> hbm_;
  std::unique_ptr<ReadGrantChecker> checker_;
};

TEST_F(ReadGrantCheckerTest, AnHbmLeaseAuthorisesItsBlockInGpuMemoryAndHashesItThroughTheDevice) {
  Put(*hbm_, K(1), &device_bytes_);
  auto meta = hbm_->Find(K(1), 60'000);
  ASSERT_TRUE(meta);
  const uint64_t epoch = meta->lease_epoch | tiers::kHbmLeaseEpochBit;
  EXPECT_TRUE(Ask(meta->data, kBlock, K(1), epoch).ok());
  EXPECT_GT(device_bytes_.hashes.load(), 0) << "device bytes must be hashed through the ByteAccess";
  EXPECT_TRUE(Ask(meta->data + 4096, 4096, K(1), epoch).ok()) << "a part of the block";
}

TEST_F(ReadGrantCheckerTest, GrantsThatDoNotNameTheHbmLeaseAreRefused) {
  Put(*hbm_, K(2), &device_bytes_);
  Put(*hbm_, K(3), &device_bytes_);
  auto meta = hbm_->Find(K(2), 60'000);
  ASSERT_TRUE(meta);
  const uint64_t epoch = meta->lease_epoch | tiers::kHbmLeaseEpochBit;
  // A DRAM-style epoch (no HBM bit) for a device address: not a lease in GPU memory.
  EXPECT_EQ(Ask(meta->data, kBlock, K(2), meta->lease_epoch).code(), StatusCode::kFailedPrecondition);
  // Past the block's end, and a range that reaches into the next block.
  EXPECT_EQ(Ask(meta->data, kBlock + 1, K(2), epoch).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(Ask(meta->data + kBlock / 2, kBlock, K(2), epoch).code(), StatusCode::kOutOfRange);
  // K(3)'s bytes with K(2)'s grant: outside the block the grant names.
  auto other = hbm_->Peek(K(3));
  ASSERT_TRUE(other);
  EXPECT_EQ(Ask(other->data, kBlock, K(2), epoch).code(), StatusCode::kOutOfRange);
  // K(3) was never leased: a grant with any epoch is refused.
  EXPECT_EQ(Ask(other->data, kBlock, K(3), epoch).code(), StatusCode::kFailedPrecondition);
  // Released: refused from then on.
  ASSERT_TRUE(hbm_->ReleaseLease(K(2), meta->lease_epoch).ok());
  EXPECT_EQ(Ask(meta->data, kBlock, K(2), epoch).code(), StatusCode::kFailedPrecondition);
}

TEST_F(ReadGrantCheckerTest, ChangedBytesInGpuMemoryAreNeverSent) {
  Put(*hbm_, K(4), &device_bytes_);
  auto meta = hbm_->Find(K(4), 60'000);
  ASSERT_TRUE(meta);
  const_cast<std::byte*>(meta->data)[100] ^= std::byte{0x5a};  // a same-host peer that mapped the arena wrote into it
  EXPECT_EQ(Ask(meta->data, kBlock, K(4), meta->lease_epoch | tiers::kHbmLeaseEpochBit).code(),
            StatusCode::kDataLoss);
}

TEST_F(ReadGrantCheckerTest, DramGrantsAreCheckedAgainstDramAsBefore) {
  Put(*dram_, K(5), nullptr);
  auto meta = dram_->Find(K(5), 60'000);
  ASSERT_TRUE(meta);
  EXPECT_TRUE(Ask(meta->data, kBlock, K(5), meta->lease_epoch).ok());
  // A DRAM grant naming a block that lives only in GPU memory: the DRAM tier does not hold it.
  Put(*hbm_, K(6), &device_bytes_);
  auto in_hbm = hbm_->Find(K(6), 60'000);
  ASSERT_TRUE(in_hbm);
  EXPECT_EQ(Ask(meta->data, kBlock, K(6), in_hbm->lease_epoch).code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace kvstash::server
