#include "node/serve_cmd.h"

#include <signal.h>
#include <unistd.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>

#include "common/auth.h"
#include "common/authorizer.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/mutex.h"
#include "common/settings_cli.h"
#include "common/tls_listen.h"
#include "kvstash/client.h"
#include "node/conductor_link.h"
#include "node/emulated_flags.h"
#include "node/engine_factory.h"
#include "node/grpc_service.h"
#include "node/http_api.h"
#include "node/node_metrics.h"
#include "node/runtime.h"
#include "node/serve_settings.h"
#include "node/tokenizer.h"

namespace kvstash::node {
namespace {

struct HostPort {
  std::string host;
  int port = 0;
  std::string ToString() const { return host + ":" + std::to_string(port); }
};

Result<HostPort> SplitHostPort(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) return InvalidArgument("address must be HOST:PORT: " + address);
  HostPort hp{address.substr(0, colon), 0};
  if (hp.host.size() > 2 && hp.host.front() == '[' && hp.host.back() == ']') {
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  }
  const std::string port = address.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) > 65535) {
    return InvalidArgument("address must be HOST:PORT with a port of 0..65535: " + address);
  }
  hp.port = std::stoi(port);
  return hp;
}

constexpr int kStoreRetryMs = 2'000;

bool StoreNamed(const ServeArgs& a) { return !a.store.empty() || !a.etcd.empty(); }

// The store's client, or null (logged unless `quiet`) when none was named or it cannot be reached.
std::unique_ptr<Client> ConnectStore(const ServeArgs& a, bool quiet = false) {
  if (!StoreNamed(a)) {
    spdlog::info("no --store or --etcd: prefixes come from the local cache or are computed");
    return nullptr;
  }
  ClientOptions options;
  options.address = a.store;
  options.etcd_endpoints = a.etcd;
  options.cluster = a.cluster;
  options.timeout_ms = a.store_timeout_ms;
  options.tls_ca_file = a.store_tls_ca;
  options.tls_cert_file = a.store_tls_cert;
  options.tls_key_file = a.store_tls_key;
  options.etcd_tls_ca_file = a.etcd_ca;
  options.etcd_tls_cert_file = a.etcd_cert;
  options.etcd_tls_key_file = a.etcd_key;
  if (!a.store_token_file.empty()) {
    std::ifstream in(a.store_token_file);
    if (!in || !std::getline(in, options.token) || options.token.empty()) {
      spdlog::warn("cannot read a token from --store-token-file {}", a.store_token_file);
    }
  }
  const std::string where = a.etcd.empty() ? a.store : "cluster " + a.cluster + " via etcd " + a.etcd.front();
  Result<std::unique_ptr<Client>> client = Client::Connect(options);
  if (!client.ok()) {
    if (!quiet) {
      spdlog::warn("cannot reach the store at {} ({}): serving without it (every prompt is computed or found "
                   "locally) and retrying every {} ms",
                   where, client.status().ToString(), kStoreRetryMs);
    }
    return nullptr;
  }
  spdlog::info("connected to the store at {}", where);
  return std::move(*client);
}

// Everything the node runs, in the order it is built; stopped in reverse.
struct Node {
  std::unique_ptr<Client> store;  // set by the retry thread when the store was down at start
  // Connects to a store that was down at start, then gives it to the runtime.
  std::thread store_retry;
  Mutex retry_mu;
  std::condition_variable retry_cv;
  bool retry_stop GUARDED_BY(retry_mu) = false;

  void RetryStore(const ServeArgs& a) {
    MutexLock lock(retry_mu);
    while (!lock.WaitFor(retry_cv, std::chrono::milliseconds(kStoreRetryMs), [&] {
      retry_mu.AssertHeld();  // a wait predicate runs with the mutex held
      return retry_stop;
    })) {
      lock.Unlock();
      std::unique_ptr<Client> client = ConnectStore(a, /*quiet=*/true);
      lock.Lock();
      if (client) {
        store = std::move(client);
        runtime->AttachStore(store.get());
        if (grpc) grpc->AttachStore(store.get());  // set under retry_mu (StartNode)
        spdlog::info("the store is reachable now: prefixes are fetched and stored from the next request on");
        return;
      }
    }
  }
  ~Node() { StopRetrying(); }
  void StopRetrying() {
    {
      MutexLock lock(retry_mu);
      retry_stop = true;
    }
    retry_cv.notify_all();
    if (store_retry.joinable()) store_retry.join();
  }
  std::unique_ptr<auth::Authorizer> authorizer;  // null without --tokens-file; outlives the servers
  std::unique_ptr<NodeRuntime> runtime;
  std::unique_ptr<metrics::Registry> registry;
  std::unique_ptr<NodeMetrics> node_metrics;
  std::unique_ptr<metrics::MetricsHttpServer> metrics_server;
  std::unique_ptr<HttpApi> http;
  std::unique_ptr<Tokenizer> tokenizer;  // null: the model has no tokenizer.model
  std::unique_ptr<GrpcServer> grpc;
  HostPort grpc_address;
  std::unique_ptr<ConductorLink> conductor;
  // Read by the runtime's callbacks; set once the link exists (before any request is served).
  std::atomic<ConductorLink*> conductor_link{nullptr};
  HostPort http_address, metrics_address;

