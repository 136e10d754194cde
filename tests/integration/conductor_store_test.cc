// The live conductor consulting a real kvstash store (kvstashd on a run-time port): a prefix the
// store holds is planned as a fetch from the store; a store that went away counts as holding
// nothing, and routing goes on.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "kvstash/client.h"
#include "scheduler/conductor_service.h"
#include "scheduler/simulator.h"
#include "tests/support/daemon_process.h"

namespace kvstash::scheduler {
namespace {

TEST(ConductorStoreTest, PlansFetchesFromTheStoreAndSurvivesItsLoss) {
  testing::DaemonProcess daemon(KVSTASHD_PATH, {"--dram-capacity", "64MiB"});
  ASSERT_TRUE(daemon.ok()) << daemon.error();
  ClientOptions options;
  options.address = daemon.grpc_address();
  options.data_path = DataPath::kInline;
  options.timeout_ms = 2'000;
  auto store = Client::Connect(options);
  ASSERT_TRUE(store.ok()) << store.status().ToString();

  // 40 block keys; the store holds the first 30.
  std::vector<BlockKey> keys;
  for (uint64_t i = 0; i < 40; ++i) keys.push_back(BlockKey::FromParts(0xC0DE, i));
  std::vector<std::byte> bytes(4096, std::byte{7});
  std::vector<std::span<const std::byte>> blocks(30, std::span<const std::byte>(bytes));
  ASSERT_TRUE((*store)->PutChain(std::span(keys).first(30), blocks).ok());

  ManualClock clock;
  metrics::Registry registry;
  const CostModel cost = *CostModel::Fit(DefaultProfile(ModelSpec{}), ModelSpec{}, 512);
  ConductorService service(Router(MakePolicy(PolicyKind::kGlobalCacheAware, {}).value(), cost, RouterOptions{}), &clock,
                           &registry, store->get());
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  ASSERT_NE(port, 0);
  auto conductor = v1::Conductor::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  for (auto [id, role] : {std::pair{"p0", v1::INSTANCE_ROLE_PREFILL}, {"p1", v1::INSTANCE_ROLE_PREFILL},
                          {"d0", v1::INSTANCE_ROLE_DECODE}}) {
    grpc::ClientContext ctx;
    v1::RegisterInstanceRequest req;
    v1::RegisterInstanceResponse resp;
    req.set_instance_id(id);
    req.set_role(role);
    ASSERT_TRUE(conductor->RegisterInstance(&ctx, req, &resp).ok());
  }
  auto route = [&](uint64_t id, v1::RouteResponse* resp) {
    grpc::ClientContext ctx;
    v1::RouteRequest req;
    req.set_request_id(id);
    req.set_input_tokens(40 * 512);
    req.set_output_tokens(16);
    for (const auto& k : keys) req.add_block_keys(std::string(k.AsBytes()));
    return conductor->Route(&ctx, req, resp);
  };

  v1::RouteResponse with_store;
  ASSERT_TRUE(route(1, &with_store).ok());
  EXPECT_EQ(with_store.fetch_from(), ConductorService::kStoreSourceName);
  EXPECT_EQ(with_store.local_blocks() + with_store.fetch_blocks(), 30u);
  EXPECT_NE(registry.Render().find("kvstash_conductor_store_lookups_total{result=\"hit\"} 1"), std::string::npos);

  // The store goes away: routing goes on, planning nothing from it.
  ASSERT_EQ(daemon.Stop(), 0);
  v1::RouteResponse without_store;
  ASSERT_TRUE(route(2, &without_store).ok());
  EXPECT_NE(without_store.fetch_from(), ConductorService::kStoreSourceName);
  EXPECT_EQ(without_store.fetch_blocks(), 0u);
  EXPECT_NE(registry.Render().find("kvstash_conductor_store_lookups_total{result=\"error\"} 1"), std::string::npos);
  server->Shutdown();
}

}  // namespace
}  // namespace kvstash::scheduler
