// Each two-sided op kind's final status (transfer/op_outcome.h) from every way its wait can end:
// completed, refused, failed, short or long, timed out. No UCX is run.
#include <gtest/gtest.h>

#include "transfer/op_outcome.h"

namespace kvstash::transfer {
namespace {

constexpr ucs_status_t kReset = UCS_ERR_CONNECTION_RESET;

bool Mentions(const Status& st, std::string_view text) { return st.message().find(text) != std::string::npos; }

TwoSidedState Received(uint64_t bytes) {
  TwoSidedState s;
  s.request = UCS_OK;
  s.recv = UCS_OK;
  s.received = bytes;
  return s;
}

TEST(TwoSidedGetOutcomeTest, ExactlyTheBytesAskedForIsOk) {
  EXPECT_TRUE(TwoSidedGetOutcome(Received(4096), 4096).status.ok());
  const Status short_read = TwoSidedGetOutcome(Received(100), 4096).status;
  EXPECT_EQ(short_read.code(), StatusCode::kDataLoss);
  EXPECT_EQ(short_read.message(), "daemon sent 100 bytes for a read of 4096");
  TwoSidedState truncated = Received(0);
  truncated.recv = UCS_ERR_MESSAGE_TRUNCATED;
  const Status long_read = TwoSidedGetOutcome(truncated, 4096).status;
  EXPECT_EQ(long_read.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Mentions(long_read, "more bytes than the read of 4096")) << long_read.ToString();
}

TEST(TwoSidedGetOutcomeTest, ARefusalIsReportedAsTheDaemonSaidIt) {
  TwoSidedState s;
  s.request = UCS_OK;
  s.recv = UCS_ERR_CANCELED;  // cancelled when the refusal came
  s.answer = {true, NotFound("daemon refused the transfer: lease ended")};
  EXPECT_EQ(TwoSidedGetOutcome(s, 64).status, s.answer.status);
}

TEST(TwoSidedGetOutcomeTest, FailuresAndTimeoutsNameWhatFailed) {
  TwoSidedState request;
  request.request = kReset;
  const Status failed = TwoSidedGetOutcome(request, 64).status;
  EXPECT_EQ(failed.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Mentions(failed, "two-sided get request")) << failed.ToString();
  TwoSidedState unsent;  // the request never left
  EXPECT_EQ(TwoSidedGetOutcome(unsent, 64).status.message(), "two-sided get request timed out");
  TwoSidedState waiting;
  waiting.request = UCS_OK;  // asked, never answered: its receive was cancelled at the deadline
  waiting.recv = UCS_ERR_CANCELED;
  EXPECT_EQ(TwoSidedGetOutcome(waiting, 64).status.message(), "two-sided get timed out");
  waiting.recv = UCS_INPROGRESS;  // matched, so not cancellable: still a timeout
  EXPECT_EQ(TwoSidedGetOutcome(waiting, 64).status.code(), StatusCode::kDeadlineExceeded);
  waiting.recv = kReset;
  EXPECT_EQ(TwoSidedGetOutcome(waiting, 64).status.code(), StatusCode::kUnavailable);
}

TEST(TwoSidedPutOutcomeTest, OkOnceSentElseWhyNot) {
  TwoSidedState s;
  s.recv = UCS_OK;
  EXPECT_EQ(TwoSidedPutOutcome(s).status.message(), "two-sided put timed out");
  s.request = UCS_OK;
  EXPECT_TRUE(TwoSidedPutOutcome(s).status.ok());
  s.request = kReset;
  EXPECT_EQ(TwoSidedPutOutcome(s).status.code(), StatusCode::kUnavailable);
}

TEST(EagerGetOutcomeTest, AnAnsweredBlockCarriesItsSizeAndChecksum) {
  TwoSidedState s = Received(1000);
  s.answer = {true, Status::Ok(), 1000, 0xabc};
  const OpOutcome got = EagerGetOutcome(s, 4096);  // room for more than the block: fine
  EXPECT_TRUE(got.status.ok()) << got.status.ToString();
  EXPECT_EQ(got.got_size, 1000u);
  EXPECT_EQ(got.got_checksum, 0xabcu);
  s.received = 999;
  const OpOutcome wrong = EagerGetOutcome(s, 4096);
  EXPECT_EQ(wrong.status.code(), StatusCode::kDataLoss);
  EXPECT_EQ(wrong.status.message(), "daemon sent 999 bytes for a block of 1000");
  EXPECT_EQ(wrong.got_size, 0u);
}

TEST(EagerGetOutcomeTest, BytesWithoutAnAnswerAreATimeout) {
  const Status st = EagerGetOutcome(Received(1000), 4096).status;
  EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(Mentions(st, "answer did not")) << st.ToString();
}

TEST(EagerGetOutcomeTest, MissesTooLargeAndFailures) {
  TwoSidedState miss;
  miss.request = UCS_OK;
  miss.recv = UCS_ERR_CANCELED;
  miss.answer = {true, NotFound("daemon: not here")};
  EXPECT_EQ(EagerGetOutcome(miss, 64).status.code(), StatusCode::kNotFound);
  miss.answer = {true, OutOfRange("daemon: larger than 64")};
  EXPECT_EQ(EagerGetOutcome(miss, 64).status.code(), StatusCode::kOutOfRange);
  TwoSidedState truncated = Received(0);
  truncated.recv = UCS_ERR_MESSAGE_TRUNCATED;
  truncated.answer = {true, Status::Ok(), 100, 1};
  EXPECT_EQ(EagerGetOutcome(truncated, 64).status.code(), StatusCode::kDataLoss);
  TwoSidedState request;
  request.request = kReset;
  const Status failed = EagerGetOutcome(request, 64).status;
  EXPECT_EQ(failed.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Mentions(failed, "eager get request")) << failed.ToString();
  TwoSidedState silent;
  silent.request = UCS_OK;
  silent.recv = UCS_ERR_CANCELED;
  EXPECT_EQ(EagerGetOutcome(silent, 64).status.code(), StatusCode::kDeadlineExceeded);
}

TEST(EagerPutOutcomeTest, TheAnswerWinsThenTheFirstFailedSendThenTimeout) {
  TwoSidedState s;
  s.recv = UCS_OK;
  s.request = kReset;
  s.data = kReset;
  s.answer = {true, AlreadyExists("daemon: stored before")};
  EXPECT_EQ(EagerPutOutcome(s).status.code(), StatusCode::kAlreadyExists);
  s.answer = {};
  EXPECT_TRUE(Mentions(EagerPutOutcome(s).status, "eager put request: UCX")) << EagerPutOutcome(s).status.ToString();
  s.request = UCS_OK;
  const Status data = EagerPutOutcome(s).status;
  EXPECT_EQ(data.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Mentions(data, "eager put: UCX")) << data.ToString();
  s.data = UCS_OK;
  EXPECT_EQ(EagerPutOutcome(s).status.message(), "eager put: the daemon did not answer in time");
  s.answer = {true, Status::Ok()};
  EXPECT_TRUE(EagerPutOutcome(s).status.ok());
}

TEST(TwoSidedOutcomeTest, DispatchesOnTheKind) {
  TwoSidedState s = Received(10);
  EXPECT_EQ(TwoSidedOutcome(OpKind::kGet, s, 20).status.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(TwoSidedOutcome(OpKind::kPut, s, 20).status.ok());
  EXPECT_EQ(TwoSidedOutcome(OpKind::kEagerGet, s, 20).status.code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(TwoSidedOutcome(OpKind::kEagerPut, s, 20).status.code(), StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace kvstash::transfer
