// Reuse advice end to end (PutOptions::advice): through a real kvstashd under memory pressure, a
// chain advised "likely" outlives unadvised chains of the same age, and a chain advised "unlikely"
// leaves before newer and older unadvised ones — over the two-phase put (same-host default path)
// and the eager two-sided put (tcp). Bad advice over the raw RPCs is refused and stores nothing.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <memory>
#include <string>
#include <vector>

#include "kvstash/client.h"
#include "kvstash/v1/store.grpc.pb.h"
#include "tests/support/block_bytes.h"
#include "tests/support/daemon_process.h"

namespace kvstash {
namespace {

using testing::BytesFor;
using testing::DaemonProcess;

constexpr size_t kBlockBytes = 256 * 1024;
constexpr size_t kChainBlocks = 8;  // 2 MiB per chain; the daemon holds 16 MiB

std::vector<BlockKey> Chain(uint64_t id) {
  std::vector<BlockKey> chain;
  for (uint64_t i = 0; i < kChainBlocks; ++i) chain.push_back(BlockKey::FromParts(0xAD0000 + id, i));
  return chain;
}

struct Mode {
  const char* name;
  bool eager;  // eager two-sided puts over tcp; else the SDK's default path (two-phase)
};

class AdviceTest : public ::testing::TestWithParam<Mode> {
 protected:
  void SetUp() override {
    std::vector<std::string> args = {"--dram-capacity", "16MiB"};
    if (GetParam().eager) args.insert(args.end(), {"--ucx-transports", "tcp"});
    daemon_ = std::make_unique<DaemonProcess>(KVSTASHD_PATH, args);
    ASSERT_TRUE(daemon_->ok()) << daemon_->error();
    ClientOptions options;
    options.address = daemon_->grpc_address();
    if (GetParam().eager) {
      options.data_path = DataPath::kUcx;
      options.ucx_transports = "tcp";
    }
    auto client = Client::Connect(options);
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    client_ = std::move(*client);
    if (GetParam().eager) {
      ASSERT_NE(client_->data_path().find("two-sided"), std::string::npos) << client_->data_path();
    }
  }
  void TearDown() override {
    client_.reset();
    if (daemon_ && daemon_->pid() > 0) {
      EXPECT_EQ(daemon_->Stop(), 0);
    }
  }

