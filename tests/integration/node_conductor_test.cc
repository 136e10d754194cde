// kvstash-node's session with a real kvstash-conductor (its gRPC service on 127.0.0.1, port chosen
// at run time): registration under both roles, heartbeats of the runtime's load, the local cache's
// KV events reaching the conductor's prefix index (a Route then plans to reuse the node's blocks),
// TTFT reports for routed requests, a conductor that is down at start, and one that restarts and
// forgets the node (issue 14).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <random>
#include <regex>

#include "kvstash/prefix_hasher.h"
#include "node/conductor_link.h"
#include "node/emulated_engine.h"
#include "node/runtime.h"
#include "scheduler/conductor_service.h"
#include "tests/support/eventually.h"
#include "tests/support/tiny_model.h"

namespace kvstash::node {
namespace {

constexpr uint32_t kBlockTokens = 32;
constexpr char kNamespace[] = "node-conductor-test";

// A live conductor: the real service behind a real gRPC server; Restart keeps the port.
class Conductor {
 public:
  explicit Conductor(int port = 0) { Start(port); }
  ~Conductor() { Stop(); }
  void Start(int port) {
    registry_ = std::make_unique<metrics::Registry>();
    scheduler::ModelSpec spec;
    spec.block_tokens = kBlockTokens;
    auto cost = scheduler::CostModel::Fit(scheduler::DefaultProfile(spec), spec, 64);
    scheduler::RouterOptions ro;
    service_ = std::make_unique<scheduler::ConductorService>(
        scheduler::Router(scheduler::MakePolicy(scheduler::PolicyKind::kGlobalCacheAware, {}).value(), *cost, ro), SteadyClock::Default(),
        registry_.get());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(port_, 0);
    client_ = v1::Conductor::NewStub(grpc::CreateChannel(address(), grpc::InsecureChannelCredentials()));
  }
  void Stop() {
    if (server_) server_->Shutdown();
    server_.reset();
    service_.reset();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  // A gauge's or counter's value in the exposition (-1 when absent).
  double Metric(const std::string& series) const {
    const std::string text = registry_->Render();
    const size_t at = text.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + series.size() + 2));
  }
  Result<v1::RouteResponse> Route(uint64_t request_id, const std::vector<BlockKey>& chain, uint64_t input_tokens) {
    v1::RouteRequest req;
    req.set_request_id(request_id);
    req.set_input_tokens(input_tokens);
    req.set_output_tokens(8);
    for (const BlockKey& k : chain) req.add_block_keys(std::string(k.AsBytes()));
    v1::RouteResponse resp;
    grpc::ClientContext ctx;
    const grpc::Status s = client_->Route(&ctx, req, &resp);
    if (!s.ok()) return Internal(s.error_message());
    return resp;
  }

 private:
  int port_ = 0;
  std::unique_ptr<metrics::Registry> registry_;
  std::unique_ptr<scheduler::ConductorService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Conductor::Stub> client_;
};

// A node: the emulated engine under a runtime, its KV events and TTFTs going to a ConductorLink.
struct Node {
  std::unique_ptr<ConductorLink> link;
  std::unique_ptr<NodeRuntime> runtime;

