// StoreService without a daemon: the service's handlers called directly (a default
// grpc::ServerContext: no peer, no token) over a DramTier and a small TierStats of the test's own
// (server/store_service.h takes the Tier and TierStats interfaces, not the TierManager).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/checksum.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "server/server_metrics.h"
#include "server/store_service.h"
#include "tiers/dram_tier.h"

namespace kvstash::server {
namespace {

// A DRAM-only stack's statistics, plus an SSD entry the test can make up to see that Stats reports
// what the TierStats says rather than asking a TierManager.
class DramOnlyStats final : public tiers::TierStats {
 public:
  explicit DramOnlyStats(const tiers::DramTier& dram) : dram_(dram) {}
  tiers::TierUsage Usage() const override { return dram_.Usage(); }
  std::vector<tiers::TierUsageEntry> UsageByTier() const override {
    std::vector<tiers::TierUsageEntry> out{{tiers::TierKind::kDram, dram_.Usage()}};
    if (ssd_) out.push_back({tiers::TierKind::kSsd, *ssd_});
    return out;
  }
  tiers::TierCounters Counters() const override { return dram_.Counters(); }
  tiers::TierCounters HbmCounters() const override { return {}; }
  tiers::TierManagerCounters ManagerCounters() const override { return manager_; }
  bool has_hbm() const override { return false; }
  const std::string& hbm_policy_name() const override { return no_policy_; }
  std::vector<tiers::BlockMeta> Hottest(size_t n) const override { return dram_.Hottest(n); }

  void PretendSsd(tiers::TierUsage usage, uint64_t reclaimed) {
    ssd_ = usage;
    manager_.ssd.blocks_reclaimed = reclaimed;
  }

 private:
  const tiers::DramTier& dram_;
  std::optional<tiers::TierUsage> ssd_;
  tiers::TierManagerCounters manager_;
  const std::string no_policy_;
};

std::string KeyBytes(uint8_t seed) {
  std::string key(BlockKey::kSize, '\0');
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<char>(seed * 31 + i);
  return key;
}

std::string Bytes(size_t n, uint8_t seed) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<char>(seed + i * 7);
  return out;
}

class StoreServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tiers::DramTierOptions dram_options;
    dram_options.capacity_bytes = 16ULL << 20;
    dram_options.max_block_bytes = 1ULL << 20;
    dram_options.huge_pages = tiers::HugePages::kOff;
    dram_options.clock = &clock_;
    dram_options.index_shards = 4;
    auto dram = tiers::DramTier::Create(dram_options);
    ASSERT_TRUE(dram.ok()) << dram.status().ToString();
    dram_ = std::move(*dram);
    stats_ = std::make_unique<DramOnlyStats>(*dram_);
    metrics_ = std::make_unique<ServerMetrics>(registry_, *stats_, "test");
    StoreServiceOptions options;
    options.member_id = "unit";
    options.max_block_bytes = 1ULL << 20;
    options.clock = &clock_;
    options.default_reservation_timeout_ms = 2'000;
    options.max_reservation_timeout_ms = kMaxReservationMs;
    service_ = std::make_unique<StoreService>(options, *dram_, *stats_, *metrics_);
  }

  // PutBegin + PutCommit (inline bytes) of one block; the gRPC status of the first failing step.
  grpc::Status Put(const std::string& key, const std::string& data, uint64_t checksum) {
    v1::PutBeginRequest begin;
    v1::PutBeginItem* item = begin.add_items();
    item->set_key(key);
    item->set_size(data.size());
    v1::PutBeginResponse reserved;
    grpc::ServerContext begin_context;
    grpc::Status st = service_->PutBegin(&begin_context, &begin, &reserved);
    if (!st.ok()) return st;
    EXPECT_EQ(reserved.results_size(), 1);
    EXPECT_EQ(reserved.results(0).outcome(), v1::PutBeginResult::RESERVED);
    v1::PutCommitRequest commit;
    v1::PutCommitItem* c = commit.add_items();
    c->set_reservation(reserved.results(0).reservation());
    c->set_checksum(checksum);
    c->set_data(data);
    v1::PutCommitResponse committed;
    grpc::ServerContext commit_context;
    return service_->PutCommit(&commit_context, &commit, &committed);
  }

  v1::GetResponse Get(const std::string& key) {
    v1::GetRequest req;
    req.add_keys(key);
    v1::GetResponse resp;
    grpc::ServerContext context;
    EXPECT_TRUE(service_->Get(&context, &req, &resp).ok());
    return resp;
  }

  static constexpr uint64_t kMaxReservationMs = 3'000;
  ManualClock clock_;
  metrics::Registry registry_;
  std::unique_ptr<tiers::DramTier> dram_;
  std::unique_ptr<DramOnlyStats> stats_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<StoreService> service_;
};

