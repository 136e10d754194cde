#include "transfer/transfer_server.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "transfer/transfer_server_internal.h"

namespace kvstash::transfer {

Result<std::unique_ptr<TransferServer>> TransferServer::Start(const UcxOptions& options, void* base,
                                                              size_t length, size_t lanes, const Clock* clock) {
  if (clock == nullptr) return InvalidArgument("the transfer server needs a clock");
  std::unique_ptr<TransferServer> server(new TransferServer());
  KVSTASH_ASSIGN_OR_RETURN(server->context_, UcxContext::Create(server->OneSidedOptions(options)));
  KVSTASH_ASSIGN_OR_RETURN(server->region_, MemoryRegion::Register(server->context_, base, length));
  return Finish(std::move(server), options, lanes, clock);
}

Result<std::unique_ptr<TransferServer>> TransferServer::StartAllocated(const UcxOptions& options, size_t length,
                                                                       size_t lanes, const Clock* clock) {
  if (clock == nullptr) return InvalidArgument("the transfer server needs a clock");
  std::unique_ptr<TransferServer> server(new TransferServer());
  KVSTASH_ASSIGN_OR_RETURN(server->context_, UcxContext::Create(server->OneSidedOptions(options)));
  KVSTASH_ASSIGN_OR_RETURN(server->region_, MemoryRegion::Allocate(server->context_, length));
  return Finish(std::move(server), options, lanes, clock);
}

UcxOptions TransferServer::OneSidedOptions(const UcxOptions& options) {
  UcxOptions one_sided = options;
  one_sided.wakeup = true;
  one_sided.transports = OneSidedTransports(options.transports);
  one_sided_transports_ = one_sided.transports;
  return one_sided;
}

Result<std::unique_ptr<TransferServer>> TransferServer::Finish(std::unique_ptr<TransferServer> server,
                                                               const UcxOptions& options, size_t lanes,
                                                               const Clock* clock) {
  server->clock_ = clock;
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
    KVSTASH_RETURN_IF_ERROR(RegisterHandlers(*lane));
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

Status TransferServer::RegisterHandlers(Lane& lane) {
  const std::pair<uint16_t, ucp_am_recv_callback_t> handlers[] = {{push::kPushRequestAm, &TransferServer::OnPushRequest},
                                                                 {push::kPutRequestAm, &TransferServer::OnEagerPut},
                                                                 {push::kGetRequestAm, &TransferServer::OnEagerGet}};
  return lane.worker->SetMessageHandlers(handlers, &lane, &TransferServer::OnUnknownMessage);
}

ucs_status_t TransferServer::OnUnknownMessage(void* arg, const void*, size_t, void*, size_t,
                                              const ucp_am_recv_param_t*) {
  // UCS_OK without receiving: UCX drops the message (and completes a rendezvous sender's request).
  static_cast<Lane*>(arg)->server->Refuse(Refusal::kUnknownMessage);
  return UCS_OK;
}

std::string_view RefusalName(Refusal reason) {
  switch (reason) {
    case Refusal::kUnknownMessage: return "unknown_message";
    case Refusal::kMalformed: return "malformed";
    case Refusal::kRendezvous: return "rendezvous";
    case Refusal::kOutOfRange: return "out_of_range";
    case Refusal::kNotAuthorized: return "not_authorized";
    case Refusal::kCorrupt: return "corrupt";
  }
  return "unknown";
}

Refusal RefusalOf(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOutOfRange: return Refusal::kOutOfRange;
    case StatusCode::kDataLoss: return Refusal::kCorrupt;
    case StatusCode::kInvalidArgument: return Refusal::kMalformed;
    default: return Refusal::kNotAuthorized;
  }
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
    MutexLock lock(receives_mu_);
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
  device_view_.store(nullptr, std::memory_order_release);
  device_region_.reset();
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
    MutexLock lock(verify_mu_);
    verifiers_stop_ = true;
  }
  verify_cv_.notify_all();
  for (std::thread& t : verifiers_) t.join();
  verifiers_.clear();
}

