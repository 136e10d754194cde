// SsdTier: round trips on both I/O backends, restart recovery (clean stop and a child killed with
// SIGKILL mid-burst), corruption injection, reclaim with reinsertion under a tiny segment budget,
// ENOSPC injected through the IoEngine seam, and readers racing a reclaiming writer.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "common/checksum.h"
#include "tests/unit/tier_test_support.h"
#include "tiers/segment_files.h"
#include "tiers/ssd_tier.h"

namespace kvstash::tiers {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;

BlockKey K(uint64_t n) { return BlockKey::FromParts(0x55d, n); }

using testing::Pattern;

using testing::TempDir;

SsdTierOptions Options(const std::string& dir, uint64_t segment = 4 * kMiB, uint64_t capacity = 32 * kMiB) {
  SsdTierOptions o;
  o.dir = dir;
  o.segment_bytes = segment;
  o.capacity_bytes = capacity;
  o.max_block_bytes = std::min<uint64_t>(segment, 1 * kMiB);
  o.queue_depth = 8;
  return o;
}

std::unique_ptr<SsdTier> OpenOk(const SsdTierOptions& o) {
  auto t = SsdTier::Open(o);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? std::move(t).value() : nullptr;
}

Status Put(SsdTier& t, const BlockKey& key, uint64_t size, std::optional<BlockKey> parent = std::nullopt) {
  const auto bytes = Pattern(key, size);
  return t.Write(SsdWrite{key, parent, bytes, size, BlockChecksum(bytes.data(), size)});
}

void ExpectBlock(SsdTier& t, const BlockKey& key, uint64_t size) {
  std::vector<std::byte> out(size);
  auto info = t.Read(key, out);
  ASSERT_TRUE(info.ok()) << key.ToHex() << ": " << info.status().ToString();
  EXPECT_EQ(info->size, size);
  EXPECT_TRUE(out == Pattern(key, size)) << "bytes differ for " << key.ToHex();
}

class SsdTierBackendTest : public ::testing::TestWithParam<SsdIoBackend> {};

TEST_P(SsdTierBackendTest, WriteReadRemoveRoundTrip) {
  TempDir dir;
  SsdTierOptions o = Options(dir.path());
  o.io_backend = GetParam();
  auto t = OpenOk(o);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->io_backend(), Name(GetParam()));
  const std::vector<uint64_t> sizes = {1, 4095, 4096, 4097, 100'000, 256 * kKiB, 1 * kMiB};
  for (size_t i = 0; i < sizes.size(); ++i) {
    ASSERT_TRUE(Put(*t, K(i), sizes[i], i ? std::optional(K(i - 1)) : std::nullopt).ok());
  }
  for (size_t i = 0; i < sizes.size(); ++i) ExpectBlock(*t, K(i), sizes[i]);

  // Aligned, padded buffers are read into directly; the result must be the same.
  void* raw = std::aligned_alloc(4096, 256 * kKiB);
  std::span<std::byte> aligned(static_cast<std::byte*>(raw), 256 * kKiB);
  ASSERT_TRUE(t->Read(K(4), aligned).ok());
  EXPECT_EQ(std::memcmp(aligned.data(), Pattern(K(4), 100'000).data(), 100'000), 0);
  std::free(raw);

  auto info = t->Lookup(K(3));
  ASSERT_TRUE(info);
  EXPECT_EQ(info->parent, K(2));
  EXPECT_EQ(info->hits, 1u);
  EXPECT_EQ(Put(*t, K(3), 4097).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(Put(*t, K(99), 2 * kMiB).code(), StatusCode::kInvalidArgument);
  std::vector<std::byte> small(10);
  EXPECT_EQ(t->Read(K(4), small).status().code(), StatusCode::kOutOfRange);

  ASSERT_TRUE(t->Remove(K(3)).ok());
  EXPECT_EQ(t->Remove(K(3)).code(), StatusCode::kNotFound);
  std::vector<std::byte> out(8192);
  EXPECT_EQ(t->Read(K(3), out).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(t->Usage().blocks, sizes.size() - 1);
  auto listed = t->List(K(1), 3);
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_EQ(listed[0].key, K(2));
  EXPECT_EQ(listed[1].key, K(4));
}

INSTANTIATE_TEST_SUITE_P(Backends, SsdTierBackendTest, ::testing::Values(SsdIoBackend::kUring, SsdIoBackend::kThreads),
                         [](const ::testing::TestParamInfo<SsdIoBackend>& info) { return std::string(Name(info.param)); });

// RunEach reports every op exactly once, with its final result, and more ops than the queue holds
// still all complete (the uring engine reports while later ops are in flight).
class IoEngineRunEachTest : public ::testing::TestWithParam<SsdIoBackend> {};

TEST_P(IoEngineRunEachTest, ReportsEveryOpOnceWithItsFinalResult) {
  TempDir dir;
  const std::string path = dir.path() + "/engine.dat";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_DIRECT, 0600);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  constexpr size_t kOps = 100;
  constexpr uint32_t kLen = 64 * 1024;
  ASSERT_EQ(::ftruncate(fd, kOps * kLen), 0);
  void* raw = std::aligned_alloc(4096, kOps * kLen);
  ASSERT_NE(raw, nullptr);
  std::span<std::byte> mem(static_cast<std::byte*>(raw), kOps * kLen);
  for (size_t i = 0; i < mem.size(); ++i) mem[i] = static_cast<std::byte>((i * 131 + i / kLen) & 0xff);

  IoEngineOptions eo;
  eo.fds = {fd};
  eo.memory = {mem};
  eo.queue_depth = 8;
  auto engine = GetParam() == SsdIoBackend::kUring ? MakeUringEngine(eo) : MakeThreadPoolEngine(eo);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();

  std::vector<IoOp> writes(kOps);
  for (size_t i = 0; i < kOps; ++i) writes[i] = IoOp{0, true, mem.data() + i * kLen, kLen, i * kLen, 0};
  std::vector<int> seen(kOps, 0);
  ASSERT_TRUE((*engine)->RunEach(writes, [&](size_t i) {
                         ASSERT_LT(i, kOps);
                         EXPECT_EQ(writes[i].result, kLen) << "op " << i << " reported before it finished";
                         ++seen[i];
                       }).ok());
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), static_cast<long>(kOps));

  void* back_raw = std::aligned_alloc(4096, kOps * kLen);
  ASSERT_NE(back_raw, nullptr);
  std::span<std::byte> back(static_cast<std::byte*>(back_raw), kOps * kLen);
  std::vector<IoOp> reads(kOps);
  for (size_t i = 0; i < kOps; ++i) reads[i] = IoOp{0, false, back.data() + i * kLen, kLen, i * kLen, 0};
  std::fill(seen.begin(), seen.end(), 0);
  ASSERT_TRUE((*engine)->RunEach(reads, [&](size_t i) {
                         // The bytes are in place when the op is reported.
                         EXPECT_EQ(std::memcmp(back.data() + i * kLen, mem.data() + i * kLen, kLen), 0) << "op " << i;
                         ++seen[i];
                       }).ok());
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), static_cast<long>(kOps));
  engine->reset();
  std::free(back_raw);
  std::free(raw);
  ::close(fd);
}

