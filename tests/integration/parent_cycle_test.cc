// Parent cycles against a real kvstashd (issue 13, item 6), over the raw inline Put RPC as any
// client could send it. Before the fix, 31 pairs of 1 MiB blocks naming each other as parents
// (A -> B, then B -> A) were all stored, prefix-arc could evict none of them, and every 8 MiB put
// answered NO_SPACE until an operator removed them. Now the daemon refuses the second link of each
// pair (INVALID_ARGUMENT, nothing stored), and a cycle too long for that check to see is still
// evicted when room is needed.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvstash/v1/store.grpc.pb.h"
#include "tests/support/block_bytes.h"
#include "tests/support/daemon_process.h"
#include "tiers/parent_walk.h"

namespace kvstash {
namespace {

using testing::BytesFor;
using testing::DaemonProcess;

constexpr size_t kMiB = 1 << 20;

class ParentCycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // 64 MiB of DRAM under the default policy, stated anyway: the attack must need eviction.
    daemon_ = std::make_unique<DaemonProcess>(
        KVSTASHD_PATH, std::vector<std::string>{"--dram-capacity", "64MiB", "--eviction-policy", "prefix-arc"});
    ASSERT_TRUE(daemon_->ok()) << daemon_->error();
    stub_ = v1::Store::NewStub(grpc::CreateChannel(daemon_->grpc_address(), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (daemon_ && daemon_->pid() > 0) {
      EXPECT_EQ(daemon_->Stop(), 0);
    }
  }

  // One block through the inline Put RPC; `outcome` is set when the RPC succeeds.
  grpc::Status Put(const BlockKey& key, const std::optional<BlockKey>& parent, size_t size,
                   v1::PutResponse::Outcome* outcome) {
    const std::vector<std::byte> bytes = BytesFor(key, size);
    v1::PutRequest req;
    v1::PutItem* item = req.add_items();
    item->set_key(std::string(key.AsBytes()));
    if (parent) item->set_parent(std::string(parent->AsBytes()));
    item->set_data(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    v1::PutResponse resp;
    grpc::ClientContext ctx;
    const grpc::Status st = stub_->Put(&ctx, req, &resp);
    if (st.ok() && resp.outcomes_size() == 1) *outcome = resp.outcomes(0);
    return st;
  }

  // Puts a block that must be stored.
  void PutStored(const BlockKey& key, const std::optional<BlockKey>& parent, size_t size) {
    v1::PutResponse::Outcome outcome = v1::PutResponse::OUTCOME_UNSPECIFIED;
    const grpc::Status st = Put(key, parent, size, &outcome);
    ASSERT_TRUE(st.ok()) << key.ToHex() << ": " << st.error_message();
    ASSERT_EQ(outcome, v1::PutResponse::STORED) << key.ToHex() << " (4 = NO_SPACE)";
  }

  // How many of `keys` the daemon holds.
  size_t Stored(const std::vector<BlockKey>& keys) {
    v1::StatRequest req;
    for (const BlockKey& key : keys) req.add_keys(std::string(key.AsBytes()));
    v1::StatResponse resp;
    grpc::ClientContext ctx;
    const grpc::Status st = stub_->Stat(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    size_t found = 0;
    for (const auto& entry : resp.entries()) found += entry.found() ? 1 : 0;
    return found;
  }

  // Eight 8 MiB blocks: as much as the whole cache, so they fit only if what came before can go.
  void LargePutsStillFit(uint64_t tag) {
    std::vector<BlockKey> large;
    for (uint64_t i = 0; i < 8; ++i) {
      large.push_back(BlockKey::FromParts(tag, i));
      PutStored(large.back(), std::nullopt, 8 * kMiB);
      if (HasFatalFailure()) return;
    }
    EXPECT_GE(Stored({large.back()}), 1u);
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<v1::Store::Stub> stub_;
};

TEST_F(ParentCycleTest, SecondLinkOfEachPairIsRefusedAndLargePutsStillFit) {
  std::vector<BlockKey> firsts, seconds;
  for (uint64_t i = 0; i < 31; ++i) {
    const BlockKey a = BlockKey::FromParts(0xC1C1E, i);
    const BlockKey b = BlockKey::FromParts(0xC1C1E, 1000 + i);
    firsts.push_back(a);
    seconds.push_back(b);
    ASSERT_NO_FATAL_FAILURE(PutStored(a, b, kMiB));  // names a block not stored: fine
    v1::PutResponse::Outcome outcome = v1::PutResponse::OUTCOME_UNSPECIFIED;
    const grpc::Status st = Put(b, a, kMiB, &outcome);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << "pair " << i << ": outcome " << outcome;
    EXPECT_NE(st.error_message().find("its own ancestor"), std::string::npos) << st.error_message();
  }
  EXPECT_EQ(Stored(seconds), 0u) << "a refused put is visible";
  EXPECT_EQ(Stored(firsts), firsts.size());

  LargePutsStillFit(0xB16);
  EXPECT_LT(Stored(firsts), firsts.size()) << "the first blocks of the pairs were never evicted";
}

// A cycle longer than the daemon's check walks (tiers/parent_walk.h) is accepted — a long chain
// must not make a put expensive — so the eviction policy has to cope: three such cycles of 64 KiB
// blocks fill most of the cache, and the large puts must still find room.
TEST_F(ParentCycleTest, CyclesTooLongToRefuseAreStillEvicted) {
  const uint64_t length = tiers::kMaxParentWalk + 44;  // 300 blocks, 18.75 MiB per cycle
  std::vector<BlockKey> cycled;
  for (uint64_t c = 0; c < 3; ++c) {
    for (uint64_t i = 0; i < length; ++i) {
      const BlockKey key = BlockKey::FromParts(0x10C0 + c, i);
      cycled.push_back(key);
      ASSERT_NO_FATAL_FAILURE(PutStored(key, BlockKey::FromParts(0x10C0 + c, (i + 1) % length), 64 * 1024));
    }
  }
  ASSERT_EQ(Stored(cycled), cycled.size());

  LargePutsStillFit(0xB17);
  EXPECT_LT(Stored(cycled), cycled.size());
}

}  // namespace
}  // namespace kvstash
