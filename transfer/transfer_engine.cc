#include "transfer/transfer_engine.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>
#include <unordered_map>

#include "common/checksum.h"
#include "transfer/push_protocol.h"
#include "transfer/ucx_worker.h"

namespace kvstash::transfer {
namespace {

struct Completion {
  ucs_status_t status = UCS_INPROGRESS;
};

void OnSendComplete(void* request, ucs_status_t status, void* user_data) {
  static_cast<Completion*>(user_data)->status = status;
}

Status FromUcs(ucs_status_t status, std::string_view what) {
  if (status == UCS_OK) return Status::Ok();
  if (status == UCS_ERR_CANCELED || status == UCS_ERR_TIMED_OUT) {
    return DeadlineExceeded(std::string(what) + " timed out");
  }
  return UcxError(StatusCode::kUnavailable, what, status);
}

// One two-sided op in flight on a worker. Its requests carry no callbacks (their state is
// polled), so a request that outlives the op — a receive UCX had already matched when it was
// cancelled — is released by UCX on completion without touching freed memory.
struct PendingPush {
  TransferOp* op = nullptr;
  push::PushRequest header;                 // the get's request message; stays put until it is sent
  push::PutRequest put_header;              // an eager put's request message
  push::GetRequest get_header;              // an eager get's request message
  uint64_t answered_size = 0, answered_checksum = 0;  // an eager get's answer
  uint64_t answer_tag = 0;                  // get: its reply tag; eager put: its data tag
  void* request_send = nullptr;             // get, eager put: the request message; put: the tagged send
  ucs_status_t request_status = UCS_INPROGRESS;
  void* data_send = nullptr;                // eager put: the tagged send of the bytes
  ucs_status_t data_status = UCS_OK;
  void* recv = nullptr;                     // get: the tag receive into op->local
  ucs_status_t recv_status = UCS_INPROGRESS;
  ucp_tag_recv_info_t recv_info{};
  bool answered = false;                    // the daemon answered (a get: refused): answer says how
  Status answer;
};

}  // namespace

std::string_view ToString(Protocol protocol) {
  return protocol == Protocol::kTwoSided ? "two-sided" : "one-sided";
}

struct TransferEngine::Slot {
  Mutex mu;
  std::unique_ptr<UcxWorker> worker PT_GUARDED_BY(mu);
  // Two-sided gets waiting on this worker, by reply tag. The reject handler runs inside
  // Progress(), which only the holder of mu calls.
  std::unordered_map<uint64_t, PendingPush*> pending GUARDED_BY(mu);
  uint64_t next_tag GUARDED_BY(mu) = 0;  // tags are never reused by a worker

