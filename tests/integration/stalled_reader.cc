// kvstash-test-stalled-reader PUSH_WORKER_HEX KEY_HEX LEASE_EPOCH ADDR LENGTH: a reader that asks a
// daemon for a two-sided read and then never receives it. It sends the push request (raw UCX, the
// layout of transfer/push_protocol.h), prints "requested", and then blocks on stdin without
// progressing its worker, so the daemon's send stays in flight until the test kills this process.
// Used by two_sided_test to prove that a reader that vanishes mid-receive leaks no daemon request.
#include <ucp/api/ucp.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "common/read_grant.h"
#include "kvstash/block_key.h"
#include "transfer/push_protocol.h"

int main(int argc, char** argv) {
  using namespace kvstash;
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s PUSH_WORKER_HEX KEY_HEX LEASE_EPOCH ADDR LENGTH\n", argv[0]);
    return 2;
  }
  std::string address;
  for (const char* p = argv[1]; p[0] != '\0' && p[1] != '\0'; p += 2) {
    address.push_back(static_cast<char>(std::stoi(std::string(p, 2), nullptr, 16)));
  }
  auto key = BlockKey::FromHex(argv[2]);
  if (!key.ok()) return 2;
  transfer::push::PushRequest req;
  req.reply_tag = 42;
  req.remote_addr = std::stoull(argv[4]);
  req.length = std::stoull(argv[5]);
  const auto grant = EncodeReadGrant(*key, std::stoull(argv[3]));
  std::memcpy(req.grant, grant.data(), grant.size());

  ucp_config_t* config = nullptr;
  if (ucp_config_read(nullptr, nullptr, &config) != UCS_OK) return 1;
  ucp_config_modify(config, "TLS", "tcp");
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_TAG | UCP_FEATURE_AM;
  ucp_context_h context = nullptr;
  if (ucp_init(&params, config, &context) != UCS_OK) return 1;
  ucp_config_release(config);
  ucp_worker_params_t wp{};
  ucp_worker_h worker = nullptr;
  if (ucp_worker_create(context, &wp, &worker) != UCS_OK) return 1;
  ucp_ep_params_t ep_params{};
  ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
  ep_params.address = reinterpret_cast<const ucp_address_t*>(address.data());
  ucp_ep_h ep = nullptr;
  if (ucp_ep_create(worker, &ep_params, &ep) != UCS_OK) return 1;
  ucp_request_param_t am{};
  am.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  am.flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER;
  ucs_status_ptr_t sent = ucp_am_send_nbx(ep, transfer::push::kPushRequestAm, &req, sizeof(req), nullptr, 0, &am);
  if (UCS_PTR_IS_ERR(sent)) return 1;
  // Until the request is out and the connection is fully up; then stop progressing for good.
  ucp_request_param_t flush_param{};
  ucs_status_ptr_t flush = ucp_ep_flush_nbx(ep, &flush_param);
  while ((UCS_PTR_IS_PTR(sent) && ucp_request_check_status(sent) == UCS_INPROGRESS) ||
         (UCS_PTR_IS_PTR(flush) && ucp_request_check_status(flush) == UCS_INPROGRESS)) {
    ucp_worker_progress(worker);
  }
  std::printf("requested\n");
  std::fflush(stdout);
  char c;
  while (read(STDIN_FILENO, &c, 1) > 0) {
  }
  return 0;
}