  void Put(uint64_t id, std::optional<ReuseAdvice> advice) {
    const auto chain = Chain(id);
    std::vector<std::vector<std::byte>> data;
    std::vector<std::span<const std::byte>> spans;
    for (const auto& key : chain) data.push_back(BytesFor(key, kBlockBytes));
    for (const auto& d : data) spans.emplace_back(d);
    PutOptions options;
    options.eager = GetParam().eager;
    options.advice = advice;
    auto put = client_->PutChain(chain, spans, options);
    ASSERT_TRUE(put.ok()) << put.status().ToString();
    ASSERT_EQ(put->stored, kChainBlocks) << "chain " << id;
  }
  size_t Resident(uint64_t id) {
    auto hit = client_->Lookup(Chain(id));
    EXPECT_TRUE(hit.ok()) << hit.status().ToString();
    return hit.ok() ? hit->hit_blocks : 0;
  }
  bool ByteExact(uint64_t id) {
    std::vector<std::byte> buffer(kBlockBytes);
    for (const BlockKey& key : Chain(id)) {
      GetItem item;
      item.key = key;
      item.buffer = buffer;
      if (!client_->Get(std::span(&item, 1)).ok() || !item.found) return false;
      if (buffer != BytesFor(key, kBlockBytes)) return false;
    }
    return true;
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<Client> client_;
};

TEST_P(AdviceTest, LikelyOutlivesAndUnlikelyLeavesFirst) {
  Put(1, ReuseAdvice::kLikely);
  Put(2, std::nullopt);  // same age as chain 1, no advice
  // Three times what fits, none of it read again: without advice chain 1 would be the first to go.
  for (uint64_t c = 100; c < 124; ++c) Put(c, std::nullopt);
  EXPECT_EQ(Resident(1), kChainBlocks) << "the chain advised likely was evicted";
  EXPECT_TRUE(ByteExact(1));
  EXPECT_EQ(Resident(2), 0u) << "the unadvised chain of the same age outlived newer ones";

  // An unlikely chain leaves before an older unadvised one (3) when room is needed again. (Under
  // pressure it may also make room for its own later blocks: cold blocks go first, whoever asks.)
  // Two chains after it, so that whatever room was free the daemon must evict at least one chain.
  Put(3, std::nullopt);
  Put(4, ReuseAdvice::kUnlikely);
  Put(5, std::nullopt);
  Put(6, std::nullopt);
  EXPECT_EQ(Resident(4), 0u) << "the chain advised unlikely outlived unadvised ones";
  EXPECT_EQ(Resident(3), kChainBlocks);
  EXPECT_EQ(Resident(5), kChainBlocks);
  EXPECT_EQ(Resident(6), kChainBlocks);
  EXPECT_TRUE(ByteExact(3));
  EXPECT_EQ(Resident(1), kChainBlocks);

  // Operators see the advice arrive.
  const std::string& addr = daemon_->metrics_address();
  const size_t colon = addr.rfind(':');
  httplib::Client http(addr.substr(0, colon), std::stoi(addr.substr(colon + 1)));
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("kvstash_put_advice_total{advice=\"likely\"} 8\n"), std::string::npos) << metrics->body;
  EXPECT_NE(metrics->body.find("kvstash_put_advice_total{advice=\"unlikely\"} 8\n"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Paths, AdviceTest, ::testing::Values(Mode{"two_phase", false}, Mode{"eager_tcp", true}),
                         [](const ::testing::TestParamInfo<Mode>& info) { return std::string(info.param.name); });

// The raw RPCs: advice outside the enum is refused before anything changes.
TEST(AdviceRpcTest, UnknownAdviceIsRefusedAndStoresNothing) {
  DaemonProcess daemon(KVSTASHD_PATH, {"--dram-capacity", "16MiB"});
  ASSERT_TRUE(daemon.ok()) << daemon.error();
  auto stub = v1::Store::NewStub(grpc::CreateChannel(daemon.grpc_address(), grpc::InsecureChannelCredentials()));
  const BlockKey key = BlockKey::FromParts(0xAD, 1);
  const auto bytes = BytesFor(key, 4096);

  v1::PutRequest put;
  auto* item = put.add_items();
  item->set_key(std::string(key.AsBytes()));
  item->set_data(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  put.set_advice(static_cast<v1::ReuseAdvice>(7));
  v1::PutResponse put_resp;
  {
    grpc::ClientContext ctx;
    const grpc::Status st = stub->Put(&ctx, put, &put_resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("advice"), std::string::npos) << st.error_message();
  }

  v1::PutBeginRequest begin;
  auto* b = begin.add_items();
  b->set_key(std::string(key.AsBytes()));
  b->set_size(bytes.size());
  v1::PutBeginResponse begun;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->PutBegin(&ctx, begin, &begun).ok());
  }
  ASSERT_EQ(begun.results(0).outcome(), v1::PutBeginResult::RESERVED);
  v1::PutCommitRequest commit;
  auto* c = commit.add_items();
  c->set_reservation(begun.results(0).reservation());
  c->set_checksum(1);  // never checked: the advice is refused first
  c->set_data(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  commit.set_advice(static_cast<v1::ReuseAdvice>(-1));
  v1::PutCommitResponse committed;
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(stub->PutCommit(&ctx, commit, &committed).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }

  v1::StatRequest stat;
  stat.add_keys(std::string(key.AsBytes()));
  v1::StatResponse stat_resp;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->Stat(&ctx, stat, &stat_resp).ok());
  }
  EXPECT_FALSE(stat_resp.entries(0).found()) << "a refused put is visible";
  // The reservation is still the writer's, untouched: it can still be aborted.
  v1::PutAbortRequest abort;
  abort.add_reservations(begun.results(0).reservation());
  v1::PutAbortResponse aborted;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->PutAbort(&ctx, abort, &aborted).ok());
  }
  EXPECT_EQ(aborted.aborted(), 1u);
}

}  // namespace
}  // namespace kvstash
