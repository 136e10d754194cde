// How TransferEngine::Run checks and deals a batch (transfer/batch_plan.h), and the wait loop's
// deadline on a ManualClock (transfer/progress_loop.h). No UCX is run.
#include <gtest/gtest.h>

#include <array>
#include <cstddef>

#include "common/clock.h"
#include "transfer/batch_plan.h"
#include "transfer/progress_loop.h"

namespace kvstash::transfer {
namespace {

std::array<std::byte, 64> g_buffer;

TransferOp Op(OpKind kind, size_t length, uint64_t remote = 0) {
  TransferOp op;
  op.kind = kind;
  op.local = g_buffer.data();
  op.length = length;
  op.remote_addr = remote;
  return op;
}

RemoteTarget TwoSidedTarget(std::vector<std::string> lanes, std::string own) {
  RemoteTarget t{"worker", "rkey", 0, 0, Protocol::kTwoSided, std::move(own), std::move(lanes)};
  return t;
}

TEST(CheckBatchTest, RefusesATargetWithoutADataPlane) {
  std::vector<TransferOp> none;
  EXPECT_EQ(CheckBatch(RemoteTarget{}, none).code(), StatusCode::kInvalidArgument);
  RemoteTarget no_lane{"worker", "rkey", 0, 0, Protocol::kTwoSided};
  EXPECT_EQ(CheckBatch(no_lane, none).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckBatch(RemoteTarget{"worker", "rkey"}, none).ok());
  // A tenant of a daemon with tokens: the push worker only, no one-sided worker or rkey.
  RemoteTarget push_only{"", "", 0, 0, Protocol::kTwoSided, "push"};
  EXPECT_TRUE(CheckBatch(push_only, none).ok());
  push_only.protocol = Protocol::kOneSided;
  EXPECT_EQ(CheckBatch(push_only, none).code(), StatusCode::kInvalidArgument);
}

TEST(CheckBatchTest, RefusesOpsItMustNotAttempt) {
  const RemoteTarget one_sided{"worker", "rkey"};
  std::vector<TransferOp> ops{Op(OpKind::kGet, 8)};
  ops[0].local = nullptr;
  EXPECT_EQ(CheckBatch(one_sided, ops).code(), StatusCode::kInvalidArgument);
  ops[0] = Op(OpKind::kGet, 0);
  EXPECT_EQ(CheckBatch(one_sided, ops).code(), StatusCode::kInvalidArgument);
  ops[0] = Op(OpKind::kEagerPut, 8);
  const Status eager = CheckBatch(one_sided, ops);
  EXPECT_EQ(eager.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(eager.message().find("two-sided"), std::string::npos) << eager.ToString();
  EXPECT_TRUE(CheckBatch(TwoSidedTarget({}, "lane"), ops).ok());
}

TEST(CheckBatchTest, KeepsRemoteRangesInsideTheRegisteredMemory) {
  RemoteTarget t{"worker", "rkey", 1000, 100};
  auto check = [&](uint64_t addr, size_t length) {
    std::vector<TransferOp> ops{Op(OpKind::kPut, length, addr)};
    return CheckBatch(t, ops);
  };
  EXPECT_TRUE(check(1000, 100).ok());
  EXPECT_TRUE(check(1050, 50).ok());
  EXPECT_FALSE(check(999, 1).ok()) << "below the base";
  EXPECT_FALSE(check(1050, 51).ok()) << "past the end";
  EXPECT_FALSE(check(1000, 101).ok()) << "longer than the region";
  EXPECT_FALSE(check(~uint64_t{0} - 10, 20).ok()) << "an address that wraps";
  // Eager ops carry no address (the daemon picks it); a target without a range is not checked.
  t.protocol = Protocol::kTwoSided;
  t.push_worker_address = "lane";
  std::vector<TransferOp> eager{Op(OpKind::kEagerGet, 8, 1)};
  EXPECT_TRUE(CheckBatch(t, eager).ok());
  EXPECT_TRUE(CheckBatch(RemoteTarget{"worker", "rkey"}, std::vector<TransferOp>{Op(OpKind::kGet, 8, 1)}).ok());
}

TEST(PlanLanesTest, SpreadsOnlyTwoSidedBatchesWithoutTwoPhasePuts) {
  const RemoteTarget t = TwoSidedTarget({"a", "b", "c"}, "b");
  const std::vector<TransferOp> gets{Op(OpKind::kGet, 8), Op(OpKind::kEagerGet, 8), Op(OpKind::kEagerPut, 8)};
  EXPECT_FALSE(PlanLanes(t, gets, 4, 0).empty());
  EXPECT_TRUE(PlanLanes(t, gets, 1, 0).empty()) << "one engine worker";
  EXPECT_TRUE(PlanLanes(t, std::span(gets).first(1), 4, 0).empty()) << "one op";
  EXPECT_TRUE(PlanLanes(TwoSidedTarget({"b"}, "b"), gets, 4, 0).empty()) << "one daemon lane";
  RemoteTarget one_sided = t;
  one_sided.protocol = Protocol::kOneSided;
  EXPECT_TRUE(PlanLanes(one_sided, gets, 4, 0).empty());
  std::vector<TransferOp> with_put = gets;
  with_put.push_back(Op(OpKind::kPut, 8));
  EXPECT_TRUE(PlanLanes(t, with_put, 4, 0).empty()) << "a put's receive waits on the target's own lane";
}

TEST(PlanLanesTest, EachWorkerKeepsItsLaneAndOpsAreDealtInTurn) {
  const RemoteTarget t = TwoSidedTarget({"a", "b", "c"}, "b");  // start at lane 1
  const std::vector<TransferOp> ops(5, Op(OpKind::kGet, 8));
  const std::vector<LaneGroup> groups = PlanLanes(t, ops, /*slots=*/4, /*first=*/3);
  ASSERT_EQ(groups.size(), 3u);  // min(workers, lanes, ops)
  EXPECT_EQ(groups[0].slot, 3u);
  EXPECT_EQ(groups[0].lane, "b");  // lane (1 + 3) % 3
  EXPECT_EQ(groups[1].slot, 0u);
  EXPECT_EQ(groups[1].lane, "b");  // lane (1 + 0) % 3: worker 0 always talks to lane b
  EXPECT_EQ(groups[2].slot, 1u);
  EXPECT_EQ(groups[2].lane, "c");
  EXPECT_EQ(groups[0].ops, (std::vector<size_t>{0, 3}));
  EXPECT_EQ(groups[1].ops, (std::vector<size_t>{1, 4}));
  EXPECT_EQ(groups[2].ops, (std::vector<size_t>{2}));
  // A target whose own lane is not in the list starts at lane 0.
  EXPECT_EQ(PlanLanes(TwoSidedTarget({"a", "b"}, "z"), ops, 2, 0)[0].lane, "a");
}

TEST(PlanSplitTest, NothingToSplit) {
  const std::vector<TransferOp> ops{Op(OpKind::kGet, 64)};
  EXPECT_FALSE(PlanSplit(ops, Protocol::kOneSided, 0, 4).has_value());
  EXPECT_FALSE(PlanSplit(ops, Protocol::kOneSided, 16, 1).has_value());
  EXPECT_FALSE(PlanSplit(ops, Protocol::kOneSided, 64, 4).has_value()) << "not above split_bytes";
  const std::vector<TransferOp> puts{Op(OpKind::kPut, 64), Op(OpKind::kEagerPut, 64), Op(OpKind::kEagerGet, 64)};
  EXPECT_FALSE(PlanSplit(puts, Protocol::kTwoSided, 16, 4).has_value()) << "two-sided, only gets split";
}

TEST(PlanSplitTest, CutsLargeOpsIntoEvenPiecesDealtOverTheWorkers) {
  const std::vector<TransferOp> ops{Op(OpKind::kGet, 10, 100), Op(OpKind::kPut, 3, 500)};
  const auto plan = PlanSplit(ops, Protocol::kOneSided, 4, 2);
  ASSERT_TRUE(plan.has_value());
  // 10 bytes over ceil(10/4) = 3 pieces of 4, 4, 2; the 3-byte op stays whole.
  ASSERT_EQ(plan->pieces.size(), 4u);
  EXPECT_EQ(plan->owner, (std::vector<size_t>{0, 0, 0, 1}));
  EXPECT_EQ(plan->pieces[0].length, 4u);
  EXPECT_EQ(plan->pieces[2].length, 2u);
  EXPECT_EQ(plan->pieces[2].remote_addr, 108u);
  EXPECT_EQ(plan->pieces[2].local, g_buffer.data() + 8);
  EXPECT_EQ(plan->pieces[3].remote_addr, 500u);
  EXPECT_EQ(plan->per_worker, (std::vector<std::vector<size_t>>{{0, 2}, {1, 3}}));
  // Two-sided: the get splits, the put beside it does not.
  const auto two_sided = PlanSplit(ops, Protocol::kTwoSided, 4, 8);
  ASSERT_TRUE(two_sided.has_value());
  EXPECT_EQ(two_sided->pieces.size(), 4u);
  EXPECT_EQ(two_sided->per_worker.size(), 4u) << "no more workers than pieces";
}

TEST(PlanSplitTest, AnOpFailsWithTheFirstFailureOfItsPieces) {
  std::vector<TransferOp> ops{Op(OpKind::kGet, 12), Op(OpKind::kGet, 4)};
  ops[0].status = Internal("stale");
  auto plan = PlanSplit(ops, Protocol::kOneSided, 4, 2);
  ASSERT_TRUE(plan.has_value());
  ASSERT_EQ(plan->pieces.size(), 4u);
  for (TransferOp& piece : plan->pieces) piece.status = Status::Ok();
  plan->pieces[1].status = DeadlineExceeded("first");
  plan->pieces[2].status = Unavailable("second");
  MergePieces(*plan, ops);
  EXPECT_EQ(ops[0].status.message(), "first");
  EXPECT_TRUE(ops[1].status.ok());
}

TEST(DeadlineTest, PassesOnlyAfterTheTimeout) {
  ManualClock clock;
  const Deadline deadline(&clock, 100);
  clock.AdvanceMs(100);
  EXPECT_FALSE(deadline.Passed());
  clock.AdvanceMs(1);
  EXPECT_TRUE(deadline.Passed());
}

TEST(ProgressUntilTest, TimesOutInTheFirstIdleRoundPastTheDeadline) {
  ManualClock clock;
  const uint64_t start = clock.NowMs();
  const Deadline deadline(&clock, 100);
  unsigned rounds = 0, idles = 0;
  const bool finished = ProgressUntil(
      deadline, [&] { return ++rounds, 0u; }, [] { return false; },
      [&](unsigned events) {
        EXPECT_EQ(events, 0u);
        ++idles;
        clock.AdvanceMs(10);
      });
  EXPECT_FALSE(finished);
  EXPECT_EQ(clock.NowMs() - start, 110u);  // the first look past start + 100
  EXPECT_EQ(rounds, 12u);
  EXPECT_EQ(idles, 11u);
}

TEST(ProgressUntilTest, ABatchStillMovingIsNeverCutOff) {
  ManualClock clock;
  const Deadline deadline(&clock, 100);
  clock.AdvanceMs(1000);  // long past the deadline
  unsigned rounds = 0;
  const bool finished = ProgressUntil(
      deadline, [&] { return ++rounds, 1u; }, [&] { return rounds == 5; }, [](unsigned) {});
  EXPECT_TRUE(finished);
  EXPECT_EQ(rounds, 5u);
}

TEST(ProgressUntilTest, FinishingInTheLastRoundWins) {
  ManualClock clock;
  const Deadline deadline(&clock, 0);
  clock.AdvanceMs(5);
  // No events (a completion seen by polling, not by a callback) and the deadline passed, but the
  // work is done: finished, not timed out.
  EXPECT_TRUE(ProgressUntil(
      deadline, [] { return 0u; }, [] { return true; }, [](unsigned) { FAIL() << "idle after finishing"; }));
}

}  // namespace
}  // namespace kvstash::transfer