  // New requests get 503; those in flight finish, the background puts complete, the answers are
  // written; then the servers stop.
  void Drain() {
    StopRetrying();
    http->BeginDrain();
    grpc->BeginDrain();
    runtime->Drain();
    if (!http->WaitIdle(std::chrono::seconds(30))) spdlog::warn("answers still being written after 30 s: cut");
    if (!grpc->WaitIdle(std::chrono::seconds(30))) spdlog::warn("gRPC answers still being written after 30 s: cut");
    http->Stop();
    grpc->Stop();
    if (conductor) conductor->Stop();
    metrics_server->Stop();
  }
};

// Where others reach a service bound to `bound`: a wildcard host is replaced by this host's name.
std::string AdvertisedAddress(const HostPort& bound) {
  if (bound.host != "0.0.0.0" && bound.host != "::" && !bound.host.empty()) {
    return bound.host.find(':') != std::string::npos ? "[" + bound.host + "]:" + std::to_string(bound.port)
                                                     : bound.ToString();
  }
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return bound.ToString();
  return std::string(host) + ":" + std::to_string(bound.port);
}

// The id a node registers under when none is given: this host's name and its HTTP port (unique
// per host, unlike a wildcard listen address).
std::string DefaultInstanceId(const HostPort& http) {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return http.ToString();
  return std::string(host) + ":" + std::to_string(http.port);
}