INSTANTIATE_TEST_SUITE_P(Backends, IoEngineRunEachTest, ::testing::Values(SsdIoBackend::kUring, SsdIoBackend::kThreads),
                         [](const ::testing::TestParamInfo<SsdIoBackend>& info) { return std::string(Name(info.param)); });

// The backend's name is parsed only at the edges (the daemon's ssd.io_backend, a bench's flag); an
// unknown one is refused with every valid name in the message.
TEST(SsdIoBackendTest, ParseTakesEveryNameAndRefusesOthers) {
  for (const auto& [backend, name] : kSsdIoBackendNames) {
    auto parsed = ParseSsdIoBackend(name);
    ASSERT_TRUE(parsed.ok()) << name;
    EXPECT_EQ(*parsed, backend);
    EXPECT_EQ(Name(backend), name);
  }
  for (const char* bad : {"aio", "", "Uring"}) {
    auto r = ParseSsdIoBackend(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(r.status().message(), "io_backend must be auto, uring or threads, not '" + std::string(bad) + "'");
  }
}

TEST(SsdTierTest, BatchReportsPerItem) {
  TempDir dir;
  auto t = OpenOk(Options(dir.path()));
  ASSERT_TRUE(t);
  ASSERT_TRUE(Put(*t, K(1), 5000).ok());
  const auto a = Pattern(K(1), 5000);
  const auto b = Pattern(K(2), 5000);
  std::vector<SsdWrite> batch = {
      {K(1), std::nullopt, a, 5000, BlockChecksum(a.data(), 5000)},   // exists
      {K(2), std::nullopt, b, 5000, BlockChecksum(b.data(), 5000)},   // new
      {K(2), std::nullopt, b, 5000, BlockChecksum(b.data(), 5000)},   // repeated
      {K(3), std::nullopt, b, 0, 0},                                  // empty
  };
  auto st = t->Write(batch);
  EXPECT_EQ(st[0].code(), StatusCode::kAlreadyExists);
  EXPECT_TRUE(st[1].ok());
  EXPECT_EQ(st[2].code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st[3].code(), StatusCode::kInvalidArgument);
  ExpectBlock(*t, K(2), 5000);
}

TEST(SsdTierTest, OpenValidatesOptionsAndLayout) {
  TempDir dir;
  auto bad = [&](auto mutate) {
    SsdTierOptions o = Options(dir.path());
    mutate(o);
    auto r = SsdTier::Open(o);
    return !r.ok() && r.status().code() == StatusCode::kInvalidArgument;
  };
  EXPECT_TRUE(bad([](SsdTierOptions& o) { o.dir.clear(); }));
  EXPECT_TRUE(bad([](SsdTierOptions& o) { o.segment_bytes = 5000; }));
  EXPECT_TRUE(bad([](SsdTierOptions& o) { o.capacity_bytes = o.segment_bytes; }));
  EXPECT_TRUE(bad([](SsdTierOptions& o) { o.max_block_bytes = o.segment_bytes * 2; }));
  { auto t = OpenOk(Options(dir.path())); }
  auto other = SsdTier::Open(Options(dir.path(), 8 * kMiB));
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), StatusCode::kFailedPrecondition);
}

