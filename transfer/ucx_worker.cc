#include "transfer/ucx_worker.h"

#include <poll.h>

#include <chrono>
#include <limits>
#include <vector>
#include <cstdio>
#include <cstdlib>

#include <spdlog/spdlog.h>

namespace kvstash::transfer {
namespace {

constexpr uint64_t kHandshakeTimeoutMs = 10'000;  // Endpoint(): a peer that does not answer by then is unreachable

}  // namespace

Result<std::unique_ptr<UcxWorker>> UcxWorker::Create(std::shared_ptr<UcxContext> context, bool shared,
                                                     const Clock* clock) {
  if (clock == nullptr) return InvalidArgument("a UCX worker needs a clock");
  std::unique_ptr<UcxWorker> w(new UcxWorker());
  w->context_ = std::move(context);
  w->clock_ = clock;
  ucp_worker_params_t params{};
  params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  params.thread_mode = shared ? UCS_THREAD_MODE_MULTI : UCS_THREAD_MODE_SINGLE;  // see the header
  ucs_status_t status = ucp_worker_create(w->context_->handle(), &params, &w->worker_);
  if (status != UCS_OK) return UcxError(StatusCode::kUnavailable, "creating a UCX worker", status);
  ucp_address_t* address = nullptr;
  size_t length = 0;
  status = ucp_worker_get_address(w->worker_, &address, &length);
  if (status != UCS_OK) return UcxError(StatusCode::kUnavailable, "reading the UCX worker address", status);
  w->address_.assign(reinterpret_cast<const char*>(address), length);
  ucp_worker_release_address(w->worker_, address);
  return w;
}

UcxWorker::~UcxWorker() {
  for (auto& [address, peer] : peers_) ClosePeer(*peer);
  peers_.clear();
  if (worker_ == nullptr) return;
  // Send what the worker still owes on endpoints peers opened to it before destroying it: UCX 1.13
  // aborts the process when ucp_worker_destroy purges a wireup reply still pending (openucx/ucx
  // PR 8175 removed that assertion upstream). Such a reply waits for the peer to progress — a
  // client connected but idle while the daemon stops. Then the worker is left to the process's
  // exit instead of destroyed (its memory and sockets are the only cost), and that is logged.
  ucp_request_param_t param{};
  ucs_status_ptr_t flush = ucp_worker_flush_nbx(worker_, &param);
  bool flushed = !UCS_PTR_IS_ERR(flush);
  if (UCS_PTR_IS_PTR(flush)) {
    int rounds = 0;
    while (ucp_request_check_status(flush) == UCS_INPROGRESS && rounds++ < 100000) ucp_worker_progress(worker_);
    flushed = ucp_request_check_status(flush) == UCS_OK;
    if (flushed) ucp_request_free(flush);
  }
  if (!flushed) {
    spdlog::warn("a UCX worker still has connections a peer has not completed; leaving it undestroyed");
    return;
  }
  ucp_worker_destroy(worker_);
}

Result<ucp_ep_h> UcxWorker::Endpoint(const std::string& peer_address) {
  if (peer_address.empty()) return InvalidArgument("empty UCX peer address");
  auto it = peers_.find(peer_address);
  if (it != peers_.end()) {
    if (!it->second->failed) return it->second->ep;
    DropPeer(peer_address);  // reconnect below: the peer may have restarted at the same address
  }
  auto peer = std::make_unique<Peer>();
  // Plain endpoints (UCP_ERR_HANDLING_MODE_NONE). UCX 1.13's peer-failure mode makes the
  // *surviving* side abort when its peer dies during the connection handshake (an assertion on
  // the unsent reply, removed upstream in UCX 1.14, openucx/ucx#8175): a crashing client would take
  // the daemon down. Without it a dead peer shows up as a timeout, after which the endpoint is
  // dropped and rebuilt (TransferEngine), and the control plane reports the daemon gone first.
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
  params.address = reinterpret_cast<const ucp_address_t*>(peer_address.data());
  params.err_mode = UCP_ERR_HANDLING_MODE_NONE;
  const ucs_status_t created = ucp_ep_create(worker_, &params, &peer->ep);
  if (created != UCS_OK) return UcxError(StatusCode::kUnavailable, "connecting a UCX endpoint", created);
  ucp_ep_h ep = peer->ep;
  peers_.emplace(peer_address, std::move(peer));
  // Finish the connection handshake now, so that a peer that cannot be reached is a clear error
  // here rather than a timeout in the first transfer, and so that operations through a mapping of
  // the peer's memory (ucp_rkey_ptr), which never progress the endpoint, leave no handshake
  // half-done behind.
  ucp_request_param_t param{};
  ucs_status_ptr_t flush = ucp_ep_flush_nbx(ep, &param);
  if (UCS_PTR_IS_PTR(flush)) {
    const uint64_t deadline_ms = clock_->NowMs() + kHandshakeTimeoutMs;
    while (ucp_request_check_status(flush) == UCS_INPROGRESS && clock_->NowMs() < deadline_ms) {
      ucp_worker_progress(worker_);
    }
    const ucs_status_t status = ucp_request_check_status(flush);
    if (status == UCS_INPROGRESS) ucp_request_cancel(worker_, flush);
    ucp_request_free(flush);
    if (status != UCS_OK) {
      DropPeer(peer_address);
      return UcxError(StatusCode::kUnavailable, "completing the UCX connection handshake",
                      status == UCS_INPROGRESS ? UCS_ERR_TIMED_OUT : status);
    }
  } else if (UCS_PTR_IS_ERR(flush)) {
    DropPeer(peer_address);
    return UcxError(StatusCode::kUnavailable, "completing the UCX connection handshake", UCS_PTR_STATUS(flush));
  }
  return ep;
}

Status UcxWorker::SetMessageHandlers(std::span<const std::pair<uint16_t, ucp_am_recv_callback_t>> handlers, void* arg,
                                     ucp_am_recv_callback_t others) {
  ucp_am_handler_param_t param{};
  param.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
  param.arg = arg;
  // From the highest id down, so that UCX sizes its table once.
  for (uint32_t id = std::numeric_limits<uint16_t>::max() + 1; id-- > 0;) {
    param.id = id;
    param.cb = others;
    for (const auto& [handled, cb] : handlers) {
      if (handled == id) param.cb = cb;
    }
    const ucs_status_t set = ucp_worker_set_am_recv_handler(worker_, &param);
    if (set != UCS_OK) return UcxError(StatusCode::kUnavailable, "registering UCX message handlers", set);
  }
  return Status::Ok();
}

ucs_status_t UcxWorker::DropMessage(void*, const void*, size_t, void*, size_t, const ucp_am_recv_param_t*) {
  return UCS_OK;
}

Result<ucp_rkey_h> UcxWorker::RemoteKey(const std::string& peer_address, const std::string& packed_rkey) {
  KVSTASH_ASSIGN_OR_RETURN(ucp_ep_h ep, Endpoint(peer_address));
  Peer& peer = *peers_.at(peer_address);
  auto it = peer.rkeys.find(packed_rkey);
  if (it != peer.rkeys.end()) return it->second;
  ucp_rkey_h rkey = nullptr;
  const ucs_status_t status = ucp_ep_rkey_unpack(ep, packed_rkey.data(), &rkey);
  if (status != UCS_OK) return UcxError(StatusCode::kInvalidArgument, "unpacking a UCX remote key", status);
  peer.rkeys.emplace(packed_rkey, rkey);
  return rkey;
}

Result<bool> UcxWorker::HasNativeRma(const std::string& peer_address) {
  KVSTASH_ASSIGN_OR_RETURN(ucp_ep_h ep, Endpoint(peer_address));
  // UCX 1.13 has no query for an endpoint's transports (ucp_ep_query knows names and socket
  // addresses only); its endpoint report lists one "put[i]"/"get[i]" line per lane that carries
  // native RMA, and none when RMA would be emulated over active messages. This is the one place
  // kvstash reads it.
  char* text = nullptr;
  size_t size = 0;
  FILE* stream = open_memstream(&text, &size);
  if (stream == nullptr) return Internal("open_memstream failed");
  ucp_ep_print_info(ep, stream);
  std::fclose(stream);
  const std::string report(text, size);
  std::free(text);
  return report.find(" put[") != std::string::npos || report.find(" get[") != std::string::npos;
}

void UcxWorker::MarkFailed(const std::string& peer_address) {
  if (auto it = peers_.find(peer_address); it != peers_.end()) it->second->failed = true;
}

bool UcxWorker::PeerFailed(const std::string& peer_address) const {
  auto it = peers_.find(peer_address);
  return it != peers_.end() && it->second->failed;
}

void UcxWorker::ClosePeer(Peer& peer) {
  for (auto& [packed, rkey] : peer.rkeys) ucp_rkey_destroy(rkey);
  peer.rkeys.clear();
  if (peer.ep == nullptr) return;
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = peer.failed ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  ucs_status_ptr_t request = ucp_ep_close_nbx(peer.ep, &param);
  if (UCS_PTR_IS_PTR(request)) {
    // Bounded: a graceful close needs the peer; give it a few thousand progress rounds, then force.
    int rounds = 0;
    while (ucp_request_check_status(request) == UCS_INPROGRESS && rounds++ < 100000) ucp_worker_progress(worker_);
    if (ucp_request_check_status(request) == UCS_INPROGRESS) ucp_request_cancel(worker_, request);
    ucp_request_free(request);
  }
  peer.ep = nullptr;
}

void UcxWorker::DropPeer(const std::string& peer_address) {
  auto it = peers_.find(peer_address);
  if (it == peers_.end()) return;
  ClosePeer(*it->second);
  peers_.erase(it);
}

Status UcxWorker::WaitForEvent(std::chrono::microseconds timeout) { return WaitForEvents({this}, timeout); }

Status UcxWorker::WaitForEvents(std::initializer_list<UcxWorker*> workers, std::chrono::microseconds timeout) {
  std::vector<pollfd> fds;
  for (UcxWorker* w : workers) {
    int fd = -1;
    ucs_status_t status = ucp_worker_get_efd(w->worker_, &fd);
    if (status != UCS_OK) return UcxError(StatusCode::kFailedPrecondition, "getting the UCX worker event fd", status);
    status = ucp_worker_arm(w->worker_);
    if (status == UCS_ERR_BUSY) return Status::Ok();  // events are pending: progress now
    if (status != UCS_OK) return UcxError(StatusCode::kInternal, "arming the UCX worker", status);
    fds.push_back({fd, POLLIN, 0});
  }
  // ppoll, not poll: its timeout is not rounded up to whole milliseconds.
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout);
  const timespec ts{static_cast<time_t>(secs.count()),
                    static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout - secs).count())};
  (void)ppoll(fds.data(), fds.size(), &ts, nullptr);
  return Status::Ok();
}

}  // namespace kvstash::transfer