  // The daemon refused a two-sided get (fail that op now rather than at its timeout), or answered
  // an eager put.
  static ucs_status_t OnAnswer(void* arg, const void* header, size_t header_length, void*, size_t,
                               const ucp_am_recv_param_t*) {
    push::PushAnswer answer;
    if (header_length != sizeof(answer)) return UCS_OK;  // not ours: ignore
    std::memcpy(&answer, header, sizeof(answer));
    if (answer.magic != push::kMagic) return UCS_OK;
    auto* slot = static_cast<Slot*>(arg);
    slot->mu.AssertHeld();  // runs inside Progress(), called only by the holder of slot->mu
    auto it = slot->pending.find(answer.reply_tag);
    if (it == slot->pending.end()) return UCS_OK;  // late: the op already ended
    PendingPush& p = *it->second;
    answer.message[sizeof(answer.message) - 1] = '\0';
    const bool put = p.op->kind == OpKind::kEagerPut;
    const bool eager_get = p.op->kind == OpKind::kEagerGet;
    if ((put || eager_get) && answer.code == 0) {
      p.answer = Status::Ok();
      p.answered_size = answer.size;
      p.answered_checksum = answer.checksum;
    } else {
      // A get is only ever refused, so "OK" there is as malformed as an unknown code.
      const StatusCode code = answer.code == 0 || answer.code > static_cast<uint32_t>(StatusCode::kDataLoss)
                                  ? StatusCode::kInternal
                                  : static_cast<StatusCode>(answer.code);
      p.answer = Status(code, std::string(put || eager_get ? "daemon: " : "daemon refused the transfer: ") + answer.message);
    }
    p.answered = true;
    return UCS_OK;
  }
};

Result<std::vector<std::unique_ptr<TransferEngine::Slot>>> TransferEngine::CreateSlots(
    const std::shared_ptr<UcxContext>& context, size_t count, bool messages) {
  std::vector<std::unique_ptr<Slot>> slots;
  for (size_t i = 0; i < count; ++i) {
    auto slot = std::make_unique<Slot>();
    MutexLock lock(slot->mu);  // not shared yet: taken for the analysis' rule, never contended
    KVSTASH_ASSIGN_OR_RETURN(slot->worker, UcxWorker::Create(context));
    if (messages) {
      // Every other id is dropped: a daemon's message must not crash the engine either.
      const std::pair<uint16_t, ucp_am_recv_callback_t> answers[] = {{push::kPushAnswerAm, &Slot::OnAnswer}};
      KVSTASH_RETURN_IF_ERROR(slot->worker->SetMessageHandlers(answers, slot.get(), &UcxWorker::DropMessage));
      // Random start: tags of this process never meet tags of an earlier one at a daemon.
      slot->next_tag = std::random_device{}() | (static_cast<uint64_t>(std::random_device{}()) << 32);
    }
    slots.push_back(std::move(slot));
  }
  return slots;
}

Result<std::unique_ptr<TransferEngine>> TransferEngine::Create(const TransferEngineOptions& options) {
  if (options.workers == 0 || options.workers > 64) return InvalidArgument("workers must be 1..64");
  std::unique_ptr<TransferEngine> engine(new TransferEngine());
  engine->options_ = options;
  UcxOptions rma = options.ucx;
  rma.messages = false;
  KVSTASH_ASSIGN_OR_RETURN(engine->context_, UcxContext::Create(rma));
  KVSTASH_ASSIGN_OR_RETURN(engine->slots_, CreateSlots(engine->context_, options.workers, false));
  return engine;
}

Result<std::vector<std::unique_ptr<TransferEngine::Slot>>*> TransferEngine::PushSlots() {
  if (push_ready_.load(std::memory_order_acquire)) return &push_slots_;
  MutexLock lock(push_mu_);
  if (push_ready_.load(std::memory_order_relaxed)) return &push_slots_;
  // Created on first use: clients that only ever use one-sided transfers pay nothing for it.
  UcxOptions messages = options_.ucx;
  messages.messages = true;
  messages.wakeup = true;  // RunTwoSided sleeps on a worker's event fd while waiting for bytes
  messages.eager_sends = true;  // a put is one message the daemon need not answer
  KVSTASH_ASSIGN_OR_RETURN(push_context_, UcxContext::Create(messages));
  KVSTASH_ASSIGN_OR_RETURN(push_slots_, CreateSlots(push_context_, options_.workers, true));
  {
    MutexLock regions(regions_mu_);
    for (Registered& r : regions_) {
      KVSTASH_ASSIGN_OR_RETURN(r.push, MemoryRegion::Register(push_context_, r.rma->base(), r.rma->length()));
    }
  }
  push_ready_.store(true, std::memory_order_release);
  return &push_slots_;
}

TransferEngine::~TransferEngine() {
  // Workers (and their endpoints) before registrations and the contexts.
  push_slots_.clear();
  slots_.clear();
  regions_.clear();
}

Status TransferEngine::RegisterBuffer(void* base, size_t length) {
  Registered r;
  KVSTASH_ASSIGN_OR_RETURN(r.rma, MemoryRegion::Register(context_, base, length));
  MutexLock push(push_mu_);  // push_context_ does not appear while this runs
  if (push_context_) {
    KVSTASH_ASSIGN_OR_RETURN(r.push, MemoryRegion::Register(push_context_, base, length));
  }
  MutexLock lock(regions_mu_);
  regions_.push_back(std::move(r));
  return Status::Ok();
}

Status TransferEngine::UnregisterBuffer(void* base) {
  MutexLock lock(regions_mu_);
  for (auto it = regions_.begin(); it != regions_.end(); ++it) {
    if (it->rma->base() == base) {
      regions_.erase(it);
      return Status::Ok();
    }
  }
  return NotFound("buffer was not registered");
}

ucp_mem_h TransferEngine::FindMemh(const void* p, size_t n, Protocol protocol) {
  MutexLock lock(regions_mu_);
  for (const Registered& r : regions_) {
    if (!r.rma->Contains(p, n)) continue;
    if (protocol == Protocol::kOneSided) return r.rma->handle();
    return r.push ? r.push->handle() : nullptr;
  }
  return nullptr;
}

Status TransferEngine::RunOnWorker(Slot& slot, const RemoteTarget& target, std::span<TransferOp*> ops) {
  MutexLock lock(slot.mu);
  UcxWorker& worker = *slot.worker;
  auto fail_all = [&](const Status& st) {
    for (TransferOp* op : ops) op->status = st;
    return st;
  };
  const bool two_sided = target.protocol == Protocol::kTwoSided;
  Result<ucp_ep_h> ep = worker.Endpoint(two_sided ? target.push_worker_address : target.worker_address);
  if (!ep.ok()) return fail_all(ep.status());
  if (two_sided) return RunTwoSided(slot, *ep, target, ops);
  Result<ucp_rkey_h> rkey = worker.RemoteKey(target.worker_address, target.packed_rkey);
  if (!rkey.ok()) return fail_all(rkey.status());

  std::vector<Completion> completions(ops.size());
  std::vector<void*> requests(ops.size(), nullptr);
  bool any_put = false;
  for (size_t i = 0; i < ops.size(); ++i) {
    TransferOp& op = *ops[i];
    void* mapped = nullptr;
    if (ucp_rkey_ptr(*rkey, op.remote_addr, &mapped) == UCS_OK && mapped != nullptr) {
      // The target's memory is mapped here: one copy by this thread, nothing to progress.
      if (op.kind == OpKind::kGet) std::memcpy(op.local, mapped, op.length);
      else std::memcpy(mapped, op.local, op.length);
      completions[i].status = UCS_OK;
      continue;
    }
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    param.cb.send = &OnSendComplete;
    param.user_data = &completions[i];
    if (ucp_mem_h memh = FindMemh(op.local, op.length, Protocol::kOneSided)) {
      param.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
      param.memh = memh;
    }
    ucs_status_ptr_t r = op.kind == OpKind::kGet
                             ? ucp_get_nbx(*ep, op.local, op.length, op.remote_addr, *rkey, &param)
                             : ucp_put_nbx(*ep, op.local, op.length, op.remote_addr, *rkey, &param);
    any_put |= op.kind == OpKind::kPut;
    if (r == nullptr) {
      completions[i].status = UCS_OK;
    } else if (UCS_PTR_IS_ERR(r)) {
      completions[i].status = UCS_PTR_STATUS(r);
    } else {
      requests[i] = r;
    }
  }
  // Puts complete locally first; the flush makes them visible at the daemon before we return.
  Completion flush;
  void* flush_request = nullptr;
  if (any_put) {
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    param.cb.send = &OnSendComplete;
    param.user_data = &flush;
    ucs_status_ptr_t r = ucp_ep_flush_nbx(*ep, &param);
    if (r == nullptr) flush.status = UCS_OK;
    else if (UCS_PTR_IS_ERR(r)) flush.status = UCS_PTR_STATUS(r);
    else flush_request = r;
  } else {
    flush.status = UCS_OK;
  }

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.timeout_ms);
  auto pending = [&] {
    if (flush.status == UCS_INPROGRESS) return true;
    for (const auto& c : completions) {
      if (c.status == UCS_INPROGRESS) return true;
    }
    return false;
  };
  bool timed_out = false;
  while (pending()) {
    if (worker.Progress() == 0 && std::chrono::steady_clock::now() > deadline) {
      timed_out = true;
      break;
    }
  }
  bool any_error = flush.status != UCS_OK && flush.status != UCS_INPROGRESS;
  for (const auto& c : completions) any_error |= c.status != UCS_OK && c.status != UCS_INPROGRESS;
  if (timed_out || any_error) {
    // The peer is gone or broken: close its endpoint forcefully and reconnect on the next call.
    worker.MarkFailed(target.worker_address);
    // Cancels whatever is still outstanding (their callbacks fire with an error) and forgets the
    // endpoint so that the next call reconnects.
    for (void* r : requests) {
      if (r != nullptr && ucp_request_check_status(r) == UCS_INPROGRESS) ucp_request_cancel(worker.handle(), r);
    }
    worker.DropPeer(target.worker_address);
    while (pending() && worker.Progress() > 0) {
    }
  }
  for (void* r : requests) {
    if (r != nullptr) ucp_request_free(r);
  }
  if (flush_request != nullptr) ucp_request_free(flush_request);

