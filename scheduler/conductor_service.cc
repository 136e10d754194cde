#include "scheduler/conductor_service.h"

#include "scheduler/conductor_requests.h"
#include "scheduler/live_view.h"

#include <chrono>
#include <cmath>

#include "kvstash/block_key.h"
#include "kvstash/limits.h"
#include "kvstash/prefix_hasher.h"

namespace kvstash::scheduler {
namespace {

grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())), s.message());
}

std::vector<double> TtftBuckets() {
  return {0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120};
}

}  // namespace

ConductorService::ConductorService(Router router, const Clock* clock, metrics::Registry* registry,
                                   Client* store)
    : router_(std::move(router)),
      policy_name_(router_.policy().name()),
      block_tokens_(router_.cost().block_tokens),
      clock_(clock),
      decisions_(registry->AddCounter("kvstash_conductor_decisions_total",
                                      "Routing decisions by policy and outcome",
                                      {"policy", "outcome"})),
      rejections_(registry->AddCounter("kvstash_conductor_rejections_total",
                                       "Rejected requests by reason", {"reason"})),
      route_seconds_(registry
                         ->AddHistogram("kvstash_conductor_route_seconds", "Route decision latency",
                                        {}, metrics::DefaultLatencyBuckets())
                         .WithLabels({})),
      predicted_ttft_(registry
                          ->AddHistogram("kvstash_conductor_predicted_ttft_seconds",
                                         "Predicted TTFT of admitted requests", {}, TtftBuckets())
                          .WithLabels({})),
      observed_ttft_(registry
                         ->AddHistogram("kvstash_conductor_observed_ttft_seconds",
                                        "TTFT reported by instances", {}, TtftBuckets())
                         .WithLabels({})),
      ttft_error_(registry
                      ->AddHistogram("kvstash_conductor_ttft_prediction_error_seconds",
                                     "|observed - predicted| TTFT of reported requests", {},
                                     TtftBuckets())
                      .WithLabels({})),
      store_(store),
      store_lookups_(registry->AddCounter("kvstash_conductor_store_lookups_total",
                                          "Prefix lookups in the kvstash store, by result", {"result"})) {
  auto& instances =
      registry->AddGauge("kvstash_conductor_instances", "Registered instances by role", {"role"});
  auto& blocks =
      registry->AddGauge("kvstash_conductor_indexed_blocks", "Distinct blocks in the prefix index");
  auto& live_instances = registry->AddGauge(
      "kvstash_conductor_live_instances", "Instances heard from within their timeout (routable), by role", {"role"});
  registry->AddCollector([this, &instances, &blocks, &live_instances] {
    MutexLock lock(mu_);
    instances.WithLabels({"prefill"}).Set(double(state_.prefill_count()));
    instances.WithLabels({"decode"}).Set(double(state_.decode_count()));
    const LiveView live(state_, Now(), instance_timeout_s_);
    live_instances.WithLabels({"prefill"}).Set(double(live.prefill_count()));
    live_instances.WithLabels({"decode"}).Set(double(live.decode_count()));
    blocks.WithLabels({}).Set(double(state_.indexed_blocks()));
  });
}

grpc::Status ConductorService::Admit(const grpc::ServerContext* context, auth::Role needed) {
  if (authorizer_ == nullptr) return grpc::Status::OK;
  return ToGrpc(authorizer_->Admit(*context, needed).status());
}

grpc::Status ConductorService::RegisterInstance(grpc::ServerContext* context,
                                                const v1::RegisterInstanceRequest* req,
                                                v1::RegisterInstanceResponse* resp) {
  if (grpc::Status admitted = Admit(context, auth::Role::kWrite); !admitted.ok()) return admitted;
  auto role = ParseRole(req->role());
  if (!role.ok()) return ToGrpc(role.status());
  MutexLock lock(mu_);
  auto index = state_.Register(req->instance_id(), *role, req->address(), req->namespace_id());
  if (!index.ok()) return ToGrpc(index.status());
  (void)state_.Touch(req->instance_id(), Now());
  resp->set_index(*index);
  return grpc::Status::OK;
}

grpc::Status ConductorService::Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* req,
                                         v1::HeartbeatResponse*) {
  if (grpc::Status admitted = Admit(context, auth::Role::kWrite); !admitted.ok()) return admitted;
  std::vector<SequenceLoad> seqs = HeartbeatSequences(*req);
  MutexLock lock(mu_);
  const double now = Now();
  auto role = state_.RoleOf(req->instance_id());
  if (!role.ok()) return ToGrpc(role.status());
  const Status beat = *role == Role::kPrefill
                          ? state_.PrefillHeartbeat(req->instance_id(), now, req->queue_seconds())
                          : state_.DecodeHeartbeat(req->instance_id(), now, req->step_seconds(), std::move(seqs));
  if (beat.ok()) (void)state_.Touch(req->instance_id(), now);
  return ToGrpc(beat);
}

Status ConductorService::ApplyBatch(const v1::KvEventBatch& batch, v1::KvEventsSummary* summary) {
  KVSTASH_ASSIGN_OR_RETURN(KvEventIds ids, ParseKvEventBatch(batch));
  const std::vector<BlockId>& stored = ids.stored;
  const std::vector<BlockId>& evicted = ids.evicted;
  MutexLock lock(mu_);
  KVSTASH_RETURN_IF_ERROR(state_.KvEvent(batch.instance_id(), stored, evicted));
  (void)state_.Touch(batch.instance_id(), Now());
  summary->set_batches(summary->batches() + 1);
  summary->set_blocks_stored(summary->blocks_stored() + stored.size());
  summary->set_blocks_evicted(summary->blocks_evicted() + evicted.size());
  return Status::Ok();
}

