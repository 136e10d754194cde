#include "node/serve_cmd.h"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>

#include "common/logging.h"
#include "common/metrics.h"
#include "kvstash/client.h"
#include "node/checkpoint.h"
#include "node/cpu_engine.h"
#include "node/http_api.h"
#include "node/node_metrics.h"
#include "node/runtime.h"

namespace kvstash::node {
namespace {

struct ServeArgs {
  std::string model, engine = "cpu", store;
  std::string http_listen = "127.0.0.1:8000", metrics_listen = "127.0.0.1:7372";
  std::string log_level = "info";
  size_t threads = 1;
  size_t http_threads = 64;
  uint64_t store_timeout_ms = 5'000;
  bool no_local_cache = false, no_store_puts = false;
  NodeOptions node;
};

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

// The namespace of the node's prefix hashes: the model and the KV layout, so that nodes share
// blocks exactly when their KV bytes are interchangeable.
std::string NamespaceId(const Checkpoint& checkpoint, uint32_t page_tokens) {
  std::string hex;
  char buf[3];
  for (uint8_t b : checkpoint.Identity()) {
    std::snprintf(buf, sizeof buf, "%02x", b);
    hex += buf;
  }
  return hex + "|paged" + std::to_string(page_tokens) + "|fp32";
}

// The store's client, or null (logged) when none was named or it cannot be reached.
std::unique_ptr<Client> ConnectStore(const ServeArgs& a) {
  if (a.store.empty()) {
    spdlog::info("no --store: prefixes come from the local cache or are computed");
    return nullptr;
  }
  ClientOptions options;
  options.address = a.store;
  options.timeout_ms = a.store_timeout_ms;
  Result<std::unique_ptr<Client>> client = Client::Connect(options);
  if (!client.ok()) {
    spdlog::warn("cannot reach the store at {} ({}): serving without it, every prompt is computed or found locally",
                 a.store, client.status().ToString());
    return nullptr;
  }
  spdlog::info("connected to the store at {}", a.store);
  return std::move(*client);
}

// Everything the node runs, in the order it is built; stopped in reverse.
struct Node {
  std::unique_ptr<Client> store;
  std::unique_ptr<NodeRuntime> runtime;
  std::unique_ptr<metrics::Registry> registry;
  std::unique_ptr<NodeMetrics> node_metrics;
  std::unique_ptr<metrics::MetricsHttpServer> metrics_server;
  std::unique_ptr<HttpApi> http;
  HostPort http_address, metrics_address;

  // New requests get 503; those in flight finish, the background puts complete, the answers are
  // written; then the servers stop.
  void Drain() {
    http->BeginDrain();
    runtime->Drain();
    if (!http->WaitIdle(std::chrono::seconds(30))) spdlog::warn("answers still being written after 30 s: cut");
    http->Stop();
    metrics_server->Stop();
  }
};

Result<std::unique_ptr<Node>> StartNode(const ServeArgs& a) {
  auto node = std::make_unique<Node>();
  KVSTASH_ASSIGN_OR_RETURN(node->http_address, SplitHostPort(a.http_listen));
  KVSTASH_ASSIGN_OR_RETURN(node->metrics_address, SplitHostPort(a.metrics_listen));
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint, Checkpoint::Open(a.model));
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<CpuEngine> engine, CpuEngine::Load(*checkpoint, {a.threads}));
  node->store = ConnectStore(a);
  NodeOptions options = a.node;
  options.local_cache = !a.no_local_cache;
  options.store_puts = !a.no_store_puts;
  const std::string namespace_id = NamespaceId(*checkpoint, options.page_tokens);
  KVSTASH_ASSIGN_OR_RETURN(node->runtime,
                           NodeRuntime::Start(std::move(engine), node->store.get(), namespace_id, options));
  spdlog::info("model {} on the {} engine ({} threads), namespace {}", a.model, a.engine, a.threads, namespace_id);

