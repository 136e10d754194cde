// kvstash-conductor: the live global scheduler (kvstash.v1.Conductor over gRPC) with Prometheus
// metrics. Exit codes: 0 clean shutdown (SIGINT/SIGTERM), 1 startup failed, 2 usage error.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>

#include "common/tls_listen.h"
#include "scheduler/conductor_service.h"
#include "node/tokenizer.h"
#include "scheduler/front_door.h"
#include "scheduler/spec_flags.h"

int main(int argc, char** argv) {
  using namespace kvstash::scheduler;
  std::string listen = "127.0.0.1:7380", metrics_host = "127.0.0.1", policy = "global-cache-aware";
  int metrics_port = 7381;
  PolicyOptions popt;
  CostFlags cost_flags;
  AdmissionFlags admission_flags;
  CLI::App app{"kvstash-conductor: KVCache-aware global scheduler (kvstash.v1.Conductor)",
               "kvstash-conductor"};
  app.add_option("--listen", listen, "gRPC address HOST:PORT (port 0 picks one)")
      ->capture_default_str();
  app.add_option("--metrics-host", metrics_host, "Prometheus /metrics host")->capture_default_str();
  app.add_option("--metrics-port", metrics_port, "Prometheus /metrics port (-1: off, 0: pick one)")
      ->capture_default_str();
  app.add_option("--policy", policy,
                 "random|round-robin|load-balance|local-cache-aware|global-cache-aware")
      ->capture_default_str();
  app.add_option("--seed", popt.seed, "seed of the random policy")->capture_default_str();
  app.add_option("--kvcache-balancing-threshold", popt.kvcache_balancing_threshold,
                 "global-cache-aware fetches the best holder's prefix when best > threshold x own")
      ->capture_default_str();
  std::string store_address, http_listen;
  double instance_timeout_s = 10;
  app.add_option("--instance-timeout-s", instance_timeout_s,
                 "instances not heard from for this long are left out of routing (0: never)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  FrontDoorOptions front;
  app.add_option("--http", http_listen,
                 "serve POST /v1/completions for the cluster on HOST:PORT (port 0 picks one; default: off)");
  app.add_option("--http-threads", front.threads, "front-door completions served at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--node-timeout-ms", front.node_timeout_ms, "deadline of one node call (a whole generation)")
      ->capture_default_str()
      ->check(CLI::Range(1, 86'400'000));
  app.add_option("--store-wait-ms", front.store_wait_ms,
                 "a prefill node waits this long for the prompt's blocks to be in the store")
      ->capture_default_str()
      ->check(CLI::Range(0, 60'000));
  std::string handoff = "layerwise";
  app.add_option("--handoff", handoff,
                 "P/D KV handoff: layerwise (loaded by the decode node while the prefill computes) or after-prefill")
      ->capture_default_str()
      ->check(CLI::IsMember({"layerwise", "after-prefill"}));
  std::string tokenizer_path;
  app.add_option("--tokenizer", tokenizer_path,
                 "the model's tokenizer.model (SentencePiece): the front door then takes text prompts and answers "
                 "with text");
  app.add_option("--store", store_address,
                 "kvstash store (a kvstashd) HOST:PORT: global-cache-aware may fetch prefixes from it");
  // Towards a store with TLS and tokens (docs/SECURITY.md).
  std::string store_tls_ca, store_tls_cert, store_tls_key, store_token_file;
  std::string metrics_tls_cert, metrics_tls_key, metrics_tls_client_ca, metrics_basic_auth_file;
  // TLS on the conductor's own gRPC port, and towards the nodes' (docs/SECURITY.md).
  kvstash::tls::ServerFiles grpc_tls;
  grpc_tls.reload_interval_s = 60;
  app.add_option("--tls-cert", grpc_tls.cert_file, "PEM certificate chain: the gRPC port speaks only TLS [plaintext]");
  app.add_option("--tls-key", grpc_tls.key_file, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", grpc_tls.client_ca_file,
                 "PEM CA bundle: gRPC clients (nodes) must present a certificate it signed (mutual TLS)");
  app.add_option("--tls-reload-s", grpc_tls.reload_interval_s,
                 "re-read the TLS files when they change, checked this often; 0 = never [60]");
  app.add_option("--node-tls-ca", front.node_tls.ca_file, "PEM CA of the nodes' certificates: the front door talks TLS to them");
  app.add_option("--node-tls-cert", front.node_tls.cert_file, "PEM client certificate towards the nodes (mutual TLS)");
  app.add_option("--node-tls-key", front.node_tls.key_file, "PEM private key of --node-tls-cert");
  app.add_option("--metrics-tls-cert", metrics_tls_cert, "PEM certificate chain: /metrics and /healthz over HTTPS only");
  app.add_option("--metrics-tls-key", metrics_tls_key, "PEM private key of --metrics-tls-cert");
  app.add_option("--metrics-tls-client-ca", metrics_tls_client_ca,
                 "PEM CA bundle: metrics clients must present a certificate it signed");
  app.add_option("--metrics-basic-auth-file", metrics_basic_auth_file,
                 "`user sha256(password)` per line: GET /metrics needs basic auth");
  app.add_option("--store-tls-ca", store_tls_ca, "PEM CA of the store's certificate: talk TLS to it");
  app.add_option("--store-tls-cert", store_tls_cert, "PEM client certificate for the store (mutual TLS)");
  app.add_option("--store-tls-key", store_tls_key, "PEM private key of --store-tls-cert");
  app.add_option("--store-token-file", store_token_file, "file whose first line is the store's bearer token");
  AddAdmissionFlags(&app, admission_flags);
  AddCostFlags(&app, cost_flags);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  auto fail = [](const kvstash::Status& s) {
    std::fprintf(stderr, "kvstash-conductor: %s\n", s.ToString().c_str());
    return 1;
  };
  auto cost = BuildCostModel(cost_flags);
  if (!cost.ok()) return fail(cost.status());
  auto router_options = BuildRouterOptions(admission_flags);
  if (!router_options.ok()) return fail(router_options.status());
  auto p = MakePolicy(policy, popt);
  if (!p.ok()) return fail(p.status());

  // Block the stop signals before any thread starts so only sigwait below sees them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  std::unique_ptr<kvstash::Client> store;
  if (!store_address.empty()) {
    kvstash::ClientOptions store_options;
    store_options.address = store_address;
    store_options.data_path = kvstash::DataPath::kInline;  // the conductor only looks up
    store_options.timeout_ms = 1'000;                      // a slow store must not stall routing
    store_options.tls_ca_file = store_tls_ca;
    store_options.tls_cert_file = store_tls_cert;
    store_options.tls_key_file = store_tls_key;
    if (!store_token_file.empty()) {
      std::ifstream in(store_token_file);
      if (!in || !std::getline(in, store_options.token) || store_options.token.empty()) {
        return fail(kvstash::InvalidArgument("cannot read a token from --store-token-file " + store_token_file));
      }
    }
    auto connected = kvstash::Client::Connect(store_options);
    if (!connected.ok()) return fail(connected.status());
    store = std::move(*connected);
  }
  kvstash::metrics::Registry registry;
  ConductorService service(Router(std::move(*p), *cost, *router_options),
                           kvstash::SteadyClock::Default(), &registry, store.get());
  service.set_instance_timeout(instance_timeout_s);
  if (metrics_tls_cert.empty() != metrics_tls_key.empty() || (!metrics_tls_client_ca.empty() && metrics_tls_cert.empty())) {
    return fail(kvstash::InvalidArgument(
        "HTTPS on the metrics endpoint needs --metrics-tls-cert and --metrics-tls-key (and them for --metrics-tls-client-ca)"));
  }
  kvstash::metrics::MetricsHttpOptions metrics_options;
  metrics_options.tls = {metrics_tls_cert, metrics_tls_key, metrics_tls_client_ca, 60};
  metrics_options.auth.basic_auth_file = metrics_basic_auth_file;
  if (metrics_port >= 0) {
    kvstash::tls::LogListenSecurity("kvstash-conductor /metrics", metrics_host + ":" + std::to_string(metrics_port),
                                    {metrics_tls_cert, metrics_tls_key, "", 0}, "--metrics-tls-cert/--metrics-tls-key");
  }
  kvstash::metrics::MetricsHttpServer metrics_http(&registry, std::move(metrics_options));
  if (metrics_port >= 0) {
    auto port = metrics_http.Start(metrics_host, metrics_port);
    if (!port.ok()) return fail(port.status());
    std::fprintf(stderr, "kvstash-conductor: metrics on %s://%s:%d/metrics\n", metrics_http.tls() ? "https" : "http",
                 metrics_host.c_str(), *port);
  }
  std::unique_ptr<kvstash::node::Tokenizer> tokenizer;  // outlives the front door
  std::unique_ptr<FrontDoor> front_door;
  if (!http_listen.empty()) {
    const size_t colon = http_listen.rfind(':');
    if (colon == std::string::npos) return fail(kvstash::InvalidArgument("--http must be HOST:PORT"));
    int http_port = 0;
    try {
      http_port = std::stoi(http_listen.substr(colon + 1));
    } catch (const std::exception&) {
      return fail(kvstash::InvalidArgument("--http must be HOST:PORT"));
    }
    const std::string http_host = http_listen.substr(0, colon);
    front.layerwise_handoff = handoff == "layerwise";
    if (!tokenizer_path.empty()) {
      auto loaded = kvstash::node::Tokenizer::Load(tokenizer_path);
      if (!loaded.ok()) {
        std::fprintf(stderr, "kvstash-conductor: --tokenizer: %s\n", loaded.status().ToString().c_str());
        return 2;
      }
      tokenizer = std::move(*loaded);
      front.tokenizer = tokenizer.get();
    }
    front_door = std::make_unique<FrontDoor>(service, &registry, front);
    auto port = front_door->Start(http_host, http_port);
    if (!port.ok()) return fail(port.status());
    std::fprintf(stderr, "kvstash-conductor: front door on http://%s:%d/v1/completions\n", http_host.c_str(), *port);
  }
  int bound = 0;
  grpc::ServerBuilder builder;
  auto grpc_credentials = kvstash::tls::MakeServerCredentials(grpc_tls);
  if (!grpc_credentials.ok()) return fail(grpc_credentials.status());
  kvstash::tls::LogListenSecurity("kvstash-conductor gRPC", listen, grpc_tls);
  builder.AddListeningPort(listen, *grpc_credentials, &bound);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) return fail(kvstash::Unavailable("cannot listen on " + listen));
  std::printf("kvstash-conductor: listening on port %d, policy %s, admission %s\n", bound,
              policy.c_str(), admission_flags.admission.c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop, &sig);
  if (front_door) front_door->Stop();
  server->Shutdown();
  server->Wait();
  return 0;
}
