#include "scheduler/conductor_config.h"

#include <vector>

namespace kvstash::scheduler {
namespace {

using C = ConductorConfig;
using settings::Enum;
using settings::Integer;
using settings::Number;
using settings::String;

std::vector<settings::Setting<C>> BuildTable() {
  std::vector<settings::Setting<C>> t;
  t.push_back(String("", "--listen", &C::listen, "gRPC address HOST:PORT (port 0 picks one)"));
  t.push_back(String("", "--metrics-host", &C::metrics_host, "Prometheus /metrics host"));
  t.push_back(Integer("", "--metrics-port", &C::metrics_port, "Prometheus /metrics port (-1: off, 0: pick one)")
                  .Range(-1, 65535));
  t.push_back(Enum("", "--policy", &C::policy, std::span(kPolicyNames), "routing policy"));
  t.push_back(Integer("", "--seed", &C::seed, "seed of the random policy"));
  t.push_back(Number("", "--kvcache-balancing-threshold", &C::kvcache_balancing_threshold,
                     "global-cache-aware fetches the best holder's prefix when best > threshold x own")
                  .Check("at least 1 (a ratio of prefix lengths)",
                         [](const C& c) { return c.kvcache_balancing_threshold >= 1.0; })
                  .When([](const C& c) { return c.policy == PolicyKind::kGlobalCacheAware; }));
  t.push_back(Number("", "--instance-timeout-s", &C::instance_timeout_s,
                     "instances not heard from for this long are left out of routing (0: never)")
                  .Range(0.0, 86400.0)
                  .Unit("s"));
  t.push_back(String("", "--http", &C::http_listen,
                     "serve POST /v1/completions for the cluster on HOST:PORT (port 0 picks one)")
                  .DefaultText("off"));
  t.push_back(String("", "--http-tls-cert", &C::http_tls_cert, "PEM certificate chain: the front door over HTTPS only")
                  .DefaultText("plaintext"));
  t.push_back(String("", "--http-tls-key", &C::http_tls_key, "PEM private key of --http-tls-cert"));
  t.push_back(String("", "--http-tls-client-ca", &C::http_tls_client_ca,
                     "PEM CA bundle: front-door clients must present a certificate it signed"));
  t.push_back(Integer("", "--http-threads", &C::http_threads, "front-door completions served at once")
                  .Range(size_t{1}, size_t{4096}));
  t.push_back(Integer("", "--node-timeout-ms", &C::node_timeout_ms, "deadline of one node call (a whole generation)")
                  .Range(uint64_t{1}, uint64_t{86'400'000})
                  .Unit("ms"));
  t.push_back(Integer("", "--store-wait-ms", &C::store_wait_ms,
                      "a prefill node waits this long for the prompt's blocks to be in the store")
                  .Range(0u, 60'000u)
                  .Unit("ms"));
  t.push_back(Enum("", "--handoff", &C::handoff, std::span(kHandoffModeNames),
                   "P/D KV handoff: layerwise (loaded by the decode node while the prefill computes) or "
                   "after-prefill"));
  t.push_back(String("", "--tokenizer", &C::tokenizer,
                     "the model's tokenizer.model (SentencePiece): the front door then takes text prompts and "
                     "answers with text")
                  .DefaultText("token ids only"));
  t.push_back(String("", "--store", &C::store,
                     "kvstash store (a kvstashd) HOST:PORT: global-cache-aware may fetch prefixes from it"));
  t.push_back(String("", "--tls-cert", &C::tls_cert, "PEM certificate chain: the gRPC port speaks only TLS")
                  .DefaultText("plaintext"));
  t.push_back(String("", "--tls-key", &C::tls_key, "PEM private key of --tls-cert"));
  t.push_back(String("", "--tls-client-ca", &C::tls_client_ca,
                     "PEM CA bundle: gRPC clients (nodes) must present a certificate it signed (mutual TLS)"));
  t.push_back(Integer("", "--tls-reload-s", &C::tls_reload_s,
                      "re-read the TLS files when they change, checked this often; 0 = never")
                  .Unit("s"));
  t.push_back(String("", "--node-tls-ca", &C::node_tls_ca,
                     "PEM CA of the nodes' certificates: the front door talks TLS to them"));
  t.push_back(String("", "--node-tls-cert", &C::node_tls_cert, "PEM client certificate towards the nodes (mutual TLS)"));
  t.push_back(String("", "--node-tls-key", &C::node_tls_key, "PEM private key of --node-tls-cert"));
  t.push_back(String("", "--tokens-file", &C::tokens_file,
                     "bearer tokens (hashed; the store's format): nodes' RegisterInstance, Heartbeat, KV events and "
                     "TTFT reports need write, Route read, the front door's completions write, /metrics admin; "
                     "SIGHUP reloads it")
                  .DefaultText("none: every caller is served"));
  t.push_back(Number("", "--auth-failure-burst", &C::auth_failure_burst,
                     "failed token checks an address may make in a row before it is refused unchecked (one a "
                     "second regained)")
                  .Range(1.0, 1e6));
  t.push_back(String("", "--node-token-file", &C::node_token_file,
                     "file whose first line is the bearer token the front door presents to the nodes"));
  t.push_back(String("", "--metrics-tls-cert", &C::metrics_tls_cert,
                     "PEM certificate chain: /metrics and /healthz over HTTPS only"));
  t.push_back(String("", "--metrics-tls-key", &C::metrics_tls_key, "PEM private key of --metrics-tls-cert"));
  t.push_back(String("", "--metrics-tls-client-ca", &C::metrics_tls_client_ca,
                     "PEM CA bundle: metrics clients must present a certificate it signed"));
  t.push_back(String("", "--metrics-basic-auth-file", &C::metrics_basic_auth_file,
                     "`user sha256(password)` per line: GET /metrics needs basic auth"));
  t.push_back(String("", "--store-tls-ca", &C::store_tls_ca, "PEM CA of the store's certificate: talk TLS to it"));
  t.push_back(String("", "--store-tls-cert", &C::store_tls_cert, "PEM client certificate for the store (mutual TLS)"));
  t.push_back(String("", "--store-tls-key", &C::store_tls_key, "PEM private key of --store-tls-cert"));
  t.push_back(String("", "--store-token-file", &C::store_token_file,
                     "file whose first line is the store's bearer token"));
  return t;
}

}  // namespace

std::span<const settings::Setting<ConductorConfig>> ConductorSettings() {
  static const std::vector<settings::Setting<ConductorConfig>> table = BuildTable();
  return table;
}

Status ConductorConfig::Validate() const {
  KVSTASH_RETURN_IF_ERROR(settings::CheckRanges(ConductorSettings(), *this));
  if (metrics_tls_cert.empty() != metrics_tls_key.empty() || (!metrics_tls_client_ca.empty() && metrics_tls_cert.empty())) {
    return InvalidArgument(
        "HTTPS on the metrics endpoint needs --metrics-tls-cert and --metrics-tls-key (and them for "
        "--metrics-tls-client-ca)");
  }
  if (http_tls_cert.empty() != http_tls_key.empty() || (!http_tls_client_ca.empty() && http_tls_cert.empty())) {
    return InvalidArgument("HTTPS on the front door needs --http-tls-cert and --http-tls-key (and them for "
                           "--http-tls-client-ca)");
  }
  return Status::Ok();
}

}  // namespace kvstash::scheduler
