// A block corrupted in the daemon's memory under a reader must read as a miss, never as bytes.
// The test attaches the daemon's arena (its System V segment, found in /proc/sysvipc/shm by the
// daemon's pid, as ucx_listen_test does), finds the block's bytes in it and flips one byte.
//
// One-sided (same host): nothing but the SDK's checksum compare stands between the reader and the
// bytes, which is proven by reading the same corrupt block with verify_checksums off (the corrupt
// bytes come back) and on (DATA_LOSS, not found): deleting the compare makes this test fail.
// Two-sided and inline: the daemon hashes a block before it sends it, so the corruption is caught
// there even with the SDK's compare off; those cases prove the reader still gets a miss.
#include <gtest/gtest.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "kvstash/client.h"
#include "tests/support/block_bytes.h"
#include "tests/support/daemon_process.h"

namespace kvstash {
namespace {

using testing::BytesFor;
using testing::DaemonProcess;

constexpr size_t kBlockBytes = 256 * 1024;
constexpr unsigned long long kArenaBytes = 64ULL << 20;

// The shmid of the System V segment of at least `bytes` that process `pid` created; -1 if none.
int ArenaShmid(pid_t pid, unsigned long long bytes) {
  std::ifstream in("/proc/sysvipc/shm");
  std::string line;
  std::getline(in, line);  // header: key shmid perms size cpid ...
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    long long key = 0;
    int shmid = 0;
    std::string perms;
    unsigned long long size = 0;
    pid_t cpid = 0;
    if (!(fields >> key >> shmid >> perms >> size >> cpid)) continue;
    if (cpid == pid && size >= bytes) return shmid;
  }
  return -1;
}

// The daemon's arena, attached read-write into this process.
class AttachedArena {
 public:
  AttachedArena(pid_t daemon, unsigned long long bytes) {
    const int shmid = ArenaShmid(daemon, bytes);
    if (shmid < 0) {
      error_ = "no System V segment of " + std::to_string(bytes) + " bytes created by pid " + std::to_string(daemon);
      return;
    }
    struct shmid_ds ds {};
    if (::shmctl(shmid, IPC_STAT, &ds) != 0) {
      error_ = "shmctl: " + std::string(std::strerror(errno));
      return;
    }
    void* at = ::shmat(shmid, nullptr, 0);
    if (at == reinterpret_cast<void*>(-1)) {
      error_ = "shmat: " + std::string(std::strerror(errno));
      return;
    }
    base_ = static_cast<std::byte*>(at);
    size_ = ds.shm_segsz;
  }
  ~AttachedArena() {
    if (base_ != nullptr) ::shmdt(base_);
  }
  const std::string& error() const { return error_; }

  // Flips one byte in the middle of the only copy of `bytes` in the arena; false when there is not
  // exactly one copy.
  bool CorruptOnlyCopyOf(const std::vector<std::byte>& bytes, std::string* why) {
    std::byte* found = nullptr;
    int copies = 0;
    for (size_t at = 0; at + bytes.size() <= size_; at += 4096) {  // blocks start on a page
      if (std::memcmp(base_ + at, bytes.data(), bytes.size()) == 0) {
        found = base_ + at;
        ++copies;
      }
    }
    if (copies != 1) {
      *why = std::to_string(copies) + " copies of the block in the arena";
      return false;
    }
    found[bytes.size() / 2] ^= std::byte{0x5a};
    return true;
  }

