#include "node/serve_settings.h"

#include <algorithm>

namespace kvstash::node {
namespace {

using A = ServeArgs;
using settings::Bool;
using settings::Enum;
using settings::Integer;
using settings::IntegerAt;
using settings::List;
using settings::Number;
using settings::String;
using settings::StringAt;

std::string EngineNames() {
  std::string names;
  for (const std::string& e : AvailableEngines()) names += (names.empty() ? "" : ", ") + e;
  return names;
}

std::vector<settings::Setting<A>> BuildTable() {
  std::vector<settings::Setting<A>> t;
  t.push_back(String("", "--model", &A::model, "model directory (config.json + *.safetensors)").DefaultText("required"));
  t.push_back(StringAt<A>("", "--engine", [](auto& a) -> auto& { return a.engine.engine; },
                          "engine: cpu (reference math), emulated (cost-model time, true KV bytes), cuda (where built)")
                  .Check(EngineNames(), [](const A& a) {
                    const std::vector<std::string> engines = AvailableEngines();
                    return std::find(engines.begin(), engines.end(), a.engine.engine) != engines.end();
                  }));
  t.push_back(IntegerAt<A, size_t>("", "--threads", [](auto& a) -> auto& { return a.engine.threads; },
                                   "cpu engine threads")
                  .Range(1, 256));
  t.push_back(IntegerAt<A, int>("", "--cuda-device", [](auto& a) -> auto& { return a.engine.cuda_device; },
                                "cuda engine: the CUDA device it runs on")
                  .Range(0, 1023));
  t.push_back(String("", "--store", &A::store, "a kvstashd's gRPC HOST:PORT").DefaultText("none: local cache and compute only"));
  t.push_back(List("", "--etcd", &A::etcd,
                   "etcd endpoint(s) http://HOST:PORT: use the kvstash cluster registered there (instead of --store)"));
  t.push_back(String("", "--cluster", &A::cluster, "the cluster's name in etcd (with --etcd)"));
  t.push_back(String("", "--etcd-ca", &A::etcd_ca, "PEM CA of etcd's certificate (https:// --etcd endpoints)"));
  t.push_back(String("", "--etcd-cert", &A::etcd_cert, "PEM client certificate for etcd (etcd --client-cert-auth)"));
  t.push_back(String("", "--etcd-key", &A::etcd_key, "PEM private key of --etcd-cert"));
  t.push_back(Integer("", "--store-timeout-ms", &A::store_timeout_ms, "per-RPC timeout towards the store").Unit("ms"));
  t.push_back(String("", "--store-tls-ca", &A::store_tls_ca, "PEM CA of the store's certificates: talk TLS to it"));
  t.push_back(String("", "--store-tls-cert", &A::store_tls_cert, "PEM client certificate for the store (mutual TLS)"));
  t.push_back(String("", "--store-tls-key", &A::store_tls_key, "PEM private key of --store-tls-cert"));
  t.push_back(String("", "--store-token-file", &A::store_token_file, "file whose first line is the store's bearer token"));
  t.push_back(String("", "--listen", &A::listen, "gRPC service (kvstash.v1.Node) address HOST:PORT (port 0 picks one)"));
  t.push_back(String("", "--tokens-file", &A::tokens_file,
                     "bearer tokens (hashed; the store's format) the gRPC port and HTTP API ask for: completions need "
                     "write, Info and /v1/models read, /metrics admin; SIGHUP reloads it")
                  .DefaultText("none: every caller is served"));
  t.push_back(Number("", "--auth-failure-burst", &A::auth_failure_burst,
                     "failed token checks an address may make in a row before it is refused unchecked (one a "
                     "second regained)")
                  .Range(1.0, 1e6));
  t.push_back(String("", "--conductor-token-file", &A::conductor_token_file,
                     "file whose first line is the bearer token presented to the conductor"));
  t.push_back(StringAt<A>("", "--tls-cert", [](auto& a) -> auto& { return a.grpc_tls.cert_file; },
                          "PEM certificate chain: the gRPC port speaks only TLS")
                  .DefaultText("plaintext"));
  t.push_back(StringAt<A>("", "--tls-key", [](auto& a) -> auto& { return a.grpc_tls.key_file; },
                          "PEM private key of --tls-cert"));
  t.push_back(StringAt<A>("", "--tls-client-ca", [](auto& a) -> auto& { return a.grpc_tls.client_ca_file; },
                          "PEM CA bundle: gRPC clients (the front door) must present a certificate it signed "
                          "(mutual TLS)"));
  t.push_back(IntegerAt<A, uint32_t>("", "--tls-reload-s", [](auto& a) -> auto& { return a.grpc_tls.reload_interval_s; },
                                     "re-read the TLS files when they change, checked this often; 0 = never")
                  .Unit("s"));
  t.push_back(StringAt<A>("", "--conductor-tls-ca", [](auto& a) -> auto& { return a.conductor.tls.ca_file; },
                          "PEM CA of the conductor's certificate: talk TLS to it"));
  t.push_back(StringAt<A>("", "--conductor-tls-cert", [](auto& a) -> auto& { return a.conductor.tls.cert_file; },
                          "PEM client certificate for the conductor (mutual TLS)"));
  t.push_back(StringAt<A>("", "--conductor-tls-key", [](auto& a) -> auto& { return a.conductor.tls.key_file; },
                          "PEM private key of --conductor-tls-cert"));
  t.push_back(String("", "--http-listen", &A::http_listen, "HTTP API address HOST:PORT (port 0 picks one)"));
  t.push_back(String("", "--http-tls-cert", &A::http_tls_cert,
                     "PEM certificate chain: the HTTP API (/v1/completions, /v1/models, /healthz) over HTTPS only")
                  .DefaultText("plaintext"));
  t.push_back(String("", "--http-tls-key", &A::http_tls_key, "PEM private key of --http-tls-cert"));
  t.push_back(String("", "--http-tls-client-ca", &A::http_tls_client_ca,
                     "PEM CA bundle: HTTP API clients must present a certificate it signed"));
  t.push_back(String("", "--metrics-listen", &A::metrics_listen, "/metrics address HOST:PORT (port 0 picks one)"));
  t.push_back(String("", "--metrics-tls-cert", &A::metrics_tls_cert,
                     "PEM certificate chain: /metrics and /healthz over HTTPS only"));
  t.push_back(String("", "--metrics-tls-key", &A::metrics_tls_key, "PEM private key of --metrics-tls-cert"));
  t.push_back(String("", "--metrics-tls-client-ca", &A::metrics_tls_client_ca,
                     "PEM CA bundle: metrics clients must present a certificate it signed"));
  t.push_back(String("", "--metrics-basic-auth-file", &A::metrics_basic_auth_file,
                     "`user sha256(password)` per line: GET /metrics needs basic auth"));
  t.push_back(Integer("", "--http-threads", &A::http_threads, "HTTP workers: completions served at once")
                  .Range(1, 4096));
  t.push_back(IntegerAt<A, uint32_t>("", "--page-tokens", [](auto& a) -> auto& { return a.node.page_tokens; },
                                     "tokens per KV page")
                  .Range(1, 4096));
  t.push_back(IntegerAt<A, size_t>("", "--pool-pages", [](auto& a) -> auto& { return a.node.pool_pages; },
                                   "KV pages in the pool")
                  .Range(1, 1 << 24));
  t.push_back(IntegerAt<A, uint32_t>("", "--block-tokens", [](auto& a) -> auto& { return a.node.block_tokens; },
                                     "tokens per store block (a multiple of --page-tokens)")
                  .Range(1, 1 << 20));
  t.push_back(IntegerAt<A, size_t>("", "--max-batch-tokens", [](auto& a) -> auto& { return a.node.max_batch_tokens; },
                                   "prefill tokens per step (chunked prefill)")
                  .Range(1, 1 << 24));
  t.push_back(IntegerAt<A, size_t>("", "--max-running", [](auto& a) -> auto& { return a.node.max_running; },
                                   "sequences decoding at once")
                  .Range(1, 65536));
  t.push_back(IntegerAt<A, uint64_t>("", "--lease-ms", [](auto& a) -> auto& { return a.node.lease_ms; },
                                     "lease on store blocks between Lookup and Get")
                  .Unit("ms"));
  t.push_back(Bool("", "--no-local-cache", &A::no_local_cache, "do not keep finished requests' blocks for reuse")
                  .Switch("true"));
  t.push_back(Bool("", "--no-store-puts", &A::no_store_puts, "do not put newly computed blocks to the store")
                  .Switch("true"));
  t.push_back(Bool("", "--no-prefix-reuse", &A::no_prefix_reuse,
                   "recompute every prompt (no local-cache or store lookups); P/D handoffs still go through the store")
                  .Switch("true"));
  t.push_back(IntegerAt<A, uint32_t>("", "--handoff-layer-group",
                                     [](auto& a) -> auto& { return a.node.handoff_layer_group; },
                                     "layer-wise P/D handoff: model layers per slice group (0: an eighth of the layers)")
                  .Range(0, 1 << 16));
  t.push_back(IntegerAt<A, uint64_t>("", "--handoff-timeout-ms",
                                     [](auto& a) -> auto& { return a.node.handoff_timeout_ms; },
                                     "layer-wise P/D handoff: how long a decode node waits for the next slice")
                  .Range(1, 3'600'000)
                  .Unit("ms"));
  t.push_back(StringAt<A>("", "--conductor", [](auto& a) -> auto& { return a.conductor.address; },
                          "kvstash-conductor's gRPC HOST:PORT: register, heartbeat, KV events, TTFT reports")
                  .DefaultText("none"));
  t.push_back(String("", "--advertise", &A::advertise,
                     "the gRPC HOST:PORT the conductor's front door uses to reach this node")
                  .DefaultText("--listen's, a wildcard host replaced by the hostname"));
  t.push_back(StringAt<A>("", "--instance-id", [](auto& a) -> auto& { return a.conductor.instance_id; },
                          "id at the conductor")
                  .DefaultText("hostname:http-port"));
  t.push_back(EnumAt<A, NodeRole>("", "--role", [](auto& a) -> auto& { return a.conductor.role; },
                                  std::span(kNodeRoleNames), "role at the conductor"));
  t.push_back(IntegerAt<A, uint64_t>("", "--heartbeat-ms", [](auto& a) -> auto& { return a.conductor.heartbeat_ms; },
                                     "heartbeat interval towards the conductor")
                  .Range(10, 600'000)
                  .Unit("ms"));
  t.push_back(Enum("", "--log-level", &A::log_level, std::span(settings::kLogLevelNames), "log level"));
  return t;
}

}  // namespace

std::span<const settings::Setting<ServeArgs>> ServeSettings() {
  static const std::vector<settings::Setting<ServeArgs>> table = BuildTable();
  return table;
}

}  // namespace kvstash::node
