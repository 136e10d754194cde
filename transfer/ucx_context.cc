#include "transfer/ucx_context.h"

namespace kvstash::transfer {

Status UcxError(StatusCode code, std::string_view what, ucs_status_t status) {
  return Status(code, std::string(what) + ": UCX " + ucs_status_string(status));
}

std::string UcxContext::Version() { return ucp_get_version_string(); }

Result<std::shared_ptr<UcxContext>> UcxContext::Create(const UcxOptions& options) {
  ucp_config_t* config = nullptr;
  ucs_status_t status = ucp_config_read(nullptr, nullptr, &config);
  if (status != UCS_OK) return UcxError(StatusCode::kUnavailable, "reading UCX configuration", status);
  if (!options.transports.empty()) {
    status = ucp_config_modify(config, "TLS", options.transports.c_str());
    if (status != UCS_OK) {
      ucp_config_release(config);
      return UcxError(StatusCode::kInvalidArgument, "UCX transports '" + options.transports + "'", status);
    }
  }
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
  params.features = UCP_FEATURE_RMA;
  if (options.wakeup) params.features |= UCP_FEATURE_WAKEUP;
  params.mt_workers_shared = 1;
  ucp_context_h context = nullptr;
  status = ucp_init(&params, config, &context);
  ucp_config_release(config);
  if (status != UCS_OK) {
    return UcxError(StatusCode::kUnavailable,
                    "creating a UCX context (transports '" +
                        (options.transports.empty() ? std::string("default") : options.transports) + "')",
                    status);
  }
  return std::shared_ptr<UcxContext>(new UcxContext(context, options));
}

UcxContext::~UcxContext() { ucp_cleanup(context_); }

}  // namespace kvstash::transfer
