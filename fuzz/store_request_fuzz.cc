// kvstashd's Store RPCs (kvstash.v1.Store) as the wire delivers them, through the service's own
// handlers (server/store_service.h: validation at the edge, server/request_validation.h, then the
// tier calls) over a small in-memory DramTier, without gRPC: a default ServerContext, no tokens.
// Each input runs on a fresh tier holding two committed blocks and two open reservations (so that
// PutCommit and PutAbort reach past the handle lookup: a handle written as "#0" or "#1" is
// replaced by a real one). A request refused as INVALID_ARGUMENT changes nothing: the tier's
// blocks, bytes, reservations and the block list are exactly as before. A request served OK
// answers once per key or item, as the proto promises.
//
// Input: byte 0 picks the RPC (Lookup, PutBegin, PutCommit, PutAbort, Put, Get, ReleaseLeases,
// Remove, Stat, List); the rest is that request's protobuf bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/checksum.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "server/server_metrics.h"
#include "server/store_service.h"
#include "tiers/dram_tier.h"

namespace {

using namespace kvstash;

constexpr uint64_t kMaxBlock = 64 * 1024;

std::string KeyBytes(uint8_t seed) { return std::string(BlockKey::kSize, static_cast<char>(seed)); }

// The Stats RPC's figures for a DRAM-only stack: the current input's tier.
class DramOnlyStats final : public tiers::TierStats {
 public:
  void Serve(const tiers::DramTier* dram) { dram_ = dram; }
  tiers::TierUsage Usage() const override { return dram_->Usage(); }
  std::vector<tiers::TierUsageEntry> UsageByTier() const override { return {{tiers::TierKind::kDram, dram_->Usage()}}; }
  tiers::TierCounters Counters() const override { return dram_->Counters(); }
  tiers::TierCounters HbmCounters() const override { return {}; }
  tiers::TierManagerCounters ManagerCounters() const override { return {}; }
  bool has_hbm() const override { return false; }
  const std::string& hbm_policy_name() const override { return none_; }
  std::vector<tiers::BlockMeta> Hottest(size_t n) const override { return dram_->Hottest(n); }

 private:
  const tiers::DramTier* dram_ = nullptr;
  const std::string none_;
};

// The metrics registry and its families, made once: registering them is most of a fresh stack's cost.
struct SharedMetrics {
  metrics::Registry registry;
  DramOnlyStats stats;
  server::ServerMetrics metrics{registry, stats, "fuzz"};
};
SharedMetrics& Shared() {
  static SharedMetrics* shared = new SharedMetrics();
  return *shared;
}

// What a refused request must leave alone.
struct Snapshot {
  uint64_t blocks, used, reserved, reservations, leased, pinned;
  std::vector<std::pair<BlockKey, uint64_t>> list;  // key, generation
  bool operator==(const Snapshot&) const = default;
};

struct Stack {
  ManualClock clock;
  std::unique_ptr<tiers::DramTier> dram;
  std::unique_ptr<server::StoreService> service;
  std::vector<std::string> handles;  // two open reservations of this (peer-less) session

  Stack() {
    tiers::DramTierOptions o;
    o.capacity_bytes = 1ULL << 20;
    o.max_block_bytes = kMaxBlock;
    o.huge_pages = tiers::HugePages::kOff;
    o.clock = &clock;
    o.index_shards = 2;
    auto created = tiers::DramTier::Create(o);
    if (!created.ok()) std::abort();
    dram = std::move(*created);
    Shared().stats.Serve(dram.get());
    server::StoreServiceOptions so;
    so.max_block_bytes = kMaxBlock;
    so.clock = &clock;
    service = std::make_unique<server::StoreService>(so, *dram, Shared().stats, Shared().metrics);
    Seed();
  }

  void Seed() {
    v1::PutRequest put;
    for (uint8_t i : {1, 2}) {
      v1::PutItem* item = put.add_items();
      item->set_key(KeyBytes(i));
      item->set_data(std::string(1000 * i, static_cast<char>(i)));
      if (i == 2) item->set_parent(KeyBytes(1));
    }
    grpc::ServerContext c1;
    v1::PutResponse put_resp;
    if (!service->Put(&c1, &put, &put_resp).ok()) std::abort();
    v1::PutBeginRequest begin;
    for (uint8_t i : {3, 4}) {
      v1::PutBeginItem* item = begin.add_items();
      item->set_key(KeyBytes(i));
      item->set_size(512);
    }
    grpc::ServerContext c2;
    v1::PutBeginResponse begun;
    if (!service->PutBegin(&c2, &begin, &begun).ok() || begun.results_size() != 2) std::abort();
    for (const auto& r : begun.results()) handles.push_back(r.reservation());
  }

