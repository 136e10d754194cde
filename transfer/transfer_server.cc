#include "transfer/transfer_server.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "transfer/push_protocol.h"

namespace kvstash::transfer {
namespace {

using SteadyClock = std::chrono::steady_clock;

// The request header of an active message, when the message is one of ours: exactly
// sizeof(Header) bytes of header, no payload, and a reply endpoint to answer on. Anything else is
// counted in `rejected` and dropped (there is nobody to tell).
template <typename Header>
std::optional<Header> ReadRequest(const void* header, size_t header_length, size_t length,
                                  const ucp_am_recv_param_t* param, std::atomic<uint64_t>& rejected) {
  const bool can_reply = (param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) != 0 && param->reply_ep != nullptr;
  if (header_length != sizeof(Header) || length != 0 || !can_reply) {
    rejected.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  Header h;
  std::memcpy(&h, header, sizeof(h));
  return h;
}

BlockKey KeyFromWire(const std::byte (&bytes)[BlockKey::kSize]) {
  std::array<uint8_t, BlockKey::kSize> raw;
  std::memcpy(raw.data(), bytes, raw.size());
  return BlockKey(raw);
}

}  // namespace

// One push worker and the thread that progresses it. Each lane serves the peers connected to its
// worker; lane 0's thread also progresses the one-sided worker.
struct TransferServer::Lane {
  TransferServer* server = nullptr;
  size_t index = 0;
  std::unique_ptr<UcxWorker> worker;  // thread-shared (Signal, and the accessors' addresses)
  std::string address;
  std::thread thread;
  std::atomic<size_t> sends_in_flight{0};  // of sends posted on this lane
  // Touched by this lane's thread only (handlers and callbacks run inside its progress).
  std::unordered_map<uint64_t, std::unique_ptr<EagerReceive>> eager;  // open receives, by data tag
  std::vector<EagerReceive*> eager_ended;                             // receives whose callback ran
  std::atomic<size_t> eager_open{0};                                  // eager.size(), for counters()
  std::vector<EagerReceive*> verified;  // guarded by server->verify_mu_; committed or refused, to answer
  std::vector<std::shared_ptr<Receive>> to_post;    // guarded by server->receives_mu_
  std::vector<std::shared_ptr<Receive>> to_cancel;  // guarded by server->receives_mu_
};

struct TransferServer::Send {
  TransferServer* server = nullptr;
  Lane* lane = nullptr;
  void* request = nullptr;
  ucp_ep_h ep = nullptr;
  SteadyClock::time_point start;
  size_t bytes = 0;
  bool abandoned = false;  // its endpoint was closed under it; guarded by sends_mu_
  std::optional<std::pair<BlockKey, uint64_t>> release;  // an eager get's lease, ended with the send
};

struct TransferServer::Receive {
  TransferServer* server = nullptr;
  Lane* lane = nullptr;
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

// One eager put's receive; progress thread only.
struct TransferServer::EagerReceive {
  TransferServer* server = nullptr;
  Lane* lane = nullptr;
  uint64_t tag = 0;
  EagerPut put;
  uint64_t reservation_id = 0;
  std::byte* at = nullptr;  // null: a refused put whose bytes are dropped
  ucp_ep_h reply_ep = nullptr;
  SteadyClock::time_point deadline;
  void* request = nullptr;
  ucs_status_t status = UCS_INPROGRESS;
  size_t received = 0;
  bool cancelled = false;
  Status outcome;  // set by a verifier thread (PutSink::Commit)
};

Result<std::unique_ptr<TransferServer>> TransferServer::Start(const UcxOptions& options, void* base,
                                                              size_t length, size_t lanes) {
  std::unique_ptr<TransferServer> server(new TransferServer());
  UcxOptions with_wakeup = options;
  with_wakeup.wakeup = true;
  KVSTASH_ASSIGN_OR_RETURN(server->context_, UcxContext::Create(with_wakeup));
  KVSTASH_ASSIGN_OR_RETURN(server->region_, MemoryRegion::Register(server->context_, base, length));
  return Finish(std::move(server), options, lanes);
}

Result<std::unique_ptr<TransferServer>> TransferServer::StartAllocated(const UcxOptions& options, size_t length,
                                                                       size_t lanes) {
  std::unique_ptr<TransferServer> server(new TransferServer());
  UcxOptions with_wakeup = options;
  with_wakeup.wakeup = true;
  KVSTASH_ASSIGN_OR_RETURN(server->context_, UcxContext::Create(with_wakeup));
  KVSTASH_ASSIGN_OR_RETURN(server->region_, MemoryRegion::Allocate(server->context_, length));
  return Finish(std::move(server), options, lanes);
}

Result<std::unique_ptr<TransferServer>> TransferServer::Finish(std::unique_ptr<TransferServer> server,
                                                               const UcxOptions& options, size_t lanes) {
  if (lanes == 0) lanes = DefaultLanes();
  if (lanes > kMaxLanes) return InvalidArgument("at most " + std::to_string(kMaxLanes) + " UCX lanes");
  KVSTASH_ASSIGN_OR_RETURN(server->worker_, UcxWorker::Create(server->context_));
  // The two-sided protocol: its own context (UcxOptions::messages says why) over the same memory.
  UcxOptions messages = options;
  messages.wakeup = true;
  messages.messages = true;
  KVSTASH_ASSIGN_OR_RETURN(server->push_context_, UcxContext::Create(messages));
  KVSTASH_ASSIGN_OR_RETURN(server->push_region_,
                           MemoryRegion::Register(server->push_context_, server->region_->base(), server->region_->length()));
  for (size_t i = 0; i < lanes; ++i) {
    auto lane = std::make_unique<Lane>();
    lane->server = server.get();
    lane->index = i;
    KVSTASH_ASSIGN_OR_RETURN(lane->worker, UcxWorker::Create(server->push_context_, /*shared=*/true));
    ucp_am_handler_param_t handler{};
    handler.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
    handler.arg = lane.get();
    const std::pair<uint16_t, ucp_am_recv_callback_t> handlers[] = {{push::kPushRequestAm, &TransferServer::OnPushRequest},
                                                                   {push::kPutRequestAm, &TransferServer::OnEagerPut},
                                                                   {push::kGetRequestAm, &TransferServer::OnEagerGet}};
    for (const auto& [id, cb] : handlers) {
      handler.id = id;
      handler.cb = cb;
      const ucs_status_t set = ucp_worker_set_am_recv_handler(lane->worker->handle(), &handler);
      if (set != UCS_OK) return UcxError(StatusCode::kUnavailable, "registering a two-sided request handler", set);
    }
    lane->address = lane->worker->address();
    server->lanes_.push_back(std::move(lane));
  }
  server->worker_address_ = server->worker_->address();
  server->transports_ = options.transports.empty() ? "default" : options.transports;
  for (auto& lane : server->lanes_) {
    Lane* raw = lane.get();
    lane->thread = std::thread([raw] { raw->server->ProgressLoop(*raw); });
  }
  return server;
}

const std::string& TransferServer::push_worker_address() const { return lanes_.front()->address; }

std::vector<std::string> TransferServer::push_worker_addresses() const {
  std::vector<std::string> out;
  for (const auto& lane : lanes_) out.push_back(lane->address);
  return out;
}

size_t TransferServer::lanes() const { return lanes_.size(); }

size_t TransferServer::DefaultLanes() {
  return std::clamp<size_t>(std::thread::hardware_concurrency() / 4, 1, 4);
}

TransferServer::~TransferServer() {
  Stop();
  std::vector<std::shared_ptr<Receive>> open;
  {
    std::lock_guard lock(receives_mu_);
    for (auto& [tag, receive] : receives_) open.push_back(receive);
    receives_.clear();
    for (auto& lane : lanes_) {
      for (auto& receive : lane->to_cancel) open.push_back(receive);
      lane->to_cancel.clear();
    }
  }
  for (auto& receive : open) {
    if (receive->request == nullptr) continue;  // never posted
    ucp_request_cancel(receive->lane->worker->handle(), receive->request);
    ucp_request_free(receive->request);
  }
  for (auto& lane : lanes_) {
    // Eager puts still waiting for bytes: their rooms die with the store that owns them.
    for (auto& [tag, receive] : lane->eager) {
      if (receive->request == nullptr) continue;
      ucp_request_cancel(lane->worker->handle(), receive->request);
      ucp_request_free(receive->request);
    }
    lane->eager.clear();
  }
  // Endpoints first (ending any send still in flight), then the registrations, then the contexts.
  lanes_.clear();
  push_region_.reset();
  worker_.reset();
  region_.reset();
}

void TransferServer::Stop() {
  stop_.store(true, std::memory_order_release);
  if (worker_) worker_->Signal();  // absent when Start failed before creating it
  for (auto& lane : lanes_) {
    lane->worker->Signal();
    if (lane->thread.joinable()) lane->thread.join();
  }
  StopVerifiers();
}

void TransferServer::StopVerifiers() {
  {
    std::lock_guard lock(verify_mu_);
    verifiers_stop_ = true;
  }
  verify_cv_.notify_all();
  for (std::thread& t : verifiers_) t.join();
  verifiers_.clear();
}

void TransferServer::SetPutSink(PutSink* sink, std::chrono::milliseconds reservation_timeout, size_t verifiers) {
  eager_timeout_ms_.store(reservation_timeout.count());
  put_sink_.store(sink, std::memory_order_release);
  if (verifiers == 0) verifiers = std::clamp<size_t>(std::thread::hardware_concurrency() / 2, 1, 4);
  while (verifiers_.size() < verifiers) verifiers_.emplace_back([this] { VerifyLoop(); });
}

void TransferServer::VerifyLoop() {
  std::unique_lock lock(verify_mu_);
  while (true) {
    verify_cv_.wait(lock, [&] { return verifiers_stop_ || !to_verify_.empty(); });
    if (verifiers_stop_) return;
    EagerReceive* receive = to_verify_.front();
    to_verify_.pop_front();
    lock.unlock();
    PutSink* sink = put_sink_.load(std::memory_order_acquire);
    receive->outcome = sink != nullptr ? sink->Commit(receive->put, receive->reservation_id)
                                       : FailedPrecondition("this daemon stores no eager puts");
    lock.lock();
    receive->lane->verified.push_back(receive);
    receive->lane->worker->Signal();  // its lane's thread answers
  }
}

void TransferServer::ProgressLoop(Lane& lane) {
  const bool first = lane.index == 0;  // also progresses the one-sided worker and the shared sweeps
  auto progress = [&] { return (first ? worker_->Progress() : 0) + lane.worker->Progress(); };
  auto wait = [&](std::chrono::microseconds timeout) {
    if (first) (void)UcxWorker::WaitForEvents({worker_.get(), lane.worker.get()}, timeout);
    else (void)lane.worker->WaitForEvent(timeout);
  };
  auto next_sweep = SteadyClock::now();
  auto last_event = SteadyClock::now();
  while (!stop_.load(std::memory_order_acquire)) {
    RunReceiveChanges(lane);
    while (progress() > 0) {
      last_event = SteadyClock::now();
      FinishEagerPuts(lane);
    }
    FinishEagerPuts(lane);
    if (SteadyClock::now() >= next_sweep) {
      EndStuckSends(lane);
      if (first) ExpireReceives();
      ExpireEagerPuts(lane);
      next_sweep = SteadyClock::now() + std::chrono::milliseconds(100);
    }
    // While pushes are in flight, and for a moment after any activity (a transfer's next step
    // usually follows within microseconds), wake often: a tcp send blocked on a full socket may
    // raise no wakeup event when the socket drains. But sleep rather than spin: on a host with
    // more runnable threads than cores a spinning thread is descheduled for whole time slices,
    // while a thread that sleeps is run as soon as its event comes (or its short timeout ends).
    if (lane.sends_in_flight.load(std::memory_order_relaxed) > 0 ||
        SteadyClock::now() - last_event < std::chrono::microseconds(500)) {
      wait(std::chrono::microseconds(50));
      continue;
    }
    // Sleeps until a peer needs us. Shared-memory transports raise no wakeup events, so the
    // timeout bounds how long their messages (connection setup, emulated operations) wait.
    wait(std::chrono::milliseconds(5));
  }
}

// ---- two-sided gets -------------------------------------------------------------------------

ucs_status_t TransferServer::OnPushRequest(void* arg, const void* header, size_t header_length, void*, size_t length,
                                           const ucp_am_recv_param_t* param) {
  Lane& lane = *static_cast<Lane*>(arg);
  TransferServer* self = lane.server;
  const std::optional<push::PushRequest> request =
      ReadRequest<push::PushRequest>(header, header_length, length, param, self->rejected_);
  if (!request) return UCS_OK;
  const push::PushRequest& req = *request;
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
  if (Status posted = self->PostSend(lane, param->reply_ep, addr, req.length, req.reply_tag, std::nullopt); !posted.ok()) {
    self->Reject(param->reply_ep, req.reply_tag, posted);
  }
  return UCS_OK;
}

Status TransferServer::PostSend(Lane& lane, ucp_ep_h ep, const std::byte* addr, size_t length, uint64_t reply_tag,
                                std::optional<std::pair<BlockKey, uint64_t>> release) {
  auto send = std::make_unique<Send>();
  send->server = this;
  send->lane = &lane;
  send->ep = ep;
  send->start = SteadyClock::now();
  send->bytes = length;
  send->release = std::move(release);
  ucp_request_param_t sp{};
  sp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMH;
  sp.cb.send = &TransferServer::OnSent;
  sp.user_data = send.get();
  sp.memh = push_region_->handle();
  ucs_status_ptr_t r = ucp_tag_send_nbx(ep, addr, length, reply_tag, &sp);
  GetSource* source = get_source_.load(std::memory_order_acquire);
  auto end_lease = [&] {
    if (send->release && source != nullptr) source->Release(send->release->first, send->release->second);
  };
  if (r == nullptr) {
    sends_completed_.fetch_add(1, std::memory_order_relaxed);
    bytes_sent_.fetch_add(length, std::memory_order_relaxed);
    end_lease();
    return Status::Ok();
  }
  if (UCS_PTR_IS_ERR(r)) {
    sends_failed_.fetch_add(1, std::memory_order_relaxed);
    end_lease();
    return UcxError(StatusCode::kUnavailable, "sending", UCS_PTR_STATUS(r));
  }
  // Completion callbacks run inside progress, which is this thread: it cannot fire before this.
  send->request = r;
  Send* key = send.get();
  std::lock_guard lock(sends_mu_);
  sends_.emplace(key, std::move(send));
  lane.sends_in_flight.fetch_add(1, std::memory_order_relaxed);
  return Status::Ok();
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
      // The bytes are out (or never will be): the block may move again.
      GetSource* source = self->get_source_.load(std::memory_order_acquire);
      if (send->release && source != nullptr) source->Release(send->release->first, send->release->second);
      send->lane->sends_in_flight.fetch_sub(1, std::memory_order_relaxed);
      self->sends_.erase(send);  // frees `send`
    }
  }
  ucp_request_free(request);
}

void TransferServer::Reject(ucp_ep_h ep, uint64_t reply_tag, const Status& why) {
  rejected_.fetch_add(1, std::memory_order_relaxed);
  Answer(ep, reply_tag, why);
}

void TransferServer::Answer(ucp_ep_h ep, uint64_t reply_tag, const Status& status, uint64_t size,
                            uint64_t checksum) {
  auto answer = std::make_unique<push::PushAnswer>();
  answer->code = static_cast<uint32_t>(status.code());
  answer->reply_tag = reply_tag;
  answer->size = size;
  answer->checksum = checksum;
  std::strncpy(answer->message, status.message().c_str(), sizeof(answer->message) - 1);
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  param.flags = UCP_AM_SEND_FLAG_EAGER;
  param.cb.send = [](void* request, ucs_status_t, void* user_data) {
    delete static_cast<push::PushAnswer*>(user_data);
    ucp_request_free(request);
  };
  param.user_data = answer.get();
  ucs_status_ptr_t r = ucp_am_send_nbx(ep, push::kPushAnswerAm, answer.get(), sizeof(*answer), nullptr, 0, &param);
  if (UCS_PTR_IS_PTR(r)) (void)answer.release();  // the callback frees it
}

void TransferServer::EndStuckSends(Lane& lane) {
  const auto cutoff = SteadyClock::now() - std::chrono::milliseconds(send_timeout_ms_.load());
  std::vector<ucp_ep_h> stuck;
  {
    std::lock_guard lock(sends_mu_);
    for (const auto& [key, send] : sends_) {
      if (send->lane == &lane && send->start < cutoff && std::find(stuck.begin(), stuck.end(), send->ep) == stuck.end()) {
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
      while (ucp_request_check_status(r) == UCS_INPROGRESS && rounds++ < 100000) lane.worker->Progress();
      ucp_request_free(r);
    }
    // Whatever the close did not complete is written off: its callback, should it still come,
    // touches nothing but the abandoned record.
    std::lock_guard lock(sends_mu_);
    for (auto it = sends_.begin(); it != sends_.end();) {
      if (it->second->ep == ep && it->second->lane == &lane) {
        it->second->abandoned = true;
        lane.sends_in_flight.fetch_sub(1, std::memory_order_relaxed);
        sends_failed_.fetch_add(1, std::memory_order_relaxed);
        (void)it->second.release();  // a few bytes per written-off send, kept for its late callback
        it = sends_.erase(it);
      } else {
        ++it;
      }
    }
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
  receive->deadline = SteadyClock::now() + timeout;
  {
    std::lock_guard lock(receives_mu_);
    if (receives_.contains(tag)) return InvalidArgument("tag " + std::to_string(tag) + " is already expected");
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
    std::lock_guard lock(receives_mu_);
    if (lane.to_post.empty() && lane.to_cancel.empty()) return;
    for (auto& receive : lane.to_post) {
      if (receive->withdrawn) continue;  // cancelled before it was posted
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
    ucp_request_cancel(lane.worker->handle(), receive->request);
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
  Lane* lane = nullptr;
  {
    std::lock_guard lock(receives_mu_);
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
  const auto now = SteadyClock::now();
  {
    std::lock_guard lock(receives_mu_);
    for (const auto& [tag, receive] : receives_) {
      if (receive->deadline < now) expired.push_back(tag);
    }
  }
  for (uint64_t tag : expired) CancelReceive(tag);
}

// ---- eager gets -----------------------------------------------------------------------------

ucs_status_t TransferServer::OnEagerGet(void* arg, const void* header, size_t header_length, void*, size_t length,
                                        const ucp_am_recv_param_t* param) {
  Lane& lane = *static_cast<Lane*>(arg);
  TransferServer* self = lane.server;
  const std::optional<push::GetRequest> request =
      ReadRequest<push::GetRequest>(header, header_length, length, param, self->rejected_);
  if (!request) return UCS_OK;
  const push::GetRequest& req = *request;
  auto refuse = [&](const Status& why) {
    self->eager_gets_refused_.fetch_add(1, std::memory_order_relaxed);
    self->Answer(param->reply_ep, req.reply_tag, why);
    return UCS_OK;
  };
  if (req.magic != push::kMagic) return refuse(InvalidArgument("unknown get-request version"));
  if (req.max_length == 0) return refuse(InvalidArgument("a get needs room for at least one byte"));
  GetSource* source = self->get_source_.load(std::memory_order_acquire);
  if (source == nullptr) return refuse(FailedPrecondition("this daemon serves no eager gets"));
  const BlockKey key = KeyFromWire(req.key);
  Result<GetSource::Found> found = source->Acquire(key);
  if (!found.ok()) return refuse(found.status());
  if (!self->region_->Contains(found->data, found->size)) {
    source->Release(key, found->lease_epoch);
    return refuse(Internal("the store located a block outside the registered memory"));
  }
  if (found->size > req.max_length) {
    source->Release(key, found->lease_epoch);
    return refuse(OutOfRange("block " + key.ToHex() + " is " + std::to_string(found->size) +
                             " bytes; the buffer holds " + std::to_string(req.max_length)));
  }
  // The bytes first, then the answer with what the reader checks them against; the lease ends
  // when the send has.
  const Status posted = self->PostSend(lane, param->reply_ep, found->data, found->size, req.reply_tag,
                                       std::make_pair(key, found->lease_epoch));
  if (!posted.ok()) return refuse(posted);
  self->eager_gets_sent_.fetch_add(1, std::memory_order_relaxed);
  self->Answer(param->reply_ep, req.reply_tag, Status::Ok(), found->size, found->checksum);
  return UCS_OK;
}

// ---- eager puts -----------------------------------------------------------------------------

ucs_status_t TransferServer::OnEagerPut(void* arg, const void* header, size_t header_length, void*, size_t length,
                                        const ucp_am_recv_param_t* param) {
  Lane& lane = *static_cast<Lane*>(arg);
  TransferServer* self = lane.server;
  const std::optional<push::PutRequest> request =
      ReadRequest<push::PutRequest>(header, header_length, length, param, self->rejected_);
  if (!request) return UCS_OK;
  const push::PutRequest& req = *request;
  auto receive = std::make_unique<EagerReceive>();
  receive->server = self;
  receive->lane = &lane;
  receive->tag = req.data_tag;
  receive->reply_ep = param->reply_ep;
  receive->put.key = KeyFromWire(req.key);
  if ((req.flags & push::kPutHasParent) != 0) receive->put.parent = KeyFromWire(req.parent);
  receive->put.size = req.size;
  receive->put.checksum = req.checksum;
  receive->put.pin = (req.flags & push::kPutPin) != 0;
  receive->deadline = SteadyClock::now() + std::chrono::milliseconds(self->eager_timeout_ms_.load());

  bool tag_in_use = lane.eager.contains(req.data_tag);
  if (!tag_in_use) {
    std::lock_guard lock(self->receives_mu_);
    tag_in_use = self->receives_.contains(req.data_tag);
  }
  Status refused;
  if (req.magic != push::kMagic) {
    refused = InvalidArgument("unknown put-request version");
  } else if ((req.flags & ~push::kPutKnownFlags) != 0) {
    refused = InvalidArgument("unknown put-request flags " + std::to_string(req.flags));
  } else if (req.size == 0 || req.size > self->region_->length()) {
    refused = InvalidArgument("a block of " + std::to_string(req.size) + " bytes cannot be stored here");
  } else if (tag_in_use) {
    // Its bytes would meet another put's receive: refuse without receiving them (that receive
    // gets them, and its checksum fails, so neither block is stored wrong).
    self->eager_refused_.fetch_add(1, std::memory_order_relaxed);
    self->Answer(param->reply_ep, req.data_tag, InvalidArgument("data tag already in use; retry"));
    return UCS_OK;
  } else if (PutSink* sink = self->put_sink_.load(std::memory_order_acquire); sink == nullptr) {
    refused = FailedPrecondition("this daemon stores no eager puts");
  } else {
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
  // The callback only records the outcome (it may run inside this call, when the bytes came
  // first); FinishEagerPuts acts on it.
  ucs_status_ptr_t r = ucp_tag_recv_nbx(lane.worker->handle(), into, length, raw->tag, ~uint64_t{0}, &param);
  if (UCS_PTR_IS_ERR(r)) {
    raw->status = UCS_PTR_STATUS(r);
    lane.eager_ended.push_back(raw);
    return;
  }
  raw->request = r;
}

void TransferServer::OnEagerReceived(void*, ucs_status_t status, const ucp_tag_recv_info_t* info, void* user_data) {
  auto* receive = static_cast<EagerReceive*>(user_data);
  receive->status = status;
  receive->received = info != nullptr ? info->length : 0;
  receive->lane->eager_ended.push_back(receive);
}

void TransferServer::FinishEagerPuts(Lane& lane) {
  std::vector<EagerReceive*> answered;
  {
    std::lock_guard lock(verify_mu_);
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
        std::lock_guard lock(verify_mu_);
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
  const auto now = SteadyClock::now();
  for (auto& [tag, receive] : lane.eager) {
    if (receive->deadline >= now || receive->cancelled || receive->request == nullptr ||
        receive->status != UCS_INPROGRESS) {
      continue;
    }
    // A receive UCX has already matched cannot be cancelled: it ends when its bytes are in, and
    // the store then refuses a commit whose reservation expired.
    receive->cancelled = true;
    ucp_request_cancel(lane.worker->handle(), receive->request);
  }
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
  for (const auto& lane : lanes_) c.receives_open += lane->eager_open.load(std::memory_order_relaxed);
  c.eager_puts_stored = eager_stored_.load(std::memory_order_relaxed);
  c.eager_puts_refused = eager_refused_.load(std::memory_order_relaxed);
  c.eager_puts_failed = eager_failed_.load(std::memory_order_relaxed);
  c.eager_gets_sent = eager_gets_sent_.load(std::memory_order_relaxed);
  c.eager_gets_refused = eager_gets_refused_.load(std::memory_order_relaxed);
  return c;
}

}  // namespace kvstash::transfer
