// Gets into device memory (GetItem::memory, docs/GPU.md "GPU-direct"). Everywhere: a device buffer
// that cannot be served (Debian's UCX moves no CUDA memory; the inline path never can) fails with
// the reason and is never written, while host items of the same call are served. On a GPU host
// with the CUDA UCX of deploy/build-ucx-cuda.sh (the device cycle): HBM blocks reach device and
// pinned buffers straight from the daemon's GPU memory, byte-exact, with no DRAM copy, and DRAM
// blocks reach device buffers two-sided; with hbm.serving = staged they are staged as before.
#include <gtest/gtest.h>
#include <httplib.h>

#include <cstring>
#include <string>
#include <vector>

#include "kvstash/client.h"
#include "tests/support/block_bytes.h"
#include "tests/support/daemon_process.h"
#ifdef KVSTASH_HAVE_CUDA
#include "gpu/cuda_util.h"
#endif

namespace kvstash {
namespace {

using testing::BytesFor;
using testing::DaemonProcess;

BlockKey K(uint64_t i) { return BlockKey::FromParts(0xd1ec7, i); }

std::unique_ptr<Client> Connect(const DaemonProcess& daemon, DataPath path) {
  ClientOptions options;
  options.address = daemon.grpc_address();
  options.data_path = path;
  auto client = Client::Connect(options);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? std::move(*client) : nullptr;
}

void PutBlocks(Client& client, uint64_t first, uint64_t count, size_t bytes) {
  for (uint64_t i = first; i < first + count; ++i) {
    const std::vector<std::byte> data = BytesFor(K(i), bytes);
    PutItem item{K(i), std::nullopt, data};
    auto put = client.Put(std::span(&item, 1));
    ASSERT_TRUE(put.ok()) << put.status().ToString();
    ASSERT_EQ(put->stored, 1u);
  }
}

TEST(DeviceGetRefusal, AnUnservableDeviceBufferFailsWithTheReasonAndIsNeverWritten) {
  DaemonProcess daemon(KVSTASHD_PATH, {"--dram-capacity", "64MiB"});
  ASSERT_TRUE(daemon.ok()) << daemon.error();
  auto writer = Connect(daemon, DataPath::kAuto);
  ASSERT_TRUE(writer);
  PutBlocks(*writer, 1, 2, 64 << 10);
  auto stats = writer->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->hbm_serving, "") << "no HBM tier, nothing to say";
  for (DataPath path : {DataPath::kAuto, DataPath::kInline}) {
    auto reader = Connect(daemon, path);
    ASSERT_TRUE(reader);
    // Host memory labelled as device memory: were it written by the CPU or served inline, the
    // sentinel would change.
    std::vector<std::byte> host(64 << 10), fake_device(64 << 10, std::byte{0xEE});
    GetItem items[2];
    items[0].key = K(1);
    items[0].buffer = host;
    items[1].key = K(2);
    items[1].buffer = fake_device;
    items[1].memory = BufferMemory::kCudaDevice;
    ASSERT_TRUE(reader->Get(items).ok());
    EXPECT_TRUE(items[0].found) << items[0].status.ToString();
    EXPECT_TRUE(host == BytesFor(K(1), 64 << 10));
    if (path == DataPath::kAuto && items[1].found) {
      GTEST_SKIP() << "this client's UCX moves CUDA memory: the refusal does not apply";
    }
    EXPECT_FALSE(items[1].found);
    EXPECT_EQ(items[1].status.code(), StatusCode::kFailedPrecondition) << items[1].status.ToString();
    EXPECT_NE(items[1].status.message().find(path == DataPath::kInline ? "UCX data path" : "cannot move CUDA memory"),
              std::string::npos)
        << items[1].status.ToString();
    EXPECT_EQ(fake_device, std::vector<std::byte>(64 << 10, std::byte{0xEE})) << "a refused buffer was written";
    // Pinned host memory is host memory: served everywhere, byte-exact.
    std::vector<std::byte> pinned(64 << 10);
    GetItem as_pinned;
    as_pinned.key = K(2);
    as_pinned.buffer = pinned;
    as_pinned.memory = BufferMemory::kCudaPinned;
    ASSERT_TRUE(reader->Get(std::span(&as_pinned, 1)).ok());
    EXPECT_TRUE(as_pinned.found) << as_pinned.status.ToString();
    EXPECT_TRUE(pinned == BytesFor(K(2), 64 << 10));
  }
}

#ifdef KVSTASH_HAVE_CUDA

double Sample(const std::string& page, const std::string& series) {
  const size_t at = page.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(page.substr(at + series.size() + 2));
}

std::string Metrics(const DaemonProcess& daemon) {
  const std::string& addr = daemon.metrics_address();
  const size_t colon = addr.rfind(':');
  httplib::Client http(addr.substr(0, colon), std::stoi(addr.substr(colon + 1)));
  auto res = http.Get("/metrics");
  return res && res->status == 200 ? res->body : std::string();
}

class HbmDirectTest : public ::testing::Test {
 protected:
  // kvstashd with a 32 MiB HBM tier; skips without a GPU or without a UCX that moves CUDA memory.
  void StartOrSkip(std::vector<std::string> extra = {}) {
    if (gpu::ProbeDevices().count == 0) {
      GTEST_SKIP() << "no CUDA device";
    }
    std::vector<std::string> args{"--hbm-capacity", "32MiB", "--dram-capacity", "128MiB", "--eviction-policy", "lru"};
    args.insert(args.end(), extra.begin(), extra.end());
    daemon_ = std::make_unique<DaemonProcess>(KVSTASHD_PATH, args);
    ASSERT_TRUE(daemon_->ok()) << daemon_->error();
    client_ = Connect(*daemon_, DataPath::kUcx);
    ASSERT_TRUE(client_);
    auto stats = client_->Stats();
    ASSERT_TRUE(stats.ok());
    serving_ = stats->hbm_serving;
    if (extra.empty() && serving_.rfind("direct", 0) != 0) {
      GTEST_SKIP() << "the daemon stages HBM blocks here: " << serving_;
    }
  }
  void TearDown() override {
    client_.reset();
    if (daemon_ && daemon_->pid() > 0) {
      EXPECT_EQ(daemon_->Stop(), 0);
    }
  }

