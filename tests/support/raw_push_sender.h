// RawSender: a raw UCX worker (tcp) that sends hand-made requests of the two-sided protocol
// (transfer/push_protocol.h) to a daemon's push worker and collects its PushAnswers: what an
// attacker on the data plane can do, with no SDK in the way. Used by eager_ops_test and
// tenant_data_plane_test.
#pragma once

#include <ucp/api/ucp.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "transfer/push_protocol.h"
#include "transfer/ucx_context.h"
#include "transfer/ucx_worker.h"

namespace kvstash::testing {

// A raw UCX worker that sends hand-made eager-put requests and collects the daemon's answers.
class RawSender {
 public:
  explicit RawSender(const std::string& daemon_push_address) : address_(daemon_push_address) {
    transfer::UcxOptions options;
    options.transports = "tcp";
    options.messages = true;
    options.eager_sends = true;
    auto context = transfer::UcxContext::Create(options);
    if (!context.ok()) return;
    auto worker = transfer::UcxWorker::Create(*context);
    if (!worker.ok()) return;
    worker_ = std::move(*worker);
    ucp_am_handler_param_t handler{};
    handler.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
    handler.id = transfer::push::kPushAnswerAm;
    handler.arg = this;
    handler.cb = [](void* arg, const void* header, size_t length, void*, size_t, const ucp_am_recv_param_t*) {
      auto* self = static_cast<RawSender*>(arg);
      if (length == sizeof(transfer::push::PushAnswer)) {
        transfer::push::PushAnswer answer;
        std::memcpy(&answer, header, sizeof(answer));
        self->answers_.push_back(answer);
      }
      return UCS_OK;
    };
    if (ucp_worker_set_am_recv_handler(worker_->handle(), &handler) != UCS_OK) worker_.reset();
  }
  bool ok() const { return worker_ != nullptr; }

  // Sends `header_bytes` of `header` as a put request and, unless `data` is empty, `data` under
  // `tag`; returns the answer naming `tag`, or nullopt when none came within 20 s.
  std::optional<transfer::push::PushAnswer> Send(const void* header, size_t header_bytes, uint64_t tag,
                                                 std::span<const std::byte> data, bool wait_for_answer = true,
                                                 uint16_t am_id = transfer::push::kPutRequestAm) {
    auto ep = worker_->Endpoint(address_);
    if (!ep.ok()) return std::nullopt;
    ucp_request_param_t am{};
    am.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    am.flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER;
    Wait(ucp_am_send_nbx(*ep, am_id, header, header_bytes, nullptr, 0, &am));
    if (!data.empty()) {
      ucp_request_param_t param{};
      Wait(ucp_tag_send_nbx(*ep, data.data(), data.size(), tag, &param));
    }
    if (!wait_for_answer) return std::nullopt;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < give_up) {
      worker_->Progress();
      for (auto it = answers_.begin(); it != answers_.end(); ++it) {
        if (it->reply_tag == tag) {
          transfer::push::PushAnswer found = *it;
          answers_.erase(it);
          return found;
        }
      }
    }
    return std::nullopt;
  }

 private:
  void Wait(ucs_status_ptr_t request) {
    if (request == nullptr || UCS_PTR_IS_ERR(request)) return;
    while (ucp_request_check_status(request) == UCS_INPROGRESS) worker_->Progress();
    ucp_request_free(request);
  }
  std::string address_;
  // Declared before the worker so that it outlives it: the worker's destructor flushes, which runs
  // the answer handler for answers still arriving (a request sent without waiting for its answer).
  // Destroyed first, the vector was grown again inside its own destructor's remains and leaked.
  std::vector<transfer::push::PushAnswer> answers_;
  std::unique_ptr<transfer::UcxWorker> worker_;
};

}  // namespace kvstash::testing
