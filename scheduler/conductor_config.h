// ConductorConfig: what kvstash-conductor reads from its command line, in one struct. Each member is
// one row of ConductorSettings() (conductor_config.cc): its flag, help, unit and range, from which
// the flags, their help and the range checks are generated (common/settings.h). The cost-model
// and admission flags it shares with kvstash-sim stay in scheduler/spec_flags.h.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "common/settings.h"
#include "kvstash/result.h"
#include "scheduler/policy.h"

namespace kvstash::scheduler {

// How a P/D pair hands the KV over: layer by layer while the prefill computes, or after it.
enum class HandoffMode { kLayerwise, kAfterPrefill };
inline constexpr settings::EnumName<HandoffMode> kHandoffModeNames[] = {{HandoffMode::kLayerwise, "layerwise"},
                                                                        {HandoffMode::kAfterPrefill, "after-prefill"}};

struct ConductorConfig {
  std::string listen = "127.0.0.1:7380";  // gRPC kvstash.v1.Conductor
  std::string metrics_host = "127.0.0.1";
  int metrics_port = 7381;  // -1: no /metrics; 0: pick one
  PolicyKind policy = PolicyKind::kGlobalCacheAware;  // the routing policy (scheduler/policy.h)
  uint64_t seed = 1;
  double kvcache_balancing_threshold = 1.5;
  double instance_timeout_s = 10;
  // The HTTP front door (empty: off) and how it drives the nodes.
  std::string http_listen;
  std::string http_tls_cert, http_tls_key, http_tls_client_ca;  // the front door over HTTPS
  size_t http_threads = 64;
  uint64_t node_timeout_ms = 600'000;
  uint32_t store_wait_ms = 5'000;
  HandoffMode handoff = HandoffMode::kLayerwise;
  std::string tokenizer;
  // The kvstash store consulted by global-cache-aware, and how to reach it (docs/SECURITY.md).
  std::string store;
  std::string store_tls_ca, store_tls_cert, store_tls_key, store_token_file;
  // TLS on the conductor's own gRPC port, and towards the nodes.
  std::string tls_cert, tls_key, tls_client_ca;
  uint32_t tls_reload_s = 60;
  std::string node_tls_ca, node_tls_cert, node_tls_key;
  // Bearer tokens asked of the conductor's callers (gRPC port, front door, /metrics; SIGHUP
  // reloads them), and the one it presents to the nodes. Empty = none.
  std::string tokens_file, node_token_file;
  double auth_failure_burst = 10;  // failed token checks an address may make in a row
  // The metrics endpoint: HTTPS, client certificates, basic auth.
  std::string metrics_tls_cert, metrics_tls_key, metrics_tls_client_ca, metrics_basic_auth_file;

  // Every setting's range and the rules between settings; INVALID_ARGUMENT naming the first bad one.
  Status Validate() const;
};

// The table of kvstash-conductor's settings, in the order the help lists them. Built once; safe
// to read from any thread.
std::span<const settings::Setting<ConductorConfig>> ConductorSettings();

}  // namespace kvstash::scheduler
