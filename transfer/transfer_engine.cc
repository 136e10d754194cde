#include "transfer/transfer_engine.h"

#include <chrono>
#include <cstring>
#include <thread>

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

}  // namespace

struct TransferEngine::Slot {
  std::mutex mu;
  std::unique_ptr<UcxWorker> worker;  // guarded by mu
};

Result<std::unique_ptr<TransferEngine>> TransferEngine::Create(const TransferEngineOptions& options) {
  if (options.workers == 0 || options.workers > 64) return InvalidArgument("workers must be 1..64");
  std::unique_ptr<TransferEngine> engine(new TransferEngine());
  engine->options_ = options;
  KVSTASH_ASSIGN_OR_RETURN(engine->context_, UcxContext::Create(options.ucx));
  for (size_t i = 0; i < options.workers; ++i) {
    auto slot = std::make_unique<Slot>();
    KVSTASH_ASSIGN_OR_RETURN(slot->worker, UcxWorker::Create(engine->context_));
    engine->slots_.push_back(std::move(slot));
  }
  return engine;
}

TransferEngine::~TransferEngine() {
  slots_.clear();    // workers (and their endpoints) before registrations and the context
  regions_.clear();
}

Status TransferEngine::RegisterBuffer(void* base, size_t length) {
  KVSTASH_ASSIGN_OR_RETURN(auto region, MemoryRegion::Register(context_, base, length));
  std::lock_guard lock(regions_mu_);
  regions_.push_back(std::move(region));
  return Status::Ok();
}

Status TransferEngine::UnregisterBuffer(void* base) {
  std::lock_guard lock(regions_mu_);
  for (auto it = regions_.begin(); it != regions_.end(); ++it) {
    if ((*it)->base() == base) {
      regions_.erase(it);
      return Status::Ok();
    }
  }
  return NotFound("buffer was not registered");
}

ucp_mem_h TransferEngine::FindMemh(const void* p, size_t n) {
  std::lock_guard lock(regions_mu_);
  for (const auto& region : regions_) {
    if (region->Contains(p, n)) return region->handle();
  }
  return nullptr;
}

Status TransferEngine::RunOnWorker(Slot& slot, const RemoteTarget& target, std::span<TransferOp*> ops) {
  std::lock_guard lock(slot.mu);
  UcxWorker& worker = *slot.worker;
  auto fail_all = [&](const Status& st) {
    for (TransferOp* op : ops) op->status = st;
    return st;
  };
  Result<ucp_ep_h> ep = worker.Endpoint(target.worker_address);
  if (!ep.ok()) return fail_all(ep.status());
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
    if (ucp_mem_h memh = FindMemh(op.local, op.length)) {
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

Status TransferEngine::Run(const RemoteTarget& target, std::span<TransferOp> ops) {
  if (target.worker_address.empty() || target.packed_rkey.empty()) {
    return InvalidArgument("the daemon offered no UCX data plane (no worker address or rkey)");
  }
  if (ops.empty()) return Status::Ok();
  for (TransferOp& op : ops) {
    if (op.local == nullptr || op.length == 0) return InvalidArgument("a transfer needs a non-empty local buffer");
    if (target.length > 0 && (op.remote_addr < target.base || op.length > target.length ||
                              op.remote_addr - target.base > target.length - op.length)) {
      return InvalidArgument("remote range [" + std::to_string(op.remote_addr) + ", +" + std::to_string(op.length) +
                             ") lies outside the daemon's registered memory");
    }
  }
  const size_t first = next_slot_.fetch_add(1, std::memory_order_relaxed) % slots_.size();
  const bool split = options_.split_bytes > 0 && slots_.size() > 1;
  size_t largest = 0;
  for (const TransferOp& op : ops) largest = std::max(largest, op.length);
  if (!split || largest <= options_.split_bytes) {
    std::vector<TransferOp*> all;
    for (TransferOp& op : ops) all.push_back(&op);
    return RunOnWorker(*slots_[first], target, all);
  }

  // Cut large ops into pieces of about split_bytes and deal the pieces over the workers.
  std::vector<TransferOp> pieces;
  std::vector<size_t> owner;  // piece -> index in ops
  for (size_t i = 0; i < ops.size(); ++i) {
    const size_t n = std::max<size_t>(1, (ops[i].length + options_.split_bytes - 1) / options_.split_bytes);
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
  const size_t lanes = std::min(slots_.size(), pieces.size());
  std::vector<std::vector<TransferOp*>> per_lane(lanes);
  for (size_t p = 0; p < pieces.size(); ++p) per_lane[p % lanes].push_back(&pieces[p]);
  std::vector<std::thread> helpers;
  for (size_t lane = 1; lane < lanes; ++lane) {
    helpers.emplace_back([&, lane] { (void)RunOnWorker(*slots_[(first + lane) % slots_.size()], target, per_lane[lane]); });
  }
  (void)RunOnWorker(*slots_[first], target, per_lane[0]);
  for (auto& t : helpers) t.join();
  for (TransferOp& op : ops) op.status = Status::Ok();
  for (size_t p = 0; p < pieces.size(); ++p) {
    if (!pieces[p].status.ok() && ops[owner[p]].status.ok()) ops[owner[p]].status = pieces[p].status;
  }
  return Status::Ok();
}

void TransferEngine::ForgetTarget(const RemoteTarget& target) {
  for (auto& slot : slots_) {
    std::lock_guard lock(slot->mu);
    slot->worker->DropPeer(target.worker_address);
  }
}

std::future<Status> TransferEngine::RunAsync(const RemoteTarget& target, std::span<TransferOp> ops) {
  return std::async(std::launch::async, [this, target, ops] { return Run(target, ops); });
}

}  // namespace kvstash::transfer
