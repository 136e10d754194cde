// SsdTier under the faults issue 17 found: a file system that fills up (a real one: a small tmpfs
// mounted in a user + mount namespace of a child process, reached through /proc/<child>/root), a
// RocksDB index with a flipped byte in its MANIFEST or an SST, a damaged WAL, and block creation
// times that must survive a restart.
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/checksum.h"
#include "tests/support/private_tmpfs.h"
#include "tests/unit/tier_test_support.h"
#include "tiers/ssd_tier.h"

namespace kvstash::tiers {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;

BlockKey K(uint64_t n) { return BlockKey::FromParts(0xfa17, n); }

using testing::Pattern;
using testing::TempDir;
using kvstash::testing::FillUp;
using kvstash::testing::PrivateTmpfs;

SsdTierOptions Options(const std::string& dir, uint64_t segment = 1 * kMiB, uint64_t capacity = 4 * kMiB) {
  SsdTierOptions o;
  o.dir = dir;
  o.segment_bytes = segment;
  o.capacity_bytes = capacity;
  o.max_block_bytes = 256 * kKiB;
  o.queue_depth = 8;
  o.index_recovery_interval_ms = 20;
  return o;
}

std::unique_ptr<SsdTier> OpenOk(const SsdTierOptions& o) {
  auto t = SsdTier::Open(o);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? std::move(t).value() : nullptr;
}

Status Put(SsdTier& t, const BlockKey& key, uint64_t size, uint64_t created_unix_ms = 0) {
  const auto bytes = Pattern(key, size);
  SsdWrite w{key, std::nullopt, bytes, size, BlockChecksum(bytes.data(), size)};
  w.created_unix_ms = created_unix_ms;
  return t.Write(w);
}

void ExpectBlock(SsdTier& t, const BlockKey& key, uint64_t size) {
  std::vector<std::byte> out(size);
  auto info = t.Read(key, out);
  ASSERT_TRUE(info.ok()) << key.ToHex() << ": " << info.status().ToString();
  EXPECT_EQ(info->size, size);
  EXPECT_TRUE(out == Pattern(key, size)) << "bytes differ for " << key.ToHex();
}

// Issue 17: with the SSD directory's file system full, RocksDB refused the index write and kept
// refusing after space came back (a background error nobody resumed); a remove answered INTERNAL
// "No space left on device". Now: the refusal is clean and counted, reads and removes go on, and
// writes work again by themselves once space returns — with nothing acknowledged lost.
TEST(SsdNoSpaceTest, IndexRecoversByItselfOnceSpaceReturns) {
  TempDir mnt;
  PrivateTmpfs fs(mnt.path(), 24 * kMiB);
  if (!fs.ok()) GTEST_SKIP() << "no private tmpfs on this machine (" << fs.reason() << ")";
  const SsdTierOptions o = Options(fs.path() + "/ssd", 1 * kMiB, 4 * kMiB);
  auto t = OpenOk(o);
  ASSERT_TRUE(t);
  constexpr uint64_t kBlock = 20 * kKiB;
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(Put(*t, K(i), kBlock).ok());

  const std::string filler = fs.path() + "/filler";
  ASSERT_GT(FillUp(filler), 8 * kMiB);
  // Segment files are preallocated: the first write that needs space is the index's.
  uint64_t acked_end = 100;
  Status refused;
  for (; acked_end < 2000; ++acked_end) {
    refused = Put(*t, K(acked_end), kBlock);
    if (!refused.ok()) break;
  }
  ASSERT_FALSE(refused.ok()) << "the full file system never refused a write";
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted) << refused.ToString();
  EXPECT_FALSE(t->Contains(K(acked_end)));
  SsdCounters c = t->Counters();
  EXPECT_FALSE(c.index_writable);
  EXPECT_GE(c.index_errors, 1u);
  // Still full: refused again, cleanly; reads and removes go on.
  EXPECT_FALSE(Put(*t, K(5000), kBlock).ok());
  ExpectBlock(*t, K(0), kBlock);
  ASSERT_TRUE(t->Remove(K(1)).ok()) << "a remove must not fail for a full disk";
  EXPECT_FALSE(t->Contains(K(1)));
  EXPECT_EQ(t->Counters().index_pending_deletes, 1u);

  ASSERT_EQ(::unlink(filler.c_str()), 0);
  // No restart, no call to make it recover: the next writes get through (bounded wait).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  Status again;
  while (!(again = Put(*t, K(6000), kBlock)).ok() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll: the index retries every 20 ms
  }
  ASSERT_TRUE(again.ok()) << "still refused after space returned: " << again.ToString();
  c = t->Counters();
  EXPECT_TRUE(c.index_writable);
  EXPECT_GE(c.index_recoveries, 1u);
  EXPECT_EQ(c.index_pending_deletes, 0u);
  ExpectBlock(*t, K(6000), kBlock);
  for (uint64_t i = 0; i < 50; ++i) ASSERT_TRUE(Put(*t, K(7000 + i), kBlock).ok());

  // A restart serves every acknowledged block, and the remove made while full stays made.
  t.reset();
  t = OpenOk(o);
  ASSERT_TRUE(t);
  for (uint64_t i : {0, 2, 3}) ExpectBlock(*t, K(i), kBlock);
  for (uint64_t i = 100; i < acked_end; ++i) ExpectBlock(*t, K(i), kBlock);
  ExpectBlock(*t, K(6000), kBlock);
  for (uint64_t i = 0; i < 50; ++i) ExpectBlock(*t, K(7000 + i), kBlock);
  EXPECT_FALSE(t->Contains(K(1)));
  EXPECT_FALSE(t->Contains(K(acked_end)));
}