TEST(SsdTierTest, CleanRestartServesEveryBlock) {
  TempDir dir;
  {
    auto t = OpenOk(Options(dir.path()));
    ASSERT_TRUE(t);
    for (uint64_t i = 0; i < 50; ++i) ASSERT_TRUE(Put(*t, K(i), 10'000 + i * 1000).ok());
    ASSERT_TRUE(t->Remove(K(7)).ok());
  }
  auto t = OpenOk(Options(dir.path()));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->Counters().blocks_recovered, 49u);
  for (uint64_t i = 0; i < 50; ++i) {
    if (i == 7) {
      EXPECT_FALSE(t->Contains(K(i)));
    } else {
      ExpectBlock(*t, K(i), 10'000 + i * 1000);
    }
  }
  // Appends resume after the recovered blocks without overwriting them.
  for (uint64_t i = 100; i < 150; ++i) ASSERT_TRUE(Put(*t, K(i), 30'000).ok());
  for (uint64_t i = 0; i < 50; ++i) {
    if (i != 7) ExpectBlock(*t, K(i), 10'000 + i * 1000);
  }
  for (uint64_t i = 100; i < 150; ++i) ExpectBlock(*t, K(i), 30'000);
}

// A child writes batches and reports each batch whose Write returned; the parent SIGKILLs it in
// the middle of the burst, reopens the directory and checks every acknowledged block byte by byte.
TEST(SsdTierTest, KillNineDuringWritesLosesNothingCommitted) {
  TempDir dir;
  constexpr uint64_t kBatch = 4;
  constexpr uint64_t kBlock = 96 * kKiB;
  constexpr uint64_t kMaxBatches = 400;  // stays below capacity: no reclaim may drop blocks
  const SsdTierOptions o = Options(dir.path(), 8 * kMiB, 256 * kMiB);
  int acks[2];
  int hold[2];
  ASSERT_EQ(::pipe(acks), 0);
  ASSERT_EQ(::pipe(hold), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(acks[0]);
    ::close(hold[1]);
    auto opened = SsdTier::Open(o);
    if (!opened.ok()) ::_exit(2);
    for (uint64_t b = 0; b < kMaxBatches; ++b) {
      std::vector<std::vector<std::byte>> bytes;
      std::vector<SsdWrite> writes;
      for (uint64_t i = 0; i < kBatch; ++i) bytes.push_back(Pattern(K(b * kBatch + i), kBlock));
      for (uint64_t i = 0; i < kBatch; ++i) {
        writes.push_back({K(b * kBatch + i), std::nullopt, bytes[i], kBlock, BlockChecksum(bytes[i].data(), kBlock)});
      }
      for (const Status& st : (*opened)->Write(writes)) {
        if (!st.ok()) ::_exit(3);
      }
      if (::write(acks[1], &b, sizeof(b)) != sizeof(b)) ::_exit(4);
    }
    char c;
    (void)::read(hold[0], &c, 1);  // wait for the kill
    ::_exit(0);
  }
  ::close(acks[1]);
  ::close(hold[0]);
  uint64_t acked = 0;  // batches acknowledged
  uint64_t b;
  while (acked < 25 && ::read(acks[0], &b, sizeof(b)) == sizeof(b)) acked = b + 1;
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFSIGNALED(wstatus)) << "child exited early with " << WEXITSTATUS(wstatus);
  while (::read(acks[0], &b, sizeof(b)) == sizeof(b)) acked = b + 1;
  ::close(acks[0]);
  ::close(hold[1]);
  ASSERT_GE(acked, 25u);

  auto t = OpenOk(o);
  ASSERT_TRUE(t);
  for (uint64_t i = 0; i < acked * kBatch; ++i) ExpectBlock(*t, K(i), kBlock);
  // Blocks of the batch in flight at the kill may or may not be there; whatever is there is whole.
  std::vector<SsdBlockInfo> all = t->List(std::nullopt, 1'000'000);
  for (const SsdBlockInfo& info : all) {
    EXPECT_LT(info.key.Low(), (acked + 1) * kBatch) << "a block never written is indexed";
    ExpectBlock(*t, info.key, kBlock);
  }
  EXPECT_EQ(t->Counters().checksum_failures, 0u);
  // The log continues after the recovered frontier.
  for (uint64_t i = 0; i < 20; ++i) ASSERT_TRUE(Put(*t, K(100'000 + i), kBlock).ok());
  for (uint64_t i = 0; i < acked * kBatch; ++i) ExpectBlock(*t, K(i), kBlock);
}

TEST(SsdTierTest, CorruptedBytesAreAMissAndCounted) {
  TempDir dir;
  const SsdTierOptions o = Options(dir.path());
  auto t = OpenOk(o);
  ASSERT_TRUE(t);
  for (uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(Put(*t, K(i), 20'000).ok());
  auto info = t->Lookup(K(5));
  ASSERT_TRUE(info);
  {
    const int fd = ::open(SegmentFiles::PathOf(dir.path(), info->segment).c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    const char garbage[3] = {'x', 'y', 'z'};
    ASSERT_EQ(::pwrite(fd, garbage, sizeof(garbage), static_cast<off_t>(info->offset + 1234)), 3);
    ASSERT_EQ(::fsync(fd), 0);
    ::close(fd);
  }
  std::vector<std::byte> out(20'000);
  EXPECT_EQ(t->Read(K(5), out).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(t->Counters().checksum_failures, 1u);
  EXPECT_FALSE(t->Contains(K(5)));
  EXPECT_EQ(t->Read(K(5), out).status().code(), StatusCode::kNotFound);
  for (uint64_t i = 0; i < 8; ++i) {
    if (i != 5) ExpectBlock(*t, K(i), 20'000);
  }
  t.reset();
  t = OpenOk(o);
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->Contains(K(5)));  // the drop was durable
}

TEST(SsdTierTest, TinyBudgetReclaimsOldestAndReinsertsHot) {
  TempDir dir;
  SsdTierOptions o = Options(dir.path(), 1 * kMiB, 3 * kMiB);  // three 1 MiB segments
  o.max_block_bytes = 256 * kKiB;
  auto t = OpenOk(o);
  ASSERT_TRUE(t);
  constexpr uint64_t kBlock = 200 * kKiB;  // 4 per segment after padding
  for (uint64_t i = 0; i < 12; ++i) ASSERT_TRUE(Put(*t, K(i), kBlock).ok());
  EXPECT_EQ(t->Usage().free_segments, 0u);
  // K(1) is hot: read it, then write enough to reclaim its segment.
  ExpectBlock(*t, K(1), kBlock);
  for (uint64_t i = 12; i < 16; ++i) ASSERT_TRUE(Put(*t, K(i), kBlock).ok());
  const SsdCounters c = t->Counters();
  EXPECT_GE(c.segments_reclaimed, 1u);
  EXPECT_EQ(c.blocks_reinserted, 1u);
  EXPECT_EQ(c.write_errors, 0u);
  ExpectBlock(*t, K(1), kBlock);
  EXPECT_FALSE(t->Contains(K(0)));  // cold and oldest: dropped
  for (uint64_t i = 12; i < 16; ++i) ExpectBlock(*t, K(i), kBlock);
  // A long run through the tiny log never fails and keeps the newest blocks.
  for (uint64_t i = 100; i < 200; ++i) ASSERT_TRUE(Put(*t, K(i), kBlock).ok());
  for (uint64_t i = 196; i < 200; ++i) ExpectBlock(*t, K(i), kBlock);
  EXPECT_LE(t->Usage().live_bytes, t->Usage().capacity_bytes);
  t.reset();
  t = OpenOk(o);  // and the reclaimed state survives a restart
  ASSERT_TRUE(t);
  for (uint64_t i = 196; i < 200; ++i) ExpectBlock(*t, K(i), kBlock);
  EXPECT_FALSE(t->Contains(K(0)));
}

// Wraps the real engine; while `full` is set every write fails with ENOSPC.
class FullDiskEngine final : public IoEngine {
 public:
  FullDiskEngine(std::unique_ptr<IoEngine> inner, std::atomic<bool>* full) : inner_(std::move(inner)), full_(full) {}
  std::string_view name() const override { return "full-disk"; }
  bool buffers_registered() const override { return inner_->buffers_registered(); }
  Status Run(std::span<IoOp> ops) override {
    if (!full_->load()) return inner_->Run(ops);
    std::vector<IoOp> reads;
    for (IoOp& op : ops) {
      if (op.write) op.result = -ENOSPC;
      else reads.push_back(op);
    }
    KVSTASH_RETURN_IF_ERROR(inner_->Run(reads));
    size_t r = 0;
    for (IoOp& op : ops) {
      if (!op.write) op.result = reads[r++].result;
    }
    return Status::Ok();
  }

 private:
  std::unique_ptr<IoEngine> inner_;
  std::atomic<bool>* full_;
};

TEST(SsdTierTest, EnospcIsACleanErrorAndNothingIsIndexed) {
  TempDir dir;
  std::atomic<bool> full{false};
  SsdTierOptions o = Options(dir.path());
  o.engine_factory = [&](const IoEngineOptions& eo) -> Result<std::unique_ptr<IoEngine>> {
    KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<IoEngine> inner, MakeUringEngine(eo));
    return std::unique_ptr<IoEngine>(std::make_unique<FullDiskEngine>(std::move(inner), &full));
  };
  auto t = OpenOk(o);
  ASSERT_TRUE(t);
  ASSERT_TRUE(Put(*t, K(1), 50'000).ok());
  full = true;
  EXPECT_EQ(Put(*t, K(2), 50'000).code(), StatusCode::kResourceExhausted);
  EXPECT_FALSE(t->Contains(K(2)));
  EXPECT_EQ(t->Counters().no_space_errors, 1u);
  ExpectBlock(*t, K(1), 50'000);
  full = false;
  ASSERT_TRUE(Put(*t, K(2), 50'000).ok());
  ExpectBlock(*t, K(2), 50'000);
}

// Readers race a writer that keeps reclaiming: every read that succeeds returns exact bytes.
TEST(SsdTierTest, ReadsRacingReclaimNeverSeeWrongBytes) {
  TempDir dir;
  SsdTierOptions o = Options(dir.path(), 1 * kMiB, 3 * kMiB);
  o.max_block_bytes = 64 * kKiB;
  auto t = OpenOk(o);
  ASSERT_TRUE(t);
  constexpr uint64_t kBlock = 60 * kKiB;
  constexpr uint64_t kBlocks = 600;
  std::atomic<uint64_t> written{0};
  std::atomic<uint64_t> good_reads{0};
  std::atomic<bool> bad{false};
  std::thread writer([&] {
    for (uint64_t i = 0; i < kBlocks; ++i) {
      if (!Put(*t, K(i), kBlock).ok()) bad = true;
      written.store(i + 1);
    }
  });
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&, r] {
      std::mt19937_64 rng(r);
      std::vector<std::byte> out(kBlock);
      while (written.load() < kBlocks) {
        const uint64_t n = written.load();
        if (n == 0) continue;
        const uint64_t i = n - 1 - rng() % std::min<uint64_t>(n, 40);
        auto info = t->Read(K(i), out);
        if (info.ok()) {
          if (out != Pattern(K(i), kBlock)) bad = true;
          good_reads.fetch_add(1);
        } else if (info.status().code() != StatusCode::kNotFound) {
          bad = true;
        }
      }
    });
  }
  writer.join();
  for (auto& r : readers) r.join();
  EXPECT_FALSE(bad.load());
  EXPECT_GT(good_reads.load(), 0u);
  EXPECT_EQ(t->Counters().checksum_failures, 0u);
  EXPECT_GT(t->Counters().segments_reclaimed, 10u);
}

}  // namespace
}  // namespace kvstash::tiers
