// The UCX engine against a TransferServer in the same process, over each transport family UCX
// offers on this machine (shared memory and tcp). Real UCX, no mocks.
#include <gtest/gtest.h>

#include <cstring>
#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "transfer/transfer_engine.h"
#include "transfer/transfer_server.h"
#include "transfer/transport_policy.h"
#include "transfer/ucx_worker.h"

namespace kvstash::transfer {
namespace {

void Fill(std::byte* p, size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t v = rng() | 1;  // never all zero
    std::memcpy(p + i, &v, std::min<size_t>(8, n - i));
  }
}

class TransferTest : public ::testing::TestWithParam<std::string> {
 protected:
  static constexpr size_t kArena = 64ULL << 20;
  void SetUp() override {
    arena_.reset(static_cast<std::byte*>(std::aligned_alloc(4096, kArena)));
    std::memset(arena_.get(), 0, kArena);
    UcxOptions ucx;
    ucx.transports = GetParam();
    auto server = TransferServer::Start(ucx, arena_.get(), kArena);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
    TransferEngineOptions options;
    options.ucx = ucx;
    options.workers = 2;
    options.split_bytes = 1 << 20;
    options.timeout_ms = 20'000;
    auto engine = TransferEngine::Create(options);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine);
    target_ = {server_->worker_address(), server_->packed_rkey()};
  }
  void TearDown() override {
    engine_.reset();
    server_.reset();
  }
  uint64_t Remote(size_t offset) const { return reinterpret_cast<uint64_t>(arena_.get() + offset); }

  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> arena_;
  std::unique_ptr<TransferServer> server_;
  std::unique_ptr<TransferEngine> engine_;
  RemoteTarget target_;
};

TEST_P(TransferTest, PutThenGetBatchOfMixedSizesIsByteExact) {
  std::mt19937_64 rng(11);
  constexpr size_t kOps = 64;
  std::vector<size_t> sizes, offsets;
  size_t offset = 0;
  for (size_t i = 0; i < kOps; ++i) {
    const size_t size = 1 + rng() % (256 * 1024);
    sizes.push_back(size);
    offsets.push_back(offset);
    offset += (size + 4095) / 4096 * 4096;
  }
  std::vector<std::vector<std::byte>> src(kOps), dst(kOps);
  std::vector<TransferOp> puts(kOps), gets(kOps);
  for (size_t i = 0; i < kOps; ++i) {
    src[i].resize(sizes[i]);
    dst[i].resize(sizes[i]);
    Fill(src[i].data(), sizes[i], i);
    puts[i] = {OpKind::kPut, src[i].data(), sizes[i], Remote(offsets[i]), {}};
    gets[i] = {OpKind::kGet, dst[i].data(), sizes[i], Remote(offsets[i]), {}};
  }
  ASSERT_TRUE(engine_->Run(target_, puts).ok());
  for (size_t i = 0; i < kOps; ++i) {
    ASSERT_TRUE(puts[i].status.ok()) << puts[i].status.ToString();
    // The flush completed: the bytes are in the daemon's memory when Run returns.
    ASSERT_EQ(0, std::memcmp(arena_.get() + offsets[i], src[i].data(), sizes[i])) << "put " << i;
  }
  ASSERT_TRUE(engine_->Run(target_, gets).ok());
  for (size_t i = 0; i < kOps; ++i) {
    ASSERT_TRUE(gets[i].status.ok()) << gets[i].status.ToString();
    ASSERT_EQ(0, std::memcmp(dst[i].data(), src[i].data(), sizes[i])) << "get " << i;
  }
}