void TransferServer::ProgressLoop(Lane& lane) {
  const bool first = lane.index == 0;  // also progresses the one-sided worker and the shared sweeps
  auto progress = [&] { return (first ? worker_->Progress() : 0) + lane.worker->Progress(); };
  auto wait = [&](std::chrono::microseconds timeout) {
    if (first) (void)UcxWorker::WaitForEvents({worker_.get(), lane.worker.get()}, timeout);
    else (void)lane.worker->WaitForEvent(timeout);
  };
  // The expiry sweeps run every kSweepIntervalMs on clock_, as do the deadlines they check. The
  // moment-after-activity window below is not a deadline but a wakeup heuristic of microseconds,
  // finer than a Clock tells: it reads the steady clock itself.
  constexpr uint64_t kSweepIntervalMs = 100;
  uint64_t next_sweep_ms = clock_->NowMs();
  auto last_event = std::chrono::steady_clock::now();
  while (!stop_.load(std::memory_order_acquire)) {
    if (!lane.device_bound && lanes_bound_.load(std::memory_order_acquire)) {
      if (bind_thread_) bind_thread_();
      lane.device_bound = true;
    }
    RunReceiveChanges(lane);
    while (progress() > 0) {
      last_event = std::chrono::steady_clock::now();
      FinishEagerPuts(lane);
    }
    FinishEagerPuts(lane);
    if (clock_->NowMs() >= next_sweep_ms) {
      EndStuckSends(lane);
      if (first) ExpireReceives();
      ExpireEagerPuts(lane);
      next_sweep_ms = clock_->NowMs() + kSweepIntervalMs;
    }
    // While pushes are in flight, and for a moment after any activity (a transfer's next step
    // usually follows within microseconds), wake often: a tcp send blocked on a full socket may
    // raise no wakeup event when the socket drains. But sleep rather than spin: on a host with
    // more runnable threads than cores a spinning thread is descheduled for whole time slices,
    // while a thread that sleeps is run as soon as its event comes (or its short timeout ends).
    if (lane.sends_in_flight.load(std::memory_order_relaxed) > 0 ||
        std::chrono::steady_clock::now() - last_event < std::chrono::microseconds(500)) {
      wait(std::chrono::microseconds(50));
      continue;
    }
    // Sleeps until a peer needs us. Shared-memory transports raise no wakeup events, so the
    // timeout bounds how long their messages (connection setup, emulated operations) wait.
    wait(std::chrono::milliseconds(5));
  }
}

bool TransferServer::moves_device_memory() const {
  ucp_context_attr_t attr{};
  attr.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
  return ucp_context_query(push_context_->handle(), &attr) == UCS_OK &&
         (attr.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA)) != 0;
}

Status TransferServer::AddDeviceRegion(void* base, size_t length, std::function<void()> bind_thread) {
  if (base == nullptr || length == 0) return InvalidArgument("cannot serve an empty device region");
  if (device_region_) return FailedPrecondition("this data plane already serves a device region");
  if (!moves_device_memory()) {
    return FailedPrecondition("UCX " + UcxContext::Version() +
                              " has no CUDA memory transport here: device memory cannot be sent directly");
  }
  // The registering thread needs the GPU's context as much as the lanes do.
  if (bind_thread) bind_thread();
  KVSTASH_ASSIGN_OR_RETURN(device_region_, MemoryRegion::Register(push_context_, base, length, UCS_MEMORY_TYPE_CUDA));
  BindLaneThreads(std::move(bind_thread));
  device_view_.store(device_region_.get(), std::memory_order_release);
  return Status::Ok();
}

void TransferServer::BindLaneThreads(std::function<void()> bind_thread) {
  if (lanes_bound_.load(std::memory_order_acquire)) return;  // once
  bind_thread_ = std::move(bind_thread);
  lanes_bound_.store(true, std::memory_order_release);
  for (auto& lane : lanes_) lane->worker->Signal();  // each binds its thread at its next turn
}

uint64_t TransferServer::device_region_base() const {
  const MemoryRegion* d = device_view_.load(std::memory_order_acquire);
  return d == nullptr ? 0 : reinterpret_cast<uint64_t>(d->base());
}

uint64_t TransferServer::device_region_bytes() const {
  const MemoryRegion* d = device_view_.load(std::memory_order_acquire);
  return d == nullptr ? 0 : d->length();
}

TwoSidedCounters TransferServer::counters() const {
  TwoSidedCounters c;
  {
    MutexLock lock(sends_mu_);
    c.sends_in_flight = sends_.size();
  }
  {
    MutexLock lock(receives_mu_);
    c.receives_open = receives_.size();
  }
  c.sends_completed = sends_completed_.load(std::memory_order_relaxed);
  c.sends_failed = sends_failed_.load(std::memory_order_relaxed);
  c.bytes_sent = bytes_sent_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < kRefusalKinds; ++i) {
    c.refused[i] = refused_[i].load(std::memory_order_relaxed);
    c.requests_rejected += c.refused[i];
  }
  for (const auto& lane : lanes_) c.receives_open += lane->eager_open.load(std::memory_order_relaxed);
  c.eager_puts_stored = eager_stored_.load(std::memory_order_relaxed);
  c.eager_puts_refused = eager_refused_.load(std::memory_order_relaxed);
  c.eager_puts_failed = eager_failed_.load(std::memory_order_relaxed);
  c.eager_gets_sent = eager_gets_sent_.load(std::memory_order_relaxed);
  c.eager_gets_refused = eager_gets_refused_.load(std::memory_order_relaxed);
  return c;
}

}  // namespace kvstash::transfer