Result<std::unique_ptr<Node>> StartNode(const ServeArgs& a) {
  auto node = std::make_unique<Node>();
  ConductorLinkOptions link = a.conductor;
  if (!a.conductor_token_file.empty()) {
    KVSTASH_ASSIGN_OR_RETURN(link.token, auth::ReadTokenFile(a.conductor_token_file, "--conductor-token-file"));
  }
  KVSTASH_ASSIGN_OR_RETURN(node->http_address, SplitHostPort(a.http_listen));
  KVSTASH_ASSIGN_OR_RETURN(node->metrics_address, SplitHostPort(a.metrics_listen));
  KVSTASH_ASSIGN_OR_RETURN(node->grpc_address, SplitHostPort(a.listen));
  if (!a.tokens_file.empty()) {
    KVSTASH_ASSIGN_OR_RETURN(node->authorizer, auth::Authorizer::Create(a.tokens_file, {a.auth_failure_burst, 1}));
    spdlog::info("bearer tokens asked on the gRPC port, the HTTP API and /metrics ({} tokens)",
                 node->authorizer->tokens());
  } else if (!tls::IsLoopbackHost(node->grpc_address.host) || !tls::IsLoopbackHost(node->http_address.host)) {
    spdlog::warn("!!! the gRPC port and HTTP API listen beyond loopback WITHOUT tokens: anyone who reaches them may "
                 "run completions (set --tokens-file; docs/SECURITY.md) !!!");
  }
  EngineChoice choice = a.engine;
  choice.model_dir = a.model;
  choice.page_tokens = a.node.page_tokens;
  choice.block_tokens = a.node.block_tokens;
  KVSTASH_ASSIGN_OR_RETURN(LoadedEngine loaded, MakeEngine(choice));
  node->store = ConnectStore(a);
  NodeOptions options = a.node;
  options.local_cache = !a.no_local_cache;
  options.store_puts = !a.no_store_puts;
  options.reuse_prefixes = !a.no_prefix_reuse;
  if (!a.conductor.address.empty()) {
    Node* n = node.get();
    options.kv_events = [n](std::vector<BlockKey> stored, std::vector<BlockKey> evicted) {
      if (ConductorLink* link = n->conductor_link.load(std::memory_order_acquire)) {
        link->KvEvents(std::move(stored), std::move(evicted));
      }
    };
    options.ttft_reports = [n](uint64_t request_id, double seconds) {
      if (ConductorLink* link = n->conductor_link.load(std::memory_order_acquire)) link->ReportTtft(request_id, seconds);
    };
  }
  spdlog::info("model {} on the {} engine, namespace {}", a.model, choice.engine, loaded.namespace_id);
  KVSTASH_ASSIGN_OR_RETURN(node->runtime, NodeRuntime::Start(std::move(loaded.engine), node->store.get(),
                                                             loaded.namespace_id, options));
  if (!node->store && StoreNamed(a)) {
    Node* n = node.get();
    node->store_retry = std::thread([n, a] { n->RetryStore(a); });
  }

  node->registry = std::make_unique<metrics::Registry>();
  NodeRuntime* runtime = node->runtime.get();
  node->node_metrics = std::make_unique<NodeMetrics>(*node->registry, [runtime] { return runtime->Stats(); });
  metrics::MetricsHttpOptions metrics_options;
  if (a.metrics_tls_cert.empty() != a.metrics_tls_key.empty()) {
    return InvalidArgument("HTTPS on the metrics endpoint needs --metrics-tls-cert and --metrics-tls-key");
  }
  if (!a.metrics_tls_client_ca.empty() && a.metrics_tls_cert.empty()) {
    return InvalidArgument("--metrics-tls-client-ca needs --metrics-tls-cert and --metrics-tls-key");
  }
  metrics_options.tls = {a.metrics_tls_cert, a.metrics_tls_key, a.metrics_tls_client_ca, 60};
  metrics_options.auth.basic_auth_file = a.metrics_basic_auth_file;
  if (auth::Authorizer* admitter = node->authorizer.get()) {
    metrics_options.auth.bearer = [admitter](const std::string& peer, std::string_view authorization) {
      return admitter->AdmitFromAddress(peer, authorization, auth::Role::kAdmin).status();
    };
  }
  tls::LogListenSecurity("kvstash-node /metrics", a.metrics_listen, {a.metrics_tls_cert, a.metrics_tls_key, "", 0},
                         "--metrics-tls-cert/--metrics-tls-key");
  node->metrics_server = std::make_unique<metrics::MetricsHttpServer>(node->registry.get(), std::move(metrics_options));
  KVSTASH_ASSIGN_OR_RETURN(node->metrics_address.port,
                           node->metrics_server->Start(node->metrics_address.host, node->metrics_address.port));

  HttpApiOptions http;
  http.model_name = std::filesystem::path(a.model).lexically_normal().filename().string();
  if (http.model_name.empty()) http.model_name = std::filesystem::path(a.model).parent_path().filename().string();
  KVSTASH_ASSIGN_OR_RETURN(node->tokenizer, Tokenizer::LoadFromModelDir(a.model));
  if (node->tokenizer && node->tokenizer->vocab_size() > node->runtime->config().vocab_size) {
    return InvalidArgument("tokenizer.model has " + std::to_string(node->tokenizer->vocab_size()) +
                           " pieces; the model's vocabulary has only " +
                           std::to_string(node->runtime->config().vocab_size));
  }
  spdlog::info(node->tokenizer ? "tokenizer.model loaded: text prompts are accepted"
                               : "no tokenizer.model: prompts are token ids");
  http.tokenizer = node->tokenizer.get();
  http.threads = a.http_threads;
  http.authorizer = node->authorizer.get();
  if (a.http_tls_cert.empty() != a.http_tls_key.empty()) {
    return InvalidArgument("HTTPS on the HTTP API needs --http-tls-cert and --http-tls-key");
  }
  if (!a.http_tls_client_ca.empty() && a.http_tls_cert.empty()) {
    return InvalidArgument("--http-tls-client-ca needs --http-tls-cert and --http-tls-key");
  }
  http.tls = {a.http_tls_cert, a.http_tls_key, a.http_tls_client_ca, 60};
  tls::LogListenSecurity("kvstash-node HTTP API", a.http_listen, {a.http_tls_cert, a.http_tls_key, a.http_tls_client_ca, 0},
                         "--http-tls-cert/--http-tls-key");
  node->http = std::make_unique<HttpApi>(*node->runtime, *node->node_metrics, http);
  KVSTASH_ASSIGN_OR_RETURN(node->http_address.port,
                           node->http->Start(node->http_address.host, node->http_address.port));
  GrpcServiceOptions grpc;
  grpc.model_name = http.model_name;
  grpc.engine = choice.engine;
  grpc.namespace_id = loaded.namespace_id;
  grpc.page_tokens = options.page_tokens;
  grpc.block_tokens = options.block_tokens;
  grpc.tokenizer = node->tokenizer.get();
  grpc.metrics = node->node_metrics.get();
  grpc.threads = a.http_threads;
  grpc.tls = a.grpc_tls;
  grpc.authorizer = node->authorizer.get();
  tls::LogListenSecurity("kvstash-node gRPC", a.listen, a.grpc_tls);
  {
    MutexLock lock(node->retry_mu);  // the retry thread may be attaching a store meanwhile
    grpc.store = node->store.get();
    node->grpc = std::make_unique<GrpcServer>(*node->runtime, grpc);
  }
  KVSTASH_ASSIGN_OR_RETURN(node->grpc_address.port,
                           node->grpc->Start(node->grpc_address.host, node->grpc_address.port));
  if (!a.conductor.address.empty()) {
    if (link.instance_id.empty()) link.instance_id = DefaultInstanceId(node->http_address);
    link.node_address = a.advertise.empty() ? AdvertisedAddress(node->grpc_address) : a.advertise;
    link.namespace_id = loaded.namespace_id;
    KVSTASH_ASSIGN_OR_RETURN(node->conductor, ConductorLink::Start(link, [runtime] { return runtime->Load(); }));
    node->conductor_link.store(node->conductor.get(), std::memory_order_release);
    spdlog::info("reporting to the conductor at {} as {} ({})", link.address, link.instance_id, Name(link.role));
  }
  return node;
}