  for (size_t i = 0; i < ops.size(); ++i) {
    ucs_status_t s = completions[i].status;
    if (s == UCS_OK && ops[i]->kind == OpKind::kPut) s = flush.status;
    if (s == UCS_INPROGRESS) s = UCS_ERR_TIMED_OUT;
    ops[i]->status = FromUcs(s, ops[i]->kind == OpKind::kGet ? "one-sided get" : "one-sided put");
  }
  return Status::Ok();
}

// REQUIRES: slot.mu held (RunOnWorker).
Status TransferEngine::RunTwoSided(Slot& slot, ucp_ep_h ep, const RemoteTarget& target, std::span<TransferOp*> ops) {
  slot.mu.AssertHeld();  // Slot is incomplete in the header, so its REQUIRES cannot be spelled there
  UcxWorker& worker = *slot.worker;
  std::vector<PendingPush> pending(ops.size());
  auto settle = [](void* request, ucs_status_t& status) {
    if (request == nullptr || status != UCS_INPROGRESS) return;
    status = ucp_request_check_status(request);
  };
  for (size_t i = 0; i < ops.size(); ++i) {
    PendingPush& p = pending[i];
    TransferOp& op = *ops[i];
    p.op = &op;
    ucp_request_param_t param{};
    if (ucp_mem_h memh = FindMemh(op.local, op.length, Protocol::kTwoSided)) {
      param.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
      param.memh = memh;
    }
    if (op.kind == OpKind::kEagerPut) {
      // The request first, then the bytes on the same connection: the daemon posts their receive
      // while handling the request, so they land straight in the room it reserved.
      p.recv_status = UCS_OK;  // the answer is an active message, not a receive
      const uint64_t tag = slot.next_tag++;
      slot.pending.emplace(tag, &p);
      p.answer_tag = tag;
      push::PutRequest& h = p.put_header;
      h.data_tag = tag;
      h.size = op.length;
      // Hashed here, one block at a time, so that the bytes of the blocks before it are already
      // on their way while this one is hashed.
      op.checksum = BlockChecksum(op.local, op.length);
      h.checksum = op.checksum;
      h.flags = (op.pin ? push::kPutPin : 0) | (op.parent ? push::kPutHasParent : 0);
      if (op.advice) h.flags |= *op.advice == ReuseAdvice::kLikely ? push::kPutAdviseLikely : push::kPutAdviseUnlikely;
      std::memcpy(h.key, op.key.bytes().data(), sizeof(h.key));
      if (op.parent) std::memcpy(h.parent, op.parent->bytes().data(), sizeof(h.parent));
      ucp_request_param_t am{};
      am.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      am.flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER;
      ucs_status_ptr_t sent = ucp_am_send_nbx(ep, push::kPutRequestAm, &h, sizeof(h), nullptr, 0, &am);
      if (sent == nullptr) p.request_status = UCS_OK;
      else if (UCS_PTR_IS_ERR(sent)) p.request_status = UCS_PTR_STATUS(sent);
      else p.request_send = sent;
      p.data_status = UCS_INPROGRESS;
      ucs_status_ptr_t r = ucp_tag_send_nbx(ep, op.local, op.length, tag, &param);
      if (r == nullptr) p.data_status = UCS_OK;
      else if (UCS_PTR_IS_ERR(r)) p.data_status = UCS_PTR_STATUS(r);
      else p.data_send = r;
      (void)worker.Progress();  // push what the socket did not take yet, before hashing the next block
      continue;
    }
    if (op.kind == OpKind::kPut) {
      p.recv_status = UCS_OK;  // nothing to receive
      ucs_status_ptr_t r = ucp_tag_send_nbx(ep, op.local, op.length, op.tag, &param);
      if (r == nullptr) p.request_status = UCS_OK;
      else if (UCS_PTR_IS_ERR(r)) p.request_status = UCS_PTR_STATUS(r);
      else p.request_send = r;
      continue;
    }
    // Get: the receive first, so the daemon's send always finds it posted (no unexpected copy).
    const uint64_t tag = slot.next_tag++;
    param.op_attr_mask |= UCP_OP_ATTR_FIELD_RECV_INFO;
    param.recv_info.tag_info = &p.recv_info;
    ucs_status_ptr_t r = ucp_tag_recv_nbx(worker.handle(), op.local, op.length, tag, ~uint64_t{0}, &param);
    if (UCS_PTR_IS_ERR(r)) {
      p.recv_status = UCS_PTR_STATUS(r);
      p.request_status = UCS_OK;
      continue;
    }
    if (r == nullptr) p.recv_status = UCS_OK;
    else p.recv = r;
    slot.pending.emplace(tag, &p);
    p.answer_tag = tag;
    p.header.reply_tag = tag;
    ucp_request_param_t am{};
    am.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    am.flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER;
    ucs_status_ptr_t sent;
    if (op.kind == OpKind::kEagerGet) {
      p.get_header.reply_tag = tag;
      p.get_header.max_length = op.length;
      std::memcpy(p.get_header.key, op.key.bytes().data(), sizeof(p.get_header.key));
      sent = ucp_am_send_nbx(ep, push::kGetRequestAm, &p.get_header, sizeof(p.get_header), nullptr, 0, &am);
    } else {
      p.header.remote_addr = op.remote_addr;
      p.header.length = op.length;
      std::memcpy(p.header.grant, op.grant.data(), sizeof(p.header.grant));
      sent = ucp_am_send_nbx(ep, push::kPushRequestAm, &p.header, sizeof(p.header), nullptr, 0, &am);
    }
    if (sent == nullptr) p.request_status = UCS_OK;
    else if (UCS_PTR_IS_ERR(sent)) p.request_status = UCS_PTR_STATUS(sent);
    else p.request_send = sent;
  }

  auto done = [&](PendingPush& p) {
    settle(p.request_send, p.request_status);
    settle(p.data_send, p.data_status);
    if (p.recv != nullptr && p.recv_status == UCS_INPROGRESS) {
      p.recv_status = ucp_tag_recv_request_test(p.recv, &p.recv_info);
    }
    const bool request_over = p.request_status != UCS_INPROGRESS;
    const bool failed_early = request_over && p.request_status != UCS_OK;  // the daemon never heard of it
    if (p.op->kind == OpKind::kEagerPut) {
      // Done when the bytes have left and the daemon answered, or when either send failed.
      const bool data_over = p.data_status != UCS_INPROGRESS;
      const bool data_failed = data_over && p.data_status != UCS_OK;
      return (request_over && data_over && p.answered) || failed_early || (request_over && data_failed);
    }
    if (p.op->kind == OpKind::kEagerGet) {
      // The bytes and the answer (size, checksum) both; or a refusal; or a failure.
      const bool recv_over = p.recv_status != UCS_INPROGRESS;
      const bool refused = p.answered && !p.answer.ok();
      return request_over && ((recv_over && (p.answered || p.recv_status != UCS_OK)) || refused || failed_early);
    }
    return request_over && (p.recv_status != UCS_INPROGRESS || p.answered || failed_early);
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.timeout_ms);
  std::vector<size_t> open;
  for (size_t i = 0; i < pending.size(); ++i) open.push_back(i);
  bool timed_out = false;
  unsigned idle_rounds = 0;
  while (!open.empty()) {
    const unsigned events = worker.Progress();
    std::erase_if(open, [&](size_t i) { return done(pending[i]); });
    if (open.empty()) break;
    if (events == 0 && std::chrono::steady_clock::now() > deadline) {
      timed_out = true;
      break;
    }
    idle_rounds = events == 0 ? idle_rounds + 1 : 0;
    // After a short spin, sleep on the worker's event fd rather than spin, so that the daemon and
    // the other clients get the CPU (and so that this thread, having slept, runs as soon as its
    // event comes). Waiting only for bytes to arrive (gets), an event always comes; a send
    // blocked on a full socket may raise none when the socket drains, so then wake often.
    const bool receiving_only = std::all_of(open.begin(), open.end(), [&](size_t i) {
      const PendingPush& p = pending[i];
      return p.op->kind != OpKind::kPut && p.request_status != UCS_INPROGRESS && p.data_status != UCS_INPROGRESS;
    });
    if (idle_rounds > 64) {
      (void)worker.WaitForEvent(receiving_only ? std::chrono::microseconds(1000) : std::chrono::microseconds(50));
    }
  }
  bool transport_error = timed_out;
  for (const PendingPush& p : pending) {
    transport_error |= (p.request_status != UCS_OK && p.request_status != UCS_INPROGRESS) ||
                       (p.data_status != UCS_OK && p.data_status != UCS_INPROGRESS) ||
                       (!(p.answered && !p.answer.ok()) && p.recv_status != UCS_OK && p.recv_status != UCS_INPROGRESS &&
                        p.recv_status != UCS_ERR_MESSAGE_TRUNCATED);
  }
  // Receives that will not be satisfied (refused, failed, timed out) are cancelled before the
  // caller gets its buffers back. One UCX had already matched cannot be cancelled; its bytes are
  // still on their way and the endpoint is closed below, so nothing more arrives.
  for (PendingPush& p : pending) {
    if (p.recv != nullptr && p.recv_status == UCS_INPROGRESS) ucp_request_cancel(worker.handle(), p.recv);
  }
  for (PendingPush& p : pending) {
    if (p.recv != nullptr && p.recv_status == UCS_INPROGRESS) p.recv_status = ucp_tag_recv_request_test(p.recv, &p.recv_info);
  }
  for (PendingPush& p : pending) {
    if (p.op->kind != OpKind::kPut) slot.pending.erase(p.answer_tag);
  }
  if (transport_error) {
    // The peer is gone or broken: close its endpoint forcefully (which also ends the daemon's
    // sends to us) and reconnect on the next call.
    worker.MarkFailed(target.push_worker_address);
    worker.DropPeer(target.push_worker_address);
  }
  for (PendingPush& p : pending) {
    if (p.recv != nullptr) ucp_request_free(p.recv);  // released by UCX once complete
    if (p.request_send != nullptr) ucp_request_free(p.request_send);
    if (p.data_send != nullptr) ucp_request_free(p.data_send);
    TransferOp& op = *p.op;
    if (op.kind == OpKind::kEagerGet && p.answered && p.answer.ok() && p.recv_status == UCS_OK) {
      if (p.recv_info.length != p.answered_size) {
        op.status = DataLoss("daemon sent " + std::to_string(p.recv_info.length) + " bytes for a block of " +
                             std::to_string(p.answered_size));
      } else {
        op.status = Status::Ok();
        op.got_size = p.answered_size;
        op.got_checksum = p.answered_checksum;
      }
      continue;
    }
    if (op.kind == OpKind::kEagerGet && !p.answered && p.recv_status == UCS_OK) {
      op.status = DeadlineExceeded("eager get: the bytes came but the daemon's answer did not");
      continue;
    }
    if (op.kind == OpKind::kEagerPut) {
      if (p.answered) op.status = p.answer;
      else if (p.request_status != UCS_OK && p.request_status != UCS_INPROGRESS) op.status = FromUcs(p.request_status, "eager put request");
      else if (p.data_status != UCS_OK && p.data_status != UCS_INPROGRESS) op.status = FromUcs(p.data_status, "eager put");
      else op.status = DeadlineExceeded("eager put: the daemon did not answer in time");
      continue;
    }
    if (p.answered && !p.answer.ok()) {  // refused
      op.status = p.answer;
    } else if (p.request_status != UCS_OK) {
      op.status = FromUcs(p.request_status == UCS_INPROGRESS ? UCS_ERR_TIMED_OUT : p.request_status,
                          op.kind == OpKind::kGet ? "two-sided get request" : "two-sided put");
    } else if (p.recv_status == UCS_OK && op.kind == OpKind::kGet && p.recv_info.length != op.length) {
      op.status = DataLoss("daemon sent " + std::to_string(p.recv_info.length) + " bytes for a read of " +
                           std::to_string(op.length));
    } else if (p.recv_status == UCS_ERR_MESSAGE_TRUNCATED) {
      op.status = DataLoss("daemon sent more bytes than the read of " + std::to_string(op.length) + " asked for");
    } else {
      op.status = FromUcs(p.recv_status == UCS_INPROGRESS ? UCS_ERR_TIMED_OUT : p.recv_status, "two-sided get");
    }
  }
  return Status::Ok();
}

