// Eager puts (PutOptions::eager) and eager gets (Get by key, no locate RPC): request and bytes in
// one round over the two-sided UCX protocol, against real kvstashd processes on run-time ports with
// UCX over tcp. The SDK path, and hand-made requests (transfer/push_protocol.h) sent over a raw UCX
// worker to prove the daemon's checks.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <stdlib.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <thread>

#include "common/checksum.h"
#include "kvstash/client.h"
#include "kvstash/v1/store.grpc.pb.h"
#include "tests/support/block_bytes.h"
#include "tests/support/daemon_process.h"
#include "tests/support/eventually.h"
#include "tests/support/raw_push_sender.h"
#include "transfer/push_protocol.h"
#include "transfer/ucx_worker.h"

namespace kvstash {
namespace {

using testing::BytesFor;
using testing::DaemonProcess;
using Steady = std::chrono::steady_clock;

std::unique_ptr<DaemonProcess> StartDaemon(std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--dram-capacity", "512MiB", "--ucx-transports", "tcp"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto daemon = std::make_unique<DaemonProcess>(KVSTASHD_PATH, args);
  EXPECT_TRUE(daemon->ok()) << daemon->error();
  return daemon;
}

std::unique_ptr<Client> Connect(const std::string& address) {
  ClientOptions options;
  options.address = address;
  options.data_path = DataPath::kUcx;
  options.ucx_transports = "tcp";
  auto client = Client::Connect(options);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? std::move(*client) : nullptr;
}

using testing::Eventually;

// One block read back through the SDK: its bytes, or the miss / error status.
Result<std::vector<std::byte>> GetOne(Client& client, const BlockKey& key, size_t size) {
  std::vector<std::byte> back(size);
  GetItem get;
  get.key = key;
  get.buffer = back;
  KVSTASH_RETURN_IF_ERROR(client.Get(std::span(&get, 1)));
  if (!get.found) return get.status;
  return back;
}

// A daemon stopped while a tcp client is still connected, and idle, exits cleanly: the client's
// half-finished connection must not abort it on the way out (UCX 1.13 asserts when a worker is
// destroyed with a wireup reply pending; ucx_worker.cc).
TEST(EagerPutTest, DaemonStopsCleanlyUnderAnIdleConnectedClient) {
  auto daemon = StartDaemon();
  ASSERT_TRUE(daemon->ok());
  auto client = Connect(daemon->grpc_address());
  ASSERT_NE(client, nullptr);
  const BlockKey key = BlockKey::FromParts(0x1D1E, 1);
  const auto bytes = BytesFor(key, 64 << 10);
  PutItem item{key, std::nullopt, bytes};
  auto put = client->Put(std::span(&item, 1), PutOptions{.eager = true});
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  auto back = GetOne(*client, key, bytes.size());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, bytes);
  EXPECT_EQ(daemon->Stop(), 0) << "kvstashd did not stop cleanly with a client connected";
}

TEST(EagerPutTest, ConcurrentEagerPutsAreByteExactAndStoredOnce) {
  auto daemon = StartDaemon();
  ASSERT_TRUE(daemon->ok());
  constexpr int kClients = 4;
  constexpr uint64_t kBlocks = 160;
  constexpr uint64_t kPerCall = 8;
  const size_t sizes[] = {1, 4095, 64 << 10, 300'001, 1 << 20};
  auto key = [](int c, uint64_t i) { return BlockKey::FromParts(0xE0 + static_cast<uint64_t>(c), i + 1); };
  auto size_of = [&](int c, uint64_t i) { return sizes[(i + static_cast<uint64_t>(c)) % std::size(sizes)]; };
  auto put_all = [&](Client& client, int c, std::vector<PutOutcome>& outcomes) -> Status {
    for (uint64_t i = 0; i < kBlocks; i += kPerCall) {
      std::vector<std::vector<std::byte>> data;
      std::vector<PutItem> items;
      for (uint64_t j = i; j < i + kPerCall; ++j) data.push_back(BytesFor(key(c, j), size_of(c, j)));
      for (uint64_t j = i; j < i + kPerCall; ++j) {
        std::optional<BlockKey> parent;
        if (j > 0) parent = key(c, j - 1);
        items.push_back({key(c, j), parent, data[j - i]});
      }
      auto r = client.Put(items, PutOptions{.eager = true});
      if (!r.ok()) return r.status();
      outcomes.insert(outcomes.end(), r->outcomes.begin(), r->outcomes.end());
    }
    return Status::Ok();
  };

  std::vector<std::unique_ptr<Client>> clients;
  for (int c = 0; c < kClients; ++c) clients.push_back(Connect(daemon->grpc_address()));
  for (auto& client : clients) ASSERT_NE(client, nullptr);
  ASSERT_NE(clients[0]->data_path().find("two-sided"), std::string::npos) << clients[0]->data_path();
  std::vector<std::vector<PutOutcome>> first(kClients), second(kClients);
  std::vector<Status> errors(kClients);
  std::vector<uint64_t> mismatches(kClients, 0);
  {
    std::vector<std::thread> threads;
    for (int c = 0; c < kClients; ++c) {
      threads.emplace_back([&, c] {
        errors[c] = put_all(*clients[c], c, first[c]);
        if (!errors[c].ok()) return;
        for (uint64_t i = 0; i < kBlocks; ++i) {
          std::vector<std::byte> back(size_of(c, i));
          GetItem get;
          get.key = key(c, i);
          get.buffer = back;
          if (Status st = clients[c]->Get(std::span(&get, 1)); !st.ok() || !get.found) {
            errors[c] = st.ok() ? get.status : st;
            return;
          }
          if (back != BytesFor(key(c, i), back.size())) ++mismatches[c];
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  uint64_t total_bytes = 0;
  for (int c = 0; c < kClients; ++c) {
    ASSERT_TRUE(errors[c].ok()) << "client " << c << ": " << errors[c].ToString();
    EXPECT_EQ(mismatches[c], 0u) << "client " << c;
    ASSERT_EQ(first[c].size(), kBlocks);
    for (PutOutcome o : first[c]) EXPECT_EQ(o, PutOutcome::kStored);
    for (uint64_t i = 0; i < kBlocks; ++i) total_bytes += size_of(c, i);
  }
  auto before = clients[0]->Stats();
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->eager_puts_stored, kClients * kBlocks);
  EXPECT_EQ(before->put_bytes_two_sided, total_bytes);
  EXPECT_EQ(before->reservations_open, 0u);

  // The same keys again: stored once, answered "exists", and the chain's parents were kept.
  for (int c = 0; c < kClients; ++c) ASSERT_TRUE(put_all(*clients[c], c, second[c]).ok());
  for (int c = 0; c < kClients; ++c) {
    for (PutOutcome o : second[c]) EXPECT_EQ(o, PutOutcome::kExists);
  }
  auto after = clients[0]->Stats();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->put_bytes_two_sided, total_bytes) << "a duplicate was stored again";
  EXPECT_EQ(after->puts_deduplicated - before->puts_deduplicated, kClients * kBlocks);
  EXPECT_EQ(after->eager_puts_refused - before->eager_puts_refused, kClients * kBlocks);
  EXPECT_EQ(after->tiers[0].blocks, kClients * kBlocks);
  const BlockKey probe[] = {key(1, 5)};
  auto stat = clients[0]->Stat(probe);
  ASSERT_TRUE(stat.ok() && (*stat)[0].has_value());
  ASSERT_TRUE((*stat)[0]->parent.has_value());
  EXPECT_EQ(*(*stat)[0]->parent, key(1, 4));
  // The duplicates' bytes were received into nothing: no receive is left open.
  EXPECT_TRUE(Eventually([&] { return clients[0]->Stats()->two_sided_receives_open == 0; }, std::chrono::seconds(10)));
}

using testing::RawSender;

transfer::push::PutRequest RequestFor(const BlockKey& key, std::span<const std::byte> data, uint64_t tag) {
  transfer::push::PutRequest r;
  r.data_tag = tag;
  r.size = data.size();
  r.checksum = BlockChecksum(data.data(), data.size());
  std::memcpy(r.key, key.bytes().data(), sizeof(r.key));
  return r;
}

StatusCode CodeOf(const std::optional<transfer::push::PushAnswer>& answer) {
  return answer ? static_cast<StatusCode>(answer->code) : StatusCode::kUnknown;
}

class EagerPutRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = StartDaemon({"--reservation-timeout-ms", "1000"});
    ASSERT_TRUE(daemon_->ok());
    client_ = Connect(daemon_->grpc_address());
    ASSERT_NE(client_, nullptr);
    auto stub = v1::Store::NewStub(grpc::CreateChannel(daemon_->grpc_address(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    v1::DataPlaneResponse dp;
    ASSERT_TRUE(stub->DataPlane(&ctx, v1::DataPlaneRequest(), &dp).ok());
    ASSERT_TRUE(dp.two_sided());
    ASSERT_TRUE(dp.eager_requests());
    sender_ = std::make_unique<RawSender>(dp.push_worker_address());
    ASSERT_TRUE(sender_->ok());
  }
  bool Stored(const BlockKey& key) {
    const BlockKey keys[] = {key};
    auto stat = client_->Stat(keys);
    return stat.ok() && (*stat)[0].has_value();
  }
  // Every refused or failed put has given its room and its receive back.
  bool NothingLeftOpen() {
    return Eventually(
        [&] {
          auto s = client_->Stats();
          return s.ok() && s->reservations_open == 0 && s->two_sided_receives_open == 0;
        },
        std::chrono::seconds(10));
  }
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<RawSender> sender_;
};

TEST_F(EagerPutRequestTest, BadRequestsGetClearErrorsAndStoreNothing) {
  const BlockKey key = BlockKey::FromParts(0xBAD, 1);
  const auto data = BytesFor(key, 64 << 10);
  uint64_t tag = 0x5EED0000;

  auto bad_magic = RequestFor(key, data, ++tag);
  bad_magic.magic ^= 1;
  EXPECT_EQ(CodeOf(sender_->Send(&bad_magic, sizeof(bad_magic), tag, data)), StatusCode::kInvalidArgument);

  auto bad_flags = RequestFor(key, data, ++tag);
  bad_flags.flags = 0x80;
  EXPECT_EQ(CodeOf(sender_->Send(&bad_flags, sizeof(bad_flags), tag, data)), StatusCode::kInvalidArgument);
  auto both_advices = RequestFor(key, data, ++tag);
  both_advices.flags |= transfer::push::kPutAdviseLikely | transfer::push::kPutAdviseUnlikely;
  EXPECT_EQ(CodeOf(sender_->Send(&both_advices, sizeof(both_advices), tag, data)), StatusCode::kInvalidArgument);

  // Larger than the largest block (64 MiB), though it would fit the arena; and empty.
  auto too_big = RequestFor(key, data, ++tag);
  too_big.size = 100 << 20;
  EXPECT_EQ(CodeOf(sender_->Send(&too_big, sizeof(too_big), tag, data)), StatusCode::kInvalidArgument);
  auto empty = RequestFor(key, data, ++tag);
  empty.size = 0;
  EXPECT_EQ(CodeOf(sender_->Send(&empty, sizeof(empty), tag, data)), StatusCode::kInvalidArgument);

  // Bytes that do not match the announced checksum, or the announced size either way.
  auto wrong_sum = RequestFor(key, data, ++tag);
  wrong_sum.checksum ^= 1;
  EXPECT_EQ(CodeOf(sender_->Send(&wrong_sum, sizeof(wrong_sum), tag, data)), StatusCode::kDataLoss);
  auto announced_less = RequestFor(key, std::span(data).first(32 << 10), ++tag);
  EXPECT_EQ(CodeOf(sender_->Send(&announced_less, sizeof(announced_less), tag, data)), StatusCode::kDataLoss);
  auto announced_more = RequestFor(key, data, ++tag);
  announced_more.size = 128 << 10;
  EXPECT_EQ(CodeOf(sender_->Send(&announced_more, sizeof(announced_more), tag, data)), StatusCode::kDataLoss);

  // A request of the wrong length is not one: dropped unanswered, and counted.
  const uint64_t rejected_before = client_->Stats()->two_sided_rejected;
  auto ok_header = RequestFor(key, data, ++tag);
  (void)sender_->Send(&ok_header, sizeof(ok_header) - 8, tag, {}, /*wait_for_answer=*/false);
  EXPECT_TRUE(Eventually([&] { return client_->Stats()->two_sided_rejected == rejected_before + 1; },
                         std::chrono::seconds(10)));

  EXPECT_FALSE(Stored(key)) << "a refused eager put is visible";
  EXPECT_TRUE(NothingLeftOpen());
  auto stats = client_->Stats();
  EXPECT_EQ(stats->tiers[0].blocks, 0u);
  EXPECT_EQ(stats->eager_puts_stored, 0u);
  EXPECT_EQ(stats->eager_puts_refused, 5u);  // magic, flags, both advices, too big, empty
  EXPECT_EQ(stats->eager_puts_failed, 3u);

  // The connection still works, and a well-formed request stores the block byte for byte.
  auto good = RequestFor(key, data, ++tag);
  EXPECT_EQ(CodeOf(sender_->Send(&good, sizeof(good), tag, data)), StatusCode::kOk);
  auto back = GetOne(*client_, key, data.size());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, data);
}

TEST_F(EagerPutRequestTest, RequestWhoseBytesNeverComeIsReclaimed) {
  const BlockKey key = BlockKey::FromParts(0xAB, 2);
  const auto data = BytesFor(key, 256 << 10);
  auto header = RequestFor(key, data, 0xFEED);
  (void)sender_->Send(&header, sizeof(header), 0xFEED, {}, /*wait_for_answer=*/false);
  // The daemon reserved room and posted the receive; the bytes never come.
  ASSERT_TRUE(Eventually([&] { return client_->Stats()->two_sided_receives_open == 1; }, std::chrono::seconds(10)));
  EXPECT_EQ(client_->Stats()->reservations_open, 1u);
  // Another writer of the key is told "busy" meanwhile, not given a second room.
  PutItem item{key, std::nullopt, data};
  auto busy = client_->Put(std::span(&item, 1), PutOptions{.eager = true});
  ASSERT_TRUE(busy.ok()) << busy.status().ToString();
  EXPECT_EQ(busy->outcomes[0], PutOutcome::kBusy);
  // After the reservation timeout (1 s here) the receive is withdrawn and the room given back.
  EXPECT_TRUE(NothingLeftOpen());
  EXPECT_FALSE(Stored(key));
  EXPECT_EQ(client_->Stats()->eager_puts_failed, 1u);
  auto stored = client_->Put(std::span(&item, 1), PutOptions{.eager = true});
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->outcomes[0], PutOutcome::kStored);
}

TEST_F(EagerPutRequestTest, BadGetRequestsGetClearErrorsAndChangeNothing) {
  const BlockKey key = BlockKey::FromParts(0x6E7, 1);
  const auto data = BytesFor(key, 64 << 10);
  PutItem item{key, std::nullopt, data};
  ASSERT_EQ(client_->Put(std::span(&item, 1))->stored, 1u);
  auto request = [&](uint64_t tag) {
    transfer::push::GetRequest r;
    r.reply_tag = tag;
    r.max_length = data.size();
    std::memcpy(r.key, key.bytes().data(), sizeof(r.key));
    return r;
  };
  auto ask = [&](const transfer::push::GetRequest& r, size_t bytes = sizeof(transfer::push::GetRequest)) {
    return sender_->Send(&r, bytes, r.reply_tag, {}, true, transfer::push::kGetRequestAm);
  };
  auto bad_magic = request(1);
  bad_magic.magic ^= 1;
  EXPECT_EQ(CodeOf(ask(bad_magic)), StatusCode::kInvalidArgument);
  auto no_room = request(2);
  no_room.max_length = 0;
  EXPECT_EQ(CodeOf(ask(no_room)), StatusCode::kInvalidArgument);
  auto too_small = request(3);
  too_small.max_length = data.size() - 1;
  EXPECT_EQ(CodeOf(ask(too_small)), StatusCode::kOutOfRange);
  auto missing = request(4);
  missing.key[0] ^= std::byte{1};
  EXPECT_EQ(CodeOf(ask(missing)), StatusCode::kNotFound);
  const uint64_t rejected_before = client_->Stats()->two_sided_rejected;
  auto short_header = request(5);
  (void)sender_->Send(&short_header, sizeof(short_header) - 8, 5, {}, false, transfer::push::kGetRequestAm);
  EXPECT_TRUE(Eventually([&] { return client_->Stats()->two_sided_rejected == rejected_before + 1; },
                         std::chrono::seconds(10)));
  auto stats = client_->Stats();
  EXPECT_EQ(stats->eager_gets_refused, 4u);
  EXPECT_EQ(stats->eager_gets_sent, 0u);
  EXPECT_EQ(stats->tiers[0].leased_blocks, 0u) << "a refused get left a lease behind";

  // The block is intact and an SDK Get by key (the same request, well formed) reads it.
  auto back = GetOne(*client_, key, data.size());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, data);
  // A buffer one byte short is OUT_OF_RANGE, a missing key a miss; neither is an error of the call.
  std::vector<std::byte> short_buffer(data.size() - 1);
  GetItem gets[2];
  gets[0].key = key;
  gets[0].buffer = short_buffer;
  gets[1].key = BlockKey::FromParts(0x6E7, 2);
  gets[1].buffer = *back;
  ASSERT_TRUE(client_->Get(gets).ok());
  EXPECT_FALSE(gets[0].found);
  EXPECT_EQ(gets[0].status.code(), StatusCode::kOutOfRange) << gets[0].status.ToString();
  EXPECT_FALSE(gets[1].found);
  EXPECT_EQ(gets[1].status.code(), StatusCode::kNotFound) << gets[1].status.ToString();
  stats = client_->Stats();
  EXPECT_EQ(stats->eager_gets_sent, 1u);
  EXPECT_EQ(stats->eager_gets_refused, 6u);
  // The lease taken for the send ends with it.
  EXPECT_TRUE(Eventually([&] { return client_->Stats()->tiers[0].leased_blocks == 0; }, std::chrono::seconds(10)));
}

TEST(EagerGetTest, BlocksBelowDramAreLocatedTheUsualWay) {
  char dir_template[] = "/tmp/kvstash-eager-ssd-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  auto daemon = std::make_unique<DaemonProcess>(
      KVSTASHD_PATH, std::vector<std::string>{"--dram-capacity", "16MiB", "--ssd-dir", dir, "--ssd-capacity", "512MiB",
                                              "--ucx-transports", "tcp"});
  ASSERT_TRUE(daemon->ok()) << daemon->error();
  auto client = Connect(daemon->grpc_address());
  ASSERT_NE(client, nullptr);
  constexpr size_t kBlockBytes = 256 << 10, kBlocks = 160;  // 40 MiB through a 16 MiB DRAM tier
  auto key = [](size_t i) { return BlockKey::FromParts(0x55D, i + 1); };
  for (size_t i = 0; i < kBlocks; ++i) {
    const auto data = BytesFor(key(i), kBlockBytes);
    PutItem item{key(i), std::nullopt, data};
    auto put = client->Put(std::span(&item, 1), PutOptions{.eager = i % 2 == 0});
    ASSERT_TRUE(put.ok()) << put.status().ToString();
    ASSERT_EQ(put->stored, 1u);
  }
  // Victims reach the SSD through the demotion worker, in the background: wait for the first.
  ASSERT_TRUE(kvstash::testing::Eventually([&] { return client->Stats()->tiers.at(1).blocks > 0; }, std::chrono::seconds(30)))
      << "nothing was demoted to SSD";
  std::vector<std::byte> buffer(kBlockBytes);
  size_t found = 0;
  // Newest first: the blocks still in DRAM are read before promotions from SSD evict them, under
  // any eviction order (oldest first is a scan that LRU's order — the default's above an SSD,
  // docs/EVICTION.md — answers entirely from SSD).
  for (size_t i = kBlocks; i-- > 0;) {
    GetItem item;
    item.key = key(i);
    item.buffer = buffer;
    ASSERT_TRUE(client->Get(std::span(&item, 1)).ok());
    if (!item.found) continue;  // demotion may drop a victim when its queue is full
    ++found;
    ASSERT_EQ(buffer, BytesFor(key(i), kBlockBytes)) << "block " << i;
  }
  EXPECT_GT(found, kBlocks / 2);
  auto stats = client->Stats();
  EXPECT_GT(stats->eager_gets_sent, 0u);
  EXPECT_GT(stats->eager_gets_refused, 0u) << "no block was asked for below DRAM";
  client.reset();
  daemon.reset();
  std::filesystem::remove_all(dir);
}

// Several lanes (push workers with a thread each): clients are dealt out over them, and every kind
// of two-sided transfer — two-phase and eager puts, gets by key and pre-located reads — works on
// each, byte for byte; a PutBegin naming a lane the daemon lacks is refused.
TEST(LanesTest, ClientsSpreadOverLanesAndEveryTransferWorksOnEach) {
  auto daemon = StartDaemon({"--ucx-lanes", "3"});
  ASSERT_TRUE(daemon->ok());
  auto stub = v1::Store::NewStub(grpc::CreateChannel(daemon->grpc_address(), grpc::InsecureChannelCredentials()));
  {
    grpc::ClientContext ctx;
    v1::DataPlaneResponse dp;
    ASSERT_TRUE(stub->DataPlane(&ctx, v1::DataPlaneRequest(), &dp).ok());
    ASSERT_EQ(dp.push_lane_addresses_size(), 3);
    EXPECT_EQ(dp.push_lane_addresses(0), dp.push_worker_address());
    EXPECT_NE(dp.push_lane_addresses(1), dp.push_lane_addresses(2));
    grpc::ClientContext again_ctx;
    v1::DataPlaneResponse again;
    ASSERT_TRUE(stub->DataPlane(&again_ctx, v1::DataPlaneRequest(), &again).ok());
    EXPECT_EQ(again.suggested_push_lane(), (dp.suggested_push_lane() + 1) % 3) << "lanes are dealt out in turn";
  }
  {
    v1::PutBeginRequest begin;
    begin.set_two_sided(true);
    begin.set_push_lane(3);
    auto* item = begin.add_items();
    const BlockKey key = BlockKey::FromParts(0x1A, 1);
    item->set_key(std::string(key.AsBytes()));
    item->set_size(4096);
    grpc::ClientContext ctx;
    v1::PutBeginResponse begun;
    EXPECT_EQ(stub->PutBegin(&ctx, begin, &begun).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  constexpr int kClients = 6;
  constexpr uint64_t kBlocks = 48;
  auto key = [](int c, uint64_t i) { return BlockKey::FromParts(0x1A0 + static_cast<uint64_t>(c), i + 1); };
  auto size_of = [](uint64_t i) { return size_t{1} + (i * 37'813) % (512 << 10); };
  std::vector<Status> errors(kClients);
  std::vector<uint64_t> mismatches(kClients, 0);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      auto client = Connect(daemon->grpc_address());
      if (!client) return;
      std::vector<std::vector<std::byte>> data;
      for (uint64_t i = 0; i < kBlocks; ++i) data.push_back(BytesFor(key(c, i), size_of(i)));
      // Halves: two-phase puts of 8 per call, then eager puts of 8 per call.
      for (uint64_t i = 0; i < kBlocks && errors[c].ok(); i += 8) {
        std::vector<PutItem> items;
        for (uint64_t j = i; j < i + 8; ++j) items.push_back({key(c, j), std::nullopt, data[j]});
        auto r = client->Put(items, PutOptions{.eager = i >= kBlocks / 2});
        if (!r.ok()) errors[c] = r.status();
        else if (r->stored != 8) errors[c] = Internal("stored " + std::to_string(r->stored) + " of 8");
      }
      if (!errors[c].ok()) return;
      // Gets by key of all, then pre-located reads of all.
      for (int round = 0; round < 2 && errors[c].ok(); ++round) {
        std::vector<BlockKey> keys;
        for (uint64_t i = 0; i < kBlocks; ++i) keys.push_back(key(c, i));
        std::optional<LookupResult> located;
        if (round == 1) {
          auto l = client->Lookup(keys, 10'000);
          if (!l.ok() || l->hit_blocks != kBlocks) {
            errors[c] = l.ok() ? Internal("lookup found " + std::to_string(l->hit_blocks)) : l.status();
            return;
          }
          located = std::move(*l);
        }
        std::vector<std::vector<std::byte>> back(kBlocks);
        std::vector<GetItem> gets(kBlocks);
        for (uint64_t i = 0; i < kBlocks; ++i) {
          back[i].resize(size_of(i));
          gets[i].key = keys[i];
          gets[i].buffer = back[i];
          if (located) gets[i].located = &located->blocks[i];
        }
        if (Status st = client->Get(gets); !st.ok()) {
          errors[c] = st;
          return;
        }
        for (uint64_t i = 0; i < kBlocks; ++i) {
          if (!gets[i].found || back[i] != data[i]) ++mismatches[c];
        }
        if (located) (void)client->ReleaseLeases(located->blocks);
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int c = 0; c < kClients; ++c) {
    EXPECT_TRUE(errors[c].ok()) << "client " << c << ": " << errors[c].ToString();
    EXPECT_EQ(mismatches[c], 0u) << "client " << c;
  }
  auto checker = Connect(daemon->grpc_address());
  ASSERT_NE(checker, nullptr);
  auto stats = checker->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->tiers[0].blocks, kClients * kBlocks);
  EXPECT_EQ(stats->eager_puts_stored, kClients * kBlocks / 2);
  EXPECT_EQ(stats->eager_gets_sent, kClients * kBlocks);
  EXPECT_TRUE(Eventually(
      [&] {
        auto s = checker->Stats();
        return s.ok() && s->two_sided_receives_open == 0 && s->two_sided_sends_in_flight == 0 &&
               s->reservations_open == 0;
      },
      std::chrono::seconds(10)));
}

TEST(EagerPutFallbackTest, EagerOptionOverSharedMemoryPutsTwoPhase) {
  auto daemon = std::make_unique<DaemonProcess>(
      KVSTASHD_PATH, std::vector<std::string>{"--dram-capacity", "256MiB", "--ucx-transports", "posix,sysv,cma,self"});
  ASSERT_TRUE(daemon->ok()) << daemon->error();
  ClientOptions options;
  options.address = daemon->grpc_address();
  options.data_path = DataPath::kUcx;
  options.ucx_transports = "posix,sysv,cma,self";
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  ASSERT_NE((*client)->data_path().find("one-sided"), std::string::npos);
  const BlockKey key = BlockKey::FromParts(0x5A, 3);
  const auto data = BytesFor(key, 100'000);
  PutItem item{key, std::nullopt, data};
  auto r = (*client)->Put(std::span(&item, 1), PutOptions{.eager = true});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->outcomes[0], PutOutcome::kStored);
  auto stats = (*client)->Stats();
  EXPECT_EQ(stats->eager_puts_stored, 0u);
  EXPECT_EQ(stats->put_bytes_one_sided, data.size());
}

}  // namespace
}  // namespace kvstash