 private:
  std::byte* base_ = nullptr;
  size_t size_ = 0;
  std::string error_;
};

class ReaderChecksumTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<DaemonProcess>(
        KVSTASHD_PATH, std::vector<std::string>{"--dram-capacity", "64MiB", "--ucx-transports", "posix,sysv,cma,tcp"});
    ASSERT_TRUE(daemon_->ok()) << daemon_->error();
  }
  void TearDown() override {
    if (daemon_ && daemon_->pid() > 0) {
      EXPECT_EQ(daemon_->Stop(), 0);
    }
  }

  std::unique_ptr<Client> Connect(DataPath path, UcxProtocol protocol, const std::string& transports,
                                  bool verify) {
    ClientOptions options;
    options.address = daemon_->grpc_address();
    options.data_path = path;
    options.ucx_protocol = protocol;
    options.ucx_transports = transports;
    options.verify_checksums = verify;
    auto client = Client::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    return client.ok() ? std::move(*client) : nullptr;
  }

  // Stores `key` through `writer` (eagerly: request and bytes in one message, where the two-sided
  // protocol is in use), checks it reads back intact, then corrupts it in the arena.
  void PutAndCorrupt(Client& writer, const BlockKey& key, bool eager = false) {
    const std::vector<std::byte> data = BytesFor(key, kBlockBytes);
    PutItem item{key, std::nullopt, data};
    PutOptions options;
    options.eager = eager;
    auto put = writer.Put(std::span(&item, 1), options);
    ASSERT_TRUE(put.ok()) << put.status().ToString();
    ASSERT_EQ(put->stored, 1u);
    GetItem get = Read(writer, key);
    ASSERT_TRUE(get.found) << get.status.ToString();
    ASSERT_EQ(back_, data);
    AttachedArena arena(daemon_->pid(), kArenaBytes);
    ASSERT_TRUE(arena.error().empty()) << arena.error();
    std::string why;
    ASSERT_TRUE(arena.CorruptOnlyCopyOf(data, &why)) << why;
  }

  GetItem Read(Client& reader, const BlockKey& key) {
    back_.assign(kBlockBytes, std::byte{0});
    GetItem item;
    item.key = key;
    item.buffer = back_;
    const Status st = reader.Get(std::span(&item, 1));
    EXPECT_TRUE(st.ok()) << st.ToString();
    return item;
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::vector<std::byte> back_;
};

TEST_F(ReaderChecksumTest, OneSidedReaderMissesACorruptBlockOnlyThroughItsOwnCompare) {
  auto checked = Connect(DataPath::kUcx, UcxProtocol::kOneSided, "posix,sysv,cma", true);
  auto unchecked = Connect(DataPath::kUcx, UcxProtocol::kOneSided, "posix,sysv,cma", false);
  ASSERT_TRUE(checked && unchecked);
  ASSERT_NE(checked->data_path().find("one-sided"), std::string::npos) << checked->data_path();
  const BlockKey key = BlockKey::FromParts(0xC0FFEE, 1);
  ASSERT_NO_FATAL_FAILURE(PutAndCorrupt(*checked, key));
  // Without the compare the corrupt bytes are handed over: nothing else on this path checks them.
  GetItem raw = Read(*unchecked, key);
  ASSERT_TRUE(raw.found) << raw.status.ToString();
  EXPECT_NE(back_, BytesFor(key, kBlockBytes));
  // With it, a miss that says why.
  GetItem got = Read(*checked, key);
  EXPECT_FALSE(got.found);
  EXPECT_EQ(got.status.code(), StatusCode::kDataLoss) << got.status.ToString();
  EXPECT_NE(got.status.message().find("checksum"), std::string::npos) << got.status.ToString();
}

TEST_F(ReaderChecksumTest, TwoSidedReaderMissesACorruptBlock) {
  auto writer = Connect(DataPath::kUcx, UcxProtocol::kTwoSided, "tcp", true);
  auto unchecked = Connect(DataPath::kUcx, UcxProtocol::kTwoSided, "tcp", false);
  ASSERT_TRUE(writer && unchecked);
  ASSERT_NE(writer->data_path().find("two-sided"), std::string::npos) << writer->data_path();
  // One block put two-phase, one put eagerly (committed on arrival).
  for (const bool eager : {false, true}) {
    SCOPED_TRACE(eager ? "eager put" : "two-phase put");
    const BlockKey key = BlockKey::FromParts(0xC0FFEE, eager ? 4 : 2);
    ASSERT_NO_FATAL_FAILURE(PutAndCorrupt(*writer, key, eager));
    for (Client* reader : {writer.get(), unchecked.get()}) {
      GetItem got = Read(*reader, key);
      EXPECT_FALSE(got.found) << "corrupt bytes were read as the block";
      EXPECT_NE(got.status.code(), StatusCode::kOk);
    }
  }
}

TEST_F(ReaderChecksumTest, InlineReaderMissesACorruptBlock) {
  auto writer = Connect(DataPath::kInline, UcxProtocol::kAuto, "", true);
  auto unchecked = Connect(DataPath::kInline, UcxProtocol::kAuto, "", false);
  ASSERT_TRUE(writer && unchecked);
  ASSERT_EQ(writer->data_path(), "inline");
  const BlockKey key = BlockKey::FromParts(0xC0FFEE, 3);
  ASSERT_NO_FATAL_FAILURE(PutAndCorrupt(*writer, key));
  for (Client* reader : {writer.get(), unchecked.get()}) {
    GetItem got = Read(*reader, key);
    EXPECT_FALSE(got.found) << "corrupt bytes were read as the block";
    EXPECT_NE(got.status.code(), StatusCode::kOk);
  }
}

}  // namespace
}  // namespace kvstash