grpc::Status ConductorService::StreamKvEvents(grpc::ServerContext* context,
                                              grpc::ServerReader<v1::KvEventBatch>* reader,
                                              v1::KvEventsSummary* summary) {
  if (grpc::Status admitted = Admit(context, auth::Role::kWrite); !admitted.ok()) return admitted;
  v1::KvEventBatch batch;
  while (reader->Read(&batch)) {
    Status s = ApplyBatch(batch, summary);
    if (!s.ok()) {
      return ToGrpc(
          Status(s.code(), "batch " + std::to_string(summary->batches()) + ": " + s.message()));
    }
  }
  return grpc::Status::OK;
}

grpc::Status ConductorService::Route(grpc::ServerContext* context, const v1::RouteRequest* req,
                                     v1::RouteResponse* resp) {
  if (grpc::Status admitted = Admit(context, auth::Role::kRead); !admitted.ok()) return admitted;
  return RouteExcluding(*req, {}, resp);
}

grpc::Status ConductorService::RouteExcluding(const v1::RouteRequest& request, const std::set<std::string>& excluded,
                                              v1::RouteResponse* resp) {
  const v1::RouteRequest* req = &request;
  const auto t0 = std::chrono::steady_clock::now();
  const std::string& policy = policy_name_;
  auto invalid = [&](const Status& s) {
    decisions_.WithLabels({policy, "invalid"}).Inc();
    return ToGrpc(s);
  };
  auto parsed = ParseRouteRequest(*req, RouterOptions{}.max_input_tokens, block_tokens_);
  if (!parsed.ok()) return invalid(parsed.status());
  const std::vector<BlockId>& chain = parsed->chain;
  const std::vector<BlockKey>& keys = parsed->keys;  // the chain's block keys, when the request gives them
  const uint64_t input_tokens = parsed->input_tokens;

  // Ask the store outside the lock: it is a network call.
  uint32_t store_blocks = 0;
  if (store_ != nullptr && !keys.empty()) {
    const size_t asked = std::min<size_t>(keys.size(), limits::kMaxBatchKeys);
    auto found = store_->Lookup(std::span(keys).first(asked));
    if (found.ok()) {
      store_blocks = uint32_t(found->hit_blocks);
      store_lookups_.WithLabels({store_blocks > 0 ? "hit" : "miss"}).Inc();
    } else {
      store_lookups_.WithLabels({"error"}).Inc();
    }
  }

  MutexLock lock(mu_);
  RouteRequest r{req->request_id(), Now(), input_tokens, req->output_tokens(), chain, store_blocks};
  const LiveView live(state_, r.now_s, instance_timeout_s_, &excluded);
  auto d = router_.Route(r, live);
  if (!d.ok()) return invalid(d.status());
  *d = live.ToUnderlying(*d);
  if (d->rejected()) {
    lock.Unlock();
    const std::string reason(RejectReasonName(d->reject));
    decisions_.WithLabels({policy, "rejected"}).Inc();
    rejections_.WithLabels({reason}).Inc();
    char msg[160];
    std::snprintf(msg, sizeof msg, "%s: predicted TTFT %.3f s, TBT %.1f ms", reason.c_str(),
                  d->plan.ttft_s(), d->predicted_tbt_s * 1000);
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, msg);
  }
  state_.Commit(r, *d);
  resp->set_prefill_instance(state_.PrefillId(d->plan.prefill));
  resp->set_decode_instance(state_.DecodeId(d->decode));
  resp->set_local_blocks(d->plan.local_blocks);
  resp->set_fetch_blocks(d->plan.fetch_blocks);
  if (d->plan.fetch_source >= 0) {
    resp->set_fetch_from(state_.PrefillId(uint32_t(d->plan.fetch_source)));
  } else if (d->plan.fetch_source == PrefillPlan::kFromStore) {
    resp->set_fetch_from(kStoreSourceName);
  }
  resp->set_predicted_ttft_seconds(d->plan.ttft_s());
  resp->set_predicted_tbt_seconds(d->predicted_tbt_s);
  resp->set_policy(policy);
  if (predicted_.emplace(req->request_id(), d->plan.ttft_s()).second) {
    predicted_order_.push_back(req->request_id());
    if (predicted_order_.size() > kRememberedPredictions) {
      predicted_.erase(predicted_order_.front());
      predicted_order_.pop_front();
    }
  }
  lock.Unlock();
  decisions_.WithLabels({policy, "admitted"}).Inc();
  predicted_ttft_.Observe(d->plan.ttft_s());
  route_seconds_.Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return grpc::Status::OK;
}

grpc::Status ConductorService::ReportTtft(grpc::ServerContext* context, const v1::ReportTtftRequest* req,
                                          v1::ReportTtftResponse*) {
  if (grpc::Status admitted = Admit(context, auth::Role::kWrite); !admitted.ok()) return admitted;
  if (const Status bad = CheckTtftReport(*req); !bad.ok()) return ToGrpc(bad);
  double predicted;
  {
    MutexLock lock(mu_);
    auto it = predicted_.find(req->request_id());
    if (it == predicted_.end()) {
      return ToGrpc(NotFound("request " + std::to_string(req->request_id()) +
                             " was not routed here recently"));
    }
    predicted = it->second;
  }
  observed_ttft_.Observe(req->ttft_seconds());
  ttft_error_.Observe(std::fabs(req->ttft_seconds() - predicted));
  return grpc::Status::OK;
}

Result<std::pair<std::string, std::string>> ConductorService::InstanceEndpoint(const std::string& id) {
  MutexLock lock(mu_);
  return state_.Endpoint(id);
}

std::string ConductorService::RegisteredNamespace() {
  MutexLock lock(mu_);
  return state_.AnyNamespace();
}

}  // namespace kvstash::scheduler