int RunServe(const ServeArgs& a) {
  // Block the stop signals in every thread (threads inherit the mask); this thread waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);  // reloads --tokens-file
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  if (Status s = InitLogging(settings::Name(a.log_level)); !s.ok()) {
    std::fprintf(stderr, "kvstash-node serve: %s\n", s.message().c_str());
    return 2;
  }
  Result<std::unique_ptr<Node>> node = StartNode(a);
  if (!node.ok()) {
    spdlog::error("kvstash-node serve: cannot start: {}", node.status().ToString());
    return 1;
  }
  spdlog::info("serving /v1/completions on {} and /metrics on {}", (*node)->http_address.ToString(),
               (*node)->metrics_address.ToString());
  spdlog::info("serving kvstash.v1.Node over gRPC on {}", (*node)->grpc_address.ToString());
  std::printf("kvstash-node ready grpc=%s http=%s metrics=%s\n", (*node)->grpc_address.ToString().c_str(),
              (*node)->http_address.ToString().c_str(), (*node)->metrics_address.ToString().c_str());
  std::fflush(stdout);

  int signal_number = 0;
  while (sigwait(&stop_signals, &signal_number) == 0 && signal_number == SIGHUP) {
    if (auth::Authorizer* tokens = (*node)->authorizer.get()) {
      const Status reloaded = tokens->Reload();
      if (!reloaded.ok()) spdlog::error("SIGHUP: the tokens file was not reloaded ({}); the old tokens stay", reloaded.ToString());
    } else {
      spdlog::info("SIGHUP: no --tokens-file to reload");
    }
  }
  spdlog::info("received {}, draining", signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
  (*node)->Drain();
  node->reset();
  spdlog::info("stopped cleanly");
  return 0;
}

}  // namespace

void AddServeCommand(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<ServeArgs>();
  auto given = std::make_shared<settings::GivenFlags>();
  CLI::App* cmd = app.add_subcommand("serve", "serve a model over an OpenAI-compatible HTTP API");
  std::map<std::string, CLI::Option*> flags = settings::AddFlags(*cmd, ServeSettings(), ServeArgs{}, *given);
  flags.at("--model")->required();
  flags.at("--etcd")->excludes(flags.at("--store"));
  AddEmulatedFlags(cmd, a->engine.emulated);
  cmd->callback([a, given, &exit_code] {
    if (Status st = settings::ApplyFlags(ServeSettings(), *given, *a); !st.ok()) {
      std::fprintf(stderr, "kvstash-node serve: %s\n", st.message().c_str());
      exit_code = 2;
      return;
    }
    exit_code = RunServe(*a);
  });
}

}  // namespace kvstash::node
