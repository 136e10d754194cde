// The conductor's gRPC requests (kvstash.v1.Conductor) as the wire delivers them, through the
// service's checks (scheduler/conductor_requests.h) and, where the service would go on, into a
// ConductorState as the service applies them (one prefill "p0" and one decode "d0" registered
// first). A refused request changes nothing: the instance counts, the indexed blocks and the
// endpoints stay as they were. An accepted Route names exactly one form of chain, as long as the
// request's keys or ids (or its token_ids' full blocks), and its input_tokens agree.
//
// Input: byte 0 picks the RPC (RegisterInstance, Heartbeat, KV events, Route, ReportTtft); the rest
// is that request's protobuf bytes.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "scheduler/conductor_requests.h"

namespace {

using namespace kvstash;
using namespace kvstash::scheduler;

constexpr uint32_t kBlockTokens = 16;
constexpr size_t kMaxInputTokens = 4'000'000;  // RouterOptions::max_input_tokens
constexpr double kNow = 100.0;

struct Snapshot {
  size_t prefill, decode;
  uint64_t blocks;
  std::string any_namespace;
  bool operator==(const Snapshot&) const = default;
};

Snapshot Take(const ConductorState& s) { return {s.prefill_count(), s.decode_count(), s.indexed_blocks(), s.AnyNamespace()}; }

ConductorState& State() {
  static ConductorState* state = [] {
    auto* s = new ConductorState();
    if (!s->Register("p0", Role::kPrefill, "127.0.0.1:1", "model").ok()) std::abort();
    if (!s->Register("d0", Role::kDecode, "127.0.0.1:2", "model").ok()) std::abort();
    return s;
  }();
  return *state;
}

// A fresh state per input keeps runs independent; the static one is only the template.
void Register(const uint8_t* data, size_t size) {
  v1::RegisterInstanceRequest req;
  if (!req.ParseFromArray(data, int(size))) return;
  ConductorState state = State();
  const Snapshot before = Take(state);
  Result<Role> role = ParseRole(req.role());
  if (!role.ok()) {
    if (role.status().code() != StatusCode::kInvalidArgument) std::abort();
    return;
  }
  Result<uint32_t> index = state.Register(req.instance_id(), *role, req.address(), req.namespace_id());
  if (!index.ok()) {
    if (!(Take(state) == before)) std::abort();
    return;
  }
  if (req.instance_id().empty() || req.instance_id().size() > 256 || req.address().size() > 256 ||
      req.namespace_id().size() > 256) {
    std::abort();
  }
  if (!state.RoleOf(req.instance_id()).ok() || *state.RoleOf(req.instance_id()) != *role) std::abort();
}

void Heartbeat(const uint8_t* data, size_t size) {
  v1::HeartbeatRequest req;
  if (!req.ParseFromArray(data, int(size))) return;
  ConductorState state = State();
  const Snapshot before = Take(state);
  std::vector<SequenceLoad> seqs = HeartbeatSequences(req);
  if (seqs.size() != size_t(req.sequences_size())) std::abort();
  Result<Role> role = state.RoleOf(req.instance_id());
  if (!role.ok()) return;
  const Status beat = *role == Role::kPrefill ? state.PrefillHeartbeat(req.instance_id(), kNow, req.queue_seconds())
                                              : state.DecodeHeartbeat(req.instance_id(), kNow, req.step_seconds(),
                                                                      std::move(seqs));
  if (!(Take(state) == before)) std::abort();  // a heartbeat never adds instances or blocks
  if (beat.ok()) {
    const double t = *role == Role::kPrefill ? req.queue_seconds() : req.step_seconds();
    if (!std::isfinite(t) || t < 0) std::abort();
  }
}

void KvEvents(const uint8_t* data, size_t size) {
  v1::KvEventBatch req;
  if (!req.ParseFromArray(data, int(size))) return;
  ConductorState state = State();
  const Snapshot before = Take(state);
  Result<KvEventIds> ids = ParseKvEventBatch(req);
  if (!ids.ok()) {
    if (ids.status().code() != StatusCode::kInvalidArgument) std::abort();
    return;
  }
  if (ids->stored.size() != size_t(req.stored_ids_size() + req.stored_keys_size()) ||
      ids->evicted.size() != size_t(req.evicted_ids_size() + req.evicted_keys_size())) {
    std::abort();
  }
  if (!state.KvEvent(req.instance_id(), ids->stored, ids->evicted).ok()) {
    if (!(Take(state) == before)) std::abort();
  }
}

void Route(const uint8_t* data, size_t size) {
  v1::RouteRequest req;
  if (!req.ParseFromArray(data, int(size))) return;
  Result<RouteChain> parsed = ParseRouteRequest(req, kMaxInputTokens, kBlockTokens);
  if (!parsed.ok()) {
    if (parsed.status().code() != StatusCode::kInvalidArgument) std::abort();
    return;
  }
  const int forms = int(req.token_ids_size() > 0) + int(req.block_keys_size() > 0) + int(req.block_ids_size() > 0);
  if (forms != 1) std::abort();
  if (req.token_ids_size() > 0) {
    if (req.model().empty() || parsed->input_tokens != uint64_t(req.token_ids_size())) std::abort();
    if (parsed->chain.size() != parsed->keys.size() || parsed->chain.size() > size_t(req.token_ids_size())) std::abort();
  } else if (req.block_keys_size() > 0) {
    if (parsed->chain.size() != size_t(req.block_keys_size()) || parsed->keys.size() != parsed->chain.size()) std::abort();
    for (size_t i = 0; i < parsed->keys.size(); ++i) {
      if (parsed->keys[i].AsBytes() != req.block_keys(int(i)) || parsed->chain[i] != BlockKeyHash{}(parsed->keys[i])) {
        std::abort();
      }
    }
  } else if (parsed->chain.size() != size_t(req.block_ids_size()) || !parsed->keys.empty()) {
    std::abort();
  }
}

void ReportTtft(const uint8_t* data, size_t size) {
  v1::ReportTtftRequest req;
  if (!req.ParseFromArray(data, int(size))) return;
  const bool good = std::isfinite(req.ttft_seconds()) && req.ttft_seconds() >= 0;
  if (CheckTtftReport(req).ok() != good) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  switch (data[0] % 5) {
    case 0: Register(data + 1, size - 1); break;
    case 1: Heartbeat(data + 1, size - 1); break;
    case 2: KvEvents(data + 1, size - 1); break;
    case 3: Route(data + 1, size - 1); break;
    default: ReportTtft(data + 1, size - 1); break;
  }
  return 0;
}
