// The SSD index's record codec and recovery bounds (tiers/ssd_records.h), and the regression that
// fuzz/ssd_record_fuzz found: an index entry whose offset lies near 2^64 made offset + padded size
// wrap around to a small number, so recovery trusted a block outside its segment.
#include <gtest/gtest.h>

#include "common/checksum.h"
#include "tests/unit/tier_test_support.h"
#include "tiers/ssd_index.h"
#include "tiers/ssd_records.h"
#include "tiers/ssd_tier.h"

namespace kvstash::tiers {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;

BlockKey K(uint64_t n) { return BlockKey::FromParts(0x5ec, n); }

SsdGeometry Geometry() { return SsdGeometry{8, 4 * kMiB, 1 * kMiB, SsdTier::kAlignment}; }

TEST(SsdRecordsTest, EntryRoundTripsThroughItsEncoding) {
  SsdEntry e;
  e.segment = 3;
  e.offset = 8192;
  e.size = 5000;
  e.checksum = 0xfeed;
  e.seq = 11;
  e.parent = K(1);
  e.flags = 5;
  e.created_unix_ms = 1'700'000'000'000;
  const std::string value = EncodeSsdEntry(e);
  EXPECT_EQ(value.size(), 40u + 16u + 8u);
  const std::optional<SsdEntry> back = DecodeSsdEntry(value);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->segment, 3u);
  EXPECT_EQ(back->offset, 8192u);
  EXPECT_EQ(back->size, 5000u);
  EXPECT_EQ(back->checksum, 0xfeedu);
  EXPECT_EQ(back->seq, 11u);
  EXPECT_EQ(back->parent, K(1));
  EXPECT_EQ(back->flags, 5u);
  EXPECT_EQ(back->created_unix_ms, 1'700'000'000'000u);
  // A value whose length disagrees with its flags is refused, one byte short or long.
  EXPECT_FALSE(DecodeSsdEntry(value.substr(0, value.size() - 1)));
  EXPECT_FALSE(DecodeSsdEntry(value + "x"));
}

TEST(SsdRecordsTest, OwnerIsKeptWhenThereIsOneAndNeverDecodesAsZero) {
  SsdEntry e;
  e.segment = 1;
  e.size = 4096;
  e.owner = 0x01020304;
  const std::string value = EncodeSsdEntry(e);
  EXPECT_EQ(value.size(), 40u + 4u);
  ASSERT_TRUE(DecodeSsdEntry(value));
  EXPECT_EQ(DecodeSsdEntry(value)->owner, 0x01020304u);
  EXPECT_EQ(DecodeSsdEntry(value)->flags, 0u);  // the encoding bit does not reach the entry
  // Without an owner nothing is written for it, as in records from before owners were kept.
  e.owner = kNoOwner;
  EXPECT_EQ(EncodeSsdEntry(e).size(), 40u);
  EXPECT_EQ(DecodeSsdEntry(EncodeSsdEntry(e))->owner, kNoOwner);
  // An owner bit naming owner 0 is no record the encoder writes: refused.
  std::string zero = value;
  zero.replace(40, 4, std::string(4, '\0'));
  EXPECT_FALSE(DecodeSsdEntry(zero));
}

TEST(SsdRecordsTest, OwnerLabelRecordsHaveOneShape) {
  EXPECT_EQ(OwnerLabelKey(0x0a0b0c0d), std::string("o\x0a\x0b\x0c\x0d", 5));
  const auto label = DecodeOwnerLabel(OwnerLabelKey(7), "team-a");
  ASSERT_TRUE(label);
  EXPECT_EQ(label->first, 7u);
  EXPECT_EQ(label->second, "team-a");
  EXPECT_FALSE(DecodeOwnerLabel(OwnerLabelKey(kNoOwner), "team-a"));
  EXPECT_FALSE(DecodeOwnerLabel(OwnerLabelKey(7), ""));
  EXPECT_FALSE(DecodeOwnerLabel(OwnerLabelKey(7), std::string(kMaxOwnerLabelBytes + 1, 'a')));
  EXPECT_TRUE(DecodeOwnerLabel(OwnerLabelKey(7), std::string(kMaxOwnerLabelBytes, 'a')));
  EXPECT_FALSE(DecodeOwnerLabel(std::string("o\0\0\0", 4), "team-a"));
  EXPECT_FALSE(DecodeOwnerLabel(std::string("s\0\0\0\7", 5), "team-a"));
}

