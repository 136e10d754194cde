#include <gtest/gtest.h>

#include <numeric>
#include <set>

#include "common/checksum.h"
#include "common/clock.h"
#include "common/units.h"
#include "kvstash/block_key.h"
#include "kvstash/prefix_hasher.h"
#include "kvstash/result.h"

namespace kvstash {
namespace {

TEST(StatusTest, OkAndErrors) {
  EXPECT_TRUE(Status::Ok().ok());
  const Status s = InvalidArgument("bad key");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.ToString(), "INVALID_ARGUMENT: bad key");
}

Result<int> Half(int v) {
  if (v % 2) return InvalidArgument("odd");
  return v / 2;
}
Status UseHalf(int v, int* out) {
  KVSTASH_ASSIGN_OR_RETURN(*out, Half(v));
  return Status::Ok();
}

TEST(ResultTest, ValueOrStatusPropagates) {
  int out = 0;
  EXPECT_TRUE(UseHalf(8, &out).ok());
  EXPECT_EQ(out, 4);
  const Status s = UseHalf(7, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(out, 4);
}

TEST(BlockKeyTest, HexRoundTrip) {
  const BlockKey k = BlockKey::FromParts(0x0123456789abcdefULL, 0xfedcba9876543210ULL);
  EXPECT_EQ(k.ToHex(), "0123456789abcdeffedcba9876543210");
  auto parsed = BlockKey::FromHex("0123456789ABCDEFfedcba9876543210");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, k);
  EXPECT_EQ(k.High(), 0x0123456789abcdefULL);
  EXPECT_EQ(k.Low(), 0xfedcba9876543210ULL);
  auto from_bytes = BlockKey::FromBytes(k.AsBytes());
  ASSERT_TRUE(from_bytes.ok());
  EXPECT_EQ(*from_bytes, k);
}

TEST(BlockKeyTest, RejectsMalformed) {
  EXPECT_EQ(BlockKey::FromHex("0123").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(BlockKey::FromHex(std::string(31, 'a')).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(BlockKey::FromHex(std::string(33, 'a')).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(BlockKey::FromHex("0123456789abcdeffedcba987654321g").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(BlockKey::FromBytes(std::string(15, 'x')).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(BlockKey::FromBytes(std::string(17, 'x')).status().code(), StatusCode::kInvalidArgument);
}

// Known answers computed independently with python3-xxhash 3.0 (xxh3_64 for the seed,
// xxh3_128_digest(prev_key || tokens_le_u32, seed) per block); see docs/ARCHITECTURE.md §1.
TEST(PrefixHasherTest, KnownAnswers) {
  std::vector<uint32_t> tokens(10);
  std::iota(tokens.begin(), tokens.end(), 0);
  PrefixHasher hasher("llama3-70b|default|fp16|0", 4);
  EXPECT_EQ(hasher.seed(), 0xc887d503ff377932ULL);
  auto chain = hasher.Chain(tokens);
  ASSERT_EQ(chain.size(), 2u);  // the trailing 2 tokens form no block
  EXPECT_EQ(chain[0].ToHex(), "49b04e763643dc6ed482b896460e5287");
  EXPECT_EQ(chain[1].ToHex(), "2bb1e9e6a6bbe84dacee8786d8b85a5f");

  PrefixHasher other("other|default|fp16|0", 4);
  auto other_chain = other.Chain(tokens);
  EXPECT_EQ(other_chain[0].ToHex(), "3ecbf480c9a015f662157538b122c473");
  EXPECT_EQ(other_chain[1].ToHex(), "90541099fa99b8866a678c3db7e3f9ea");

  Namespace ns{"m", "vllm", "bf16", 3};
  EXPECT_EQ(ns.Id(), "m|vllm|bf16|3");
  std::vector<uint32_t> sevens(1024, 7);
  auto big = PrefixHasher(ns).Chain(sevens);
  ASSERT_EQ(big.size(), 2u);
  EXPECT_EQ(big[0].ToHex(), "8b82d82d85a5d4f5e63587229d289578");
  EXPECT_EQ(big[1].ToHex(), "5d92c522b36eb46e1992566266d6046c");
}

TEST(PrefixHasherTest, PrefixPropertyAndIncrementalNext) {
  std::vector<uint32_t> a(64), b(64);
  std::iota(a.begin(), a.end(), 100);
  b = a;
  b[40] = 9999;  // differs in block 2 (tokens 32..47) with B = 16
  PrefixHasher h("ns", 16);
  auto ca = h.Chain(a), cb = h.Chain(b);
  ASSERT_EQ(ca.size(), 4u);
  EXPECT_EQ(ca[0], cb[0]);
  EXPECT_EQ(ca[1], cb[1]);
  EXPECT_NE(ca[2], cb[2]);
  EXPECT_NE(ca[3], cb[3]);  // everything after a divergence differs
  EXPECT_EQ(h.Next(nullptr, std::span(a).subspan(0, 16)), ca[0]);
  EXPECT_EQ(h.Next(&ca[2], std::span(a).subspan(48, 16)), ca[3]);
  EXPECT_TRUE(h.Chain(std::span(a).subspan(0, 15)).empty());
}

TEST(PrefixHasherTest, KeysAreDistinctAcrossManyBlocks) {
  std::vector<uint32_t> tokens(512 * 200);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(i % 7);
  auto chain = PrefixHasher("ns").Chain(tokens);
  std::set<BlockKey> unique(chain.begin(), chain.end());
  EXPECT_EQ(unique.size(), chain.size());  // same block content, different prefix => different key
}

TEST(UnitsTest, ParseByteSize) {
  EXPECT_EQ(*ParseByteSize("4096"), 4096u);
  EXPECT_EQ(*ParseByteSize("64KiB"), 65536u);
  EXPECT_EQ(*ParseByteSize("1MiB"), 1048576u);
  EXPECT_EQ(*ParseByteSize("1.5GiB"), 1610612736u);
  EXPECT_EQ(*ParseByteSize("2GB"), 2000000000u);
  EXPECT_EQ(*ParseByteSize("8m"), 8u << 20);
  EXPECT_FALSE(ParseByteSize("").ok());
  EXPECT_FALSE(ParseByteSize("MiB").ok());
  EXPECT_FALSE(ParseByteSize("12 parsecs").ok());
  EXPECT_FALSE(ParseByteSize("1.2.3").ok());
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
}

TEST(ChecksumTest, SensitiveToEveryByte) {
  std::vector<uint8_t> data(4096, 0xAB);
  const uint64_t base = BlockChecksum(data.data(), data.size());
  data[4095] ^= 1;
  EXPECT_NE(BlockChecksum(data.data(), data.size()), base);
}

TEST(ClockTest, ManualClockAdvances) {
  ManualClock clock(10);
  EXPECT_EQ(clock.NowMs(), 10u);
  clock.AdvanceMs(5);
  EXPECT_EQ(clock.NowMs(), 15u);
}

}  // namespace
}  // namespace kvstash

#include <fstream>

#include "common/trace.h"

namespace kvstash {
namespace {

TEST(TraceTest, ParsesMooncakeFormat) {
  auto trace = ParseTrace(
      "{\"timestamp\": 0, \"input_length\": 1030, \"output_length\": 6, \"hash_ids\": [0, 1, 2]}\n"
      "\n"
      "{\"timestamp\": 40, \"input_length\": 600, \"output_length\": 3, \"hash_ids\": [0, 7]}\n",
      "t.jsonl");
  ASSERT_TRUE(trace.ok()) << trace.status().ToString();
  ASSERT_EQ(trace->size(), 2u);
  EXPECT_EQ((*trace)[1].timestamp_ms, 40u);
  EXPECT_EQ((*trace)[0].input_length, 1030u);
  EXPECT_EQ((*trace)[1].hash_ids, (std::vector<uint64_t>{0, 7}));
}

TEST(TraceTest, RejectsMalformedLinesNamingThem) {
  auto bad_json = ParseTrace("{\"timestamp\": 0, \"input_length\": 1, \"output_length\": 1, \"hash_ids\": []}\n{oops\n", "t");
  EXPECT_EQ(bad_json.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad_json.status().message().find("t:2"), std::string::npos);
  EXPECT_FALSE(ParseTrace("{\"timestamp\": 0, \"input_length\": 1, \"output_length\": 1}\n", "t").ok());
  EXPECT_FALSE(ParseTrace("{\"timestamp\": -1, \"input_length\": 1, \"output_length\": 1, \"hash_ids\": []}\n", "t").ok());
  EXPECT_FALSE(ParseTrace("{\"timestamp\": 0, \"input_length\": 1, \"output_length\": 1, \"hash_ids\": [\"a\"]}\n", "t").ok());
  EXPECT_FALSE(ParseTrace("{\"timestamp\": 5, \"input_length\": 1, \"output_length\": 1, \"hash_ids\": []}\n"
                          "{\"timestamp\": 4, \"input_length\": 1, \"output_length\": 1, \"hash_ids\": []}\n", "t").ok());
  EXPECT_EQ(LoadTrace("/nonexistent/trace.jsonl").status().code(), StatusCode::kNotFound);
}

TEST(TraceTest, LoadsTheSharedTrace) {
  const std::string path = std::string(KVSTASH_SOURCE_DIR) + "/../shared/traces/synthetic_trace.jsonl";
  if (!std::ifstream(path)) GTEST_SKIP() << "shared trace not present at " << path;
  auto trace = LoadTrace(path);
  ASSERT_TRUE(trace.ok()) << trace.status().ToString();
  EXPECT_GT(trace->size(), 100u);
  for (const auto& r : *trace) EXPECT_LE(r.hash_ids.size(), (r.input_length + 511) / 512);
}

}  // namespace
}  // namespace kvstash

#include <atomic>
#include <thread>

#include "common/mutex.h"

namespace kvstash {
namespace {

// Whether another thread finds `mu` taken (try_lock on a mutex this thread holds is undefined).
bool TakenForOthers(Mutex& mu) {
  bool taken = false;
  std::thread([&] {
    if (mu.TryLock()) {
      mu.Unlock();
    } else {
      taken = true;
    }
  }).join();
  return taken;
}

// Waiting through MutexLock releases the mutex while asleep and holds it again on return.
TEST(MutexTest, WaitReleasesTheMutexAndHoldsItAgainOnReturn) {
  Mutex mu;
  std::condition_variable cv;
  bool ready = false;  // guarded by mu (a local: the analysis sees only members)
  std::thread producer([&] {
    MutexLock lock(mu);
    ready = true;
    cv.notify_all();
  });
  {
    MutexLock lock(mu);
    lock.Wait(cv, [&] { return ready; });
    EXPECT_TRUE(ready);
    EXPECT_TRUE(TakenForOthers(mu));  // still held by this scope after the wait
  }
  producer.join();
  EXPECT_FALSE(TakenForOthers(mu));  // released at the end of the scope
}

TEST(MutexTest, WaitForGivesUpAfterItsTimeoutWithThePredicateFalse) {
  Mutex mu;
  std::condition_variable cv;
  MutexLock lock(mu);
  EXPECT_FALSE(lock.WaitFor(cv, std::chrono::milliseconds(5), [] { return false; }));
  EXPECT_TRUE(TakenForOthers(mu));
}

TEST(MutexTest, UnlockAndLockWithinAScope) {
  Mutex mu;
  MutexLock lock(mu);
  lock.Unlock();
  EXPECT_FALSE(TakenForOthers(mu));
  lock.Lock();
  EXPECT_TRUE(TakenForOthers(mu));
}

TEST(LockOrderTest, IncreasingRanksAreAccepted) {
  int a = 0, b = 0, c = 0;
  lock_order::NoteAcquire(lock_order::kHbmTier, &a);
  lock_order::NoteAcquire(lock_order::kDramTier, &b);
  lock_order::NoteAcquire(lock_order::kAllocator, &c);
  lock_order::NoteRelease(lock_order::kAllocator, &c);
  lock_order::NoteRelease(lock_order::kDramTier, &b);
  // After a release the same rank may be taken again.
  lock_order::NoteAcquire(lock_order::kDramTier, &b);
  lock_order::NoteRelease(lock_order::kDramTier, &b);
  lock_order::NoteRelease(lock_order::kHbmTier, &a);
}

TEST(LockOrderDeathTest, AnHbmLockUnderADramLockAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  int hbm = 0, dram = 0;
  EXPECT_DEATH(
      {
        lock_order::NoteAcquire(lock_order::kDramTier, &dram);
        lock_order::NoteAcquire(lock_order::kHbmTier, &hbm);
      },
      "lock order violated: taking a mutex of rank 10 .* while holding one of rank 20");
}

TEST(LockOrderDeathTest, TwoLocksOfOneRankAbort) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  int one = 0, two = 0;
  EXPECT_DEATH(
      {
        lock_order::NoteAcquire(lock_order::kDramTier, &one);
        lock_order::NoteAcquire(lock_order::kDramTier, &two);
      },
      "lock order violated");
}

// Ranked Mutexes report to the checker only where KVSTASH_CHECK_LOCK_ORDER is on (debug builds,
// or -DKVSTASH_CHECK_LOCK_ORDER=ON).
TEST(LockOrderDeathTest, RankedMutexesTakenOutOfOrderAbortWhereChecked) {
  if (!KVSTASH_CHECK_LOCK_ORDER) GTEST_SKIP() << "built without KVSTASH_CHECK_LOCK_ORDER (NDEBUG)";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Mutex dram(lock_order::kDramTier), hbm(lock_order::kHbmTier);
  EXPECT_DEATH(
      {
        MutexLock outer(dram);
        MutexLock inner(hbm);
      },
      "lock order violated");
}

}  // namespace
}  // namespace kvstash