  // Gets K(first..first+count) into device buffers and checks every byte (copied back).
  void GetIntoDeviceAndCheck(uint64_t first, uint64_t count, size_t bytes) {
    std::vector<gpu::DeviceBuffer> buffers;
    std::vector<GetItem> items(count);
    for (uint64_t j = 0; j < count; ++j) {
      auto b = gpu::DeviceBuffer::Allocate(bytes);
      ASSERT_TRUE(b.ok()) << b.status().ToString();
      ASSERT_EQ(cudaMemset(b->data(), 0, bytes), cudaSuccess);
      items[j].key = K(first + j);
      items[j].buffer = std::span(b->data(), bytes);
      items[j].memory = BufferMemory::kCudaDevice;
      buffers.push_back(std::move(*b));
    }
    ASSERT_TRUE(client_->Get(items).ok());
    std::vector<std::byte> back(bytes);
    for (uint64_t j = 0; j < count; ++j) {
      ASSERT_TRUE(items[j].found) << "block " << first + j << ": " << items[j].status.ToString();
      ASSERT_EQ(items[j].size, bytes);
      ASSERT_EQ(cudaMemcpy(back.data(), buffers[j].data(), bytes, cudaMemcpyDeviceToHost), cudaSuccess);
      ASSERT_TRUE(back == BytesFor(K(first + j), bytes)) << "block " << first + j << " differs";
    }
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<Client> client_;
  std::string serving_;
};

TEST_F(HbmDirectTest, HbmBlocksReachDeviceAndPinnedBuffersStraightFromGpuMemory) {
  StartOrSkip();
  if (IsSkipped()) return;
  constexpr size_t kBytes = 1 << 20;
  PutBlocks(*client_, 1, 16, kBytes);  // 16 MiB: all of it in HBM
  GetIntoDeviceAndCheck(1, 16, kBytes);
  std::string page = Metrics(*daemon_);
  EXPECT_EQ(Sample(page, "kvstash_hbm_direct_leases_total"), 16.0);
  EXPECT_EQ(Sample(page, "kvstash_hbm_promotions_total{result=\"ok\"}"), 0.0) << "nothing was staged";
  // Pinned host memory, read in place as well.
  auto pinned = gpu::PinnedBuffer::Allocate(kBytes);
  ASSERT_TRUE(pinned.ok());
  GetItem item;
  item.key = K(3);
  item.buffer = std::span(pinned->data(), kBytes);
  item.memory = BufferMemory::kCudaPinned;
  ASSERT_TRUE(client_->Get(std::span(&item, 1)).ok());
  ASSERT_TRUE(item.found) << item.status.ToString();
  EXPECT_EQ(std::memcmp(pinned->data(), BytesFor(K(3), kBytes).data(), kBytes), 0);
  page = Metrics(*daemon_);
  EXPECT_EQ(Sample(page, "kvstash_hbm_direct_leases_total"), 17.0);
  // Host memory takes the staged path, as before.
  std::vector<std::byte> host(kBytes);
  GetItem staged;
  staged.key = K(4);
  staged.buffer = host;
  ASSERT_TRUE(client_->Get(std::span(&staged, 1)).ok());
  ASSERT_TRUE(staged.found) << staged.status.ToString();
  EXPECT_TRUE(host == BytesFor(K(4), kBytes));
  EXPECT_EQ(Sample(Metrics(*daemon_), "kvstash_hbm_promotions_total{result=\"ok\"}"), 1.0);
}

TEST_F(HbmDirectTest, BlocksDemotedToDramReachDeviceBuffersTwoSided) {
  StartOrSkip();
  if (IsSkipped()) return;
  constexpr size_t kBytes = 4 << 20;
  PutBlocks(*client_, 100, 16, kBytes);  // 64 MiB through 32 MiB of HBM: the oldest are in DRAM
  GetIntoDeviceAndCheck(100, 16, kBytes);
  const std::string page = Metrics(*daemon_);
  EXPECT_GT(Sample(page, "kvstash_hbm_direct_leases_total"), 0.0);
  EXPECT_LT(Sample(page, "kvstash_hbm_direct_leases_total"), 16.0) << "some blocks were read from DRAM";
}

TEST_F(HbmDirectTest, StagedServingKeepsDeviceReadersOnDram) {
  StartOrSkip({"--hbm-serving", "staged"});
  if (IsSkipped()) return;
  EXPECT_EQ(serving_, "staged: hbm.serving is staged");
  constexpr size_t kBytes = 1 << 20;
  PutBlocks(*client_, 200, 4, kBytes);
  GetIntoDeviceAndCheck(200, 4, kBytes);
  const std::string page = Metrics(*daemon_);
  EXPECT_EQ(Sample(page, "kvstash_hbm_direct_leases_total"), 0.0);
  EXPECT_EQ(Sample(page, "kvstash_hbm_promotions_total{result=\"ok\"}"), 4.0);
}

#endif  // KVSTASH_HAVE_CUDA

}  // namespace
}  // namespace kvstash
