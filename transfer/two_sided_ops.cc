#include "transfer/two_sided_ops.h"

#include <cstring>
#include <random>

#include "common/checksum.h"
#include "transfer/push_protocol.h"

namespace kvstash::transfer {
namespace {

void Settle(void* request, ucs_status_t* status) {
  if (request == nullptr || *status != UCS_INPROGRESS) return;
  *status = ucp_request_check_status(request);
}

class TwoSidedGet final : public TwoSidedOp {
 public:
  explicit TwoSidedGet(TransferOp& op) : TwoSidedOp(op) {}
  void Post(const PostContext& ctx) override {
    // The receive first, so the daemon's send always finds it posted (no unexpected copy).
    const uint64_t tag = ctx.answers.NextTag();
    if (!PostReceive(ctx, tag)) return;
    header_.reply_tag = tag;
    header_.remote_addr = op_.remote_addr;
    header_.length = op_.length;
    static_assert(sizeof(header_.grant) == std::tuple_size_v<decltype(op_.grant)>);
    std::memcpy(header_.grant, op_.grant.data(), sizeof(header_.grant));
    Sent(SendRequest(ctx, push::kPushRequestAm, &header_, sizeof(header_)), &request_send_, &state_.request);
  }

 private:
  push::PushRequest header_;  // stays put until it is sent
};

class TwoSidedPut final : public TwoSidedOp {
 public:
  explicit TwoSidedPut(TransferOp& op) : TwoSidedOp(op) { state_.recv = UCS_OK; }  // nothing to receive
  void Post(const PostContext& ctx) override {
    ucp_request_param_t param{};
    if (ctx.memh != nullptr) {
      param.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
      param.memh = ctx.memh;
    }
    Sent(ucp_tag_send_nbx(ctx.ep, op_.local, op_.length, op_.tag, &param), &request_send_, &state_.request);
  }
};

class EagerGet final : public TwoSidedOp {
 public:
  explicit EagerGet(TransferOp& op) : TwoSidedOp(op) {}
  void Post(const PostContext& ctx) override {
    const uint64_t tag = ctx.answers.NextTag();
    if (!PostReceive(ctx, tag)) return;
    header_.reply_tag = tag;
    header_.max_length = op_.length;
    std::memcpy(header_.key, op_.key.bytes().data(), sizeof(header_.key));
    Sent(SendRequest(ctx, push::kGetRequestAm, &header_, sizeof(header_)), &request_send_, &state_.request);
  }

 private:
  push::GetRequest header_;
};

class EagerPut final : public TwoSidedOp {
 public:
  explicit EagerPut(TransferOp& op) : TwoSidedOp(op) { state_.recv = UCS_OK; }  // the answer is a message
  void Post(const PostContext& ctx) override {
    // The request first, then the bytes on the same connection: the daemon posts their receive
    // while handling the request, so they land straight in the room it reserved.
    const uint64_t tag = ctx.answers.NextTag();
    ExpectAnswer(ctx.answers, tag);
    header_.data_tag = tag;
    header_.size = op_.length;
    // Hashed here, one block at a time, so that the bytes of the blocks before it are already on
    // their way while this one is hashed.
    op_.checksum = BlockChecksum(op_.local, op_.length);
    header_.checksum = op_.checksum;
    header_.flags = (op_.pin ? push::kPutPin : 0) | (op_.parent ? push::kPutHasParent : 0);
    if (op_.advice) {
      header_.flags |= *op_.advice == ReuseAdvice::kLikely ? push::kPutAdviseLikely : push::kPutAdviseUnlikely;
    }
    std::memcpy(header_.key, op_.key.bytes().data(), sizeof(header_.key));
    if (op_.parent) std::memcpy(header_.parent, op_.parent->bytes().data(), sizeof(header_.parent));
    Sent(SendRequest(ctx, push::kPutRequestAm, &header_, sizeof(header_)), &request_send_, &state_.request);
    ucp_request_param_t param{};
    if (ctx.memh != nullptr) {
      param.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
      param.memh = ctx.memh;
    }
    state_.data = UCS_INPROGRESS;
    Sent(ucp_tag_send_nbx(ctx.ep, op_.local, op_.length, tag, &param), &data_send_, &state_.data);
    (void)ctx.worker.Progress();  // push what the socket did not take yet, before hashing the next block
  }

