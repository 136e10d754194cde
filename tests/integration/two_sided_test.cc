// The two-sided ("daemon-pushed") UCX protocol end to end: real kvstashd processes on run-time
// ports, UCX over tcp (and shm for the selection rule), the SDK and the raw transfer engine.
#include <grpcpp/grpcpp.h>
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

#include "common/checksum.h"
#include "common/read_grant.h"
#include "kvstash/client.h"
#include "kvstash/v1/store.grpc.pb.h"
#include "tests/support/block_bytes.h"
#include "tests/support/daemon_process.h"
#include "tests/support/eventually.h"
#include "transfer/transfer_engine.h"

extern char** environ;

namespace kvstash {
namespace {

using testing::DaemonProcess;
using Steady = std::chrono::steady_clock;

using testing::BytesFor;

Result<std::unique_ptr<Client>> Connect(const std::string& address, const std::string& transports,
                                        UcxProtocol protocol = UcxProtocol::kAuto) {
  ClientOptions options;
  options.address = address;
  options.data_path = DataPath::kUcx;
  options.ucx_transports = transports;
  options.ucx_protocol = protocol;
  return Client::Connect(options);
}

std::unique_ptr<DaemonProcess> StartDaemon(const std::string& transports, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--dram-capacity", "512MiB", "--ucx-transports", transports};
  args.insert(args.end(), extra.begin(), extra.end());
  auto daemon = std::make_unique<DaemonProcess>(KVSTASHD_PATH, args);
  EXPECT_TRUE(daemon->ok()) << daemon->error();
  return daemon;
}

v1::DataPlaneResponse DataPlaneOf(const std::string& address) {
  auto stub = v1::Store::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  v1::DataPlaneResponse dp;
  EXPECT_TRUE(stub->DataPlane(&ctx, v1::DataPlaneRequest(), &dp).ok());
  return dp;
}

GetItem GetOf(const BlockKey& key, std::span<std::byte> buffer) {
  GetItem item;
  item.key = key;
  item.buffer = buffer;
  return item;
}

using testing::Eventually;

TEST(TwoSidedTest, ConcurrentClientsMixedSizesAreByteExactBothWays) {
  auto daemon = StartDaemon("tcp");
  ASSERT_TRUE(daemon->ok());
  constexpr int kClients = 4;
  constexpr size_t kBlocks = 48;
  std::mutex mu;
  std::vector<std::string> failures;
  std::atomic<uint64_t> bytes{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      auto client = Connect(daemon->grpc_address(), "tcp");
      if (!client.ok()) {
        std::lock_guard lock(mu);
        failures.push_back("connect: " + client.status().ToString());
        return;
      }
      if ((*client)->data_path().find("two-sided") == std::string::npos) {
        std::lock_guard lock(mu);
        failures.push_back("auto picked " + (*client)->data_path() + " over tcp");
      }
      std::mt19937_64 rng(static_cast<uint64_t>(c) + 11);
      // Mixed sizes: tiny, around UCX's eager/rendezvous switch, up to 3 MiB, and one block large
      // enough to be split across the client's workers.
      const size_t fixed[] = {1, 8185, 8192, 8193, 65536, 20u << 20};
      for (size_t begin = 0; begin < kBlocks; begin += 8) {
        std::vector<BlockKey> keys;
        std::vector<std::vector<std::byte>> data;
        std::vector<PutItem> items;
        for (size_t i = begin; i < begin + 8; ++i) {
          keys.push_back(BlockKey::FromParts(0x25'0000 + static_cast<uint64_t>(c), i));
          const size_t size = i < std::size(fixed) ? fixed[i] : 1 + rng() % (3u << 20);
          data.push_back(BytesFor(keys.back(), size));
          bytes += size;
        }
        for (size_t i = 0; i < keys.size(); ++i) items.push_back({keys[i], std::nullopt, data[i]});
        auto put = (*client)->Put(items);
        std::vector<std::vector<std::byte>> back;
        std::vector<GetItem> gets(keys.size());
        for (size_t i = 0; i < keys.size(); ++i) back.emplace_back(data[i].size());
        for (size_t i = 0; i < keys.size(); ++i) gets[i] = GetOf(keys[i], back[i]);
        const Status got = (*client)->Get(gets);
        std::lock_guard lock(mu);
        if (!put.ok() || put->stored != keys.size()) {
          failures.push_back("put: " + (put.ok() ? std::to_string(put->stored) : put.status().ToString()));
        }
        if (!got.ok()) failures.push_back("get: " + got.ToString());
        for (size_t i = 0; i < keys.size(); ++i) {
          if (!gets[i].found) failures.push_back("miss: " + gets[i].status.ToString());
          else if (gets[i].size != data[i].size() || back[i] != data[i]) failures.push_back("bytes differ");
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(failures.empty()) << failures.size() << " failures; first: " << failures.front();
  auto admin = Connect(daemon->grpc_address(), "tcp");
  ASSERT_TRUE(admin.ok());
  auto stats = (*admin)->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->tiers[0].blocks, kClients * kBlocks);
  // Every byte went both ways over the two-sided protocol, none one-sided or inline.
  EXPECT_EQ(stats->put_bytes_two_sided, bytes.load());
  EXPECT_EQ(stats->put_bytes_one_sided, 0u);
  EXPECT_EQ(stats->put_bytes_inline, 0u);
  EXPECT_GE(stats->get_bytes_two_sided, bytes.load());
  EXPECT_EQ(stats->two_sided_rejected, 0u);
  EXPECT_TRUE(Eventually([&] { return (*admin)->Stats()->two_sided_sends_in_flight == 0; }, std::chrono::seconds(10)));
  EXPECT_EQ(stats->two_sided_receives_open, 0u);
}

TEST(TwoSidedTest, AutoPicksTwoSidedForTcpOnlyAndOneSidedForSharedMemory) {
  {
    auto daemon = StartDaemon("tcp");
    ASSERT_TRUE(daemon->ok());
    auto client = Connect(daemon->grpc_address(), "tcp");
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    EXPECT_EQ((*client)->data_path(), "ucx (tcp, two-sided)");
    // An explicit one-sided choice cannot be honoured over tcp: the daemon's one-sided worker
    // speaks same-host shared memory only (transfer/transport_policy.h), so it is refused clearly.
    auto one = Connect(daemon->grpc_address(), "tcp", UcxProtocol::kOneSided);
    ASSERT_FALSE(one.ok());
    EXPECT_EQ(one.status().code(), StatusCode::kUnavailable) << one.status().ToString();
    const BlockKey key = BlockKey::FromParts(0x77, 1);
    const auto data = BytesFor(key, 100'000);
    PutItem item{key, std::nullopt, data};
    ASSERT_TRUE((*client)->Put(std::span(&item, 1)).ok());
    std::vector<std::byte> back(data.size());
    GetItem get = GetOf(key, back);
    ASSERT_TRUE((*client)->Get(std::span(&get, 1)).ok());
    EXPECT_TRUE(get.found);
    EXPECT_EQ(back, data);
  }
  {
    auto daemon = StartDaemon("posix,sysv,cma,self");
    ASSERT_TRUE(daemon->ok());
    auto client = Connect(daemon->grpc_address(), "posix,sysv,cma,self");
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    EXPECT_EQ((*client)->data_path(), "ucx (posix,sysv,cma,self, one-sided)");
  }
  {
    // A daemon that serves no two-sided transfers: auto follows it; asking for two-sided fails clearly.
    auto daemon = StartDaemon("posix,sysv,cma,tcp", {"--ucx-protocol", "one-sided"});
    ASSERT_TRUE(daemon->ok());
    auto client = Connect(daemon->grpc_address(), "posix,sysv,cma,tcp");
    ASSERT_TRUE(client.ok());
    EXPECT_EQ((*client)->data_path(), "ucx (posix,sysv,cma,tcp, one-sided)");
    // A tcp-only client has no way in: one-sided is same-host only, and two-sided is off.
    auto tcp_only = Connect(daemon->grpc_address(), "tcp");
    EXPECT_FALSE(tcp_only.ok());
    auto refused = Connect(daemon->grpc_address(), "posix,sysv,cma,tcp", UcxProtocol::kTwoSided);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(refused.status().message().find("two-sided"), std::string::npos) << refused.status().message();
  }
}

class TwoSidedRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = StartDaemon("tcp");
    ASSERT_TRUE(daemon_->ok());
    auto client = Connect(daemon_->grpc_address(), "tcp");
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    client_ = std::move(*client);
    const v1::DataPlaneResponse dp = DataPlaneOf(daemon_->grpc_address());
    ASSERT_TRUE(dp.two_sided());
    target_ = {dp.worker_address(), dp.rkey(), dp.probe_addr(), dp.region_bytes(), transfer::Protocol::kTwoSided,
               dp.push_worker_address()};
    transfer::TransferEngineOptions options;
    options.ucx.transports = "tcp";
    options.timeout_ms = 20'000;
    options.split_bytes = 0;  // one request per read, so the daemon counts one refusal per bad read
    auto engine = transfer::TransferEngine::Create(options);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine);
  }
  // One two-sided read through the raw engine; returns its status.
  Status Read(const transfer::RemoteTarget& target, std::byte* into, uint64_t addr, size_t length,
              const BlockKey& key, uint64_t epoch) {
    transfer::TransferOp op{transfer::OpKind::kGet, into, length, addr, {}};
    op.grant = EncodeReadGrant(key, epoch);
    const Status run = engine_->Run(target, std::span(&op, 1));
    return run.ok() ? op.status : run;
  }
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<transfer::TransferEngine> engine_;
  transfer::RemoteTarget target_;
};

TEST_F(TwoSidedRequestTest, BadReadRequestsAreRefusedAndChangeNothing) {
  const BlockKey a = BlockKey::FromParts(0xA, 1), b = BlockKey::FromParts(0xB, 2);
  const auto data_a = BytesFor(a, 1 << 20), data_b = BytesFor(b, 64 << 10);
  PutItem items[] = {{a, std::nullopt, data_a}, {b, std::nullopt, data_b}};
  ASSERT_EQ(client_->Put(items)->stored, 2u);
  const BlockKey chain_a[] = {a}, chain_b[] = {b};
  auto leased = client_->Lookup(chain_a, 10'000);
  ASSERT_TRUE(leased.ok() && leased->hit_blocks == 1);
  const BlockInfo info_a = leased->blocks[0];
  auto unleased = client_->Lookup(chain_b, 0);
  ASSERT_TRUE(unleased.ok() && unleased->hit_blocks == 1);
  const BlockInfo info_b = unleased->blocks[0];
  ASSERT_NE(info_a.lease_epoch, 0u);

  std::vector<std::byte> buf((1 << 20) + 8192);
  // Wrong lease: a block nobody leased, and a grant that claims no lease.
  EXPECT_EQ(Read(target_, buf.data(), info_b.remote_addr, info_b.size, b, 1).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(Read(target_, buf.data(), info_a.remote_addr, info_a.size, a, 0).code(), StatusCode::kFailedPrecondition);
  // A key that is not stored.
  EXPECT_EQ(Read(target_, buf.data(), info_a.remote_addr, 16, BlockKey::FromParts(0xC, 3), 1).code(),
            StatusCode::kNotFound);
  // Out of range: past the end of the leased block, and another block's bytes under A's lease.
  EXPECT_EQ(Read(target_, buf.data(), info_a.remote_addr, info_a.size + 4096, a, info_a.lease_epoch).code(),
            StatusCode::kOutOfRange);
  EXPECT_EQ(Read(target_, buf.data(), info_b.remote_addr, info_b.size, a, info_a.lease_epoch).code(),
            StatusCode::kOutOfRange);
  // Outside the registered memory, and larger than all of it: the daemon checks what the client
  // would (length 0 turns the client-side range check off, so the request reaches the daemon).
  transfer::RemoteTarget unchecked = target_;
  unchecked.length = 0;
  EXPECT_EQ(Read(unchecked, buf.data(), target_.base + target_.length, 64, a, info_a.lease_epoch).code(),
            StatusCode::kOutOfRange);
  std::vector<std::byte> huge(target_.length + 1);
  EXPECT_EQ(Read(unchecked, huge.data(), target_.base, huge.size(), a, info_a.lease_epoch).code(),
            StatusCode::kOutOfRange);

  // Nothing changed: the valid read works, both blocks are intact, no send is left behind.
  ASSERT_TRUE(Read(target_, buf.data(), info_a.remote_addr, info_a.size, a, info_a.lease_epoch).ok());
  EXPECT_EQ(std::memcmp(buf.data(), data_a.data(), data_a.size()), 0);
  // Half of the block (the range check is per byte, not per block).
  ASSERT_TRUE(Read(target_, buf.data(), info_a.remote_addr + 4096, 8192, a, info_a.lease_epoch).ok());
  EXPECT_EQ(std::memcmp(buf.data(), data_a.data() + 4096, 8192), 0);
  ASSERT_TRUE(client_->ReleaseLeases(leased->blocks).ok());
  auto stats = client_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->two_sided_rejected, 7u);
  EXPECT_EQ(stats->tiers[0].blocks, 2u);
  EXPECT_TRUE(Eventually([&] { return client_->Stats()->two_sided_sends_in_flight == 0; }, std::chrono::seconds(10)));
  std::vector<std::byte> back_a(data_a.size()), back_b(data_b.size());
  GetItem gets[] = {GetOf(a, back_a), GetOf(b, back_b)};
  ASSERT_TRUE(client_->Get(gets).ok());
  EXPECT_TRUE(gets[0].found && gets[1].found);
  EXPECT_EQ(back_a, data_a);
  EXPECT_EQ(back_b, data_b);
}

TEST_F(TwoSidedRequestTest, OversizePutIsRefusedAtCommitAndLeavesNothing) {
  auto stub = v1::Store::NewStub(grpc::CreateChannel(daemon_->grpc_address(), grpc::InsecureChannelCredentials()));
  const BlockKey key = BlockKey::FromParts(0xD, 4);
  v1::PutBeginRequest begin;
  begin.set_two_sided(true);
  auto* item = begin.add_items();
  item->set_key(std::string(key.AsBytes()));
  item->set_size(64 << 10);
  v1::PutBeginResponse begun;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->PutBegin(&ctx, begin, &begun).ok());
  }
  ASSERT_EQ(begun.results(0).outcome(), v1::PutBeginResult::RESERVED);
  ASSERT_NE(begun.results(0).push_tag(), 0u);
  EXPECT_EQ(client_->Stats()->two_sided_receives_open, 1u);
  // Twice the reserved size under the reservation's tag: UCX truncates, the commit refuses.
  const auto data = BytesFor(key, 128 << 10);
  transfer::TransferOp op{transfer::OpKind::kPut, const_cast<std::byte*>(data.data()), data.size(),
                          begun.results(0).remote_addr(), {}};
  op.tag = begun.results(0).push_tag();
  ASSERT_TRUE(engine_->Run(target_, std::span(&op, 1)).ok());
  v1::PutCommitRequest commit;
  auto* c = commit.add_items();
  c->set_reservation(begun.results(0).reservation());
  c->set_checksum(BlockChecksum(data.data(), 64 << 10));
  v1::PutCommitResponse committed;
  grpc::ClientContext ctx;
  const grpc::Status st = stub->PutCommit(&ctx, commit, &committed);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DATA_LOSS) << st.error_message();
  const BlockKey keys[] = {key};
  EXPECT_FALSE((*client_->Stat(keys))[0].has_value()) << "a refused put is visible";
  // The aborted reservation withdraws its receive.
  v1::PutAbortRequest abort;
  abort.add_reservations(begun.results(0).reservation());
  v1::PutAbortResponse aborted;
  grpc::ClientContext abort_ctx;
  ASSERT_TRUE(stub->PutAbort(&abort_ctx, abort, &aborted).ok());
  EXPECT_EQ(aborted.aborted(), 1u);
  EXPECT_EQ(client_->Stats()->two_sided_receives_open, 0u);
  // And the key can be put properly afterwards.
  const auto good = BytesFor(key, 64 << 10);
  PutItem again{key, std::nullopt, good};
  EXPECT_EQ(client_->Put(std::span(&again, 1))->stored, 1u);
}

std::string Hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

TEST(TwoSidedFailureTest, ReaderThatVanishesMidReceiveLeavesNoDaemonRequest) {
  auto daemon = StartDaemon("tcp", {"--ucx-send-timeout-ms", "2000"});
  ASSERT_TRUE(daemon->ok());
  auto client = Connect(daemon->grpc_address(), "tcp");
  ASSERT_TRUE(client.ok());
  const BlockKey key = BlockKey::FromParts(0xE, 5);
  const auto data = BytesFor(key, 16 << 20);
  PutItem item{key, std::nullopt, data};
  ASSERT_EQ((*client)->Put(std::span(&item, 1))->stored, 1u);
  const BlockKey chain[] = {key};
  auto located = (*client)->Lookup(chain, 30'000);
  ASSERT_TRUE(located.ok() && located->hit_blocks == 1);
  const BlockInfo& info = located->blocks[0];

  // A reader asks for the block and then stops receiving: the daemon's send is left in flight.
  int out[2], in[2];
  ASSERT_EQ(pipe(out), 0);
  ASSERT_EQ(pipe(in), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
  std::string bin = STALLED_READER_PATH, worker = Hex(DataPlaneOf(daemon->grpc_address()).push_worker_address()),
              hex = key.ToHex(), epoch = std::to_string(info.lease_epoch), addr = std::to_string(info.remote_addr),
              size = std::to_string(info.size);
  char* argv[] = {bin.data(), worker.data(), hex.data(), epoch.data(), addr.data(), size.data(), nullptr};
  pid_t pid = -1;
  ASSERT_EQ(posix_spawn(&pid, bin.c_str(), &actions, nullptr, argv, environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  close(in[0]);
  char line[32] = {};
  ASSERT_GT(read(out[0], line, sizeof(line) - 1), 0);  // blocks until "requested"
  close(out[0]);
  ASSERT_EQ(std::string(line).rfind("requested", 0), 0u) << line;
  EXPECT_TRUE(Eventually([&] { return (*client)->Stats()->two_sided_sends_in_flight == 1; }, std::chrono::seconds(20)))
      << "the stalled reader's send never started";

  // It vanishes mid-receive: the daemon ends the send (the endpoint fails, or the send timeout
  // closes it) and keeps serving everyone else.
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  close(in[1]);
  EXPECT_TRUE(Eventually([&] { return (*client)->Stats()->two_sided_sends_in_flight == 0; }, std::chrono::seconds(30)))
      << "a send to a dead reader is still in flight";
  ASSERT_TRUE((*client)->ReleaseLeases(located->blocks).ok());
  std::vector<std::byte> back(data.size());
  GetItem get = GetOf(key, back);
  ASSERT_TRUE((*client)->Get(std::span(&get, 1)).ok());
  EXPECT_TRUE(get.found) << get.status.ToString();
  EXPECT_EQ(back, data);
}

}  // namespace
}  // namespace kvstash