TEST_P(TransferTest, LargeTransferSplitAcrossWorkers) {
  constexpr size_t kSize = 24ULL << 20;  // 24 pieces of 1 MiB over 2 workers
  std::vector<std::byte> src(kSize), dst(kSize);
  Fill(src.data(), kSize, 99);
  // Below split_bytes nothing is cut.
  TransferOp small{OpKind::kPut, src.data(), 4096, Remote(0), {}};
  ASSERT_TRUE(engine_->Run(target_, std::span(&small, 1)).ok());
  ASSERT_TRUE(small.status.ok()) << small.status.ToString();
  EXPECT_EQ(engine_->split_counts().calls, 0u);
  TransferOp put{OpKind::kPut, src.data(), kSize, Remote(4096), {}};
  ASSERT_TRUE(engine_->Run(target_, std::span(&put, 1)).ok());
  ASSERT_TRUE(put.status.ok()) << put.status.ToString();
  ASSERT_EQ(0, std::memcmp(arena_.get() + 4096, src.data(), kSize));
  TransferOp get{OpKind::kGet, dst.data(), kSize, Remote(4096), {}};
  ASSERT_TRUE(engine_->Run(target_, std::span(&get, 1)).ok());
  ASSERT_TRUE(get.status.ok()) << get.status.ToString();
  ASSERT_EQ(0, std::memcmp(dst.data(), src.data(), kSize));
  // Each of the two calls was cut into 24 pieces of 1 MiB and dealt over both workers.
  const TransferEngine::SplitCounts split = engine_->split_counts();
  EXPECT_EQ(split.calls, 2u);
  EXPECT_EQ(split.pieces, 2 * kSize / (1 << 20));
  EXPECT_EQ(split.workers, 2u * 2u);
}

TEST_P(TransferTest, RegisteredBufferAndAsync) {
  constexpr size_t kSize = 1 << 20;
  std::vector<std::byte> pool(4 * kSize);
  ASSERT_TRUE(engine_->RegisterBuffer(pool.data(), pool.size()).ok());
  Fill(arena_.get(), 4 * kSize, 5);
  std::vector<TransferOp> gets;
  for (size_t i = 0; i < 4; ++i) gets.push_back({OpKind::kGet, pool.data() + i * kSize, kSize, Remote(i * kSize), {}});
  auto done = engine_->RunAsync(target_, gets);
  ASSERT_TRUE(done.get().ok());
  for (const auto& op : gets) ASSERT_TRUE(op.status.ok()) << op.status.ToString();
  EXPECT_EQ(0, std::memcmp(pool.data(), arena_.get(), 4 * kSize));
  EXPECT_TRUE(engine_->UnregisterBuffer(pool.data()).ok());
  EXPECT_EQ(engine_->UnregisterBuffer(pool.data()).code(), StatusCode::kNotFound);
}

