#include "transfer/ucx_context.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <ucs/debug/log_def.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <mutex>

#include "common/mutex.h"

namespace kvstash::transfer {
namespace {

// UCX prints its own log lines to stdout, which would corrupt the output of tools that print JSON
// (and clutter a daemon's). Route them to a "ucx" logger on stderr instead: warnings and errors as
// warnings (UCX reports recoverable probing, such as a transport set without peer-failure
// support, as errors), everything else at debug.
std::shared_ptr<spdlog::logger> UcxLogger() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    if (auto existing = spdlog::get("ucx")) return existing;
    auto created = spdlog::stderr_color_mt("ucx");
    created->set_level(spdlog::default_logger()->level());
    return created;
  }();
  return logger;
}

// At most this many UCX warnings a second reach the log; the rest are counted and summed up in
// the next second's first line. A peer can make UCX warn at will (an active message for a
// transport-level id nobody handles logs a hex dump and a backtrace): it must not flood the log.
constexpr int kUcxWarningsPerSecond = 50;

// Whether one more warning may be logged now; `suppressed` receives how many were dropped since
// the last one that was.
bool AdmitWarning(uint64_t& suppressed) {
  static Mutex mu;
  static std::chrono::steady_clock::time_point window;
  static int in_window = 0;
  static uint64_t dropped = 0;
  MutexLock lock(mu);
  const auto now = std::chrono::steady_clock::now();
  if (now - window >= std::chrono::seconds(1)) {
    window = now;
    in_window = 0;
  }
  if (in_window >= kUcxWarningsPerSecond) {
    ++dropped;
    return false;
  }
  ++in_window;
  suppressed = dropped;
  dropped = 0;
  return true;
}

ucs_log_func_rc_t RouteUcxLog(const char* file, unsigned line, const char*, ucs_log_level_t level,
                              const ucs_log_component_config_t*, const char* format, va_list ap) {
  uint64_t suppressed = 0;
  if (level <= UCS_LOG_LEVEL_WARN && !AdmitWarning(suppressed)) return UCS_LOG_FUNC_RC_STOP;
  if (suppressed > 0) UcxLogger()->warn("UCX: {} warnings suppressed (more than {} a second)", suppressed, kUcxWarningsPerSecond);
  char message[1024];
  std::vsnprintf(message, sizeof(message), format, ap);
  if (level <= UCS_LOG_LEVEL_WARN) {
    UcxLogger()->warn("UCX {}:{}: {}", file, line, message);
  } else {
    UcxLogger()->debug("UCX {}:{}: {}", file, line, message);
  }
  return UCS_LOG_FUNC_RC_STOP;
}

void InstallUcxLogRouting() {
  static std::once_flag once;
  std::call_once(once, [] {
    (void)UcxLogger();
    ucs_log_push_handler(&RouteUcxLog);
  });
}

}  // namespace

Status UcxError(StatusCode code, std::string_view what, ucs_status_t status) {
  return Status(code, std::string(what) + ": UCX " + ucs_status_string(status));
}

std::string UcxContext::Version() { return ucp_get_version_string(); }

Result<std::shared_ptr<UcxContext>> UcxContext::Create(const UcxOptions& options) {
  InstallUcxLogRouting();
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
  if (!options.net_devices.empty()) {
    status = ucp_config_modify(config, "NET_DEVICES", options.net_devices.c_str());
    if (status != UCS_OK) {
      ucp_config_release(config);
      return UcxError(StatusCode::kInvalidArgument, "UCX network devices '" + options.net_devices + "'", status);
    }
  }
  if (options.messages && options.eager_sends) {
    status = ucp_config_modify(config, "RNDV_THRESH", "inf");
    if (status != UCS_OK) {
      ucp_config_release(config);
      return UcxError(StatusCode::kInternal, "setting UCX's rendezvous threshold", status);
    }
  }
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
  // RMA for the one-sided protocol; TAG and AM for the two-sided one (transfer_engine.h). Never
  // both: see UcxOptions::messages.
  params.features = options.messages ? (UCP_FEATURE_TAG | UCP_FEATURE_AM) : UCP_FEATURE_RMA;
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