 private:
  push::PutRequest header_;
};

}  // namespace

AnswerBook::AnswerBook()
    : next_tag_(std::random_device{}() | (static_cast<uint64_t>(std::random_device{}()) << 32)) {}

void AnswerBook::Deliver(const void* header, size_t length) {
  const std::optional<push::PushAnswer> answer = ReadAnswer(header, length);
  if (!answer) return;  // not ours: ignore
  auto it = waiting_.find(answer->reply_tag);
  if (it == waiting_.end()) return;  // late: the op already ended
  it->second->Answer(*answer);
}

std::unique_ptr<TwoSidedOp> TwoSidedOp::For(TransferOp& op) {
  switch (op.kind) {
    case OpKind::kGet:
      return std::make_unique<TwoSidedGet>(op);
    case OpKind::kPut:
      return std::make_unique<TwoSidedPut>(op);
    case OpKind::kEagerGet:
      return std::make_unique<EagerGet>(op);
    case OpKind::kEagerPut:
      return std::make_unique<EagerPut>(op);
  }
  return nullptr;
}

TwoSidedOp::~TwoSidedOp() {
  if (recv_ != nullptr) ucp_request_free(recv_);  // released by UCX once complete
  if (request_send_ != nullptr) ucp_request_free(request_send_);
  if (data_send_ != nullptr) ucp_request_free(data_send_);
}

bool TwoSidedOp::PostReceive(const PostContext& ctx, uint64_t tag) {
  ucp_request_param_t param{};
  if (ctx.memh != nullptr) {
    param.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
    param.memh = ctx.memh;
  }
  param.op_attr_mask |= UCP_OP_ATTR_FIELD_RECV_INFO;
  param.recv_info.tag_info = &recv_info_;
  ucs_status_ptr_t r = ucp_tag_recv_nbx(ctx.worker.handle(), op_.local, op_.length, tag, ~uint64_t{0}, &param);
  if (UCS_PTR_IS_ERR(r)) {
    state_.recv = UCS_PTR_STATUS(r);
    state_.request = UCS_OK;  // nothing was asked of the daemon
    return false;
  }
  if (r == nullptr) state_.recv = UCS_OK;
  else recv_ = r;
  ExpectAnswer(ctx.answers, tag);
  return true;
}

void TwoSidedOp::Sent(ucs_status_ptr_t r, void** request, ucs_status_t* status) {
  if (r == nullptr) *status = UCS_OK;
  else if (UCS_PTR_IS_ERR(r)) *status = UCS_PTR_STATUS(r);
  else *request = r;
}

ucs_status_ptr_t TwoSidedOp::SendRequest(const PostContext& ctx, uint16_t id, const void* header, size_t length) {
  ucp_request_param_t am{};
  am.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  am.flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER;
  return ucp_am_send_nbx(ctx.ep, id, header, length, nullptr, 0, &am);
}

void TwoSidedOp::ExpectAnswer(AnswerBook& answers, uint64_t tag) {
  answers.Expect(tag, this);
  expects_answer_ = true;
  answer_tag_ = tag;
}

bool TwoSidedOp::Complete() {
  Settle(request_send_, &state_.request);
  Settle(data_send_, &state_.data);
  if (recv_ != nullptr && state_.recv == UCS_INPROGRESS) state_.recv = ucp_tag_recv_request_test(recv_, &recv_info_);
  return TwoSidedFinished(op_.kind, state_);
}

void TwoSidedOp::CancelReceive(ucp_worker_h worker) {
  if (recv_ != nullptr && state_.recv == UCS_INPROGRESS) ucp_request_cancel(worker, recv_);
}

void TwoSidedOp::SettleReceive() {
  if (recv_ != nullptr && state_.recv == UCS_INPROGRESS) state_.recv = ucp_tag_recv_request_test(recv_, &recv_info_);
}

void TwoSidedOp::ForgetAnswer(AnswerBook& answers) {
  if (expects_answer_) answers.Forget(answer_tag_);
  expects_answer_ = false;
}

void TwoSidedOp::Finish() {
  state_.received = recv_info_.length;
  const OpOutcome outcome = TwoSidedOutcome(op_.kind, state_, op_.length);
  op_.status = outcome.status;
  if (outcome.status.ok() && op_.kind == OpKind::kEagerGet) {
    op_.got_size = outcome.got_size;
    op_.got_checksum = outcome.got_checksum;
  }
}

}  // namespace kvstash::transfer