  explicit Node(const std::string& conductor, NodeRole role = NodeRole::kBoth) {
    ModelConfig config = testing::TinyLlamaConfig(4096);
    config.torch_dtype = DType::kF16;
    EmulatedOptions eo;
    eo.time_scale = 0;
    NodeOptions o;
    o.page_tokens = 16;
    o.block_tokens = kBlockTokens;
    o.pool_pages = 128;
    o.kv_events = [this](std::vector<BlockKey> stored, std::vector<BlockKey> evicted) {
      link->KvEvents(std::move(stored), std::move(evicted));
    };
    o.ttft_reports = [this](uint64_t id, double seconds) { link->ReportTtft(id, seconds); };
    ConductorLinkOptions lo;
    lo.address = conductor;
    lo.instance_id = "node-a";
    lo.role = role;
    lo.heartbeat_ms = 50;
    lo.rpc_timeout_ms = 1000;
    link = ConductorLink::Start(lo, [this] { return runtime->Load(); }).value();
    runtime = NodeRuntime::Start(EmulatedEngine::Create(config, eo, kBlockTokens).value(), nullptr, kNamespace, o)
                  .value();
  }
  ~Node() {
    runtime->Drain();
    link->Stop();
  }
};

std::vector<uint32_t> Prompt(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint32_t> p(n);
  for (auto& t : p) t = rng() % 97;
  return p;
}

std::vector<BlockKey> Chain(const std::vector<uint32_t>& prompt) {
  return PrefixHasher(kNamespace, kBlockTokens).Chain(prompt);
}

bool Eventually(const std::function<bool()>& done) { return testing::Eventually(done, std::chrono::seconds(20)); }

TEST(NodeConductorTest, RegistersStreamsKvEventsAndTheConductorRoutesToItsCache) {
  Conductor conductor;
  Node node(conductor.address());
  ASSERT_TRUE(Eventually([&] { return node.link->Stats().registered; }));
  EXPECT_EQ(conductor.Metric("kvstash_conductor_instances{role=\"prefill\"}"), 1);
  EXPECT_EQ(conductor.Metric("kvstash_conductor_instances{role=\"decode\"}"), 1);
  ASSERT_TRUE(Eventually([&] { return node.link->Stats().heartbeats >= 2; }));

  const std::vector<uint32_t> prompt = Prompt(100, 1);  // three full blocks of 32
  CompletionRequest req;
  req.prompt = prompt;
  req.sampling.max_tokens = 4;
  ASSERT_TRUE(node.runtime->Complete(req).ok());
  ASSERT_TRUE(Eventually([&] { return conductor.Metric("kvstash_conductor_indexed_blocks") == 3; }));
  Result<v1::RouteResponse> route = conductor.Route(1, Chain(prompt), prompt.size());
  ASSERT_TRUE(route.ok()) << route.status().ToString();
  EXPECT_EQ(route->prefill_instance(), "node-a/prefill");
  EXPECT_EQ(route->decode_instance(), "node-a/decode");
  EXPECT_EQ(route->local_blocks(), 3u);
}

TEST(NodeConductorTest, ReportsTheTtftOfRoutedRequests) {
  Conductor conductor;
  Node node(conductor.address());
  ASSERT_TRUE(Eventually([&] { return node.link->Stats().registered; }));
  const std::vector<uint32_t> prompt = Prompt(40, 2);
  ASSERT_TRUE(conductor.Route(77, Chain(prompt), prompt.size()).ok());
  CompletionRequest req;
  req.prompt = prompt;
  req.sampling.max_tokens = 2;
  req.request_id = 77;
  ASSERT_TRUE(node.runtime->Complete(req).ok());
  ASSERT_TRUE(Eventually([&] { return conductor.Metric("kvstash_conductor_observed_ttft_seconds_count") == 1; }));
  EXPECT_EQ(conductor.Metric("kvstash_conductor_ttft_prediction_error_seconds_count"), 1);
  // The link counts the report once the RPC has returned, after the conductor counted it.
  EXPECT_TRUE(Eventually([&] { return node.link->Stats().ttft_reports == 1; }));
}

TEST(NodeConductorTest, AConductorDownAtStartOrRestartedIsJoinedWithTheWholeCache) {
  int port = 0;
  {
    Conductor gone;  // a port that was just free
    port = gone.port();
  }
  Node node("127.0.0.1:" + std::to_string(port), NodeRole::kPrefill);
  // The node serves without its conductor.
  const std::vector<uint32_t> prompt = Prompt(130, 3);  // four full blocks
  CompletionRequest req;
  req.prompt = prompt;
  req.sampling.max_tokens = 2;
  ASSERT_TRUE(node.runtime->Complete(req).ok());
  EXPECT_FALSE(node.link->Stats().registered);

  auto conductor = std::make_unique<Conductor>(port);
  ASSERT_TRUE(Eventually([&] { return node.link->Stats().registered; }));
  ASSERT_TRUE(Eventually([&] { return conductor->Metric("kvstash_conductor_indexed_blocks") == 4; }));
  EXPECT_EQ(conductor->Metric("kvstash_conductor_instances{role=\"decode\"}"), 0);

  // A restarted conductor knows nothing: the next heartbeat is NOT_FOUND, and the node registers
  // again with every block its cache holds.
  conductor->Stop();
  conductor->Start(port);
  ASSERT_TRUE(Eventually([&] { return node.link->Stats().registrations >= 2 && node.link->Stats().registered; }));
  ASSERT_TRUE(Eventually([&] { return conductor->Metric("kvstash_conductor_indexed_blocks") == 4; }));
}

TEST(NodeConductorTest, BadLinkOptionsAreRefused) {
  auto load = [] { return RuntimeLoad{}; };
  ConductorLinkOptions o;
  o.instance_id = "x";
  EXPECT_EQ(ConductorLink::Start(o, load).status().code(), StatusCode::kInvalidArgument);  // no address
  o.address = "127.0.0.1:1";
  o.role = NodeRole::kDecode;  // a role outside prefill, decode and both cannot be written any more
  o.instance_id = std::string(201, 'a');
  EXPECT_EQ(ConductorLink::Start(o, load).status().code(), StatusCode::kInvalidArgument);
  o.instance_id = "x";
  o.heartbeat_ms = 0;
  EXPECT_EQ(ConductorLink::Start(o, load).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvstash::node
