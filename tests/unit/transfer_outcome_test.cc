// The outcome of each transfer op as a pure function of what UCX and the daemon reported
// (transfer/op_outcome.h): no worker, no endpoint, no daemon.
#include <gtest/gtest.h>

#include <cstring>

#include "transfer/op_outcome.h"

namespace kvstash::transfer {
namespace {

constexpr ucs_status_t kReset = UCS_ERR_CONNECTION_RESET;

bool Mentions(const Status& st, std::string_view text) { return st.message().find(text) != std::string::npos; }

push::PushAnswer WireAnswer(uint32_t code, const char* message) {
  push::PushAnswer a;
  a.code = code;
  a.reply_tag = 77;
  a.size = 4096;
  a.checksum = 0xfeed;
  std::strncpy(a.message, message, sizeof(a.message) - 1);
  return a;
}

DaemonAnswer Refusal(StatusCode code) { return {true, Status(code, "daemon: no"), 0, 0}; }

TEST(FromUcsTest, CancelledAndTimedOutAreDeadlinesEverythingElseIsUnavailable) {
  EXPECT_TRUE(FromUcs(UCS_OK, "x").ok());
  EXPECT_EQ(FromUcs(UCS_ERR_CANCELED, "x").code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(FromUcs(UCS_ERR_TIMED_OUT, "x").message(), "x timed out");
  const Status reset = FromUcs(kReset, "one-sided get");
  EXPECT_EQ(reset.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Mentions(reset, "one-sided get: UCX")) << reset.ToString();
}

TEST(OneSidedOutcomeTest, APutIsOverOnlyWhenTheFlushIs) {
  EXPECT_TRUE(OneSidedOutcome(OpKind::kPut, UCS_OK, UCS_OK).ok());
  const Status unflushed = OneSidedOutcome(OpKind::kPut, UCS_OK, UCS_INPROGRESS);
  EXPECT_EQ(unflushed.code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(unflushed.message(), "one-sided put timed out");
  EXPECT_EQ(OneSidedOutcome(OpKind::kPut, UCS_OK, kReset).code(), StatusCode::kUnavailable);
  // The put's own failure is what it reports, not the flush's.
  EXPECT_EQ(OneSidedOutcome(OpKind::kPut, UCS_ERR_CANCELED, kReset).code(), StatusCode::kDeadlineExceeded);
}

TEST(OneSidedOutcomeTest, AGetIgnoresTheFlush) {
  EXPECT_TRUE(OneSidedOutcome(OpKind::kGet, UCS_OK, kReset).ok());
  EXPECT_EQ(OneSidedOutcome(OpKind::kGet, UCS_INPROGRESS, UCS_OK).message(), "one-sided get timed out");
  EXPECT_EQ(OneSidedOutcome(OpKind::kGet, kReset, UCS_OK).code(), StatusCode::kUnavailable);
}

TEST(ReadAnswerTest, OnlyAnExactPushAnswerWithTheMagicIsOurs) {
  const push::PushAnswer a = WireAnswer(5, "gone");
  EXPECT_TRUE(ReadAnswer(&a, sizeof(a)).has_value());
  EXPECT_FALSE(ReadAnswer(&a, sizeof(a) - 1).has_value());
  EXPECT_FALSE(ReadAnswer(&a, sizeof(a) + 1).has_value());
  EXPECT_FALSE(ReadAnswer(nullptr, sizeof(a)).has_value());
  push::PushAnswer stale = a;
  stale.magic = push::kMagic + 1;
  EXPECT_FALSE(ReadAnswer(&stale, sizeof(stale)).has_value());
}

TEST(ReadAnswerTest, AnUnterminatedMessageIsCutAtItsLastByte) {
  push::PushAnswer a = WireAnswer(5, "");
  std::memset(a.message, 'x', sizeof(a.message));
  const auto read = ReadAnswer(&a, sizeof(a));
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(std::strlen(read->message), sizeof(a.message) - 1);
  EXPECT_EQ(read->reply_tag, 77u);
}

TEST(DecodeAnswerTest, CodeZeroIsSuccessOnlyForEagerOps) {
  const DaemonAnswer put = DecodeAnswer(OpKind::kEagerPut, WireAnswer(0, ""));
  EXPECT_TRUE(put.answered);
  EXPECT_TRUE(put.status.ok());
  const DaemonAnswer get = DecodeAnswer(OpKind::kEagerGet, WireAnswer(0, ""));
  EXPECT_TRUE(get.status.ok());
  EXPECT_EQ(get.size, 4096u);
  EXPECT_EQ(get.checksum, 0xfeedu);
  // A two-sided get is only ever refused: "OK" is malformed.
  const DaemonAnswer refused = DecodeAnswer(OpKind::kGet, WireAnswer(0, "huh"));
  EXPECT_TRUE(refused.answered);
  EXPECT_EQ(refused.status.code(), StatusCode::kInternal);
  EXPECT_EQ(refused.status.message(), "daemon refused the transfer: huh");
}

TEST(DecodeAnswerTest, KnownCodesPassThroughAndOthersBecomeInternal) {
  const DaemonAnswer exists = DecodeAnswer(OpKind::kEagerPut, WireAnswer(6, "already stored"));
  EXPECT_EQ(exists.status.code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(exists.status.message(), "daemon: already stored");
  EXPECT_EQ(DecodeAnswer(OpKind::kGet, WireAnswer(5, "lease ended")).status.code(), StatusCode::kNotFound);
  EXPECT_EQ(DecodeAnswer(OpKind::kEagerGet, WireAnswer(15, "")).status.code(), StatusCode::kDataLoss);
  EXPECT_EQ(DecodeAnswer(OpKind::kEagerGet, WireAnswer(16, "")).status.code(), StatusCode::kInternal);
  EXPECT_EQ(DecodeAnswer(OpKind::kGet, WireAnswer(0xffffffff, "")).status.code(), StatusCode::kInternal);
  // A refusal carries no size even when the wire had one.
  EXPECT_EQ(DecodeAnswer(OpKind::kEagerGet, WireAnswer(5, "")).size, 0u);
}

TEST(TwoSidedFinishedTest, AGetWaitsForItsBytesOrARefusal) {
  TwoSidedState s;  // request and receive in flight
  EXPECT_FALSE(TwoSidedFinished(OpKind::kGet, s));
  s.recv = UCS_OK;
  EXPECT_FALSE(TwoSidedFinished(OpKind::kGet, s)) << "bytes in, request not yet over";
  s.request = UCS_OK;
  EXPECT_TRUE(TwoSidedFinished(OpKind::kGet, s));
  TwoSidedState refused;
  refused.request = UCS_OK;
  refused.answer = Refusal(StatusCode::kNotFound);
  EXPECT_TRUE(TwoSidedFinished(OpKind::kGet, refused));
  TwoSidedState failed;
  failed.request = kReset;
  EXPECT_TRUE(TwoSidedFinished(OpKind::kGet, failed));
}

TEST(TwoSidedFinishedTest, APutIsOverWithItsSend) {
  TwoSidedState s;
  s.recv = UCS_OK;
  EXPECT_FALSE(TwoSidedFinished(OpKind::kPut, s));
  s.request = UCS_OK;
  EXPECT_TRUE(TwoSidedFinished(OpKind::kPut, s));
}

TEST(TwoSidedFinishedTest, AnEagerPutWaitsForItsBytesToLeaveAndTheAnswer) {
  TwoSidedState s;
  s.recv = UCS_OK;
  s.request = UCS_OK;
  s.data = UCS_INPROGRESS;
  s.answer = {true, Status::Ok()};
  EXPECT_FALSE(TwoSidedFinished(OpKind::kEagerPut, s)) << "answered while its bytes are still being sent";
  s.data = UCS_OK;
  EXPECT_TRUE(TwoSidedFinished(OpKind::kEagerPut, s));
  s.answer = {};
  EXPECT_FALSE(TwoSidedFinished(OpKind::kEagerPut, s)) << "sent, not answered";
  s.data = kReset;
  EXPECT_TRUE(TwoSidedFinished(OpKind::kEagerPut, s));
  TwoSidedState early;
  early.recv = UCS_OK;
  early.data = UCS_INPROGRESS;
  early.request = kReset;
  EXPECT_TRUE(TwoSidedFinished(OpKind::kEagerPut, early));
}

TEST(TwoSidedFinishedTest, AnEagerGetWaitsForBothTheBytesAndTheAnswer) {
  TwoSidedState s;
  s.request = UCS_OK;
  s.recv = UCS_OK;
  EXPECT_FALSE(TwoSidedFinished(OpKind::kEagerGet, s)) << "bytes without the size and checksum";
  s.answer = {true, Status::Ok(), 8, 1};
  EXPECT_TRUE(TwoSidedFinished(OpKind::kEagerGet, s));
  s.recv = UCS_INPROGRESS;
  EXPECT_FALSE(TwoSidedFinished(OpKind::kEagerGet, s)) << "answer without the bytes";
  s.answer = Refusal(StatusCode::kNotFound);
  EXPECT_TRUE(TwoSidedFinished(OpKind::kEagerGet, s)) << "a miss sends no bytes";
  s.answer = {};
  s.recv = kReset;
  EXPECT_TRUE(TwoSidedFinished(OpKind::kEagerGet, s));
}

TEST(TwoSidedBrokeTransportTest, OnlyTransportFailuresCount) {
  TwoSidedState ok;
  ok.request = ok.recv = UCS_OK;
  EXPECT_FALSE(TwoSidedBrokeTransport(ok));
  TwoSidedState cancelled = ok;
  cancelled.recv = UCS_ERR_CANCELED;
  EXPECT_TRUE(TwoSidedBrokeTransport(cancelled)) << "a receive cancelled at a timeout";
  cancelled.answer = Refusal(StatusCode::kNotFound);
  EXPECT_FALSE(TwoSidedBrokeTransport(cancelled)) << "a refused get's receive is cancelled on purpose";
  TwoSidedState truncated = ok;
  truncated.recv = UCS_ERR_MESSAGE_TRUNCATED;
  EXPECT_FALSE(TwoSidedBrokeTransport(truncated));
  TwoSidedState request = ok;
  request.request = kReset;
  EXPECT_TRUE(TwoSidedBrokeTransport(request));
  TwoSidedState data = ok;
  data.data = kReset;
  data.answer = Refusal(StatusCode::kAborted);
  EXPECT_TRUE(TwoSidedBrokeTransport(data));
  TwoSidedState in_flight;
  EXPECT_FALSE(TwoSidedBrokeTransport(in_flight));
}

TEST(TwoSidedOnlyReceivingTest, NothingOfOursStillBeingSent) {
  TwoSidedState s;
  EXPECT_FALSE(TwoSidedOnlyReceiving(OpKind::kGet, s));
  s.request = UCS_OK;
  EXPECT_TRUE(TwoSidedOnlyReceiving(OpKind::kGet, s));
  EXPECT_FALSE(TwoSidedOnlyReceiving(OpKind::kPut, s));
  s.data = UCS_INPROGRESS;
  EXPECT_FALSE(TwoSidedOnlyReceiving(OpKind::kEagerPut, s));
}

}  // namespace
}  // namespace kvstash::transfer