Result<Protocol> TransferEngine::PreferredProtocol(const RemoteTarget& target) {
  if (target.worker_address.empty() || target.packed_rkey.empty()) {
    return InvalidArgument("the daemon offered no UCX data plane (no worker address or rkey)");
  }
  Slot& slot = *slots_.front();
  MutexLock lock(slot.mu);
  KVSTASH_ASSIGN_OR_RETURN(ucp_rkey_h rkey, slot.worker->RemoteKey(target.worker_address, target.packed_rkey));
  void* mapped = nullptr;
  if (ucp_rkey_ptr(rkey, target.base, &mapped) == UCS_OK && mapped != nullptr) return Protocol::kOneSided;
  KVSTASH_ASSIGN_OR_RETURN(bool native, slot.worker->HasNativeRma(target.worker_address));
  return native ? Protocol::kOneSided : Protocol::kTwoSided;
}

Status TransferEngine::Run(const RemoteTarget& target, std::span<TransferOp> ops) {
  const bool two_sided = target.protocol == Protocol::kTwoSided;
  if (target.worker_address.empty() || target.packed_rkey.empty() || (two_sided && target.push_worker_address.empty())) {
    return InvalidArgument("the daemon offered no UCX data plane (no worker address or rkey)");
  }
  if (ops.empty()) return Status::Ok();
  for (TransferOp& op : ops) {
    if (op.local == nullptr || op.length == 0) return InvalidArgument("a transfer needs a non-empty local buffer");
    if (op.kind == OpKind::kEagerPut || op.kind == OpKind::kEagerGet) {
      if (!two_sided) return InvalidArgument("eager puts and gets need the two-sided protocol");
      continue;  // no remote address: the daemon picks it
    }
    if (target.length > 0 && (op.remote_addr < target.base || op.length > target.length ||
                              op.remote_addr - target.base > target.length - op.length)) {
      return InvalidArgument("remote range [" + std::to_string(op.remote_addr) + ", +" + std::to_string(op.length) +
                             ") lies outside the daemon's registered memory");
    }
  }
  std::vector<std::unique_ptr<Slot>>* pool = &slots_;
  if (two_sided) {
    Result<std::vector<std::unique_ptr<Slot>>*> push = PushSlots();
    if (!push.ok()) return push.status();
    pool = *push;
  }
  std::vector<std::unique_ptr<Slot>>& slots = *pool;
  const size_t first = next_slot_.fetch_add(1, std::memory_order_relaxed) % slots.size();
  const bool split = options_.split_bytes > 0 && slots.size() > 1;
  // A two-sided put is one message into one receive the daemon posted: never split.
  auto splittable = [&](const TransferOp& op) {
    return !(target.protocol == Protocol::kTwoSided && op.kind != OpKind::kGet);
  };
  const size_t daemon_lanes = target.push_lane_addresses.size();
  if (two_sided && daemon_lanes > 1 && slots.size() > 1 && ops.size() > 1 &&
      std::none_of(ops.begin(), ops.end(), [](const TransferOp& op) { return op.kind == OpKind::kPut; })) {
    const size_t n = std::min({slots.size(), daemon_lanes, ops.size()});
    const auto own = std::find(target.push_lane_addresses.begin(), target.push_lane_addresses.end(),
                               target.push_worker_address);
    const size_t start = own == target.push_lane_addresses.end()
                             ? 0
                             : static_cast<size_t>(own - target.push_lane_addresses.begin());
    // Each engine worker always talks to the same lane (slot s to lane start + s): calls still
    // rotate over the workers, but a worker never alternates between lanes from call to call,
    // which halved the reads of 4 concurrent 8-block readers (docs/BENCHMARKS.md, "Where the
    // regression comes from").
    std::vector<size_t> slot_of(n);
    std::vector<RemoteTarget> targets(n, target);
    std::vector<std::vector<TransferOp*>> groups(n);
    for (size_t g = 0; g < n; ++g) {
      slot_of[g] = (first + g) % slots.size();
      targets[g].push_worker_address = target.push_lane_addresses[(start + slot_of[g]) % daemon_lanes];
    }
    for (size_t i = 0; i < ops.size(); ++i) groups[i % n].push_back(&ops[i]);
    std::vector<std::thread> helpers;
    for (size_t g = 1; g < n; ++g) {
      helpers.emplace_back([&, g] { (void)RunOnWorker(*slots[slot_of[g]], targets[g], groups[g]); });
    }
    (void)RunOnWorker(*slots[slot_of[0]], targets[0], groups[0]);
    for (auto& t : helpers) t.join();
    return Status::Ok();
  }
  size_t largest = 0;
  for (const TransferOp& op : ops) {
    if (splittable(op)) largest = std::max(largest, op.length);
  }
  if (!split || largest <= options_.split_bytes) {
    std::vector<TransferOp*> all;
    for (TransferOp& op : ops) all.push_back(&op);
    return RunOnWorker(*slots[first], target, all);
  }

  // Cut large ops into pieces of about split_bytes and deal the pieces over the workers.
  std::vector<TransferOp> pieces;
  std::vector<size_t> owner;  // piece -> index in ops
  for (size_t i = 0; i < ops.size(); ++i) {
    const size_t n = splittable(ops[i]) ? std::max<size_t>(1, (ops[i].length + options_.split_bytes - 1) / options_.split_bytes) : 1;
    const size_t step = (ops[i].length + n - 1) / n;
    for (size_t off = 0; off < ops[i].length; off += step) {
      TransferOp piece = ops[i];
      piece.local = static_cast<std::byte*>(ops[i].local) + off;
      piece.length = std::min(step, ops[i].length - off);
      piece.remote_addr = ops[i].remote_addr + off;
      pieces.push_back(piece);
      owner.push_back(i);
    }
  }
  const size_t lanes = std::min(slots.size(), pieces.size());
  split_calls_.fetch_add(1, std::memory_order_relaxed);
  split_pieces_.fetch_add(pieces.size(), std::memory_order_relaxed);
  split_workers_.fetch_add(lanes, std::memory_order_relaxed);
  std::vector<std::vector<TransferOp*>> per_lane(lanes);
  for (size_t p = 0; p < pieces.size(); ++p) per_lane[p % lanes].push_back(&pieces[p]);
  std::vector<std::thread> helpers;
  for (size_t lane = 1; lane < lanes; ++lane) {
    helpers.emplace_back([&, lane] { (void)RunOnWorker(*slots[(first + lane) % slots.size()], target, per_lane[lane]); });
  }
  (void)RunOnWorker(*slots[first], target, per_lane[0]);
  for (auto& t : helpers) t.join();
  for (TransferOp& op : ops) op.status = Status::Ok();
  for (size_t p = 0; p < pieces.size(); ++p) {
    if (!pieces[p].status.ok() && ops[owner[p]].status.ok()) ops[owner[p]].status = pieces[p].status;
  }
  return Status::Ok();
}

TransferEngine::SplitCounts TransferEngine::split_counts() const {
  return {split_calls_.load(std::memory_order_relaxed), split_pieces_.load(std::memory_order_relaxed),
          split_workers_.load(std::memory_order_relaxed)};
}

void TransferEngine::ForgetTarget(const RemoteTarget& target) {
  for (auto& slot : slots_) {
    MutexLock lock(slot->mu);
    slot->worker->DropPeer(target.worker_address);
  }
  if (!push_ready_.load(std::memory_order_acquire) || target.push_worker_address.empty()) return;
  for (auto& slot : push_slots_) {
    MutexLock lock(slot->mu);
    slot->worker->DropPeer(target.push_worker_address);
    for (const std::string& lane : target.push_lane_addresses) {
      if (lane != target.push_worker_address) slot->worker->DropPeer(lane);
    }
  }
}

std::future<Status> TransferEngine::RunAsync(const RemoteTarget& target, std::span<TransferOp> ops) {
  return std::async(std::launch::async, [this, target, ops] { return Run(target, ops); });
}

}  // namespace kvstash::transfer