  Snapshot Take() const {
    const tiers::TierUsage u = dram->Usage();
    Snapshot s{u.blocks, u.used_bytes, u.reserved_bytes, u.reservations, u.leased_blocks, u.pinned_blocks, {}};
    for (const tiers::BlockMeta& m : dram->List(std::nullopt, 1000).blocks) s.list.emplace_back(m.key, m.generation);
    return s;
  }

  void UseHandles(std::string& handle) const {
    if (handle == "#0") handle = handles[0];
    if (handle == "#1") handle = handles[1];
  }
};

void CheckRefusal(const grpc::Status& status, const Stack& stack, const Snapshot& before) {
  if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT && !(stack.Take() == before)) std::abort();
}

template <typename Request, typename Response, typename Handler>
bool Call(Stack& stack, const uint8_t* data, size_t size, Handler handler, Request& req, Response& resp,
          grpc::Status& status) {
  if (!req.ParseFromArray(data, static_cast<int>(size))) return false;
  const Snapshot before = stack.Take();
  grpc::ServerContext context;
  status = (stack.service.get()->*handler)(&context, &req, &resp);
  CheckRefusal(status, stack, before);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  Stack stack;
  server::StoreService* s = stack.service.get();
  (void)s;
  const uint8_t* body = data + 1;
  const size_t n = size - 1;
  grpc::Status st;
  switch (data[0] % 10) {
    case 0: {
      v1::LookupRequest req;
      v1::LookupResponse resp;
      if (Call(stack, body, n, &server::StoreService::Lookup, req, resp, st) && st.ok() &&
          (resp.hit_blocks() > uint32_t(req.keys_size()) || resp.blocks_size() != int(resp.hit_blocks()))) {
        std::abort();
      }
      break;
    }
    case 1: {
      v1::PutBeginRequest req;
      v1::PutBeginResponse resp;
      if (Call(stack, body, n, &server::StoreService::PutBegin, req, resp, st) && st.ok() &&
          resp.results_size() != req.items_size()) {
        std::abort();
      }
      break;
    }
    case 2: {
      v1::PutCommitRequest req;
      if (!req.ParseFromArray(body, static_cast<int>(n))) break;
      for (auto& item : *req.mutable_items()) stack.UseHandles(*item.mutable_reservation());
      const Snapshot before = stack.Take();
      grpc::ServerContext context;
      v1::PutCommitResponse resp;
      CheckRefusal(s->PutCommit(&context, &req, &resp), stack, before);
      break;
    }
    case 3: {
      v1::PutAbortRequest req;
      if (!req.ParseFromArray(body, static_cast<int>(n))) break;
      for (auto& handle : *req.mutable_reservations()) stack.UseHandles(handle);
      const Snapshot before = stack.Take();
      grpc::ServerContext context;
      v1::PutAbortResponse resp;
      st = s->PutAbort(&context, &req, &resp);
      CheckRefusal(st, stack, before);
      if (st.ok() && resp.aborted() > 2) std::abort();
      break;
    }
    case 4: {
      v1::PutRequest req;
      v1::PutResponse resp;
      if (Call(stack, body, n, &server::StoreService::Put, req, resp, st) && st.ok() &&
          resp.outcomes_size() != req.items_size()) {
        std::abort();
      }
      break;
    }
    case 5: {
      v1::GetRequest req;
      v1::GetResponse resp;
      if (Call(stack, body, n, &server::StoreService::Get, req, resp, st) && st.ok()) {
        if (resp.results_size() != req.keys_size()) std::abort();
        for (const v1::GetResult& r : resp.results()) {
          if (r.outcome() == v1::GetResult::FOUND &&
              BlockChecksum(r.data().data(), r.data().size()) != r.info().checksum()) {
            std::abort();  // never bytes that do not match what the tier committed
          }
        }
      }
      break;
    }
    case 6: {
      v1::ReleaseLeasesRequest req;
      v1::ReleaseLeasesResponse resp;
      if (Call(stack, body, n, &server::StoreService::ReleaseLeases, req, resp, st) && st.ok() &&
          resp.released() > uint32_t(req.leases_size())) {
        std::abort();
      }
      break;
    }
    case 7: {
      v1::RemoveRequest req;
      v1::RemoveResponse resp;
      if (Call(stack, body, n, &server::StoreService::Remove, req, resp, st) && st.ok() &&
          resp.outcomes_size() != req.keys_size()) {
        std::abort();
      }
      break;
    }
    case 8: {
      v1::StatRequest req;
      v1::StatResponse resp;
      if (Call(stack, body, n, &server::StoreService::Stat, req, resp, st) && st.ok() &&
          resp.entries_size() != req.keys_size()) {
        std::abort();
      }
      break;
    }
    default: {
      v1::ListRequest req;
      v1::ListResponse resp;
      if (Call(stack, body, n, &server::StoreService::List, req, resp, st) && st.ok() &&
          uint32_t(resp.blocks_size()) > (req.limit() == 0 ? 1000u : req.limit())) {
        std::abort();
      }
      break;
    }
  }
  return 0;
}
