// ConductorService: the kvstash.v1.Conductor gRPC service (proto/kvstash/v1/conductor.proto) over
// a ConductorState and a Router. Validates every request at the edge, maps kvstash Status codes
// one-to-one onto gRPC codes and rejections onto RESOURCE_EXHAUSTED, and records metrics:
//   kvstash_conductor_decisions_total{policy,outcome}   outcome = admitted | rejected | invalid
//   kvstash_conductor_rejections_total{reason}          reason = ttft_slo | tbt_slo
//   kvstash_conductor_route_seconds                     decision latency
//   kvstash_conductor_predicted_ttft_seconds, kvstash_conductor_observed_ttft_seconds,
//   kvstash_conductor_ttft_prediction_error_seconds     |observed − predicted| (ReportTtft)
//   kvstash_conductor_instances{role}, kvstash_conductor_indexed_blocks
//   kvstash_conductor_store_lookups_total{result}     result = hit | miss | error
//
// Time comes from the injected Clock (seconds = NowMs / 1000), so tests can replay a script.
//
// Thread-safety: every RPC may run on any gRPC thread; one mutex serialises state and router.
#pragma once

#include <deque>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>

#include "common/authorizer.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "common/mutex.h"
#include "kvstash/client.h"
#include "kvstash/v1/conductor.grpc.pb.h"
#include "scheduler/conductor_state.h"

namespace kvstash::scheduler {

class ConductorService final : public v1::Conductor::Service {
 public:
  // RouteResponse.fetch_from when the plan pulls the prefix from the kvstash store.
  static constexpr const char* kStoreSourceName = "kvstash-store";

  // `clock`, `registry` and `store` must outlive the service. With a `store` (a client of the
  // kvstash store), every Route whose chain has block keys (token_ids or block_keys) asks the
  // store for its longest cached prefix, and global-cache-aware may plan to fetch it from there;
  // a store that cannot be asked counts as holding nothing.
  ConductorService(Router router, const Clock* clock, metrics::Registry* registry, Client* store = nullptr);

  grpc::Status RegisterInstance(grpc::ServerContext*, const v1::RegisterInstanceRequest*,
                                v1::RegisterInstanceResponse*) override;
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest*,
                         v1::HeartbeatResponse*) override;
  grpc::Status StreamKvEvents(grpc::ServerContext*, grpc::ServerReader<v1::KvEventBatch>*,
                              v1::KvEventsSummary*) override;
  grpc::Status Route(grpc::ServerContext*, const v1::RouteRequest*, v1::RouteResponse*) override;
  grpc::Status ReportTtft(grpc::ServerContext*, const v1::ReportTtftRequest*,
                          v1::ReportTtftResponse*) override;

  // Instances not heard from (registration, heartbeat, KV events) for this long are left out of
  // routing until they are heard from again; 0 (the default) keeps every registered instance.
  // Call before serving.
  void set_instance_timeout(double seconds) { instance_timeout_s_ = seconds; }
  // Bearer tokens (not owned; null = none asked; call before serving): RegisterInstance,
  // Heartbeat, StreamKvEvents and ReportTtft change the conductor's view and need `write` (the
  // nodes' tokens); Route needs `read`. A refused call changes nothing.
  void set_authorizer(auth::Authorizer* authorizer) { authorizer_ = authorizer; }

  // Route, leaving out the instances named in `excluded` (the front door retrying a request
  // whose node failed before anything was streamed).
  grpc::Status RouteExcluding(const v1::RouteRequest& req, const std::set<std::string>& excluded,
                              v1::RouteResponse* resp);

  // For the HTTP front door (front_door.h), which routes through Route above in-process.
  // The Node address and namespace an instance registered with; NOT_FOUND when it is unknown.
  Result<std::pair<std::string, std::string>> InstanceEndpoint(const std::string& id);
  // A namespace some registered instance gave (empty when none did): prompts are hashed in it.
  std::string RegisteredNamespace();

 private:
  // OK without tokens; else the call's token must hold `needed`.
  grpc::Status Admit(const grpc::ServerContext* context, auth::Role needed);
  auth::Authorizer* authorizer_ = nullptr;
  static constexpr size_t kRememberedPredictions = 100'000;
  double Now() const { return double(clock_->NowMs()) / 1000.0; }
  Status ApplyBatch(const v1::KvEventBatch& batch, v1::KvEventsSummary* summary);

  Mutex mu_;
  Router router_ GUARDED_BY(mu_);
  // The router's policy name and block size, fixed at construction: read without mu_.
  const std::string policy_name_;
  const uint32_t block_tokens_;
  ConductorState state_ GUARDED_BY(mu_);
  const Clock* clock_;
  std::unordered_map<uint64_t, double> predicted_ GUARDED_BY(mu_);  // request id -> predicted TTFT
  std::deque<uint64_t> predicted_order_ GUARDED_BY(mu_);

  metrics::Family<metrics::Counter>& decisions_;
  metrics::Family<metrics::Counter>& rejections_;
  metrics::Histogram& route_seconds_;
  metrics::Histogram& predicted_ttft_;
  metrics::Histogram& observed_ttft_;
  metrics::Histogram& ttft_error_;
  Client* store_;  // may be null
  double instance_timeout_s_ = 0;
  metrics::Family<metrics::Counter>& store_lookups_;
};

}  // namespace kvstash::scheduler
