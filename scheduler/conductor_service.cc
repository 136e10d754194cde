#include "scheduler/conductor_service.h"

#include "scheduler/live_view.h"

#include <chrono>
#include <cmath>

#include "kvstash/block_key.h"
#include "kvstash/limits.h"
#include "kvstash/prefix_hasher.h"

namespace kvstash::scheduler {
namespace {

constexpr size_t kMaxChain = 1'000'000;
constexpr size_t kMaxEventKeys = 1'000'000;

grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())), s.message());
}

std::vector<double> TtftBuckets() {
  return {0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120};
}

Result<BlockId> KeyToId(const std::string& bytes, const char* field, int i) {
  auto key = BlockKey::FromBytes(bytes);
  if (!key.ok())
    return InvalidArgument(std::string(field) + "[" + std::to_string(i) + "]: must be 16 bytes");
  return BlockId(BlockKeyHash{}(*key));
}

Result<Role> RoleOf(v1::InstanceRole role) {
  switch (role) {
    case v1::INSTANCE_ROLE_PREFILL:
      return Role::kPrefill;
    case v1::INSTANCE_ROLE_DECODE:
      return Role::kDecode;
    default:
      return InvalidArgument("role: must be INSTANCE_ROLE_PREFILL or INSTANCE_ROLE_DECODE");
  }
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

grpc::Status ConductorService::RegisterInstance(grpc::ServerContext*,
                                                const v1::RegisterInstanceRequest* req,
                                                v1::RegisterInstanceResponse* resp) {
  auto role = RoleOf(req->role());
  if (!role.ok()) return ToGrpc(role.status());
  MutexLock lock(mu_);
  auto index = state_.Register(req->instance_id(), *role, req->address(), req->namespace_id());
  if (!index.ok()) return ToGrpc(index.status());
  (void)state_.Touch(req->instance_id(), Now());
  resp->set_index(*index);
  return grpc::Status::OK;
}

grpc::Status ConductorService::Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* req,
                                         v1::HeartbeatResponse*) {
  std::vector<SequenceLoad> seqs;
  seqs.reserve(size_t(req->sequences_size()));
  for (const auto& s : req->sequences()) seqs.push_back({s.context_tokens(), s.remaining_tokens()});
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
  const size_t n = size_t(batch.stored_keys_size() + batch.evicted_keys_size() +
                          batch.stored_ids_size() + batch.evicted_ids_size());
  if (n > kMaxEventKeys) return InvalidArgument("a KV event batch carries at most 1000000 blocks");
  std::vector<BlockId> stored(batch.stored_ids().begin(), batch.stored_ids().end());
  std::vector<BlockId> evicted(batch.evicted_ids().begin(), batch.evicted_ids().end());
  for (int i = 0; i < batch.stored_keys_size(); ++i) {
    KVSTASH_ASSIGN_OR_RETURN(BlockId id, KeyToId(batch.stored_keys(i), "stored_keys", i));
    stored.push_back(id);
  }
  for (int i = 0; i < batch.evicted_keys_size(); ++i) {
    KVSTASH_ASSIGN_OR_RETURN(BlockId id, KeyToId(batch.evicted_keys(i), "evicted_keys", i));
    evicted.push_back(id);
  }
  MutexLock lock(mu_);
  KVSTASH_RETURN_IF_ERROR(state_.KvEvent(batch.instance_id(), stored, evicted));
  (void)state_.Touch(batch.instance_id(), Now());
  summary->set_batches(summary->batches() + 1);
  summary->set_blocks_stored(summary->blocks_stored() + stored.size());
  summary->set_blocks_evicted(summary->blocks_evicted() + evicted.size());
  return Status::Ok();
}

grpc::Status ConductorService::StreamKvEvents(grpc::ServerContext*,
                                              grpc::ServerReader<v1::KvEventBatch>* reader,
                                              v1::KvEventsSummary* summary) {
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

grpc::Status ConductorService::Route(grpc::ServerContext*, const v1::RouteRequest* req,
                                     v1::RouteResponse* resp) {
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
  const int forms = int(req->token_ids_size() > 0) + int(req->block_keys_size() > 0) +
                    int(req->block_ids_size() > 0);
  if (forms != 1)
    return invalid(InvalidArgument("give exactly one of token_ids, block_keys, block_ids"));
  if (size_t(req->token_ids_size()) > RouterOptions{}.max_input_tokens ||
      size_t(req->block_keys_size()) > kMaxChain || size_t(req->block_ids_size()) > kMaxChain) {
    return invalid(InvalidArgument("prompt too long"));
  }
  std::vector<BlockId> chain;
  std::vector<BlockKey> keys;  // the chain's block keys, when the request gives them
  uint64_t input_tokens = req->input_tokens();
  if (req->token_ids_size() > 0) {
    if (req->model().empty())
      return invalid(InvalidArgument("model: required with token_ids (it seeds the hash)"));
    if (input_tokens != 0 && input_tokens != uint64_t(req->token_ids_size())) {
      return invalid(InvalidArgument("input_tokens: differs from the number of token_ids"));
    }
    input_tokens = uint64_t(req->token_ids_size());
    PrefixHasher hasher(Namespace{req->model()}, block_tokens_);
    keys = hasher.Chain({req->token_ids().data(), size_t(req->token_ids_size())});
    for (const BlockKey& k : keys) chain.push_back(BlockKeyHash{}(k));
  } else if (req->block_keys_size() > 0) {
    for (int i = 0; i < req->block_keys_size(); ++i) {
      auto id = KeyToId(req->block_keys(i), "block_keys", i);
      if (!id.ok()) return invalid(id.status());
      chain.push_back(*id);
      keys.push_back(*BlockKey::FromBytes(req->block_keys(i)));
    }
  } else {
    chain.assign(req->block_ids().begin(), req->block_ids().end());
  }

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

grpc::Status ConductorService::ReportTtft(grpc::ServerContext*, const v1::ReportTtftRequest* req,
                                          v1::ReportTtftResponse*) {
  if (!std::isfinite(req->ttft_seconds()) || req->ttft_seconds() < 0) {
    return ToGrpc(InvalidArgument("ttft_seconds: must be a finite number >= 0"));
  }
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
