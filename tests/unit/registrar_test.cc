// The Registrar over an in-memory etcd (membership/in_memory_kv_store.h) and a ManualClock: no etcd
// process, no keep-alive thread (background = false; the test runs each round when the clock says
// it is due). Lease renewal, backoff, expiry and re-registration, conflicts, drain marks and Stop.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "common/clock.h"
#include "membership/in_memory_kv_store.h"
#include "membership/member_record.h"
#include "membership/registrar.h"

namespace kvstash::membership {
namespace {

constexpr int64_t kTtlS = 9;            // rounds every 3 s while registered
constexpr uint64_t kIntervalMs = 3'000;

class RegistrarTest : public ::testing::Test {
 protected:
  RegistrarOptions Options(const std::string& id, const std::string& address) const {
    RegistrarOptions o;
    o.cluster = "c1";
    o.lease_ttl_s = kTtlS;
    o.record.id = id;
    o.record.grpc_address = address;
    o.clock = &clock_;
    o.background = false;
    return o;
  }

  std::unique_ptr<Registrar> StartRegistrar(const std::string& id, const std::string& address) {
    auto r = Registrar::Start(Options(id, address), etcd_.Connect(id));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(*r) : nullptr;
  }

  // Advances the clock to the registrar's next round and runs it.
  void RunNextRound(Registrar& r) {
    const uint64_t due = r.NextRoundMs();
    if (due > clock_.NowMs()) clock_.AdvanceMs(due - clock_.NowMs());
    ASSERT_TRUE(r.RunDueRound());
  }

  ManualClock clock_;
  InMemoryKvStore etcd_{&clock_};
};

TEST_F(RegistrarTest, RegistersAndKeepsTheLeaseAliveByTheClock) {
  auto r = StartRegistrar("m1", "10.0.0.1:7000");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->Health().state, RegistrationState::kRegistered);
  std::optional<EtcdKeyValue> record = etcd_.Peek(MemberKey("c1", "m1"));
  ASSERT_TRUE(record.has_value());
  const int64_t lease = record->lease;
  EXPECT_NE(lease, 0);
  EXPECT_EQ(r->NextRoundMs(), clock_.NowMs() + kIntervalMs);

  // Not due yet: nothing runs.
  clock_.AdvanceMs(kIntervalMs - 1);
  EXPECT_FALSE(r->RunDueRound());

  // Ten rounds span 30 s, far past the 9 s TTL: every round renews the lease, so it never expires.
  for (int i = 0; i < 10; ++i) {
    RunNextRound(*r);
    etcd_.ExpireLeases();
    ASSERT_TRUE(etcd_.Peek(MemberKey("c1", "m1")).has_value()) << "round " << i;
  }
  EXPECT_EQ(etcd_.Peek(MemberKey("c1", "m1"))->lease, lease);
  EXPECT_EQ(r->Health().registrations, 1u);
}

TEST_F(RegistrarTest, AnExpiredLeaseIsReplacedAndTheRecordPublishedAgain) {
  auto r = StartRegistrar("m1", "10.0.0.1:7000");
  ASSERT_NE(r, nullptr);
  const int64_t first_lease = etcd_.Peek(MemberKey("c1", "m1"))->lease;

  // etcd becomes unreachable from this daemon: rounds fail and back off 200, 400, 800 ms ...
  etcd_.SetReachable("m1", false);
  RunNextRound(*r);
  EXPECT_EQ(r->Health().state, RegistrationState::kEtcdUnreachable);
  uint64_t expected_wait = 200;
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(r->NextRoundMs() - clock_.NowMs(), expected_wait) << "failure " << i;
    RunNextRound(*r);
    expected_wait *= 2;
  }
  // ... up to max_retry (5 s), capped at the renewal interval (3 s).
  for (int i = 0; i < 3; ++i) RunNextRound(*r);
  EXPECT_EQ(r->NextRoundMs() - clock_.NowMs(), kIntervalMs);

  // Longer than the TTL without a keep-alive: etcd drops the lease, and the record with it.
  clock_.AdvanceMs(kTtlS * 1000);
  etcd_.ExpireLeases();
  EXPECT_FALSE(etcd_.Peek(MemberKey("c1", "m1")).has_value());
  EXPECT_EQ(etcd_.lease_count(), 0u);