std::vector<std::filesystem::path> FilesStartingWith(const std::string& dir, const std::string& prefix,
                                                     const std::string& suffix = "") {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && name.size() >= suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      out.push_back(e.path());
    }
  }
  return out;
}

void FlipByte(const std::filesystem::path& path, uint64_t at) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.good()) << path;
  f.seekg(static_cast<std::streamoff>(at));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(static_cast<std::streamoff>(at));
  f.write(&c, 1);
  ASSERT_TRUE(f.good()) << path;
}

// Writes 20 blocks and reopens twice, so the index is in an SST and a fresh MANIFEST (RocksDB
// writes the recovered WAL into an SST at open).
void MakeIndexWithSst(const SsdTierOptions& o) {
  {
    auto t = OpenOk(o);
    ASSERT_TRUE(t);
    for (uint64_t i = 0; i < 20; ++i) ASSERT_TRUE(Put(*t, K(i), 10'000).ok());
  }
  { auto t = OpenOk(o); }
  ASSERT_FALSE(FilesStartingWith(o.dir + "/index", "", ".sst").empty()) << "no SST to damage";
}

// After a corrupt index the tier must come back empty, say so, and work (also after a restart).
void ExpectStartsEmptyAndWorks(const SsdTierOptions& o) {
  auto t = SsdTier::Open(o);
  ASSERT_TRUE(t.ok()) << "a corrupt index kept the tier down: " << t.status().ToString();
  EXPECT_TRUE((*t)->Counters().index_quarantined);
  EXPECT_EQ((*t)->Usage().blocks, 0u);
  EXPECT_TRUE(std::filesystem::exists(o.dir + "/index.corrupt")) << "the damaged index was not kept aside";
  for (uint64_t i = 100; i < 140; ++i) ASSERT_TRUE(Put(**t, K(i), 30'000).ok());
  for (uint64_t i = 100; i < 140; ++i) ExpectBlock(**t, K(i), 30'000);
  t->reset();
  auto again = OpenOk(o);
  ASSERT_TRUE(again);
  EXPECT_FALSE(again->Counters().index_quarantined);
  for (uint64_t i = 100; i < 140; ++i) ExpectBlock(*again, K(i), 30'000);
  EXPECT_FALSE(again->Contains(K(0)));
}

TEST(SsdCorruptIndexTest, AFlippedManifestByteStartsEmptyAndSaysSo) {
  TempDir dir;
  const SsdTierOptions o = Options(dir.path() + "/ssd");
  MakeIndexWithSst(o);
  const auto manifests = FilesStartingWith(o.dir + "/index", "MANIFEST-");
  ASSERT_EQ(manifests.size(), 1u);
  FlipByte(manifests[0], std::filesystem::file_size(manifests[0]) / 2);
  ExpectStartsEmptyAndWorks(o);
}

TEST(SsdCorruptIndexTest, AFlippedSstByteStartsEmptyAndSaysSo) {
  TempDir dir;
  const SsdTierOptions o = Options(dir.path() + "/ssd");
  MakeIndexWithSst(o);
  for (const auto& sst : FilesStartingWith(o.dir + "/index", "", ".sst")) FlipByte(sst, 64);  // a data block
  ExpectStartsEmptyAndWorks(o);
}

// WAL damage was tolerated before issue 17 and still is: the records before the damage are
// recovered, nothing is quarantined, and whatever is served is byte-exact.
TEST(SsdCorruptIndexTest, ADamagedWalTailIsToleratedWithoutQuarantine) {
  TempDir dir;
  const SsdTierOptions o = Options(dir.path() + "/ssd");
  {
    auto t = OpenOk(o);
    ASSERT_TRUE(t);
    for (uint64_t i = 0; i < 40; ++i) ASSERT_TRUE(Put(*t, K(i), 10'000).ok());
  }
  const auto wals = FilesStartingWith(o.dir + "/index", "", ".log");
  ASSERT_FALSE(wals.empty());
  std::filesystem::path newest = wals[0];
  for (const auto& w : wals) newest = std::max(newest, w);
  const uint64_t size = std::filesystem::file_size(newest);
  ASSERT_GT(size, 200u);
  FlipByte(newest, size - 100);
  auto t = OpenOk(o);
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->Counters().index_quarantined);
  EXPECT_GE(t->Usage().blocks, 30u) << "more than the damaged tail was lost";
  for (const SsdBlockInfo& info : t->List(std::nullopt, 1000)) ExpectBlock(*t, info.key, 10'000);
}

// Issue 17: SSD blocks reported `age` equal to the clock — no creation time on the SSD path.
TEST(SsdCreationTimeTest, CreationTimesArePersisted) {
  TempDir dir;
  const SsdTierOptions o = Options(dir.path() + "/ssd");
  const uint64_t given = 1'700'000'000'123ULL;
  uint64_t before = 0, after = 0;
  {
    auto t = OpenOk(o);
    ASSERT_TRUE(t);
    ASSERT_TRUE(Put(*t, K(1), 5000, given).ok());
    before = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count());
    ASSERT_TRUE(Put(*t, K(2), 5000).ok());  // 0: stamped now
    after = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count());
    ASSERT_TRUE(t->Lookup(K(1)));
    EXPECT_EQ(t->Lookup(K(1))->created_unix_ms, given);
  }
  auto t = OpenOk(o);
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->Lookup(K(1)) && t->Lookup(K(2)));
  EXPECT_EQ(t->Lookup(K(1))->created_unix_ms, given);
  EXPECT_GE(t->Lookup(K(2))->created_unix_ms, before);
  EXPECT_LE(t->Lookup(K(2))->created_unix_ms, after);
}

}  // namespace
}  // namespace kvstash::tiers
