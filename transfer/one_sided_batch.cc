#include "transfer/one_sided_batch.h"

#include <cstring>

#include "transfer/op_outcome.h"

namespace kvstash::transfer {
namespace {

// A request's immediate result: null = done, an error pointer = failed, else still in flight.
ucs_status_t Posted(ucs_status_ptr_t r, void** request) {
  if (r == nullptr) return UCS_OK;
  if (UCS_PTR_IS_ERR(r)) return UCS_PTR_STATUS(r);
  *request = r;
  return UCS_INPROGRESS;
}

}  // namespace

OneSidedBatch::OneSidedBatch(UcxWorker& worker, ucp_ep_h ep, ucp_rkey_h rkey, std::span<TransferOp*> ops,
                             const MemhLookup& find_memh)
    : worker_(worker), ep_(ep), rkey_(rkey), ops_(ops), find_memh_(find_memh), completions_(ops.size()),
      requests_(ops.size(), nullptr) {}

OneSidedBatch::~OneSidedBatch() {
  for (void* r : requests_) {
    if (r != nullptr) ucp_request_free(r);
  }
  if (flush_request_ != nullptr) ucp_request_free(flush_request_);
}

void OneSidedBatch::OnComplete(void*, ucs_status_t status, void* user_data) {
  static_cast<Completion*>(user_data)->status = status;
}

void OneSidedBatch::Post() {
  bool any_posted_put = false;
  for (size_t i = 0; i < ops_.size(); ++i) any_posted_put |= PostOne(i) && ops_[i]->kind == OpKind::kPut;
  // Puts complete locally first; the flush makes them visible at the daemon before we return.
  // Copies through mapped memory need none.
  if (any_posted_put) {
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    param.cb.send = &OnComplete;
    param.user_data = &flush_;
    flush_.status = Posted(ucp_ep_flush_nbx(ep_, &param), &flush_request_);
  } else {
    flush_.status = UCS_OK;
  }
}

bool OneSidedBatch::PostOne(size_t i) {
  TransferOp& op = *ops_[i];
  void* mapped = nullptr;
  if (ucp_rkey_ptr(rkey_, op.remote_addr, &mapped) == UCS_OK && mapped != nullptr) {
    // The target's memory is mapped here: one copy by this thread, nothing to progress.
    if (op.kind == OpKind::kGet) std::memcpy(op.local, mapped, op.length);
    else std::memcpy(mapped, op.local, op.length);
    completions_[i].status = UCS_OK;
    return false;
  }
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  param.cb.send = &OnComplete;
  param.user_data = &completions_[i];
  if (ucp_mem_h memh = find_memh_(op.local, op.length)) {
    param.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
    param.memh = memh;
  }
  ucs_status_ptr_t r = op.kind == OpKind::kGet ? ucp_get_nbx(ep_, op.local, op.length, op.remote_addr, rkey_, &param)
                                               : ucp_put_nbx(ep_, op.local, op.length, op.remote_addr, rkey_, &param);
  completions_[i].status = Posted(r, &requests_[i]);
  return true;
}

bool OneSidedBatch::Pending() const {
  if (flush_.status == UCS_INPROGRESS) return true;
  for (const Completion& c : completions_) {
    if (c.status == UCS_INPROGRESS) return true;
  }
  return false;
}

bool OneSidedBatch::AnyFailed() const {
  bool failed = Failed(flush_.status);
  for (const Completion& c : completions_) failed |= Failed(c.status);
  return failed;
}

void OneSidedBatch::Complete(const Deadline& deadline, const std::string& peer_address) {
  const bool finished = !Pending() || ProgressUntil(
                                          deadline, [&] { return worker_.Progress(); }, [&] { return !Pending(); },
                                          [](unsigned) {});
  if (finished && !AnyFailed()) return;
  // The peer is gone or broken: close its endpoint forcefully and reconnect on the next call.
  worker_.MarkFailed(peer_address);
  // Cancels whatever is still outstanding (their callbacks fire with an error) and forgets the
  // endpoint so that the next call reconnects.
  for (void* r : requests_) {
    if (r != nullptr && ucp_request_check_status(r) == UCS_INPROGRESS) ucp_request_cancel(worker_.handle(), r);
  }
  worker_.DropPeer(peer_address);
  while (Pending() && worker_.Progress() > 0) {
  }
}

void OneSidedBatch::Outcome() {
  for (size_t i = 0; i < ops_.size(); ++i) {
    ops_[i]->status = OneSidedOutcome(ops_[i]->kind, completions_[i].status, flush_.status);
  }
}

}  // namespace kvstash::transfer
