// kvstash-conductor: the live global scheduler (kvstash.v1.Conductor over gRPC) with Prometheus
// metrics. Exit codes: 0 clean shutdown (SIGINT/SIGTERM), 1 startup failed, 2 usage error.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>

#include "common/settings_cli.h"
#include "common/tls_listen.h"
#include "scheduler/conductor_config.h"
#include "scheduler/conductor_service.h"
#include "node/tokenizer.h"
#include "common/auth.h"
#include "common/authorizer.h"
#include "scheduler/front_door.h"
#include "scheduler/spec_flags.h"

int main(int argc, char** argv) {
  using namespace kvstash::scheduler;
  CostFlags cost_flags;
  AdmissionFlags admission_flags;
  CLI::App app{"kvstash-conductor: KVCache-aware global scheduler (kvstash.v1.Conductor)",
               "kvstash-conductor"};
  kvstash::settings::GivenFlags given;
  kvstash::settings::AddFlags(app, ConductorSettings(), ConductorConfig{}, given);
  AddAdmissionFlags(&app, admission_flags);
  AddCostFlags(&app, cost_flags);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  ConductorConfig config;
  if (const kvstash::Status flags = kvstash::settings::ApplyFlags(ConductorSettings(), given, config); !flags.ok()) {
    std::fprintf(stderr, "kvstash-conductor: %s\n", flags.message().c_str());
    return 2;
  }
  auto fail = [](const kvstash::Status& s) {
    std::fprintf(stderr, "kvstash-conductor: %s\n", s.ToString().c_str());
    return 1;
  };
  auto cost = BuildCostModel(cost_flags);
  if (!cost.ok()) return fail(cost.status());
  auto router_options = BuildRouterOptions(admission_flags);
  if (!router_options.ok()) return fail(router_options.status());
  PolicyOptions popt;
  popt.seed = config.seed;
  popt.kvcache_balancing_threshold = config.kvcache_balancing_threshold;
  const std::string policy(Name(config.policy));
  auto p = MakePolicy(config.policy, popt);
  if (!p.ok()) return fail(p.status());
  FrontDoorOptions front;
  front.threads = config.http_threads;
  front.node_timeout_ms = config.node_timeout_ms;
  front.store_wait_ms = config.store_wait_ms;
  front.node_tls = {config.node_tls_ca, config.node_tls_cert, config.node_tls_key, ""};
  front.tls = {config.http_tls_cert, config.http_tls_key, config.http_tls_client_ca, 60};
  if (!config.node_token_file.empty()) {
    auto token = kvstash::auth::ReadTokenFile(config.node_token_file, "--node-token-file");
    if (!token.ok()) return fail(token.status());
    front.node_token = std::move(*token);
  }
  std::unique_ptr<kvstash::auth::Authorizer> authorizer;  // outlives the servers
  if (!config.tokens_file.empty()) {
    auto loaded = kvstash::auth::Authorizer::Create(config.tokens_file, {config.auth_failure_burst, 1});
    if (!loaded.ok()) return fail(loaded.status());
    authorizer = std::move(*loaded);
    front.authorizer = authorizer.get();
  }
  const kvstash::tls::ServerFiles grpc_tls{config.tls_cert, config.tls_key, config.tls_client_ca, config.tls_reload_s};

  // Block the stop signals before any thread starts so only sigwait below sees them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGHUP);  // reloads --tokens-file
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  std::unique_ptr<kvstash::Client> store;
  if (!config.store.empty()) {
    kvstash::ClientOptions store_options;
    store_options.address = config.store;
    store_options.data_path = kvstash::DataPath::kInline;  // the conductor only looks up
    store_options.timeout_ms = 1'000;                      // a slow store must not stall routing
    store_options.tls_ca_file = config.store_tls_ca;
    store_options.tls_cert_file = config.store_tls_cert;
    store_options.tls_key_file = config.store_tls_key;
    if (!config.store_token_file.empty()) {
      std::ifstream in(config.store_token_file);
      if (!in || !std::getline(in, store_options.token) || store_options.token.empty()) {
        return fail(kvstash::InvalidArgument("cannot read a token from --store-token-file " + config.store_token_file));
      }
    }
    auto connected = kvstash::Client::Connect(store_options);
    if (!connected.ok()) return fail(connected.status());
    store = std::move(*connected);
  }
  kvstash::metrics::Registry registry;
  ConductorService service(Router(std::move(*p), *cost, *router_options),
                           kvstash::SteadyClock::Default(), &registry, store.get());
  service.set_instance_timeout(config.instance_timeout_s);
  service.set_authorizer(authorizer.get());
  if (const kvstash::Status valid = config.Validate(); !valid.ok()) return fail(valid);
  kvstash::metrics::MetricsHttpOptions metrics_options;
  metrics_options.tls = {config.metrics_tls_cert, config.metrics_tls_key, config.metrics_tls_client_ca, 60};
  metrics_options.auth.basic_auth_file = config.metrics_basic_auth_file;
  if (kvstash::auth::Authorizer* admitter = authorizer.get()) {
    metrics_options.auth.bearer = [admitter](const std::string& peer, std::string_view authorization) {
      return admitter->AdmitFromAddress(peer, authorization, kvstash::auth::Role::kAdmin).status();
    };
  }
  if (config.metrics_port >= 0) {
    kvstash::tls::LogListenSecurity("kvstash-conductor /metrics", config.metrics_host + ":" + std::to_string(config.metrics_port),
                                    {config.metrics_tls_cert, config.metrics_tls_key, "", 0}, "--metrics-tls-cert/--metrics-tls-key");
  }
  kvstash::metrics::MetricsHttpServer metrics_http(&registry, std::move(metrics_options));
  if (config.metrics_port >= 0) {
    auto port = metrics_http.Start(config.metrics_host, config.metrics_port);
    if (!port.ok()) return fail(port.status());
    std::fprintf(stderr, "kvstash-conductor: metrics on %s://%s:%d/metrics\n", metrics_http.tls() ? "https" : "http",
                 config.metrics_host.c_str(), *port);
  }
  std::unique_ptr<kvstash::node::Tokenizer> tokenizer;  // outlives the front door
  std::unique_ptr<FrontDoor> front_door;
  if (!config.http_listen.empty()) {
    const size_t colon = config.http_listen.rfind(':');
    if (colon == std::string::npos) return fail(kvstash::InvalidArgument("--http must be HOST:PORT"));
    int http_port = 0;
    try {
      http_port = std::stoi(config.http_listen.substr(colon + 1));
    } catch (const std::exception&) {
      return fail(kvstash::InvalidArgument("--http must be HOST:PORT"));
    }
    const std::string http_host = config.http_listen.substr(0, colon);
    front.layerwise_handoff = config.handoff == HandoffMode::kLayerwise;
    if (!config.tokenizer.empty()) {
      auto loaded = kvstash::node::Tokenizer::Load(config.tokenizer);
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
    kvstash::tls::LogListenSecurity("kvstash-conductor front door", config.http_listen,
                                    {config.http_tls_cert, config.http_tls_key, config.http_tls_client_ca, 0},
                                    "--http-tls-cert/--http-tls-key");
    std::fprintf(stderr, "kvstash-conductor: front door on %s://%s:%d/v1/completions\n",
                 config.http_tls_cert.empty() ? "http" : "https", http_host.c_str(), *port);
  }
  int bound = 0;
  grpc::ServerBuilder builder;
  auto grpc_credentials = kvstash::tls::MakeServerCredentials(grpc_tls);
  if (!grpc_credentials.ok()) return fail(grpc_credentials.status());
  kvstash::tls::LogListenSecurity("kvstash-conductor gRPC", config.listen, grpc_tls);
  builder.AddListeningPort(config.listen, *grpc_credentials, &bound);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) return fail(kvstash::Unavailable("cannot listen on " + config.listen));
  std::printf("kvstash-conductor: listening on port %d, policy %s, admission %s\n", bound,
              policy.c_str(), admission_flags.admission.c_str());
  std::fflush(stdout);
  int sig = 0;
  while (sigwait(&stop, &sig) == 0 && sig == SIGHUP) {
    if (!authorizer) {
      std::fprintf(stderr, "kvstash-conductor: SIGHUP: no --tokens-file to reload\n");
      continue;
    }
    const kvstash::Status reloaded = authorizer->Reload();
    if (!reloaded.ok()) {
      std::fprintf(stderr, "kvstash-conductor: SIGHUP: the tokens file was not reloaded (%s); the old tokens stay\n",
                   reloaded.ToString().c_str());
    }
  }
  if (front_door) front_door->Stop();
  server->Shutdown();
  server->Wait();
  return 0;
}
