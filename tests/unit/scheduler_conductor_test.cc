// Tests of the live conductor (kvstash.v1.Conductor) over gRPC on 127.0.0.1 with a manual clock:
// validation and errors, SLO rejection, metrics, and routing identical to the simulator.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "kvstash/prefix_hasher.h"
#include "scheduler/conductor_service.h"
#include "scheduler/simulator.h"

namespace kvstash::scheduler {
namespace {

CostModel Cost() { return *CostModel::Fit(DefaultProfile(ModelSpec{}), ModelSpec{}, 64); }

class ConductorTest : public ::testing::Test {
 protected:
  void Start(PolicyKind policy, RouterOptions ro) {
    service_ = std::make_unique<ConductorService>(
        Router(MakePolicy(policy, {}).value(), Cost(), ro), &clock_, &registry_);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    client_ = v1::Conductor::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                                         grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }
  grpc::Status Register(const std::string& id, v1::InstanceRole role) {
    grpc::ClientContext ctx;
    v1::RegisterInstanceRequest req;
    v1::RegisterInstanceResponse resp;
    req.set_instance_id(id);
    req.set_role(role);
    return client_->RegisterInstance(&ctx, req, &resp);
  }
  grpc::Status Events(const std::vector<v1::KvEventBatch>& batches, v1::KvEventsSummary* summary) {
    grpc::ClientContext ctx;
    auto writer = client_->StreamKvEvents(&ctx, summary);
    for (const auto& b : batches) {
      if (!writer->Write(b)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }
  grpc::Status Heartbeat(const std::string& id, double queue_s) {
    grpc::ClientContext ctx;
    v1::HeartbeatRequest req;
    v1::HeartbeatResponse resp;
    req.set_instance_id(id);
    req.set_queue_seconds(queue_s);
    return client_->Heartbeat(&ctx, req, &resp);
  }
  grpc::Status Route(const v1::RouteRequest& req, v1::RouteResponse* resp) {
    grpc::ClientContext ctx;
    return client_->Route(&ctx, req, resp);
  }

  ManualClock clock_{0};
  metrics::Registry registry_;
  std::unique_ptr<ConductorService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Conductor::Stub> client_;
};

v1::RouteRequest IdsRequest(uint64_t id, std::vector<uint64_t> ids) {
  v1::RouteRequest r;
  r.set_request_id(id);
  r.set_input_tokens(ids.size() * 512);
  r.set_output_tokens(50);
  for (auto b : ids) r.add_block_ids(b);
  return r;
}

TEST_F(ConductorTest, BadInputGetsClearErrors) {
  Start(PolicyKind::kGlobalCacheAware, {});
  EXPECT_EQ(Register("", v1::INSTANCE_ROLE_PREFILL).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Register("p0", v1::INSTANCE_ROLE_UNSPECIFIED).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(Register("p0", v1::INSTANCE_ROLE_PREFILL).ok());
  EXPECT_EQ(Register("p0", v1::INSTANCE_ROLE_DECODE).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  v1::RouteResponse resp;
  // No decode instance yet.
  EXPECT_EQ(Route(IdsRequest(1, {1, 2}), &resp).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(Register("d0", v1::INSTANCE_ROLE_DECODE).ok());
  EXPECT_EQ(Heartbeat("ghost", 1).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Heartbeat("p0", -1).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::KvEventsSummary summary;
  v1::KvEventBatch unknown;
  unknown.set_instance_id("ghost");
  unknown.add_stored_ids(1);
  EXPECT_EQ(Events({unknown}, &summary).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::KvEventBatch decode_event;
  decode_event.set_instance_id("d0");
  decode_event.add_stored_ids(1);
  EXPECT_EQ(Events({decode_event}, &summary).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  v1::KvEventBatch short_key;
  short_key.set_instance_id("p0");
  short_key.add_stored_keys("short");
  auto st = Events({short_key}, &summary);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("stored_keys[0]"), std::string::npos) << st.error_message();

  v1::RouteRequest none;
  none.set_input_tokens(100);
  EXPECT_EQ(Route(none, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // no chain at all
  v1::RouteRequest short_prompt;
  short_prompt.set_model("m");
  for (uint32_t t = 0; t < 100; ++t) short_prompt.add_token_ids(t);
  // Shorter than one block: no full block to hash, nothing to reuse, but a valid request.
  auto empty = Route(short_prompt, &resp);
  EXPECT_NE(empty.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << empty.error_message();
  v1::RouteRequest bad_key = IdsRequest(2, {});
  bad_key.set_input_tokens(512);
  bad_key.add_block_keys(std::string(15, 'x'));
  EXPECT_EQ(Route(bad_key, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::RouteRequest absurd = IdsRequest(3, {1, 2});
  absurd.set_input_tokens(uint64_t{1} << 40);
  EXPECT_EQ(Route(absurd, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(
      registry_.Render().find(
          "kvstash_conductor_decisions_total{policy=\"global-cache-aware\",outcome=\"invalid\"}"),
      std::string::npos);
}

TEST_F(ConductorTest, RoutesByTokensAndKeysToTheHolder) {
  Start(PolicyKind::kGlobalCacheAware, {});
  for (const char* id : {"p0", "p1"}) ASSERT_TRUE(Register(id, v1::INSTANCE_ROLE_PREFILL).ok());
  ASSERT_TRUE(Register("d0", v1::INSTANCE_ROLE_DECODE).ok());
  std::vector<uint32_t> tokens(512 * 8);
  for (uint32_t i = 0; i < tokens.size(); ++i) tokens[i] = i * 7;
  PrefixHasher hasher(Namespace{"llama"}, 512);
  v1::KvEventBatch batch;
  batch.set_instance_id("p1");
  for (const auto& k : hasher.Chain(tokens)) batch.add_stored_keys(std::string(k.AsBytes()));
  v1::KvEventsSummary summary;
  ASSERT_TRUE(Events({batch}, &summary).ok());
  EXPECT_EQ(summary.blocks_stored(), 8u);

  v1::RouteRequest by_tokens;
  by_tokens.set_request_id(7);
  by_tokens.set_model("llama");
  for (uint32_t t : tokens) by_tokens.add_token_ids(t);
  for (uint32_t t = 0; t < 100; ++t) by_tokens.add_token_ids(t);  // a partial last block
  v1::RouteResponse resp;
  ASSERT_TRUE(Route(by_tokens, &resp).ok());
  EXPECT_EQ(resp.prefill_instance(), "p1");
  EXPECT_EQ(resp.decode_instance(), "d0");
  EXPECT_EQ(resp.local_blocks(), 8u);
  EXPECT_EQ(resp.policy(), "global-cache-aware");

  // p1 is now busy for a while; the same prefix by keys goes to idle p0, which fetches it from p1.
  ASSERT_TRUE(Heartbeat("p1", 100).ok());
  v1::RouteRequest by_keys;
  by_keys.set_request_id(8);
  by_keys.set_input_tokens(8 * 512 + 300);
  for (const auto& k : hasher.Chain(tokens)) by_keys.add_block_keys(std::string(k.AsBytes()));
  ASSERT_TRUE(Route(by_keys, &resp).ok());
  EXPECT_EQ(resp.prefill_instance(), "p0");
  EXPECT_EQ(resp.fetch_from(), "p1");
  EXPECT_EQ(resp.fetch_blocks(), 8u);

  grpc::ClientContext ctx;
  v1::ReportTtftRequest report;
  v1::ReportTtftResponse ack;
  report.set_request_id(8);
  report.set_ttft_seconds(0.5);
  EXPECT_TRUE(client_->ReportTtft(&ctx, report, &ack).ok());
  grpc::ClientContext ctx2;
  report.set_request_id(999);
  EXPECT_EQ(client_->ReportTtft(&ctx2, report, &ack).error_code(), grpc::StatusCode::NOT_FOUND);
  const std::string text = registry_.Render();
  EXPECT_NE(text.find("kvstash_conductor_ttft_prediction_error_seconds_count 1"),
            std::string::npos);
  EXPECT_NE(text.find("kvstash_conductor_instances{role=\"prefill\"} 2"), std::string::npos);
}

TEST_F(ConductorTest, RejectsWithResourceExhaustedWhenTtftSloCannotBeMet) {
  RouterOptions ro;
  ro.ttft_slo_s = 5;
  Start(PolicyKind::kLoadBalance, ro);
  ASSERT_TRUE(Register("p0", v1::INSTANCE_ROLE_PREFILL).ok());
  ASSERT_TRUE(Register("d0", v1::INSTANCE_ROLE_DECODE).ok());
  ASSERT_TRUE(Heartbeat("p0", 60).ok());
  v1::RouteResponse resp;
  auto st = Route(IdsRequest(1, {1, 2, 3}), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(st.error_message().rfind("ttft_slo", 0), 0u) << st.error_message();
  EXPECT_NE(registry_.Render().find("kvstash_conductor_rejections_total{reason=\"ttft_slo\"} 1"),
            std::string::npos);
}

// The live service, fed the KV events the simulated instances would send, makes the same
// decisions as the simulator on a scripted trace.
TEST_F(ConductorTest, RoutesAScriptIdenticallyToTheSimulator) {
  std::mt19937_64 rng(11);
  std::vector<TraceRequest> trace;
  std::vector<std::vector<uint64_t>> sessions(6);
  uint64_t next = 100;
  for (uint32_t i = 0; i < 150; ++i) {
    auto& s = sessions[rng() % sessions.size()];
    if (s.empty()) s = {rng() % 2};
    for (uint64_t k = 0, add = 2 + rng() % 6; k < add; ++k) s.push_back(next++);
    TraceRequest r;
    r.timestamp_ms = uint64_t(i) * 400;
    r.input_length = s.size() * 512;
    r.output_length = 10;
    r.hash_ids = s;
    trace.push_back(r);
    if (s.size() > 40) s.clear();
  }
  SimOptions so;
  so.prefill = 3;
  so.decode = 1;
  so.local_cache_blocks = 1'000'000;  // no evictions: the conductor learns only insertions
  so.router.admission = Admission::kOff;
  auto sim = Simulate(trace, Cost(), PolicyKind::kGlobalCacheAware, so);
  ASSERT_TRUE(sim.ok()) << sim.status().ToString();

  Start(PolicyKind::kGlobalCacheAware, so.router);
  for (const char* id : {"p0", "p1", "p2"})
    ASSERT_TRUE(Register(id, v1::INSTANCE_ROLE_PREFILL).ok());
  ASSERT_TRUE(Register("d0", v1::INSTANCE_ROLE_DECODE).ok());
  std::vector<bool> reported(trace.size(), false);
  uint32_t fetches = 0;
  for (size_t i = 0; i < trace.size(); ++i) {
    const double now = double(trace[i].timestamp_ms) / 1000.0;
    clock_.AdvanceMs(trace[i].timestamp_ms - clock_.NowMs());
    std::vector<v1::KvEventBatch> batches;
    for (size_t k = 0; k < i; ++k) {
      const RequestOutcome& o = sim->requests[k];
      if (reported[k] || !(o.arrival_s + o.ttft_s < now)) continue;
      reported[k] = true;
      v1::KvEventBatch b;
      b.set_instance_id("p" + std::to_string(o.prefill));
      for (auto id : trace[k].hash_ids) b.add_stored_ids(id);
      batches.push_back(b);
    }
    v1::KvEventsSummary summary;
    if (!batches.empty()) {
      ASSERT_TRUE(Events(batches, &summary).ok());
    }
    v1::RouteResponse resp;
    ASSERT_TRUE(Route(IdsRequest(i, trace[i].hash_ids), &resp).ok()) << i;
    const RequestOutcome& want = sim->requests[i];
    ASSERT_EQ(resp.prefill_instance(), "p" + std::to_string(want.prefill)) << "request " << i;
    ASSERT_EQ(resp.local_blocks(), want.local_blocks) << "request " << i;
    ASSERT_EQ(resp.fetch_blocks(), want.fetched_blocks) << "request " << i;
    ASSERT_EQ(resp.fetch_from(),
              want.fetch_source < 0 ? "" : "p" + std::to_string(want.fetch_source));
    ASSERT_NEAR(resp.predicted_ttft_seconds(), want.predicted_ttft_s, 1e-9) << "request " << i;
    fetches += want.fetched_blocks > 0;
  }
  EXPECT_GT(fetches, 0u) << "the script should exercise remote prefix fetches";
}

}  // namespace
}  // namespace kvstash::scheduler

namespace kvstash::scheduler {
namespace {

// Instances not heard from within the timeout leave routing (LiveView) and return with their next
// heartbeat; the decision is committed against the right (underlying) instance.
TEST_F(ConductorTest, SilentInstancesLeaveRoutingUntilHeardFromAgain) {
  Start(PolicyKind::kRoundRobin, RouterOptions{});
  service_->set_instance_timeout(5);
  ASSERT_TRUE(Register("p0", v1::INSTANCE_ROLE_PREFILL).ok());
  ASSERT_TRUE(Register("p1", v1::INSTANCE_ROLE_PREFILL).ok());
  ASSERT_TRUE(Register("d0", v1::INSTANCE_ROLE_DECODE).ok());
  clock_.AdvanceMs(6000);  // everyone silent for longer than the timeout
  v1::RouteResponse resp;
  grpc::Status none = Route(IdsRequest(1, {1, 2}), &resp);
  EXPECT_EQ(none.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << none.error_message();
  ASSERT_TRUE(Heartbeat("p1", 0).ok());
  {
    grpc::ClientContext ctx;
    v1::HeartbeatRequest req;
    v1::HeartbeatResponse r;
    req.set_instance_id("d0");
    ASSERT_TRUE(client_->Heartbeat(&ctx, req, &r).ok());
  }
  for (uint64_t id = 2; id < 6; ++id) {  // round-robin over the live prefill instances: p1 only
    ASSERT_TRUE(Route(IdsRequest(id, {id * 10}), &resp).ok());
    EXPECT_EQ(resp.prefill_instance(), "p1");
    EXPECT_EQ(resp.decode_instance(), "d0");
  }
  ASSERT_TRUE(Heartbeat("p0", 0).ok());
  std::set<std::string> chosen;
  for (uint64_t id = 6; id < 10; ++id) {
    ASSERT_TRUE(Route(IdsRequest(id, {id * 10}), &resp).ok());
    chosen.insert(resp.prefill_instance());
  }
  EXPECT_EQ(chosen, (std::set<std::string>{"p0", "p1"}));
}

}  // namespace
}  // namespace kvstash::scheduler