  node->registry = std::make_unique<metrics::Registry>();
  NodeRuntime* runtime = node->runtime.get();
  node->node_metrics = std::make_unique<NodeMetrics>(*node->registry, [runtime] { return runtime->Stats(); });
  node->metrics_server = std::make_unique<metrics::MetricsHttpServer>(node->registry.get());
  KVSTASH_ASSIGN_OR_RETURN(node->metrics_address.port,
                           node->metrics_server->Start(node->metrics_address.host, node->metrics_address.port));

  HttpApiOptions http;
  http.model_name = std::filesystem::path(a.model).lexically_normal().filename().string();
  if (http.model_name.empty()) http.model_name = std::filesystem::path(a.model).parent_path().filename().string();
  http.has_tokenizer = std::filesystem::exists(std::filesystem::path(a.model) / "tokenizer.model");
  http.threads = a.http_threads;
  node->http = std::make_unique<HttpApi>(*node->runtime, *node->node_metrics, http);
  KVSTASH_ASSIGN_OR_RETURN(node->http_address.port,
                           node->http->Start(node->http_address.host, node->http_address.port));
  return node;
}

int RunServe(const ServeArgs& a) {
  // Block the stop signals in every thread (threads inherit the mask); this thread waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  if (Status s = InitLogging(a.log_level); !s.ok()) {
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
  std::printf("kvstash-node ready http=%s metrics=%s\n", (*node)->http_address.ToString().c_str(),
              (*node)->metrics_address.ToString().c_str());
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  spdlog::info("received {}, draining", signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
  (*node)->Drain();
  node->reset();
  spdlog::info("stopped cleanly");
  return 0;
}

}  // namespace

void AddServeCommand(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand("serve", "serve a model over an OpenAI-compatible HTTP API");
  cmd->option_defaults()->always_capture_default();
  cmd->add_option("--model", a->model, "model directory (config.json + *.safetensors)")->required();
  cmd->add_option("--engine", a->engine, "engine (cpu; cuda and emulated are not built yet)")
      ->check(CLI::IsMember({"cpu"}));
  cmd->add_option("--threads", a->threads, "engine threads")->check(CLI::Range(1, 256));
  cmd->add_option("--store", a->store, "a kvstashd's gRPC HOST:PORT (none: local cache and compute only)");
  cmd->add_option("--store-timeout-ms", a->store_timeout_ms, "per-RPC timeout towards the store");
  cmd->add_option("--http-listen", a->http_listen, "HTTP API address HOST:PORT (port 0 picks one)");
  cmd->add_option("--metrics-listen", a->metrics_listen, "/metrics address HOST:PORT (port 0 picks one)");
  cmd->add_option("--http-threads", a->http_threads, "HTTP workers: completions served at once")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--page-tokens", a->node.page_tokens, "tokens per KV page")->check(CLI::Range(1, 4096));
  cmd->add_option("--pool-pages", a->node.pool_pages, "KV pages in the pool")->check(CLI::Range(1, 1 << 24));
  cmd->add_option("--block-tokens", a->node.block_tokens, "tokens per store block (a multiple of --page-tokens)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--max-batch-tokens", a->node.max_batch_tokens, "prefill tokens per step (chunked prefill)")
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_option("--max-running", a->node.max_running, "sequences decoding at once")->check(CLI::Range(1, 65536));
  cmd->add_option("--lease-ms", a->node.lease_ms, "lease on store blocks between Lookup and Get");
  cmd->add_flag("--no-local-cache", a->no_local_cache, "do not keep finished requests' blocks for reuse");
  cmd->add_flag("--no-store-puts", a->no_store_puts, "do not put newly computed blocks to the store");
  cmd->add_option("--log-level", a->log_level, "trace|debug|info|warn|error|off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  cmd->callback([a, &exit_code] { exit_code = RunServe(*a); });
}

}  // namespace kvstash::node