TEST_P(TransferTest, ConcurrentCallersShareTheEngine) {
  constexpr int kThreads = 8;
  constexpr size_t kSize = 64 * 1024;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::byte> src(kSize), dst(kSize);
      for (int round = 0; round < 20; ++round) {
        Fill(src.data(), kSize, static_cast<uint64_t>(t * 1000 + round));
        const uint64_t remote = Remote(static_cast<size_t>(t) * kSize);
        TransferOp put{OpKind::kPut, src.data(), kSize, remote, {}};
        TransferOp get{OpKind::kGet, dst.data(), kSize, remote, {}};
        if (!engine_->Run(target_, std::span(&put, 1)).ok() || !put.status.ok()) ++failures;
        if (!engine_->Run(target_, std::span(&get, 1)).ok() || !get.status.ok()) ++failures;
        if (std::memcmp(src.data(), dst.data(), kSize) != 0) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_P(TransferTest, RejectsBadTargetsAndOps) {
  std::vector<std::byte> buf(16);
  TransferOp op{OpKind::kGet, buf.data(), buf.size(), Remote(0), {}};
  EXPECT_EQ(engine_->Run(RemoteTarget{}, std::span(&op, 1)).code(), StatusCode::kInvalidArgument);
  TransferOp empty{OpKind::kGet, nullptr, 0, Remote(0), {}};
  EXPECT_EQ(engine_->Run(target_, std::span(&empty, 1)).code(), StatusCode::kInvalidArgument);
  RemoteTarget bounded = target_;
  bounded.base = Remote(0);
  bounded.length = kArena;
  TransferOp outside{OpKind::kGet, buf.data(), buf.size(), Remote(kArena - 8), {}};
  EXPECT_EQ(engine_->Run(bounded, std::span(&outside, 1)).code(), StatusCode::kInvalidArgument);
  TransferOp below{OpKind::kPut, buf.data(), buf.size(), Remote(0) - 16, {}};
  EXPECT_EQ(engine_->Run(bounded, std::span(&below, 1)).code(), StatusCode::kInvalidArgument);
  TransferOp inside{OpKind::kGet, buf.data(), buf.size(), Remote(kArena - 16), {}};
  EXPECT_TRUE(engine_->Run(bounded, std::span(&inside, 1)).ok());
  EXPECT_TRUE(inside.status.ok()) << inside.status.ToString();
  RemoteTarget no_worker{"", server_->packed_rkey()};
  EXPECT_EQ(engine_->Run(no_worker, std::span(&op, 1)).code(), StatusCode::kInvalidArgument);
}

// A region UCX allocated itself: on one host, peers map it and move bytes with their own CPU.
TEST(UcxAllocatedRegionTest, SameHostPutAndGet) {
  UcxOptions ucx;
  ucx.transports = "posix,sysv,cma,self";
  auto context = UcxContext::Create(ucx);
  ASSERT_TRUE(context.ok());
  auto region = MemoryRegion::Allocate(*context, 8 << 20);
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  auto worker = UcxWorker::Create(*context);
  ASSERT_TRUE(worker.ok());
  TransferEngineOptions options;
  options.ucx = ucx;
  auto engine = TransferEngine::Create(options);
  ASSERT_TRUE(engine.ok());
  // The region's owner needs no progress thread for this: nobody progresses `worker`.
  RemoteTarget target{(*worker)->address(), (*region)->packed_rkey()};
  std::vector<std::byte> src(1 << 20), dst(1 << 20);
  Fill(src.data(), src.size(), 3);
  const uint64_t remote = reinterpret_cast<uint64_t>((*region)->base()) + 4096;
  TransferOp put{OpKind::kPut, src.data(), src.size(), remote, {}};
  ASSERT_TRUE((*engine)->Run(target, std::span(&put, 1)).ok());
  ASSERT_TRUE(put.status.ok()) << put.status.ToString();
  EXPECT_EQ(0, std::memcmp((*region)->base() + 4096, src.data(), src.size()));
  TransferOp get{OpKind::kGet, dst.data(), dst.size(), remote, {}};
  ASSERT_TRUE((*engine)->Run(target, std::span(&get, 1)).ok());
  ASSERT_TRUE(get.status.ok()) << get.status.ToString();
  EXPECT_EQ(0, std::memcmp(dst.data(), src.data(), src.size()));
  engine->reset();
  worker->reset();
}

// One-sided transfers are same-host only (transport_policy.h): a server asked for tcp keeps it out
// of its one-sided context, so only the shared-memory families run these tests.
INSTANTIATE_TEST_SUITE_P(Transports, TransferTest, ::testing::Values("posix,sysv,cma,self", "posix,sysv,cma,tcp"),
                         [](const auto& info) {
                           return info.param == "posix,sysv,cma,tcp" ? std::string("shm_with_tcp") : std::string("shm");
                         });

TEST(OneSidedTransportsTest, OnlySameHostSharedMemoryEverCarriesTheOneSidedProtocol) {
  EXPECT_EQ(OneSidedTransports(""), "sm");
  EXPECT_EQ(OneSidedTransports("all"), "sm");
  EXPECT_EQ(OneSidedTransports("tcp"), "self");
  EXPECT_EQ(OneSidedTransports("cma,tcp"), "self");  // cma alone cannot carry UCX's connection setup
  EXPECT_EQ(OneSidedTransports("posix,sysv,cma,self,tcp"), "posix,sysv,cma");
  EXPECT_EQ(OneSidedTransports("rc,ud,tcp,sysv"), "sysv");
  EXPECT_EQ(OneSidedTransports("shm,tcp"), "sm");
  EXPECT_EQ(OneSidedTransports("mm"), "posix,sysv,xpmem");
  EXPECT_EQ(OneSidedTransports("^tcp"), "sm");
  EXPECT_EQ(OneSidedTransports("^cma,tcp"), "posix,sysv,xpmem,knem");
  EXPECT_EQ(OneSidedTransports("^sm"), "self");
  EXPECT_EQ(OneSidedTransports("posix:aux,tcp"), "posix");
  EXPECT_TRUE(ServesNoPeers(OneSidedTransports("tcp")));
}

// A server configured for tcp serves one-sided transfers to no peer: a tcp client cannot even
// connect to its one-sided worker, so no emulated RMA reaches its memory.
TEST(OneSidedTransportsTest, TcpPeerCannotReachTheOneSidedWorker) {
  constexpr size_t kArena = 1 << 20;
  std::vector<std::byte> arena(kArena, std::byte{0});
  for (const char* configured : {"tcp", "posix,sysv,cma,tcp"}) {
    UcxOptions ucx;
    ucx.transports = configured;
    auto server = TransferServer::Start(ucx, arena.data(), kArena);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    EXPECT_EQ((*server)->one_sided_transports().find("tcp"), std::string::npos);
    TransferEngineOptions options;
    options.ucx.transports = "tcp";
    options.timeout_ms = 5'000;
    auto engine = TransferEngine::Create(options);
    ASSERT_TRUE(engine.ok());
    std::vector<std::byte> src(4096, std::byte{0x5A});
    TransferOp put{OpKind::kPut, src.data(), src.size(), reinterpret_cast<uint64_t>(arena.data()), {}};
    const Status run = (*engine)->Run({(*server)->worker_address(), (*server)->packed_rkey()}, std::span(&put, 1));
    EXPECT_FALSE(run.ok() && put.status.ok()) << configured;
    EXPECT_EQ(arena[0], std::byte{0}) << configured;
    engine->reset();
  }
}

// Where UCX cannot move CUDA memory (Debian's UCX 1.13), the server refuses a device region with
// the reason and keeps serving the arena as before; where it can (a CUDA UCX on a GPU host), the
// region is the arena's peer and a second one is refused.
TEST(DeviceRegionTest, RefusedWithTheReasonWhereUcxMovesNoCudaMemory) {
  constexpr size_t kArena = 1 << 20;
  std::vector<std::byte> arena(kArena, std::byte{0});
  std::vector<std::byte> not_a_gpu(kArena, std::byte{0});
  UcxOptions ucx;
  ucx.transports = "tcp";
  auto server = TransferServer::Start(ucx, arena.data(), kArena);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  EXPECT_EQ((*server)->AddDeviceRegion(nullptr, 0, {}).code(), StatusCode::kInvalidArgument);
  if ((*server)->moves_device_memory()) GTEST_SKIP() << "this UCX moves CUDA memory (the device cycle tests it)";
  bool bound = false;
  const Status added = (*server)->AddDeviceRegion(not_a_gpu.data(), not_a_gpu.size(), [&] { bound = true; });
  EXPECT_EQ(added.code(), StatusCode::kFailedPrecondition) << added.ToString();
  EXPECT_NE(added.message().find("no CUDA memory transport"), std::string::npos) << added.ToString();
  EXPECT_FALSE(bound);
  EXPECT_EQ((*server)->device_region_bytes(), 0u);
  EXPECT_EQ((*server)->device_region_base(), 0u);
}

// A two-sided put is sent eagerly (UcxOptions::eager_sends on the engine's two-sided context): it
// completes at the client once its bytes are in the socket, without the receiver's help. Under
// UCX's rendezvous (any tagged send above 8 KiB over tcp) it could not complete until the receiver
// answered — every such put then waited for the daemon's thread to be scheduled.
TEST(TwoSidedPutTest, CompletesWithoutTheReceiverProgressing) {
  UcxOptions ucx;
  ucx.transports = "tcp";
  ucx.messages = true;
  auto context = UcxContext::Create(ucx);
  ASSERT_TRUE(context.ok()) << context.status().ToString();
  auto receiver = UcxWorker::Create(*context);
  ASSERT_TRUE(receiver.ok()) << receiver.status().ToString();
  std::atomic<bool> pause{false};
  auto progress = [&] {
    while (!pause.load()) {
      if ((*receiver)->Progress() == 0) std::this_thread::yield();
    }
  };
  TransferEngineOptions options;
  options.ucx.transports = "tcp";
  options.workers = 1;
  options.timeout_ms = 5'000;
  auto engine = TransferEngine::Create(options);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  RemoteTarget target{"unused", "unused", 0, 0, Protocol::kTwoSided, (*receiver)->address()};

  // Connect while the receiver progresses (the endpoint's handshake needs it), with a tiny put.
  std::thread helper(progress);
  uint64_t hello = 42;
  TransferOp first{OpKind::kPut, &hello, sizeof(hello), 1, {}};
  first.tag = 1;
  const Status connected = (*engine)->Run(target, std::span(&first, 1));
  pause.store(true);
  helper.join();
  ASSERT_TRUE(connected.ok()) << connected.ToString();
  ASSERT_TRUE(first.status.ok()) << first.status.ToString();

  // The receiver is not progressed now: 32 KiB (above the 8 KiB rendezvous threshold, within the
  // loopback socket buffers) must still complete at the sender.
  std::vector<std::byte> block(32 << 10);
  Fill(block.data(), block.size(), 7);
  TransferOp put{OpKind::kPut, block.data(), block.size(), 1, {}};
  put.tag = 2;
  ASSERT_TRUE((*engine)->Run(target, std::span(&put, 1)).ok());
  EXPECT_TRUE(put.status.ok()) << put.status.ToString();

  // And the bytes are all there once the receiver asks for them.
  std::vector<std::byte> got(block.size());
  ucp_request_param_t param{};
  ucs_status_ptr_t r = ucp_tag_recv_nbx((*receiver)->handle(), got.data(), got.size(), 2, ~uint64_t{0}, &param);
  ASSERT_FALSE(UCS_PTR_IS_ERR(r));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (r != nullptr && ucp_request_check_status(r) == UCS_INPROGRESS && std::chrono::steady_clock::now() < deadline) {
    (*receiver)->Progress();
  }
  if (r != nullptr) {
    EXPECT_EQ(ucp_request_check_status(r), UCS_OK);
    ucp_request_free(r);
  }
  EXPECT_EQ(std::memcmp(got.data(), block.data(), block.size()), 0);
  engine->reset();
}

// UCX 1.13 (Debian 12, what kvstash is built against) takes any name into its TLS setting but
// refuses, at ucp_init, a list with no usable transport ("no usable transports/devices"): the context
// must fail as UNAVAILABLE and name the list it was given, never come up with some fallback.
TEST(UcxContextTest, UnknownTransportListIsAClearError) {
  UcxOptions options;
  options.transports = "no_such_transport";
  auto context = UcxContext::Create(options);
  ASSERT_FALSE(context.ok()) << "UCX accepted the transport list 'no_such_transport'";
  EXPECT_EQ(context.status().code(), StatusCode::kUnavailable) << context.status().ToString();
  EXPECT_NE(context.status().message().find("transports 'no_such_transport'"), std::string::npos)
      << context.status().ToString();
  EXPECT_NE(context.status().message().find("UCX"), std::string::npos) << context.status().ToString();
}

}  // namespace
}  // namespace kvstash::transfer