TEST(SsdRecordsTest, LayoutAndSegmentRecordsHaveOneShape) {
  std::string layout(16, '\0');
  layout[0] = 1;
  layout[8] = 2;
  ASSERT_TRUE(DecodeSsdLayout(layout));
  EXPECT_EQ(DecodeSsdLayout(layout)->segment_bytes, 1u);
  EXPECT_EQ(DecodeSsdLayout(layout)->segment_count, 2u);
  EXPECT_FALSE(DecodeSsdLayout(layout.substr(1)));
  const std::string key("s\0\0\1\2", 5);
  const auto seq = DecodeSegmentSeq(key, std::string("\7\0\0\0\0\0\0\0", 8));
  ASSERT_TRUE(seq);
  EXPECT_EQ(seq->first, 0x102u);
  EXPECT_EQ(seq->second, 7u);
  EXPECT_FALSE(DecodeSegmentSeq("b\0\0\1\2", std::string(8, '\0')));
  EXPECT_FALSE(DecodeSegmentSeq(key, std::string(7, '\0')));
}

TEST(SsdRecordsTest, FitsOnlyInsideItsSegment) {
  SsdEntry e;
  e.segment = 7;
  e.offset = 4 * kMiB - 4096;
  e.size = 4096;
  EXPECT_TRUE(SsdEntryFits(e, Geometry()));
  e.size = 4097;  // padded to 8 KiB: one page past the end
  EXPECT_FALSE(SsdEntryFits(e, Geometry()));
  e.size = 1;
  e.segment = 8;
  EXPECT_FALSE(SsdEntryFits(e, Geometry()));
  e.segment = 0;
  e.offset = 100;  // unaligned
  EXPECT_FALSE(SsdEntryFits(e, Geometry()));
  e.offset = 0;
  e.size = 0;
  EXPECT_FALSE(SsdEntryFits(e, Geometry()));
  e.size = 1 * kMiB + 1;
  EXPECT_FALSE(SsdEntryFits(e, Geometry()));
}

// Found by fuzz/ssd_record_fuzz (seed regress_offset_wraps.bin): offset 2^64 - 8192 with a block
// padded to 8192 bytes summed to 0, which passed "offset + padded <= segment_bytes".
TEST(SsdRecordsTest, FuzzFoundOffsetNearTwoToTheSixtyFourDoesNotWrapIntoFitting) {
  SsdEntry e;
  e.segment = 1;
  e.offset = ~uint64_t{0} - 8191;
  e.size = 0x1375;
  EXPECT_FALSE(SsdEntryFits(e, Geometry()));
  e.offset = ~uint64_t{0} - 4095;
  e.size = 1;
  EXPECT_FALSE(SsdEntryFits(e, Geometry()));
}

// The same record written into a real index: recovery discards it (and only it) instead of
// serving a block from outside the segment file.
TEST(SsdRecordsTest, FuzzFoundWrappingOffsetInTheIndexIsDiscardedAtOpen) {
  testing::TempDir dir;
  SsdTierOptions o;
  o.dir = dir.path();
  o.segment_bytes = 4 * kMiB;
  o.capacity_bytes = 16 * kMiB;
  o.max_block_bytes = 1 * kMiB;
  o.queue_depth = 8;
  const auto bytes = testing::Pattern(K(1), 5000);
  {
    auto tier = SsdTier::Open(o);
    ASSERT_TRUE(tier.ok()) << tier.status().ToString();
    ASSERT_TRUE((*tier)->Write(SsdWrite{K(1), std::nullopt, bytes, 5000, BlockChecksum(bytes.data(), 5000)}).ok());
  }
  {
    auto index = SsdIndex::Open(o.dir + "/index", true);
    ASSERT_TRUE(index.ok()) << index.status().ToString();
    SsdEntry bad;
    bad.segment = 0;
    bad.offset = ~uint64_t{0} - 8191;
    bad.size = 0x1375;
    bad.checksum = 1;
    bad.seq = 1000;
    SsdIndex::Mutation m;
    m.puts.emplace_back(K(2), bad);
    ASSERT_TRUE((*index)->Apply(m).ok());
  }
  auto tier = SsdTier::Open(o);
  ASSERT_TRUE(tier.ok()) << tier.status().ToString();
  EXPECT_FALSE((*tier)->Contains(K(2)));
  EXPECT_EQ((*tier)->Counters().records_discarded, 1u);
  EXPECT_EQ((*tier)->Counters().blocks_recovered, 1u);
  std::vector<std::byte> out(5000);
  auto read = (*tier)->Read(K(1), out);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(out, bytes);
}

}  // namespace
}  // namespace kvstash::tiers