  // Reachable again: the keep-alive finds the lease gone, so the registrar takes a new one and
  // publishes the record under it.
  etcd_.SetReachable("m1", true);
  RunNextRound(*r);
  std::optional<EtcdKeyValue> record = etcd_.Peek(MemberKey("c1", "m1"));
  ASSERT_TRUE(record.has_value());
  EXPECT_NE(record->lease, first_lease);
  EXPECT_NE(record->lease, 0);
  EXPECT_EQ(r->Health().state, RegistrationState::kRegistered);
  EXPECT_EQ(r->Health().registrations, 2u);
  EXPECT_EQ(r->NextRoundMs() - clock_.NowMs(), kIntervalMs);
}

TEST_F(RegistrarTest, ADeletedRecordIsPublishedAgainUnderTheSameLease) {
  auto r = StartRegistrar("m1", "10.0.0.1:7000");
  ASSERT_NE(r, nullptr);
  const int64_t lease = etcd_.Peek(MemberKey("c1", "m1"))->lease;
  auto admin = etcd_.Connect("admin");
  ASSERT_TRUE(admin->Delete(MemberKey("c1", "m1")).ok());
  RunNextRound(*r);
  ASSERT_TRUE(etcd_.Peek(MemberKey("c1", "m1")).has_value());
  EXPECT_EQ(etcd_.Peek(MemberKey("c1", "m1"))->lease, lease);
}

TEST_F(RegistrarTest, AnotherAddressHoldingTheIdIsAConflict) {
  auto first = StartRegistrar("m1", "10.0.0.1:7000");
  ASSERT_NE(first, nullptr);
  auto second = Registrar::Start(Options("m1", "10.0.0.2:7000"), etcd_.Connect("m1-impostor"));
  EXPECT_EQ(second.status().code(), StatusCode::kAlreadyExists);
  // The first keeps its record.
  RunNextRound(*first);
  EXPECT_EQ(first->Health().state, RegistrationState::kRegistered);
  Result<MemberRecord> record = MemberRecordFromJson(etcd_.Peek(MemberKey("c1", "m1"))->value);
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->grpc_address, "10.0.0.1:7000");
}

TEST_F(RegistrarTest, ADrainMarkIsCopiedIntoTheRecord) {
  auto r = StartRegistrar("m1", "10.0.0.1:7000");
  ASSERT_NE(r, nullptr);
  auto admin = etcd_.Connect("admin");
  ASSERT_TRUE(admin->Put(DrainKey("c1", "m1"), DrainMarkJson(1234)).ok());
  RunNextRound(*r);
  EXPECT_TRUE(r->Health().draining);
  Result<MemberRecord> record = MemberRecordFromJson(etcd_.Peek(MemberKey("c1", "m1"))->value);
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->state, MemberState::kDraining);
  EXPECT_EQ(record->draining_since_unix_ms, 1234u);
}

TEST_F(RegistrarTest, StopRevokesTheLease) {
  auto r = StartRegistrar("m1", "10.0.0.1:7000");
  ASSERT_NE(r, nullptr);
  r->Stop();
  EXPECT_FALSE(etcd_.Peek(MemberKey("c1", "m1")).has_value());
  EXPECT_EQ(etcd_.lease_count(), 0u);
  EXPECT_FALSE(r->RunDueRound());
}

TEST_F(RegistrarTest, EtcdDownAtStartIsPendingThenRegisters) {
  etcd_.SetReachable("m1", false);
  auto r = StartRegistrar("m1", "10.0.0.1:7000");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->Health().state, RegistrationState::kPending);
  EXPECT_EQ(r->NextRoundMs() - clock_.NowMs(), 200u);
  etcd_.SetReachable("m1", true);
  RunNextRound(*r);
  EXPECT_EQ(r->Health().state, RegistrationState::kRegistered);
  EXPECT_TRUE(etcd_.Peek(MemberKey("c1", "m1")).has_value());
}

}  // namespace
}  // namespace kvstash::membership
