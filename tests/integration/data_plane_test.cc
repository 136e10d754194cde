// The one-sided UCX data plane end to end: real kvstashd processes on run-time ports, the SDK
// over shared memory and over tcp, failures of writers and of the daemon.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "kvstash/client.h"
#include "tests/support/block_bytes.h"
#include "tests/support/daemon_process.h"

extern char** environ;

namespace kvstash {
namespace {

using testing::DaemonProcess;

using testing::BytesFor;

std::unique_ptr<Client> ConnectUcx(const std::string& address, const std::string& transports) {
  ClientOptions options;
  options.address = address;
  options.data_path = DataPath::kUcx;
  options.ucx_transports = transports;
  auto client = Client::Connect(options);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? std::move(*client) : nullptr;
}

// Puts `keys` with sizes `sizes`, then gets them all back and compares; returns failures.
std::vector<std::string> RoundTrip(Client& client, const std::vector<BlockKey>& keys, const std::vector<size_t>& sizes,
                                   size_t batch) {
  std::vector<std::string> failures;
  for (size_t begin = 0; begin < keys.size(); begin += batch) {
    const size_t end = std::min(keys.size(), begin + batch);
    std::vector<std::vector<std::byte>> data;
    std::vector<PutItem> items;
    for (size_t i = begin; i < end; ++i) data.push_back(BytesFor(keys[i], sizes[i]));
    for (size_t i = begin; i < end; ++i) items.push_back({keys[i], std::nullopt, data[i - begin]});
    auto put = client.Put(items);
    if (!put.ok()) failures.push_back("put: " + put.status().ToString());
    else if (put->stored != end - begin) failures.push_back("put stored " + std::to_string(put->stored));

    std::vector<std::vector<std::byte>> back;
    std::vector<GetItem> gets(end - begin);
    for (size_t i = begin; i < end; ++i) back.emplace_back(sizes[i]);
    for (size_t i = begin; i < end; ++i) {
      gets[i - begin].key = keys[i];
      gets[i - begin].buffer = back[i - begin];
    }
    if (Status st = client.Get(gets); !st.ok()) failures.push_back("get: " + st.ToString());
    for (size_t i = begin; i < end; ++i) {
      const GetItem& g = gets[i - begin];
      if (!g.found) failures.push_back("miss: " + g.status.ToString());
      else if (g.size != sizes[i] || std::memcmp(back[i - begin].data(), data[i - begin].data(), sizes[i]) != 0)
        failures.push_back("bytes differ for block " + std::to_string(i));
    }
  }
  return failures;
}

class DataPlaneTest : public ::testing::TestWithParam<std::string> {
 protected:
  void Start(const std::string& capacity = "512MiB") {
    std::vector<std::string> args = {"--dram-capacity", capacity, "--ucx-transports", GetParam()};
    daemon_ = std::make_unique<DaemonProcess>(KVSTASHD_PATH, args);
    ASSERT_TRUE(daemon_->ok()) << daemon_->error();
  }
  void TearDown() override {
    if (daemon_ && daemon_->pid() > 0) {
      EXPECT_EQ(daemon_->Stop(), 0);
    }
  }
  std::unique_ptr<DaemonProcess> daemon_;
};

TEST_P(DataPlaneTest, EightClientsThousandMixedBlocksByteExactBothWays) {
  Start();
  constexpr int kClients = 8;
  constexpr size_t kBlocks = 1000;
  std::mutex mu;
  std::vector<std::string> failures;
  std::atomic<uint64_t> bytes{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      auto client = ConnectUcx(daemon_->grpc_address(), GetParam());
      if (!client) return;
      EXPECT_EQ(client->data_path().rfind("ucx", 0), 0u) << client->data_path();
      std::mt19937_64 rng(static_cast<uint64_t>(c) + 1);
      std::vector<BlockKey> keys;
      std::vector<size_t> sizes;
      for (size_t i = 0; i < kBlocks; ++i) {
        keys.push_back(BlockKey::FromParts(static_cast<uint64_t>(c) + 1, i));
        sizes.push_back(1 + rng() % (64 * 1024));
        bytes += sizes.back();
      }
      auto f = RoundTrip(*client, keys, sizes, 50);
      std::lock_guard lock(mu);
      failures.insert(failures.end(), f.begin(), f.end());
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(failures.empty()) << failures.size() << " failures; first: " << failures.front();
  auto admin = ConnectUcx(daemon_->grpc_address(), GetParam());
  ASSERT_TRUE(admin);
  auto stats = admin->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->tiers[0].blocks, kClients * kBlocks);
  // Every byte came over UCX — one-sided over shm, two-sided over tcp (the protocol auto picks);
  // none inside an RPC.
  const bool two_sided = admin->data_path().find("two-sided") != std::string::npos;
  EXPECT_EQ(two_sided ? stats->put_bytes_two_sided : stats->put_bytes_one_sided, bytes.load());
  EXPECT_EQ(stats->put_bytes_one_sided + stats->put_bytes_two_sided, bytes.load());
  EXPECT_EQ(stats->put_bytes_inline, 0u);
}

TEST_P(DataPlaneTest, SecondPutOfTheSameKeysTransfersNothing) {
  Start();
  auto client = ConnectUcx(daemon_->grpc_address(), GetParam());
  ASSERT_TRUE(client);
  std::vector<BlockKey> keys;
  std::vector<size_t> sizes;
  for (uint64_t i = 0; i < 100; ++i) {
    keys.push_back(BlockKey::FromParts(77, i));
    sizes.push_back(32 * 1024);
  }
  ASSERT_TRUE(RoundTrip(*client, keys, sizes, 100).empty());
  auto ucx_bytes = [&] {
    const auto stats = client->Stats();
    return stats->put_bytes_one_sided + stats->put_bytes_two_sided;
  };
  const uint64_t before = ucx_bytes();
  EXPECT_EQ(before, 100u * 32 * 1024);
  std::vector<std::vector<std::byte>> data;
  std::vector<PutItem> items;
  for (const auto& k : keys) data.push_back(BytesFor(k, 32 * 1024));
  for (size_t i = 0; i < keys.size(); ++i) items.push_back({keys[i], std::nullopt, data[i]});
  auto again = client->Put(items);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->existed, keys.size());
  EXPECT_EQ(ucx_bytes(), before);
}

TEST_P(DataPlaneTest, LeasedBlocksSurvivePressureUntilReleased) {
  Start("16MiB");
  auto client = ConnectUcx(daemon_->grpc_address(), GetParam());
  ASSERT_TRUE(client);
  constexpr size_t kBlock = 256 * 1024;
  std::vector<BlockKey> chain;
  std::vector<std::vector<std::byte>> data;
  for (uint64_t i = 0; i < 8; ++i) {
    chain.push_back(BlockKey::FromParts(5, i));
    data.push_back(BytesFor(chain.back(), kBlock));
  }
  std::vector<std::span<const std::byte>> spans(data.begin(), data.end());
  ASSERT_TRUE(client->PutChain(chain, spans).ok());
  auto leased = client->Lookup(chain, 60'000);
  ASSERT_TRUE(leased.ok());
  ASSERT_EQ(leased->hit_blocks, chain.size());
  for (uint64_t c = 0; c < 32; ++c) {  // 64 MiB through a 16 MiB tier
    std::vector<BlockKey> other;
    std::vector<std::vector<std::byte>> od;
    for (uint64_t i = 0; i < 8; ++i) {
      other.push_back(BlockKey::FromParts(100 + c, i));
      od.push_back(BytesFor(other.back(), kBlock));
    }
    std::vector<std::span<const std::byte>> os(od.begin(), od.end());
    ASSERT_TRUE(client->PutChain(other, os).ok());
  }
  // Read the leased blocks straight from their located addresses: no locate round trip.
  std::vector<std::vector<std::byte>> back(chain.size(), std::vector<std::byte>(kBlock));
  std::vector<GetItem> gets(chain.size());
  for (size_t i = 0; i < chain.size(); ++i) {
    gets[i].key = chain[i];
    gets[i].buffer = back[i];
    gets[i].located = &leased->blocks[i];
  }
  ASSERT_TRUE(client->Get(gets).ok());
  for (size_t i = 0; i < chain.size(); ++i) {
    ASSERT_TRUE(gets[i].found) << gets[i].status.ToString();
    EXPECT_EQ(0, std::memcmp(back[i].data(), data[i].data(), kBlock));
  }
  EXPECT_EQ(client->Remove(std::span(chain).subspan(0, 1)).status().code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(client->ReleaseLeases(leased->blocks).ok());
  auto removed = client->Remove(std::span(chain).subspan(0, 1));
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_EQ((*removed)[0], RemoveOutcome::kRemoved);
}

INSTANTIATE_TEST_SUITE_P(Transports, DataPlaneTest, ::testing::Values("posix,sysv,cma,self", "tcp"),
                         [](const auto& info) { return info.param == "tcp" ? std::string("tcp") : std::string("shm"); });

// Runs the abandon-put helper; returns its pid after it reported its reservation.
pid_t StartAbandonedWriter(const std::string& address, const BlockKey& key, int* stdin_fd) {
  int out[2], in[2];
  if (pipe(out) != 0 || pipe(in) != 0) return -1;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
  std::string bin = ABANDON_PUT_PATH, hex = key.ToHex(), size = "1048576";
  std::string addr = address;
  char* argv[] = {bin.data(), addr.data(), hex.data(), size.data(), nullptr};
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, bin.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  close(in[0]);
  *stdin_fd = in[1];
  if (rc != 0) return -1;
  char line[64] = {};
  const ssize_t n = read(out[0], line, sizeof(line) - 1);  // blocks until "reserved <id>"
  close(out[0]);
  if (n <= 0 || std::string(line).rfind("reserved ", 0) != 0) return -1;
  return pid;
}

TEST(DataPlaneFailureTest, KilledWriterLeavesNoBlockAndItsReservationIsReclaimed) {
  DaemonProcess daemon(KVSTASHD_PATH, {"--reservation-timeout-ms", "300"});
  ASSERT_TRUE(daemon.ok()) << daemon.error();
  const BlockKey key = BlockKey::FromParts(0xDEAD, 1);
  int writer_stdin = -1;
  const pid_t writer = StartAbandonedWriter(daemon.grpc_address(), key, &writer_stdin);
  ASSERT_GT(writer, 0);
  kill(writer, SIGKILL);
  waitpid(writer, nullptr, 0);
  close(writer_stdin);

  ClientOptions options;
  options.address = daemon.grpc_address();
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok());
  const BlockKey keys[] = {key};
  auto stat = (*client)->Stat(keys);
  ASSERT_TRUE(stat.ok());
  EXPECT_FALSE((*stat)[0].has_value()) << "a half-written block is visible";
  EXPECT_EQ((*client)->Lookup(keys)->hit_blocks, 0u);
  // The reservation is reclaimed by the daemon's reaper once its deadline passes (300 ms here).
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  uint64_t open = 1;
  while (std::chrono::steady_clock::now() < give_up && (open = (*client)->Stats()->reservations_open) != 0) {
    std::this_thread::yield();
  }
  EXPECT_EQ(open, 0u);
  // The key is free again: a complete put of it stores and reads back.
  auto data = BytesFor(key, 1 << 20);
  PutItem item{key, std::nullopt, data};
  auto put = (*client)->Put(std::span(&item, 1));
  ASSERT_TRUE(put.ok());
  EXPECT_EQ(put->stored, 1u);
  std::vector<std::byte> back(1 << 20);
  GetItem get;
  get.key = key;
  get.buffer = back;
  ASSERT_TRUE((*client)->Get(std::span(&get, 1)).ok());
  ASSERT_TRUE(get.found);
  EXPECT_EQ(0, std::memcmp(back.data(), data.data(), data.size()));
  EXPECT_EQ(daemon.Stop(), 0);
}

TEST(DataPlaneFailureTest, DaemonRestartedUnderAClientGivesMissesThenWorksAgain) {
  auto daemon = std::make_unique<DaemonProcess>(KVSTASHD_PATH, std::vector<std::string>{});
  ASSERT_TRUE(daemon->ok()) << daemon->error();
  const std::string address = daemon->grpc_address();
  ClientOptions options;
  options.address = address;
  options.data_path = DataPath::kUcx;
  options.timeout_ms = 5'000;
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  std::vector<BlockKey> keys;
  std::vector<size_t> sizes;
  for (uint64_t i = 0; i < 20; ++i) {
    keys.push_back(BlockKey::FromParts(42, i));
    sizes.push_back(16 * 1024);
  }
  ASSERT_TRUE(RoundTrip(**client, keys, sizes, 20).empty());

  kill(daemon->pid(), SIGKILL);
  daemon.reset();
  // While it is down: an error from the call, not a crash and not bytes.
  std::vector<std::byte> buffer(16 * 1024);
  GetItem item;
  item.key = keys[0];
  item.buffer = buffer;
  const Status down = (*client)->Get(std::span(&item, 1));
  EXPECT_FALSE(down.ok() && item.found);

  // Same address, new incarnation: the old blocks are misses, new puts and gets work.
  auto reborn = std::make_unique<DaemonProcess>(
      KVSTASHD_PATH, std::vector<std::string>{"--listen", address});
  ASSERT_TRUE(reborn->ok()) << reborn->error();
  ASSERT_EQ(reborn->grpc_address(), address);
  std::vector<GetItem> gets(keys.size());
  std::vector<std::vector<std::byte>> back(keys.size(), std::vector<std::byte>(16 * 1024));
  for (size_t i = 0; i < keys.size(); ++i) {
    gets[i].key = keys[i];
    gets[i].buffer = back[i];
  }
  // The client's channel reconnects on its own (backoff at most 1 s); until then calls fail fast.
  Status st = (*client)->Get(gets);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!st.ok() && std::chrono::steady_clock::now() < give_up) {
    EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.ToString();
    std::this_thread::yield();
    st = (*client)->Get(gets);
  }
  ASSERT_TRUE(st.ok()) << st.ToString();
  for (const auto& g : gets) EXPECT_FALSE(g.found);
  std::vector<BlockKey> fresh;
  for (uint64_t i = 0; i < 20; ++i) fresh.push_back(BlockKey::FromParts(43, i));
  const auto failures = RoundTrip(**client, fresh, sizes, 20);
  EXPECT_TRUE(failures.empty()) << failures.front();
  EXPECT_EQ(reborn->Stop(), 0);
}

TEST(DataPlaneFailureTest, UcxUnavailableOrMisconfiguredIsAClearErrorAtConnect) {
  DaemonProcess inline_only(KVSTASHD_PATH, {"--no-ucx"});
  ASSERT_TRUE(inline_only.ok()) << inline_only.error();
  ClientOptions options;
  options.address = inline_only.grpc_address();
  options.data_path = DataPath::kUcx;
  auto refused = Client::Connect(options);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(refused.status().message().find("UCX"), std::string::npos) << refused.status().message();

  options.data_path = DataPath::kAuto;  // falls back to inline and still works
  auto fallback = Client::Connect(options);
  ASSERT_TRUE(fallback.ok()) << fallback.status().ToString();
  EXPECT_EQ((*fallback)->data_path(), "inline");
  std::vector<BlockKey> keys = {BlockKey::FromParts(9, 9)};
  std::vector<size_t> sizes = {5000};
  EXPECT_TRUE(RoundTrip(**fallback, keys, sizes, 1).empty());
  EXPECT_EQ(inline_only.Stop(), 0);

  DaemonProcess with_ucx(KVSTASHD_PATH, {});
  ASSERT_TRUE(with_ucx.ok()) << with_ucx.error();
  options.address = with_ucx.grpc_address();
  options.data_path = DataPath::kUcx;
  options.ucx_transports = "no_such_transport";
  auto misconfigured = Client::Connect(options);
  ASSERT_FALSE(misconfigured.ok());
  EXPECT_NE(misconfigured.status().message().find("UCX"), std::string::npos) << misconfigured.status().message();
  EXPECT_EQ(with_ucx.Stop(), 0);
}

}  // namespace
}  // namespace kvstash
