// `kvstash-node serve`'s settings: ServeArgs holds them, ServeSettings() declares each once (its
// flag, help, unit and range), and the flags, their help and the range checks are generated from
// that table (common/settings.h). The --config file's keys are the flags without their dashes
// (CLI11 reads it into the same flags; deploy/kvstash-node.toml). The emulated engine's hardware
// flags, shared with kvstash-bench-node, stay in node/emulated_flags.h.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "common/settings.h"
#include "common/tls.h"
#include "node/conductor_link.h"
#include "node/engine_factory.h"
#include "node/runtime.h"

namespace kvstash::node {

struct ServeArgs {
  std::string model, store;
  std::vector<std::string> etcd;   // cluster mode: the store's members through etcd
  std::string cluster = "default";
  EngineChoice engine;
  std::string http_listen = "127.0.0.1:8000", metrics_listen = "127.0.0.1:7372";
  std::string listen = "127.0.0.1:7380";  // the gRPC service (kvstash.v1.Node)
  settings::LogLevel log_level = settings::LogLevel::kInfo;
  size_t http_threads = 64;
  uint64_t store_timeout_ms = 5'000;
  // Towards a store with TLS and tokens (docs/SECURITY.md): ClientOptions' files, and a file whose
  // first line is the bearer token.
  std::string store_tls_ca, store_tls_cert, store_tls_key, store_token_file;
  std::string etcd_ca, etcd_cert, etcd_key;  // --etcd over TLS (https:// endpoints)
  // The metrics endpoint (docs/SECURITY.md): HTTPS, client certificates, basic auth for /metrics.
  std::string metrics_tls_cert, metrics_tls_key, metrics_tls_client_ca, metrics_basic_auth_file;
  tls::ServerFiles grpc_tls{"", "", "", 60};  // the node's own gRPC port
  // The HTTP API over HTTPS (cert and key), with client certificates when a CA is named.
  std::string http_tls_cert, http_tls_key, http_tls_client_ca;
  // Bearer tokens asked of the node's callers (docs/SECURITY.md "Tokens"); empty = none.
  std::string tokens_file;
  double auth_failure_burst = 10;    // failed token checks an address may make in a row
  std::string conductor_token_file;  // first line: the token the node presents to the conductor
  bool no_local_cache = false, no_store_puts = false, no_prefix_reuse = false;
  NodeOptions node;
  ConductorLinkOptions conductor;  // address empty: no conductor
  std::string advertise;           // the gRPC address given to the conductor; default: from --listen
};

// The table, in the order the help lists the flags. Built once; safe to read from any thread.
std::span<const settings::Setting<ServeArgs>> ServeSettings();

}  // namespace kvstash::node
