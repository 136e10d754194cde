// UcxContext: one UCP context, with the RMA feature (one-sided protocol) or the tag and
// active-message features (two-sided protocol, `messages`) — the root of kvstash's transfer engine
// (docs/ARCHITECTURE.md §2, data plane). Transports are UCX's choice: `transports` is passed to UCX as its
// TLS setting (the same syntax as UCX_TLS: "posix,cma,tcp", "^rc", "all"); empty keeps UCX's own
// default. kvstash has no transport-specific code path.
//
// Thread-safety: the context may be shared by workers on different threads (created with
// mt_workers_shared); Create and the destructor run on one owning thread.
#pragma once

#include <ucp/api/ucp.h>

#include <memory>
#include <string>

#include "kvstash/result.h"

namespace kvstash::transfer {

struct UcxOptions {
  std::string transports;  // UCX TLS list; empty = UCX default ("all")
  bool wakeup = false;     // enable ucp_worker_arm/efd so a progress thread can sleep (daemons)
  // Tag and active-message features instead of RMA. Never both in one context: UCX 1.13's tcp
  // transport crashes (SIGSEGV in uct_tcp_iface_progress) emulating large one-sided operations in a
  // context that also has TAG or AM — reproduced with this repository's transfer_test — so the
  // two protocols get a context each.
  bool messages = false;
  // Messages only: send tagged messages of any size eagerly (UCX's RNDV_THRESH=inf) instead of
  // with UCX's rendezvous (RTS, the receiver's reply, the bytes, a completion message). The sender
  // streams the bytes and its send completes locally; the receiver copies them from its transport
  // buffers into the posted receive (one memcpy). The client's two-sided context sets it: a put is
  // then one message the daemon never has to answer (docs/DATA_PLANE.md has the measurements).
  bool eager_sends = false;
  // Network devices UCX may use, in UCX's NET_DEVICES syntax ("lo", "eth0", "eth0,mlx5_0:1");
  // empty keeps UCX's default: every device. UCX 1.13's tcp transport opens one listening socket
  // per device it uses, bound to that device's address (lo -> 127.0.0.1 only), in every worker:
  // this is what keeps a daemon's data plane off interfaces it was not told to listen on. Shared
  // memory transports are not network devices and are unaffected. UCX does not refuse a name it
  // does not know (it warns and leaves the device out): callers check names themselves.
  std::string net_devices = {};
};

class UcxContext {
 public:
  // UNAVAILABLE with UCX's reason when the context cannot be created (for example a TLS list
  // naming no usable transport).
  static Result<std::shared_ptr<UcxContext>> Create(const UcxOptions& options);
  ~UcxContext();
  UcxContext(const UcxContext&) = delete;
  UcxContext& operator=(const UcxContext&) = delete;

  ucp_context_h handle() const { return context_; }
  const UcxOptions& options() const { return options_; }
  // UCX's version string ("1.13.1").
  static std::string Version();

 private:
  UcxContext(ucp_context_h context, UcxOptions options) : context_(context), options_(std::move(options)) {}
  ucp_context_h context_;
  UcxOptions options_;
};

// "UCX error: <ucs_status_string>" as a Status with `code`.
Status UcxError(StatusCode code, std::string_view what, ucs_status_t status);

}  // namespace kvstash::transfer