TEST_F(StoreServiceTest, PutCommitGetRemove) {
  const std::string key = KeyBytes(1);
  const std::string data = Bytes(10'000, 3);
  ASSERT_TRUE(Put(key, data, BlockChecksum(data.data(), data.size())).ok());
  EXPECT_EQ(dram_->Usage().blocks, 1u);

  v1::GetResponse got = Get(key);
  ASSERT_EQ(got.results_size(), 1);
  ASSERT_EQ(got.results(0).outcome(), v1::GetResult::FOUND);
  EXPECT_EQ(got.results(0).data(), data);
  EXPECT_EQ(got.results(0).info().size(), data.size());
  EXPECT_EQ(got.results(0).info().tier(), v1::TIER_DRAM);

  // A second put of the same key is deduplicated: nothing to write.
  v1::PutBeginRequest again;
  again.add_items()->set_key(key);
  again.mutable_items(0)->set_size(data.size());
  v1::PutBeginResponse again_resp;
  grpc::ServerContext again_context;
  ASSERT_TRUE(service_->PutBegin(&again_context, &again, &again_resp).ok());
  EXPECT_EQ(again_resp.results(0).outcome(), v1::PutBeginResult::EXISTS);

  v1::RemoveRequest remove;
  remove.add_keys(key);
  remove.add_keys(KeyBytes(2));  // never stored
  v1::RemoveResponse removed;
  grpc::ServerContext remove_context;
  ASSERT_TRUE(service_->Remove(&remove_context, &remove, &removed).ok());
  ASSERT_EQ(removed.outcomes_size(), 2);
  EXPECT_EQ(removed.outcomes(0), v1::RemoveResponse::REMOVED);
  EXPECT_EQ(removed.outcomes(1), v1::RemoveResponse::MISSING);
  EXPECT_EQ(Get(key).results(0).outcome(), v1::GetResult::MISSING);
  EXPECT_EQ(dram_->Usage().blocks, 0u);
  EXPECT_EQ(metrics_->puts_stored(), 1u);
  EXPECT_EQ(metrics_->puts_deduplicated(), 1u);
}

TEST_F(StoreServiceTest, RefusedRequestChangesNothing) {
  // One good item and one repeating it: the whole request is refused before any reservation.
  v1::PutBeginRequest req;
  for (int i = 0; i < 2; ++i) {
    v1::PutBeginItem* item = req.add_items();
    item->set_key(KeyBytes(7));
    item->set_size(4096);
  }
  v1::PutBeginResponse resp;
  grpc::ServerContext context;
  const grpc::Status st = service_->PutBegin(&context, &req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_EQ(dram_->Usage().reservations, 0u);

  // A key of the wrong length, and a block over max_block_bytes.
  v1::PutBeginRequest bad_key;
  bad_key.add_items()->set_key("short");
  bad_key.mutable_items(0)->set_size(4096);
  grpc::ServerContext bad_key_context;
  EXPECT_EQ(service_->PutBegin(&bad_key_context, &bad_key, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::PutBeginRequest too_big;
  too_big.add_items()->set_key(KeyBytes(8));
  too_big.mutable_items(0)->set_size((1ULL << 20) + 1);
  grpc::ServerContext too_big_context;
  EXPECT_EQ(service_->PutBegin(&too_big_context, &too_big, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(dram_->Usage().reservations, 0u);
}

// A client asking for a longer reservation than the operator allows gets the operator's limit, and
// says so in deadline_ms; its room comes back when that passes (the chaos soak found reservations of
// clients cut off mid-put held for the SDK's 30 s against a daemon configured for 3 s).
TEST_F(StoreServiceTest, ReservationTimeoutIsCutToTheDaemonsMaximum) {
  const uint64_t start = clock_.NowMs();
  v1::PutBeginRequest req;
  req.set_timeout_ms(60'000);
  req.add_items()->set_key(KeyBytes(11));
  req.mutable_items(0)->set_size(4096);
  req.add_items()->set_key(KeyBytes(12));
  req.mutable_items(1)->set_size(4096);
  v1::PutBeginResponse resp;
  grpc::ServerContext context;
  ASSERT_TRUE(service_->PutBegin(&context, &req, &resp).ok());
  ASSERT_EQ(resp.results_size(), 2);
  for (const v1::PutBeginResult& r : resp.results()) {
    EXPECT_EQ(r.outcome(), v1::PutBeginResult::RESERVED);
    EXPECT_EQ(r.deadline_ms(), start + kMaxReservationMs);
  }
  EXPECT_EQ(dram_->Usage().reservations, 2u);
  clock_.AdvanceMs(kMaxReservationMs + 1);
  EXPECT_EQ(dram_->ReclaimExpired(), 2u);
  EXPECT_EQ(dram_->Usage().reservations, 0u);

  // A shorter ask is kept, no ask gets the default, and an ask past the protocol's limit is refused.
  v1::PutBeginRequest shorter;
  shorter.set_timeout_ms(500);
  shorter.add_items()->set_key(KeyBytes(13));
  shorter.mutable_items(0)->set_size(4096);
  shorter.add_items()->set_key(KeyBytes(14));
  shorter.mutable_items(1)->set_size(4096);
  v1::PutBeginResponse shorter_resp;
  grpc::ServerContext shorter_context;
  ASSERT_TRUE(service_->PutBegin(&shorter_context, &shorter, &shorter_resp).ok());
  EXPECT_EQ(shorter_resp.results(0).deadline_ms(), clock_.NowMs() + 500);
  v1::PutBeginRequest plain;
  plain.add_items()->set_key(KeyBytes(15));
  plain.mutable_items(0)->set_size(4096);
  v1::PutBeginResponse plain_resp;
  grpc::ServerContext plain_context;
  ASSERT_TRUE(service_->PutBegin(&plain_context, &plain, &plain_resp).ok());
  EXPECT_EQ(plain_resp.results(0).deadline_ms(), clock_.NowMs() + 2'000);
  v1::PutBeginRequest too_long;
  too_long.set_timeout_ms(limits::kMaxReservationTimeoutMs + 1);
  too_long.add_items()->set_key(KeyBytes(16));
  too_long.mutable_items(0)->set_size(4096);
  v1::PutBeginResponse too_long_resp;
  grpc::ServerContext too_long_context;
  EXPECT_EQ(service_->PutBegin(&too_long_context, &too_long, &too_long_resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(dram_->Usage().reservations, 3u);
}

TEST_F(StoreServiceTest, WrongChecksumIsNotStored) {
  const std::string key = KeyBytes(4);
  const std::string data = Bytes(5000, 9);
  const grpc::Status st = Put(key, data, BlockChecksum(data.data(), data.size()) ^ 1);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DATA_LOSS) << st.error_message();
  EXPECT_EQ(Get(key).results(0).outcome(), v1::GetResult::MISSING);
}

TEST_F(StoreServiceTest, StatsReportWhatTheTierStatsSay) {
  tiers::TierUsage ssd;
  ssd.capacity_bytes = 1ULL << 30;
  ssd.used_bytes = 12288;
  ssd.blocks = 3;
  stats_->PretendSsd(ssd, 5);
  v1::StatsRequest req;
  v1::StatsResponse resp;
  grpc::ServerContext context;
  ASSERT_TRUE(service_->Stats(&context, &req, &resp).ok());
  EXPECT_EQ(resp.member_id(), "unit");
  ASSERT_EQ(resp.tiers_size(), 2);
  EXPECT_EQ(resp.tiers(0).tier(), v1::TIER_DRAM);
  EXPECT_EQ(resp.tiers(0).capacity_bytes(), 16ULL << 20);
  EXPECT_EQ(resp.tiers(1).tier(), v1::TIER_SSD);
  EXPECT_EQ(resp.tiers(1).blocks(), 3u);
  EXPECT_EQ(resp.tiers(1).evictions(), 5u);
}

}  // namespace
}  // namespace kvstash::server
