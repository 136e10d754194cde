#include "transfer/transfer_server.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "transfer/push_protocol.h"

namespace kvstash::transfer {

using SteadyClock = std::chrono::steady_clock;

struct TransferServer::Send {
  TransferServer* server = nullptr;
  void* request = nullptr;
  ucp_ep_h ep = nullptr;
  SteadyClock::time_point start;
  size_t bytes = 0;
  bool abandoned = false;  // its endpoint was closed under it; guarded by sends_mu_
};

struct TransferServer::Receive {
  TransferServer* server = nullptr;
  uint64_t tag = 0;
  std::byte* at = nullptr;
  size_t length = 0;
  SteadyClock::time_point deadline;
  void* request = nullptr;               // guarded by receives_mu_; set by the progress thread
  bool posting = false;                  // guarded by receives_mu_: the progress thread is posting it
  bool withdrawn = false;                // guarded by receives_mu_: cancelled while being posted
  ucs_status_t status = UCS_INPROGRESS;  // guarded by receives_mu_
  size_t received = 0;                   // guarded by receives_mu_
};

Result<std::unique_ptr<TransferServer>> TransferServer::Start(const UcxOptions& options, void* base,
                                                              size_t length) {
  std::unique_ptr<TransferServer> server(new TransferServer());
  UcxOptions with_wakeup = options;
  with_wakeup.wakeup = true;
  KVSTASH_ASSIGN_OR_RETURN(server->context_, UcxContext::Create(with_wakeup));
  KVSTASH_ASSIGN_OR_RETURN(server->region_, MemoryRegion::Register(server->context_, base, length));
  return Finish(std::move(server), options);
}

Result<std::unique_ptr<TransferServer>> TransferServer::StartAllocated(const UcxOptions& options, size_t length) {
  std::unique_ptr<TransferServer> server(new TransferServer());
  UcxOptions with_wakeup = options;
  with_wakeup.wakeup = true;
  KVSTASH_ASSIGN_OR_RETURN(server->context_, UcxContext::Create(with_wakeup));
  KVSTASH_ASSIGN_OR_RETURN(server->region_, MemoryRegion::Allocate(server->context_, length));
  return Finish(std::move(server), options);
}

Result<std::unique_ptr<TransferServer>> TransferServer::Finish(std::unique_ptr<TransferServer> server,
                                                               const UcxOptions& options) {
  KVSTASH_ASSIGN_OR_RETURN(server->worker_, UcxWorker::Create(server->context_));
  // The two-sided protocol: its own context (UcxOptions::messages says why) over the same memory.
  UcxOptions messages = options;
  messages.wakeup = true;
  messages.messages = true;
  KVSTASH_ASSIGN_OR_RETURN(server->push_context_, UcxContext::Create(messages));
  KVSTASH_ASSIGN_OR_RETURN(server->push_region_,
                           MemoryRegion::Register(server->push_context_, server->region_->base(), server->region_->length()));
  KVSTASH_ASSIGN_OR_RETURN(server->push_worker_, UcxWorker::Create(server->push_context_, /*shared=*/true));
  ucp_am_handler_param_t handler{};
  handler.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
  handler.id = push::kPushRequestAm;
  handler.cb = &TransferServer::OnPushRequest;
  handler.arg = server.get();
  const ucs_status_t set = ucp_worker_set_am_recv_handler(server->push_worker_->handle(), &handler);
  if (set != UCS_OK) return UcxError(StatusCode::kUnavailable, "registering the push-request handler", set);
  server->worker_address_ = server->worker_->address();
  server->push_worker_address_ = server->push_worker_->address();
  server->transports_ = options.transports.empty() ? "default" : options.transports;
  TransferServer* raw = server.get();
  server->thread_ = std::thread([raw] { raw->ProgressLoop(); });
  return server;
}

TransferServer::~TransferServer() {
  Stop();
  std::vector<std::shared_ptr<Receive>> open;
  {
    std::lock_guard lock(receives_mu_);
    for (auto& [tag, receive] : receives_) open.push_back(receive);
    receives_.clear();
  }
  for (auto& receive : to_cancel_) open.push_back(receive);
  to_cancel_.clear();
  for (auto& receive : open) {
    if (receive->request == nullptr) continue;  // never posted
    ucp_request_cancel(push_worker_->handle(), receive->request);
    ucp_request_free(receive->request);
  }
  // Endpoints first (ending any send still in flight), then the registrations, then the contexts.
  push_worker_.reset();
  push_region_.reset();
  worker_.reset();
  region_.reset();
}

void TransferServer::Stop() {
  if (!thread_.joinable()) return;
  stop_.store(true, std::memory_order_release);
  worker_->Signal();
  push_worker_->Signal();
  thread_.join();
}

void TransferServer::ProgressLoop() {
  auto next_sweep = SteadyClock::now();
  auto last_event = SteadyClock::now();
  while (!stop_.load(std::memory_order_acquire)) {
    RunReceiveChanges();
    while (worker_->Progress() + push_worker_->Progress() > 0) {
      last_event = SteadyClock::now();
    }
    if (SteadyClock::now() >= next_sweep) {
      EndStuckSends();
      ExpireReceives();
      next_sweep = SteadyClock::now() + std::chrono::milliseconds(100);
    }
    // While pushes are in flight, and for a moment after any activity (a transfer's next step
    // usually follows within microseconds), wake often: a tcp send blocked on a full socket may
    // raise no wakeup event when the socket drains. But sleep rather than spin: on a host with
    // more runnable threads than cores a spinning thread is descheduled for whole time slices,
    // while a thread that sleeps is run as soon as its event comes (or its short timeout ends).
    if (sends_in_flight_.load(std::memory_order_relaxed) > 0 ||
        SteadyClock::now() - last_event < std::chrono::microseconds(500)) {
      (void)UcxWorker::WaitForEvents({worker_.get(), push_worker_.get()}, std::chrono::microseconds(50));
      continue;
    }
    // Sleeps until a peer needs us. Shared-memory transports raise no wakeup events, so the
    // timeout bounds how long their messages (connection setup, emulated operations) wait.
    (void)UcxWorker::WaitForEvents({worker_.get(), push_worker_.get()}, std::chrono::milliseconds(5));
  }
}

// ---- two-sided gets -------------------------------------------------------------------------

ucs_status_t TransferServer::OnPushRequest(void* arg, const void* header, size_t header_length, void*, size_t length,
                                           const ucp_am_recv_param_t* param) {
  auto* self = static_cast<TransferServer*>(arg);
  push::PushRequest req;
  const bool can_reply = (param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) != 0 && param->reply_ep != nullptr;
  if (header_length != sizeof(req) || length != 0 || !can_reply) {
    self->rejected_.fetch_add(1, std::memory_order_relaxed);  // not a request of ours; nobody to tell
    return UCS_OK;
  }
  std::memcpy(&req, header, sizeof(req));
  if (req.magic != push::kMagic) {
    self->Reject(param->reply_ep, req.reply_tag, InvalidArgument("unknown push-request version"));
    return UCS_OK;
  }
  const MemoryRegion& region = *self->region_;
  const uint64_t base = reinterpret_cast<uint64_t>(region.base());
  if (req.length == 0 || req.remote_addr < base || req.length > region.length() ||
      req.remote_addr - base > region.length() - req.length) {
    self->Reject(param->reply_ep, req.reply_tag,
                 OutOfRange("range [" + std::to_string(req.remote_addr) + ", +" + std::to_string(req.length) +
                            ") is empty or lies outside the daemon's registered memory"));
    return UCS_OK;
  }
  auto* addr = reinterpret_cast<const std::byte*>(req.remote_addr);
  const std::span<const std::byte> grant(req.grant, sizeof(req.grant));
  const bool probe = req.remote_addr == base && req.length <= 8 &&
                     std::all_of(grant.begin(), grant.end(), [](std::byte b) { return b == std::byte{0}; });
  if (!probe) {
    SendAuthorizer* authorizer = self->authorizer_.load(std::memory_order_acquire);
    const Status allowed = authorizer != nullptr
                               ? authorizer->AuthorizeSend(addr, req.length, grant)
                               : FailedPrecondition("this daemon serves no two-sided reads");
    if (!allowed.ok()) {
      self->Reject(param->reply_ep, req.reply_tag, allowed);
      return UCS_OK;
    }
  }
  // Straight from the registered memory: no copy on this side.
  auto send = std::make_unique<Send>();
  send->server = self;
  send->ep = param->reply_ep;
  send->start = SteadyClock::now();
  send->bytes = req.length;
  ucp_request_param_t sp{};
  sp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMH;
  sp.cb.send = &TransferServer::OnSent;
  sp.user_data = send.get();
  sp.memh = self->push_region_->handle();
  ucs_status_ptr_t r = ucp_tag_send_nbx(param->reply_ep, addr, req.length, req.reply_tag, &sp);
  if (r == nullptr) {
    self->sends_completed_.fetch_add(1, std::memory_order_relaxed);
    self->bytes_sent_.fetch_add(req.length, std::memory_order_relaxed);
  } else if (UCS_PTR_IS_ERR(r)) {
    self->sends_failed_.fetch_add(1, std::memory_order_relaxed);
    self->Reject(param->reply_ep, req.reply_tag, UcxError(StatusCode::kUnavailable, "sending", UCS_PTR_STATUS(r)));
  } else {
    // Completion callbacks run inside progress, which is this thread: it cannot fire before this.
    send->request = r;
    Send* key = send.get();
    std::lock_guard lock(self->sends_mu_);
    self->sends_.emplace(key, std::move(send));
    self->sends_in_flight_.store(self->sends_.size(), std::memory_order_relaxed);
  }
  return UCS_OK;
}

void TransferServer::OnSent(void* request, ucs_status_t status, void* user_data) {
  auto* send = static_cast<Send*>(user_data);
  TransferServer* self = send->server;
  {
    std::lock_guard lock(self->sends_mu_);
    if (!send->abandoned) {
      if (status == UCS_OK) {
        self->sends_completed_.fetch_add(1, std::memory_order_relaxed);
        self->bytes_sent_.fetch_add(send->bytes, std::memory_order_relaxed);
      } else {
        self->sends_failed_.fetch_add(1, std::memory_order_relaxed);
      }
      self->sends_.erase(send);  // frees `send`
      self->sends_in_flight_.store(self->sends_.size(), std::memory_order_relaxed);
    }
  }
  ucp_request_free(request);
}

void TransferServer::Reject(ucp_ep_h ep, uint64_t reply_tag, const Status& why) {
  rejected_.fetch_add(1, std::memory_order_relaxed);
  auto reject = std::make_unique<push::PushReject>();
  reject->code = static_cast<uint32_t>(why.code());
  reject->reply_tag = reply_tag;
  std::strncpy(reject->message, why.message().c_str(), sizeof(reject->message) - 1);
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  param.flags = UCP_AM_SEND_FLAG_EAGER;
  param.cb.send = [](void* request, ucs_status_t, void* user_data) {
    delete static_cast<push::PushReject*>(user_data);
    ucp_request_free(request);
  };
  param.user_data = reject.get();
  ucs_status_ptr_t r = ucp_am_send_nbx(ep, push::kPushRejectAm, reject.get(), sizeof(*reject), nullptr, 0, &param);
  if (UCS_PTR_IS_PTR(r)) (void)reject.release();  // the callback frees it
}

void TransferServer::EndStuckSends() {
  const auto cutoff = SteadyClock::now() - std::chrono::milliseconds(send_timeout_ms_.load());
  std::vector<ucp_ep_h> stuck;
  {
    std::lock_guard lock(sends_mu_);
    for (const auto& [key, send] : sends_) {
      if (send->start < cutoff && std::find(stuck.begin(), stuck.end(), send->ep) == stuck.end()) {
        stuck.push_back(send->ep);
      }
    }
  }
  for (ucp_ep_h ep : stuck) {
    // The peer stopped receiving (it vanished, or its process hangs): close its endpoint, which
    // ends every send on it. It reconnects if it is still alive.
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = UCP_EP_CLOSE_FLAG_FORCE;
    ucs_status_ptr_t r = ucp_ep_close_nbx(ep, &param);
    if (UCS_PTR_IS_PTR(r)) {
      int rounds = 0;
      while (ucp_request_check_status(r) == UCS_INPROGRESS && rounds++ < 100000) push_worker_->Progress();
      ucp_request_free(r);
    }
    // Whatever the close did not complete is written off: its callback, should it still come,
    // touches nothing but the abandoned record.
    std::lock_guard lock(sends_mu_);
    for (auto it = sends_.begin(); it != sends_.end();) {
      if (it->second->ep == ep) {
        it->second->abandoned = true;
        sends_failed_.fetch_add(1, std::memory_order_relaxed);
        (void)it->second.release();  // a few bytes per written-off send, kept for its late callback
        it = sends_.erase(it);
      } else {
        ++it;
      }
    }
    sends_in_flight_.store(sends_.size(), std::memory_order_relaxed);
  }
}

// ---- two-sided puts -------------------------------------------------------------------------

void TransferServer::OnReceived(void*, ucs_status_t status, const ucp_tag_recv_info_t* info, void* user_data) {
  auto* ref = static_cast<std::shared_ptr<Receive>*>(user_data);
  Receive& receive = **ref;
  TransferServer* self = receive.server;
  {
    std::lock_guard lock(self->receives_mu_);
    receive.status = status;
    receive.received = info != nullptr ? info->length : 0;
  }
  self->receive_done_.notify_all();
  delete ref;  // the owner frees the request (CancelReceive), never this callback
}

Status TransferServer::ExpectReceive(uint64_t tag, std::byte* at, size_t length, std::chrono::milliseconds timeout) {
  if (length == 0 || !region_->Contains(at, length)) {
    return InvalidArgument("a receive must lie inside the registered memory");
  }
  auto receive = std::make_shared<Receive>();
  receive->server = this;
  receive->tag = tag;
  receive->at = at;
  receive->length = length;
  receive->deadline = SteadyClock::now() + timeout;
  {
    std::lock_guard lock(receives_mu_);
    if (receives_.contains(tag)) return InvalidArgument("tag " + std::to_string(tag) + " is already expected");
    receives_.emplace(tag, receive);
    to_post_.push_back(receive);
  }
  // Posted by the progress thread (RunReceiveChanges): a caller's thread never contends for the
  // worker's lock, which spins. A send that arrives first waits in UCX as an unexpected message.
  push_worker_->Signal();
  return Status::Ok();
}

void TransferServer::RunReceiveChanges() {
  std::vector<std::shared_ptr<Receive>> post;
  std::vector<std::shared_ptr<Receive>> cancel;
  {
    std::lock_guard lock(receives_mu_);
    if (to_post_.empty() && to_cancel_.empty()) return;
    for (auto& receive : to_post_) {
      if (receive->withdrawn) continue;  // cancelled before it was posted
      receive->posting = true;
      post.push_back(std::move(receive));
    }
    to_post_.clear();
    cancel.swap(to_cancel_);
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
    ucs_status_ptr_t r = ucp_tag_recv_nbx(push_worker_->handle(), receive->at, receive->length, receive->tag,
                                          ~uint64_t{0}, &param);
    std::lock_guard lock(receives_mu_);
    receive->posting = false;
    if (UCS_PTR_IS_ERR(r)) {
      delete ref;
      receive->status = UCS_PTR_STATUS(r);
      failed = true;
      continue;
    }
    receive->request = r;
    if (receive->withdrawn) cancel.push_back(receive);
  }
  if (failed) receive_done_.notify_all();
  // A receive UCX has already matched cannot be cancelled; its last bytes land within the
  // region's quarantine (the tier reuses an expired reservation's region only after another
  // timeout), which also covers the one progress round a withdrawal waits here.
  for (auto& receive : cancel) {
    ucp_request_cancel(push_worker_->handle(), receive->request);
    ucp_request_free(receive->request);
  }
}

Status TransferServer::AwaitReceive(uint64_t tag, std::chrono::milliseconds wait) {
  std::unique_lock lock(receives_mu_);
  auto it = receives_.find(tag);
  if (it == receives_.end()) return NotFound("no open receive for this put (withdrawn or expired)");
  std::shared_ptr<Receive> receive = it->second;
  receive_done_.wait_for(lock, wait, [&] { return receive->status != UCS_INPROGRESS; });
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
  {
    std::lock_guard lock(receives_mu_);
    auto it = receives_.find(tag);
    if (it == receives_.end()) return;
    std::shared_ptr<Receive> receive = std::move(it->second);
    receives_.erase(it);
    receive->withdrawn = true;
    // Posted: the progress thread cancels it. Being posted or not posted yet: the progress thread
    // sees `withdrawn` and cancels it after posting, or never posts it.
    if (receive->request != nullptr) to_cancel_.push_back(std::move(receive));
  }
  push_worker_->Signal();
}

void TransferServer::ExpireReceives() {
  std::vector<uint64_t> expired;
  const auto now = SteadyClock::now();
  {
    std::lock_guard lock(receives_mu_);
    for (const auto& [tag, receive] : receives_) {
      if (receive->deadline < now) expired.push_back(tag);
    }
  }
  for (uint64_t tag : expired) CancelReceive(tag);
}

TwoSidedCounters TransferServer::counters() const {
  TwoSidedCounters c;
  {
    std::lock_guard lock(sends_mu_);
    c.sends_in_flight = sends_.size();
  }
  {
    std::lock_guard lock(receives_mu_);
    c.receives_open = receives_.size();
  }
  c.sends_completed = sends_completed_.load(std::memory_order_relaxed);
  c.sends_failed = sends_failed_.load(std::memory_order_relaxed);
  c.bytes_sent = bytes_sent_.load(std::memory_order_relaxed);
  c.requests_rejected = rejected_.load(std::memory_order_relaxed);
  return c;
}

}  // namespace kvstash::transfer
