// The TransferServer's puts: receives posted for two-phase puts (PutBegin/PutCommit), and eager
// puts — the request handled on a lane's progress thread, the bytes received into the room the
// PutSink reserved, hashed and committed on a verifier thread, answered by the lane again.
#include <algorithm>
#include <cstring>
#include <vector>

#include "transfer/transfer_server_internal.h"

namespace kvstash::transfer {

using server_internal::ReadRequest;

// ---- two-sided puts -------------------------------------------------------------------------

void TransferServer::OnReceived(void* request, ucs_status_t status, const ucp_tag_recv_info_t* info, void* user_data) {
  auto* ref = static_cast<std::shared_ptr<Receive>*>(user_data);
  Receive& receive = **ref;
  TransferServer* self = receive.server;
  // UCX writes no more into the region (done, cancelled before it matched, or failed): the store
  // may reuse it from now on. Before the status, so that whoever sees the receive ended (an
  // AwaitReceive, then an abort) finds the region free.
  self->UntrackLanding(&receive);
  bool free_request = false;
  {
    MutexLock lock(self->receives_mu_);
    receive.status = status;
    receive.received = info != nullptr ? info->length : 0;
    free_request = receive.cancel_issued;
  }
  self->receive_done_.notify_all();
  // Withdrawn while UCX still had it: RunReceiveChanges left the request to this callback (freeing
  // it there would have disabled the callback, and with it this range's release). Otherwise the
  // withdrawal frees it (CancelReceive).
  if (free_request) ucp_request_free(request);
  delete ref;
}

void TransferServer::TrackLanding(const void* receive, const std::byte* at, size_t length) {
  MutexLock lock(landing_mu_);
  landing_[receive] = {at, length};
}

void TransferServer::UntrackLanding(const void* receive) {
  MutexLock lock(landing_mu_);
  landing_.erase(receive);
}

bool TransferServer::MayStillWrite(const std::byte* at, size_t length) const {
  if (length == 0) return false;
  MutexLock lock(landing_mu_);
  // Few entries (one per open put): a scan is cheaper than keeping an interval index.
  for (const auto& [receive, range] : landing_) {
    const auto& [start, bytes] = range;
    if (start < at + length && at < start + bytes) return true;
  }
  return false;
}

Status TransferServer::ExpectReceive(uint64_t tag, std::byte* at, size_t length, std::chrono::milliseconds timeout,
                                     size_t lane) {
  if (length == 0 || !region_->Contains(at, length)) {
    return InvalidArgument("a receive must lie inside the registered memory");
  }
  if (lane >= lanes_.size()) {
    return InvalidArgument("lane " + std::to_string(lane) + " does not exist (this daemon has " +
                           std::to_string(lanes_.size()) + ")");
  }
  auto receive = std::make_shared<Receive>();
  receive->server = this;
  receive->lane = lanes_[lane].get();
  receive->tag = tag;
  receive->at = at;
  receive->length = length;
  receive->deadline_ms = clock_->NowMs() + static_cast<uint64_t>(timeout.count());
  {
    MutexLock lock(receives_mu_);
    if (receives_.contains(tag)) return InvalidArgument("tag " + std::to_string(tag) + " is already expected");
    // Tracked from now, not from the post: a CancelReceive racing the progress thread's post must
    // not let the store free the region before the receive lands in it.
    TrackLanding(receive.get(), at, length);
    receives_.emplace(tag, receive);
    receive->lane->to_post.push_back(receive);
  }
  // Posted by the progress thread (RunReceiveChanges): a caller's thread never contends for the
  // worker's lock, which spins. A send that arrives first waits in UCX as an unexpected message.
  receive->lane->worker->Signal();
  return Status::Ok();
}

void TransferServer::RunReceiveChanges(Lane& lane) {
  std::vector<std::shared_ptr<Receive>> post;
  std::vector<std::shared_ptr<Receive>> cancel;
  {
    MutexLock lock(receives_mu_);
    if (lane.to_post.empty() && lane.to_cancel.empty()) return;
    for (auto& receive : lane.to_post) {
      if (receive->withdrawn) {  // cancelled before it was posted: it never writes
        UntrackLanding(receive.get());
        continue;
      }
      receive->posting = true;
      post.push_back(std::move(receive));
    }
    lane.to_post.clear();
    cancel.swap(lane.to_cancel);
  }
  bool failed = false;
  for (auto& receive : post) {
    auto* ref = new std::shared_ptr<Receive>(receive);
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMH |
                         UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
    param.cb.recv = &TransferServer::OnReceived;
    param.user_data = ref;
    param.memh = push_region_->handle();
    // Outside receives_mu_: the completion callback may run inside this call (a send that
    // arrived before the receive) and takes that lock.
    ucs_status_ptr_t r = ucp_tag_recv_nbx(lane.worker->handle(), receive->at, receive->length, receive->tag,
                                          ~uint64_t{0}, &param);
    MutexLock lock(receives_mu_);
    receive->posting = false;
    if (UCS_PTR_IS_ERR(r)) {
      delete ref;
      receive->status = UCS_PTR_STATUS(r);
      UntrackLanding(receive.get());
      failed = true;
      continue;
    }
    receive->request = r;
    if (receive->withdrawn) cancel.push_back(receive);
  }
  if (failed) receive_done_.notify_all();
  // A receive UCX has already matched cannot be cancelled: its bytes keep landing until it
  // completes, however long the peer takes. Its range stays tracked until OnReceived, so the store
  // keeps the region out of use until then; that callback must therefore still run, and
  // ucp_request_free disables a request's callback: a request UCX still has is freed by OnReceived,
  // one it has completed (before, or inside, the cancel) is freed here. Callbacks run only on this
  // thread, so nothing completes it between the check and `cancel_issued`.
  for (auto& receive : cancel) {
    ucp_request_cancel(lane.worker->handle(), receive->request);
    bool ended = false;
    {
      MutexLock lock(receives_mu_);
      ended = receive->status != UCS_INPROGRESS;
      if (!ended) receive->cancel_issued = true;
    }
    if (ended) ucp_request_free(receive->request);
  }
}

Status TransferServer::AwaitReceive(uint64_t tag, std::chrono::milliseconds wait) {
  MutexLock lock(receives_mu_);
  auto it = receives_.find(tag);
  if (it == receives_.end()) return NotFound("no open receive for this put (withdrawn or expired)");
  std::shared_ptr<Receive> receive = it->second;
  lock.WaitFor(receive_done_, wait, [&] { return receive->status != UCS_INPROGRESS; });
  switch (receive->status) {
    case UCS_INPROGRESS: return DeadlineExceeded("the block's bytes did not arrive in time");
    case UCS_OK:
      if (receive->received != receive->length) {
        return DataLoss("received " + std::to_string(receive->received) + " bytes; the reservation is " +
                        std::to_string(receive->length));
      }
      return Status::Ok();
    case UCS_ERR_MESSAGE_TRUNCATED:
      return DataLoss("the peer sent more bytes than the reservation's " + std::to_string(receive->length));
    case UCS_ERR_CANCELED: return NotFound("the receive was withdrawn (reservation expired or aborted)");
    default: return UcxError(StatusCode::kUnavailable, "receiving the block", receive->status);
  }
}

void TransferServer::CancelReceive(uint64_t tag) {
  Lane* lane = nullptr;
  {
    MutexLock lock(receives_mu_);
    auto it = receives_.find(tag);
    if (it == receives_.end()) return;
    std::shared_ptr<Receive> receive = std::move(it->second);
    receives_.erase(it);
    receive->withdrawn = true;
    // Posted: the progress thread cancels it. Being posted or not posted yet: the progress thread
    // sees `withdrawn` and cancels it after posting, or never posts it.
    lane = receive->lane;
    if (receive->request != nullptr) receive->lane->to_cancel.push_back(std::move(receive));
  }
  lane->worker->Signal();
}

void TransferServer::ExpireReceives() {
  std::vector<uint64_t> expired;
  const uint64_t now_ms = clock_->NowMs();
  {
    MutexLock lock(receives_mu_);
    for (const auto& [tag, receive] : receives_) {
      if (receive->deadline_ms < now_ms) expired.push_back(tag);
    }
  }
  for (uint64_t tag : expired) CancelReceive(tag);
}

void TransferServer::SetPutSink(PutSink* sink, std::chrono::milliseconds reservation_timeout, size_t verifiers) {
  eager_timeout_ms_.store(reservation_timeout.count());
  put_sink_.store(sink, std::memory_order_release);
  if (verifiers == 0) verifiers = std::clamp<size_t>(std::thread::hardware_concurrency() / 2, 1, 4);
  while (verifiers_.size() < verifiers) verifiers_.emplace_back([this] { VerifyLoop(); });
}

void TransferServer::VerifyLoop() {
  MutexLock lock(verify_mu_);
  while (true) {
    lock.Wait(verify_cv_, [&] {
      verify_mu_.AssertHeld();  // a wait predicate runs with the mutex held
      return verifiers_stop_ || !to_verify_.empty();
    });
    if (verifiers_stop_) return;
    EagerReceive* receive = to_verify_.front();
    to_verify_.pop_front();
    lock.Unlock();
    PutSink* sink = put_sink_.load(std::memory_order_acquire);
    receive->outcome = sink != nullptr ? sink->Commit(receive->put, receive->reservation_id)
                                       : FailedPrecondition("this daemon stores no eager puts");
    lock.Lock();
    receive->lane->verified.push_back(receive);
    receive->lane->worker->Signal();  // its lane's thread answers
  }
}

// ---- eager puts -----------------------------------------------------------------------------

ucs_status_t TransferServer::OnEagerPut(void* arg, const void* header, size_t header_length, void*, size_t length,
                                        const ucp_am_recv_param_t* param) {
  Lane& lane = *static_cast<Lane*>(arg);
  TransferServer* self = lane.server;
  Refusal why{};
  const std::optional<push::PutRequest> request = ReadRequest<push::PutRequest>(header, header_length, length, param, why);
  if (!request) {
    self->Refuse(why);
    return UCS_OK;
  }
  const push::PutRequest& req = *request;
  auto receive = std::make_unique<EagerReceive>();
  receive->server = self;
  receive->lane = &lane;
  receive->tag = req.data_tag;
  receive->reply_ep = param->reply_ep;
  receive->put = wire::EagerPutOf(req);
  receive->deadline_ms = self->clock_->NowMs() + static_cast<uint64_t>(self->eager_timeout_ms_.load());

  bool tag_in_use = lane.eager.contains(req.data_tag);
  if (!tag_in_use) {
    MutexLock lock(self->receives_mu_);
    tag_in_use = self->receives_.contains(req.data_tag);
  }
  Status refused = wire::CheckPutRequest(req, self->region_->length());
  if (refused.ok() && tag_in_use) {
    // Its bytes would meet another put's receive: refuse without receiving them (that receive
    // gets them, and its checksum fails, so neither block is stored wrong).
    self->eager_refused_.fetch_add(1, std::memory_order_relaxed);
    self->Answer(param->reply_ep, req.data_tag, InvalidArgument("data tag already in use; retry"));
    return UCS_OK;
  }
  PutSink* sink = self->put_sink_.load(std::memory_order_acquire);
  if (refused.ok() && sink == nullptr) {
    refused = FailedPrecondition("this daemon stores no eager puts");
  } else if (refused.ok()) {
    Result<PutSink::Space> space =
        sink->Reserve(receive->put, std::chrono::milliseconds(self->eager_timeout_ms_.load()));
    if (space.ok() && !self->region_->Contains(space->at, receive->put.size)) {
      sink->Abort(space->reservation_id);
      space = Status(Internal("the store reserved room outside the registered memory"));
    }
    if (space.ok()) {
      receive->at = space->at;
      receive->reservation_id = space->reservation_id;
    } else {
      refused = space.status();
    }
  }
  if (!refused.ok()) {
    // The answer goes now; the bytes, already on their way, are received into nothing.
    self->eager_refused_.fetch_add(1, std::memory_order_relaxed);
    if (refused.code() == StatusCode::kInvalidArgument) self->Refuse(Refusal::kMalformed);
    self->Answer(param->reply_ep, req.data_tag, refused);
  }
  self->ReceiveEagerBytes(lane, std::move(receive));
  return UCS_OK;
}

void TransferServer::ReceiveEagerBytes(Lane& lane, std::unique_ptr<EagerReceive> receive) {
  static std::byte sink_hole[1];
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  param.cb.recv = &TransferServer::OnEagerReceived;
  param.user_data = receive.get();
  void* into = receive->at != nullptr ? static_cast<void*>(receive->at) : sink_hole;
  const size_t length = receive->at != nullptr ? receive->put.size : 0;
  if (receive->at != nullptr) {
    param.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
    param.memh = push_region_->handle();
  }
  EagerReceive* raw = receive.get();
  lane.eager.emplace(raw->tag, std::move(receive));
  lane.eager_open.store(lane.eager.size(), std::memory_order_relaxed);
  // Until UCX completes it the receive may write into the room, even after the reservation
  // expired (a matched receive cannot be cancelled): the store keeps the room out of use.
  if (raw->at != nullptr) TrackLanding(raw, raw->at, length);
  // The callback only records the outcome (it may run inside this call, when the bytes came
  // first); FinishEagerPuts acts on it.
  ucs_status_ptr_t r = ucp_tag_recv_nbx(lane.worker->handle(), into, length, raw->tag, ~uint64_t{0}, &param);
  if (UCS_PTR_IS_ERR(r)) {
    if (raw->at != nullptr) UntrackLanding(raw);
    raw->status = UCS_PTR_STATUS(r);
    lane.eager_ended.push_back(raw);
    return;
  }
  raw->request = r;
}

void TransferServer::OnEagerReceived(void*, ucs_status_t status, const ucp_tag_recv_info_t* info, void* user_data) {
  auto* receive = static_cast<EagerReceive*>(user_data);
  if (receive->at != nullptr) receive->server->UntrackLanding(receive);  // before its room can be aborted
  receive->status = status;
  receive->received = info != nullptr ? info->length : 0;
  receive->lane->eager_ended.push_back(receive);
}

void TransferServer::FinishEagerPuts(Lane& lane) {
  std::vector<EagerReceive*> answered;
  {
    MutexLock lock(verify_mu_);
    answered.swap(lane.verified);
  }
  auto finish = [&](EagerReceive* receive, const Status& outcome) {
    (outcome.ok() ? eager_stored_ : eager_failed_).fetch_add(1, std::memory_order_relaxed);
    Answer(receive->reply_ep, receive->tag, outcome);
  };
  auto forget = [&](EagerReceive* receive) {
    if (receive->request != nullptr) ucp_request_free(receive->request);
    lane.eager.erase(receive->tag);  // frees `receive`
  };
  for (EagerReceive* receive : answered) {
    finish(receive, receive->outcome);
    forget(receive);
  }
  if (!lane.eager_ended.empty()) {
    std::vector<EagerReceive*> ended;
    ended.swap(lane.eager_ended);
    PutSink* sink = put_sink_.load(std::memory_order_acquire);
    size_t queued = 0;
    for (EagerReceive* receive : ended) {
      if (receive->at == nullptr) {  // a refused put's bytes, dropped: answered already
        forget(receive);
        continue;
      }
      if (receive->status == UCS_OK && receive->received == receive->put.size && sink != nullptr) {
        // Hashing the block is the costly part: a verifier thread does it while this one receives on.
        MutexLock lock(verify_mu_);
        to_verify_.push_back(receive);
        ++queued;
        continue;
      }
      if (sink != nullptr) sink->Abort(receive->reservation_id);
      Status outcome;
      switch (receive->status) {
        case UCS_OK:
          outcome = DataLoss("received " + std::to_string(receive->received) + " bytes; the put announced " +
                             std::to_string(receive->put.size));
          break;
        case UCS_ERR_MESSAGE_TRUNCATED:
          outcome = DataLoss("the peer sent more bytes than the " + std::to_string(receive->put.size) + " announced");
          break;
        case UCS_ERR_CANCELED: outcome = DeadlineExceeded("the block's bytes did not arrive in time"); break;
        default: outcome = UcxError(StatusCode::kUnavailable, "receiving the block", receive->status);
      }
      finish(receive, outcome);
      forget(receive);
    }
    if (queued == 1) verify_cv_.notify_one();
    if (queued > 1) verify_cv_.notify_all();
  }
  lane.eager_open.store(lane.eager.size(), std::memory_order_relaxed);
}

void TransferServer::ExpireEagerPuts(Lane& lane) {
  const uint64_t now_ms = clock_->NowMs();
  for (auto& [tag, receive] : lane.eager) {
    if (receive->deadline_ms >= now_ms || receive->cancelled || receive->request == nullptr ||
        receive->status != UCS_INPROGRESS) {
      continue;
    }
    // A receive UCX has already matched cannot be cancelled: it ends when its bytes are in, and
    // the store then refuses a commit whose reservation expired. Until then its room stays
    // tracked (MayStillWrite), so the tier does not reuse it even after the reservation expired.
    receive->cancelled = true;
    ucp_request_cancel(lane.worker->handle(), receive->request);
  }
}

}  // namespace kvstash::transfer
