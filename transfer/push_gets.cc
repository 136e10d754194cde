// The TransferServer's gets: two-sided reads asked for by address and grant (push requests) and
// eager gets asked for by key; the sends that answer them, their answers and the sweep that ends
// sends whose reader stopped receiving. Runs on the lanes' progress threads.
#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "transfer/transfer_server_internal.h"

namespace kvstash::transfer {

using server_internal::KeyFromWire;
using server_internal::ReadRequest;

// ---- two-sided gets -------------------------------------------------------------------------

ucs_status_t TransferServer::OnPushRequest(void* arg, const void* header, size_t header_length, void*, size_t length,
                                           const ucp_am_recv_param_t* param) {
  Lane& lane = *static_cast<Lane*>(arg);
  TransferServer* self = lane.server;
  Refusal why{};
  const std::optional<push::PushRequest> request =
      ReadRequest<push::PushRequest>(header, header_length, length, param, why);
  if (!request) {
    self->Refuse(why);
    return UCS_OK;
  }
  const push::PushRequest& req = *request;
  const MemoryRegion& region = *self->region_;
  const uint64_t base = reinterpret_cast<uint64_t>(region.base());
  // An unknown version is kMalformed, a range outside the region kOutOfRange (RefusalOf). A range
  // inside the device region (AddDeviceRegion) is checked against that region instead.
  const MemoryRegion* device = self->device_view_.load(std::memory_order_acquire);
  const bool on_device = device != nullptr && req.remote_addr >= reinterpret_cast<uint64_t>(device->base()) &&
                         req.remote_addr - reinterpret_cast<uint64_t>(device->base()) < device->length();
  const Status bad = on_device ? wire::CheckPushRequest(req, reinterpret_cast<uint64_t>(device->base()), device->length())
                               : wire::CheckPushRequest(req, base, region.length());
  if (!bad.ok()) {
    self->Reject(param->reply_ep, req.reply_tag, RefusalOf(bad), bad);
    return UCS_OK;
  }
  auto* addr = reinterpret_cast<const std::byte*>(req.remote_addr);
  const std::span<const std::byte> grant(req.grant, sizeof(req.grant));
  const bool probe = !on_device && wire::IsProbe(req, base);
  if (!probe) {
    SendAuthorizer* authorizer = self->authorizer_.load(std::memory_order_acquire);
    const Status allowed = authorizer != nullptr
                               ? authorizer->AuthorizeSend(addr, req.length, grant)
                               : FailedPrecondition("this daemon serves no two-sided reads");
    if (!allowed.ok()) {
      self->Reject(param->reply_ep, req.reply_tag, RefusalOf(allowed), allowed);
      return UCS_OK;
    }
  }
  // Straight from the registered memory: no copy on this side. The probe is answered with zeros of
  // the server's own, never the arena's first bytes: those belong to whichever block sits there,
  // and an all-zero grant proves nothing about who asks (docs/SECURITY.md).
  static constexpr std::array<std::byte, 8> kProbeBytes{};
  const std::byte* from = probe ? kProbeBytes.data() : addr;
  const MemoryRegion* send_region = probe ? nullptr : on_device ? device : self->push_region_.get();
  if (Status posted = self->PostSend(lane, param->reply_ep, from, req.length, req.reply_tag, std::nullopt, send_region);
      !posted.ok()) {
    self->Answer(param->reply_ep, req.reply_tag, posted);
  }
  return UCS_OK;
}

Status TransferServer::PostSend(Lane& lane, ucp_ep_h ep, const std::byte* addr, size_t length, uint64_t reply_tag,
                                std::optional<std::pair<BlockKey, uint64_t>> release, const MemoryRegion* region) {
  auto send = std::make_unique<Send>();
  send->server = this;
  send->lane = &lane;
  send->ep = ep;
  send->start_ms = clock_->NowMs();
  send->bytes = length;
  send->release = std::move(release);
  ucp_request_param_t sp{};
  sp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  sp.cb.send = &TransferServer::OnSent;
  sp.user_data = send.get();
  if (region != nullptr) {
    sp.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
    sp.memh = region->handle();
  }
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
  MutexLock lock(sends_mu_);
  sends_.emplace(key, std::move(send));
  lane.sends_in_flight.fetch_add(1, std::memory_order_relaxed);
  return Status::Ok();
}

void TransferServer::OnSent(void* request, ucs_status_t status, void* user_data) {
  auto* send = static_cast<Send*>(user_data);
  TransferServer* self = send->server;
  {
    MutexLock lock(self->sends_mu_);
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

void TransferServer::Reject(ucp_ep_h ep, uint64_t reply_tag, Refusal reason, const Status& why) {
  Refuse(reason);
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
  const uint64_t now_ms = clock_->NowMs();
  const auto timeout_ms = static_cast<uint64_t>(send_timeout_ms_.load());
  // Stuck: in flight for longer than the send timeout.
  auto stuck_for_too_long = [&](const Send& send) {
    return now_ms > send.start_ms && now_ms - send.start_ms > timeout_ms;
  };
  std::vector<ucp_ep_h> stuck;
  {
    MutexLock lock(sends_mu_);
    for (const auto& [key, send] : sends_) {
      if (send->lane == &lane && stuck_for_too_long(*send) && std::find(stuck.begin(), stuck.end(), send->ep) == stuck.end()) {
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
    MutexLock lock(sends_mu_);
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

// ---- eager gets -----------------------------------------------------------------------------

ucs_status_t TransferServer::OnEagerGet(void* arg, const void* header, size_t header_length, void*, size_t length,
                                        const ucp_am_recv_param_t* param) {
  Lane& lane = *static_cast<Lane*>(arg);
  TransferServer* self = lane.server;
  Refusal why{};
  const std::optional<push::GetRequest> request = ReadRequest<push::GetRequest>(header, header_length, length, param, why);
  if (!request) {
    self->Refuse(why);
    return UCS_OK;
  }
  const push::GetRequest& req = *request;
  auto refuse = [&](const Status& why) {
    self->eager_gets_refused_.fetch_add(1, std::memory_order_relaxed);
    // A miss, or a block to ask for through the control plane, is an answer; the rest are refusals.
    if (why.code() != StatusCode::kNotFound && why.code() != StatusCode::kFailedPrecondition) self->Refuse(RefusalOf(why));
    self->Answer(param->reply_ep, req.reply_tag, why);
    return UCS_OK;
  };
  if (const Status bad = wire::CheckGetRequest(req); !bad.ok()) return refuse(bad);
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
                                       std::make_pair(key, found->lease_epoch), self->push_region_.get());
  if (!posted.ok()) return refuse(posted);
  self->eager_gets_sent_.fetch_add(1, std::memory_order_relaxed);
  self->Answer(param->reply_ep, req.reply_tag, Status::Ok(), found->size, found->checksum);
  return UCS_OK;
}

}  // namespace kvstash::transfer
