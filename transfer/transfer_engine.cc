#include "transfer/transfer_engine.h"

#include <spdlog/spdlog.h>

#include <thread>

#include "transfer/batch_plan.h"
#include "transfer/one_sided_batch.h"
#include "transfer/push_protocol.h"
#include "transfer/two_sided_batch.h"
#include "transfer/ucx_worker.h"

namespace kvstash::transfer {

std::string_view ToString(Protocol protocol) {
  return protocol == Protocol::kTwoSided ? "two-sided" : "one-sided";
}

struct TransferEngine::Slot {
  Mutex mu;
  std::unique_ptr<UcxWorker> worker PT_GUARDED_BY(mu);
  // Two-sided ops waiting on this worker for the daemon's answer (two-sided pool only). Answers
  // arrive inside Progress(), which only the holder of mu calls.
  AnswerBook answers GUARDED_BY(mu);

  // The daemon refused a two-sided get (fail that op now rather than at its timeout), or answered
  // an eager op.
  static ucs_status_t OnAnswer(void* arg, const void* header, size_t header_length, void*, size_t,
                               const ucp_am_recv_param_t*) {
    auto* slot = static_cast<Slot*>(arg);
    slot->mu.AssertHeld();  // runs inside Progress(), called only by the holder of slot->mu
    slot->answers.Deliver(header, header_length);
    return UCS_OK;
  }
};

Result<std::vector<std::unique_ptr<TransferEngine::Slot>>> TransferEngine::CreateSlots(
    const std::shared_ptr<UcxContext>& context, size_t count, bool messages, const Clock* clock) {
  std::vector<std::unique_ptr<Slot>> slots;
  for (size_t i = 0; i < count; ++i) {
    auto slot = std::make_unique<Slot>();
    MutexLock lock(slot->mu);  // not shared yet: taken for the analysis' rule, never contended
    KVSTASH_ASSIGN_OR_RETURN(slot->worker, UcxWorker::Create(context, /*shared=*/false, clock));
    if (messages) {
      // Every other id is dropped: a daemon's message must not crash the engine either.
      const std::pair<uint16_t, ucp_am_recv_callback_t> answers[] = {{push::kPushAnswerAm, &Slot::OnAnswer}};
      KVSTASH_RETURN_IF_ERROR(slot->worker->SetMessageHandlers(answers, slot.get(), &UcxWorker::DropMessage));
    }
    slots.push_back(std::move(slot));
  }
  return slots;
}

Result<std::unique_ptr<TransferEngine>> TransferEngine::Create(const TransferEngineOptions& options) {
  if (options.workers == 0 || options.workers > 64) return InvalidArgument("workers must be 1..64");
  if (options.clock == nullptr) return InvalidArgument("the engine needs a clock");
  std::unique_ptr<TransferEngine> engine(new TransferEngine());
  engine->options_ = options;
  UcxOptions rma = options.ucx;
  rma.messages = false;
  KVSTASH_ASSIGN_OR_RETURN(engine->context_, UcxContext::Create(rma));
  KVSTASH_ASSIGN_OR_RETURN(engine->slots_, CreateSlots(engine->context_, options.workers, false, options.clock));
  return engine;
}

Result<std::vector<std::unique_ptr<TransferEngine::Slot>>*> TransferEngine::PushSlots() {
  if (push_ready_.load(std::memory_order_acquire)) return &push_slots_;
  MutexLock lock(push_mu_);
  if (push_ready_.load(std::memory_order_relaxed)) return &push_slots_;
  // Created on first use: clients that only ever use one-sided transfers pay nothing for it.
  UcxOptions messages = options_.ucx;
  messages.messages = true;
  messages.wakeup = true;  // TwoSidedBatch sleeps on a worker's event fd while waiting for bytes
  messages.eager_sends = true;  // a put is one message the daemon need not answer
  KVSTASH_ASSIGN_OR_RETURN(push_context_, UcxContext::Create(messages));
  KVSTASH_ASSIGN_OR_RETURN(push_slots_, CreateSlots(push_context_, options_.workers, true, options_.clock));
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
  {
    MutexLock lock(retired_mu_);
    retired_.clear();
  }
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
  auto fail_all = [&](const Status& st) {
    for (TransferOp* op : ops) op->status = st;
    return st;
  };
  if (!slot.worker) return fail_all(Unavailable("this transfer worker could not be replaced after a stuck receive"));
  UcxWorker& worker = *slot.worker;
  const bool two_sided = target.protocol == Protocol::kTwoSided;
  const std::string& peer = two_sided ? target.push_worker_address : target.worker_address;
  Result<ucp_ep_h> ep = worker.Endpoint(peer);
  if (!ep.ok()) return fail_all(ep.status());
  const MemhLookup find_memh = [this, &target](const void* p, size_t n) { return FindMemh(p, n, target.protocol); };
  if (two_sided) {
    TwoSidedBatch batch(worker, *ep, slot.answers, ops, find_memh);
    batch.Post();
    batch.Complete(Deadline(options_.clock, options_.timeout_ms), Deadline(options_.clock, options_.timeout_ms), peer);
    batch.Outcome();
    if (batch.ReceivesStillLanding()) RetireWorker(slot);
    return Status::Ok();
  }
  Result<ucp_rkey_h> rkey = worker.RemoteKey(target.worker_address, target.packed_rkey);
  if (!rkey.ok()) return fail_all(rkey.status());
  OneSidedBatch batch(worker, *ep, *rkey, ops, find_memh);
  batch.Post();
  batch.Complete(Deadline(options_.clock, options_.timeout_ms), peer);
  batch.Outcome();
  return Status::Ok();
}

void TransferEngine::RetireWorker(Slot& slot) {
  slot.mu.AssertHeld();
  std::unique_ptr<UcxWorker> old = std::move(slot.worker);  // (its answers were all forgotten by the batch)
  Result<std::unique_ptr<UcxWorker>> fresh = UcxWorker::Create(push_context_, /*shared=*/false, options_.clock);
  if (fresh.ok()) {
    const std::pair<uint16_t, ucp_am_recv_callback_t> answers[] = {{push::kPushAnswerAm, &Slot::OnAnswer}};
    if (Status set = (*fresh)->SetMessageHandlers(answers, &slot, &UcxWorker::DropMessage); set.ok()) {
      slot.worker = std::move(*fresh);
    } else {
      spdlog::error("transfer: a replacement worker refused its message handlers: {}", set.ToString());
    }
  } else {
    spdlog::error("transfer: no replacement worker: {}", fresh.status().ToString());
  }
  retired_count_.fetch_add(1, std::memory_order_relaxed);
  spdlog::warn("transfer: a timed-out receive was still being filled by the daemon; its worker is retired so that "
               "nothing more lands in the caller's buffer ({} retired)", retired_count_.load(std::memory_order_relaxed));
  MutexLock lock(retired_mu_);
  retired_.push_back(std::move(old));
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

void TransferEngine::RunAssignments(std::vector<Assignment>& assignments) {
  std::vector<std::thread> helpers;
  for (size_t i = 1; i < assignments.size(); ++i) {
    Assignment& a = assignments[i];
    helpers.emplace_back([this, &a] { (void)RunOnWorker(*a.slot, *a.target, a.ops); });
  }
  (void)RunOnWorker(*assignments[0].slot, *assignments[0].target, assignments[0].ops);
  for (auto& t : helpers) t.join();
}

Status TransferEngine::Run(const RemoteTarget& target, std::span<TransferOp> ops) {
  KVSTASH_RETURN_IF_ERROR(CheckBatch(target, ops));
  if (ops.empty()) return Status::Ok();
  std::vector<std::unique_ptr<Slot>>* pool = &slots_;
  if (target.protocol == Protocol::kTwoSided) {
    KVSTASH_ASSIGN_OR_RETURN(pool, PushSlots());
  }
  std::vector<std::unique_ptr<Slot>>& slots = *pool;
  const size_t first = next_slot_.fetch_add(1, std::memory_order_relaxed) % slots.size();

  if (std::vector<LaneGroup> groups = PlanLanes(target, ops, slots.size(), first); !groups.empty()) {
    std::vector<RemoteTarget> targets(groups.size(), target);
    std::vector<Assignment> assignments(groups.size());
    for (size_t g = 0; g < groups.size(); ++g) {
      targets[g].push_worker_address = groups[g].lane;
      assignments[g] = {slots[groups[g].slot].get(), &targets[g], {}};
      for (size_t i : groups[g].ops) assignments[g].ops.push_back(&ops[i]);
    }
    RunAssignments(assignments);
    return Status::Ok();
  }

  std::optional<SplitPlan> split = PlanSplit(ops, target.protocol, options_.split_bytes, slots.size());
  if (!split) {
    std::vector<TransferOp*> all;
    for (TransferOp& op : ops) all.push_back(&op);
    return RunOnWorker(*slots[first], target, all);
  }
  split_calls_.fetch_add(1, std::memory_order_relaxed);
  split_pieces_.fetch_add(split->pieces.size(), std::memory_order_relaxed);
  split_workers_.fetch_add(split->per_worker.size(), std::memory_order_relaxed);
  std::vector<Assignment> assignments(split->per_worker.size());
  for (size_t w = 0; w < assignments.size(); ++w) {
    assignments[w] = {slots[(first + w) % slots.size()].get(), &target, {}};
    for (size_t p : split->per_worker[w]) assignments[w].ops.push_back(&split->pieces[p]);
  }
  RunAssignments(assignments);
  MergePieces(*split, ops);
  return Status::Ok();
}

bool TransferEngine::moves_device_memory() const {
  ucp_context_attr_t attr{};
  attr.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
  return ucp_context_query(context_->handle(), &attr) == UCS_OK &&
         (attr.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA)) != 0;
}

TransferEngine::SplitCounts TransferEngine::split_counts() const {
  return {split_calls_.load(std::memory_order_relaxed), split_pieces_.load(std::memory_order_relaxed),
          split_workers_.load(std::memory_order_relaxed)};
}

void TransferEngine::ForgetTarget(const RemoteTarget& target) {
  for (auto& slot : slots_) {
    MutexLock lock(slot->mu);
    if (!target.worker_address.empty()) slot->worker->DropPeer(target.worker_address);
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
