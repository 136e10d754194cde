// kvstash-bench-conductor: latency of one routing decision (Router::Route + ConductorState::Commit)
// on one core, with 64 instances and ~1M indexed blocks. The peer in the same run is the same
// Router over per-instance caches probed one by one (the simulator's view); the limit is the
// 200 µs p99 target of issue 5. A last row times the whole Route RPC of kvstash-conductor's
// service over loopback gRPC (client and server on this host), for scale.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "scheduler/conductor_service.h"
#include "scheduler/conductor_state.h"

namespace {

using namespace kvstash::scheduler;

// The simulator-style view: every instance's cache is probed for every request.
class PerInstanceView final : public ClusterView {
 public:
  std::vector<BlockCache> caches;
  const ConductorState* state = nullptr;  // queues and decode loads
  size_t prefill_count() const override { return caches.size(); }
  size_t decode_count() const override { return state->decode_count(); }
  double PrefillQueueSeconds(size_t i, double now) const override {
    return state->PrefillQueueSeconds(i, now);
  }
  void PrefixMatches(std::span<const BlockId> chain, std::vector<uint32_t>& out) const override {
    out.resize(caches.size());
    for (size_t i = 0; i < caches.size(); ++i) out[i] = caches[i].PrefixMatch(chain);
  }
  DecodeLoad DecodeLoadNow(size_t j) const override { return state->DecodeLoadNow(j); }
  DecodeLoad DecodeLoadAt(size_t j, double t) const override { return state->DecodeLoadAt(j, t); }
};

// Every instance reports: prefill queues of 0..4 s, decode batches of 32 sequences of 16k tokens.
void Heartbeats(ConductorState& state, double now, uint64_t salt) {
  for (uint32_t i = 0; i < state.prefill_count(); ++i) {
    (void)state.PrefillHeartbeat(state.PrefillId(i), now, double((salt + i * 7) % 5));
  }
  const std::vector<SequenceLoad> seqs(32, SequenceLoad{16'000, 100});
  for (uint32_t j = 0; j < state.decode_count(); ++j) {
    (void)state.DecodeHeartbeat(state.DecodeId(j), now, 0.03, seqs);
  }
}

struct Stats {
  double p50, p99, max;
};

Stats Measure(Router& router, const ClusterView& view, ConductorState& state,
              const std::vector<std::vector<BlockId>>& requests) {
  std::vector<double> us;
  us.reserve(requests.size());
  double now = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    RouteRequest req{i, now, requests[i].size() * 512, 200, requests[i]};
    const auto t0 = std::chrono::steady_clock::now();
    auto d = router.Route(req, view);
    if (d.ok() && !d->rejected()) state.Commit(req, *d);
    const auto t1 = std::chrono::steady_clock::now();
    if (!d.ok()) {
      std::fprintf(stderr, "route failed: %s\n", d.status().ToString().c_str());
      std::exit(1);
    }
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    now += 0.25;
    if (i % 64 == 63) Heartbeats(state, now, i);  // instances report every few routes, untimed
  }
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us[us.size() * 99 / 100], us.back()};
}

// The same workload through the gRPC service: register, stream the KV events, then time Route RPCs.
int GrpcRow(const CostModel& cost,
            const std::vector<std::pair<uint32_t, std::vector<BlockId>>>& events,
            const std::vector<std::vector<BlockId>>& requests, uint32_t prefill, uint32_t decode) {
  kvstash::metrics::Registry registry;
  RouterOptions ro;
  ro.admission = Admission::kPredicted;
  ConductorService service(Router(MakePolicy(PolicyKind::kGlobalCacheAware, {}).value(), cost, ro),
                           kvstash::SteadyClock::Default(), &registry);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  auto conductor = kvstash::v1::Conductor::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  auto call = [](auto&& fn) {
    grpc::ClientContext ctx;
    return fn(&ctx);
  };
  for (uint32_t i = 0; i < prefill + decode; ++i) {
    kvstash::v1::RegisterInstanceRequest req;
    kvstash::v1::RegisterInstanceResponse resp;
    req.set_instance_id(i < prefill ? "prefill-" + std::to_string(i)
                                    : "decode-" + std::to_string(i - prefill));
    req.set_role(i < prefill ? kvstash::v1::INSTANCE_ROLE_PREFILL
                             : kvstash::v1::INSTANCE_ROLE_DECODE);
    call([&](grpc::ClientContext* c) { return conductor->RegisterInstance(c, req, &resp); });
  }
  {
    grpc::ClientContext ctx;
    kvstash::v1::KvEventsSummary summary;
    auto writer = conductor->StreamKvEvents(&ctx, &summary);
    for (const auto& [inst, ids] : events) {
      kvstash::v1::KvEventBatch batch;
      batch.set_instance_id("prefill-" + std::to_string(inst));
      for (BlockId b : ids) batch.add_stored_ids(b);
      writer->Write(batch);
    }
    writer->WritesDone();
    if (!writer->Finish().ok()) return 1;
  }
  std::vector<double> us;
  for (size_t i = 0; i < requests.size(); ++i) {
    kvstash::v1::RouteRequest req;
    kvstash::v1::RouteResponse resp;
    req.set_request_id(i);
    req.set_input_tokens(requests[i].size() * 512);
    req.set_output_tokens(200);
    for (BlockId b : requests[i]) req.add_block_ids(b);
    const auto t0 = std::chrono::steady_clock::now();
    grpc::Status st = call([&](grpc::ClientContext* c) { return conductor->Route(c, req, &resp); });
    us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    if (!st.ok() && st.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) {
      std::fprintf(stderr, "Route RPC failed: %s\n", st.error_message().c_str());
      return 1;
    }
    if (i % 64 == 63) {  // the same untimed heartbeats as the in-process rows
      for (uint32_t k = 0; k < prefill + decode; ++k) {
        kvstash::v1::HeartbeatRequest hb;
        kvstash::v1::HeartbeatResponse ack;
        if (k < prefill) {
          hb.set_instance_id("prefill-" + std::to_string(k));
          hb.set_queue_seconds(double((i + k * 7) % 5));
        } else {
          hb.set_instance_id("decode-" + std::to_string(k - prefill));
          hb.set_step_seconds(0.03);
          for (int q = 0; q < 32; ++q) {
            auto* seq = hb.add_sequences();
            seq->set_context_tokens(16'000);
            seq->set_remaining_tokens(100);
          }
        }
        call([&](grpc::ClientContext* c) { return conductor->Heartbeat(c, hb, &ack); });
      }
    }
  }
  std::sort(us.begin(), us.end());
  std::printf("%-20s %-26s %10.1f %10.1f %10.1f %12s\n", "global-cache-aware",
              "gRPC Route RPC (loopback)", us[us.size() / 2], us[us.size() * 99 / 100], us.back(),
              "-");
  server->Shutdown();
  return 0;
}

}  // namespace

int main() {
  constexpr uint32_t kPrefill = 48, kDecode = 16;  // 64 instances
  constexpr uint64_t kBlocks = 1'000'000;          // indexed (chain, holder) blocks
  constexpr uint32_t kChainBlocks = 50, kRequests = 20'000;
  std::mt19937_64 rng(42);

  auto cost = CostModel::Fit(DefaultProfile(ModelSpec{}), ModelSpec{}, 128);
  if (!cost.ok()) return 1;
  ConductorState state;
  PerInstanceView naive;
  naive.state = &state;
  for (uint32_t i = 0; i < kPrefill; ++i) {
    (void)state.Register("prefill-" + std::to_string(i), Role::kPrefill);
    naive.caches.emplace_back(kBlocks);
  }
  for (uint32_t j = 0; j < kDecode; ++j) {
    (void)state.Register("decode-" + std::to_string(j), Role::kDecode);
  }
  Heartbeats(state, 0, 0);
  // Conversations: chains of kChainBlocks blocks, each stored on one or two prefill instances.
  std::vector<std::vector<BlockId>> chains;
  std::vector<std::pair<uint32_t, std::vector<BlockId>>> events;
  BlockId next = 1;
  while (state.indexed_blocks() < kBlocks) {
    std::vector<BlockId> chain(kChainBlocks);
    for (auto& b : chain) b = next++;
    const uint32_t copies = 1 + rng() % 2;
    for (uint32_t c = 0; c < copies; ++c) {
      const uint32_t inst = uint32_t(rng() % kPrefill);
      std::vector<BlockId> stored(chain.begin(), chain.begin() + long(rng() % kChainBlocks + 1));
      (void)state.KvEvent("prefill-" + std::to_string(inst), stored, {});
      events.emplace_back(inst, stored);
      naive.caches[inst].InsertChain(stored);
    }
    chains.push_back(std::move(chain));
  }
  // Requests: a known conversation's prefix plus new blocks (30..60 blocks = 15k..30k tokens).
  std::vector<std::vector<BlockId>> requests;
  for (uint32_t r = 0; r < kRequests; ++r) {
    const auto& base = chains[rng() % chains.size()];
    std::vector<BlockId> req(base.begin(), base.begin() + long(rng() % kChainBlocks));
    while (req.size() < 30 + rng() % 31) req.push_back(next++);
    requests.push_back(std::move(req));
  }
  std::printf(
      "kvstash-bench-conductor: %u prefill + %u decode instances, %llu distinct blocks indexed "
      "(each on 1-2 instances), "
      "%u routes per row, one thread\n",
      kPrefill, kDecode, static_cast<unsigned long long>(state.indexed_blocks()), kRequests);
  std::printf("%-20s %-26s %10s %10s %10s %12s\n", "policy", "prefix matching", "p50_us", "p99_us",
              "max_us", "target_p99");
  for (const PolicyKind policy :
       {PolicyKind::kGlobalCacheAware, PolicyKind::kLocalCacheAware, PolicyKind::kLoadBalance}) {
    for (bool use_index : {true, false}) {
      auto p = MakePolicy(policy, {});
      RouterOptions ro;
      ro.admission = Admission::kPredicted;
      Router router(std::move(*p), *cost, ro);
      ConductorState copy = state;
      naive.state = &copy;
      const Stats s = use_index ? Measure(router, copy, copy, requests)
                                : Measure(router, naive, copy, requests);
      std::printf("%-20s %-26s %10.1f %10.1f %10.1f %12s\n", std::string(Name(policy)).c_str(),
                  use_index ? "holder-set index" : "per-instance caches (peer)", s.p50, s.p99,
                  s.max, "200.0");
    }
  }
  return GrpcRow(*cost, events, requests, kPrefill, kDecode);
}
