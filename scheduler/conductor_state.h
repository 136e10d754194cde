// ConductorState: the live conductor's picture of the cluster, built from registrations,
// heartbeats, KV events and its own routing decisions; a ClusterView for Router.
//
//  * Prefill instance: its heartbeat reports the seconds of work queued at a time; the conductor
//    adds the predicted prefill time of every request it routes there afterwards.
//  * Decode instance: its heartbeat reports the step time and, per running or waiting sequence, its
//    context and remaining tokens; requests the conductor routed there count as incoming until a
//    heartbeat later than their predicted prefill end.
//  * KV events (blocks stored/evicted on a prefill instance) keep a PrefixIndex fresh.
//
// Instances are named by a string id; indices are assigned in registration order per role.
//
// Thread-safety: none; the service serialises every call with one mutex.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "kvstash/result.h"
#include "scheduler/cluster_view.h"
#include "scheduler/prefix_index.h"
#include "scheduler/router.h"

namespace kvstash::scheduler {

enum class Role { kPrefill, kDecode };

struct SequenceLoad {
  uint64_t context_tokens = 0;
  uint64_t remaining_tokens = 0;
};

class ConductorState final : public ClusterView {
 public:
  static constexpr uint32_t kMaxDecode = 4096;

  // Registers (or re-registers, keeping the index) an instance. INVALID_ARGUMENT for an empty or
  // over-long id; ALREADY_EXISTS when the id is registered with the other role;
  // RESOURCE_EXHAUSTED past PrefixIndex::kMaxInstances prefill or kMaxDecode decode instances.
  // Re-registering a prefill instance forgets its indexed blocks (it restarted empty).
  Result<uint32_t> Register(const std::string& id, Role role, const std::string& address = "",
                            const std::string& namespace_id = "");

  // NOT_FOUND for an unknown id; FAILED_PRECONDITION for the wrong role; INVALID_ARGUMENT for a
  // negative or non-finite time.
  Status PrefillHeartbeat(const std::string& id, double now_s, double queue_s);
  Status DecodeHeartbeat(const std::string& id, double now_s, double step_s,
                         std::vector<SequenceLoad> seqs);
  Status KvEvent(const std::string& id, std::span<const BlockId> stored,
                 std::span<const BlockId> evicted);

  // The instance was heard from at now_s (registration, heartbeat, KV events): LiveView counts it
  // live until now_s + its timeout. NOT_FOUND for an unknown id.
  Status Touch(const std::string& id, double now_s);
  double PrefillLastSeen(size_t i) const { return prefill_[i].last_seen_s; }
  double DecodeLastSeen(size_t j) const { return decode_[j].last_seen_s; }

  // Records an admitted decision made at now_s so later decisions see its load.
  void Commit(const RouteRequest& req, const RouteDecision& d);

  // NOT_FOUND for an unknown id.
  Result<Role> RoleOf(const std::string& id) const;
  // The address and namespace it registered with (empty when it gave none). NOT_FOUND when unknown.
  Result<std::pair<std::string, std::string>> Endpoint(const std::string& id) const;
  // A namespace some instance registered with (empty when none did).
  std::string AnyNamespace() const;
  const std::string& PrefillId(uint32_t i) const { return prefill_[i].id; }
  const std::string& DecodeId(uint32_t j) const { return decode_[j].id; }
  uint64_t indexed_blocks() const { return index_.blocks(); }

  // ClusterView.
  size_t prefill_count() const override { return prefill_.size(); }
  size_t decode_count() const override { return decode_.size(); }
  double PrefillQueueSeconds(size_t i, double now_s) const override;
  void PrefixMatches(std::span<const BlockId> chain, std::vector<uint32_t>& out) const override;
  DecodeLoad DecodeLoadNow(size_t j) const override;
  DecodeLoad DecodeLoadAt(size_t j, double at_s) const override;

 private:
  struct Where {
    std::string address, namespace_id;
  };
  struct Prefill {
    std::string id;
    double last_seen_s = 0;
    double busy_until = 0;
  };
  struct Incoming {
    double ready_s;
    uint64_t context;
  };
  struct Decode {
    std::string id;
    double last_seen_s = 0;
    double as_of = 0, step_s = 0;
    std::vector<SequenceLoad> seqs;
    std::vector<Incoming> incoming;
  };
  Result<std::pair<Role, uint32_t>> Find(const std::string& id) const;

  std::unordered_map<std::string, std::pair<Role, uint32_t>> ids_;
  std::unordered_map<std::string, Where> endpoints_;
  std::vector<Prefill> prefill_;
  std::vector<Decode> decode_;
  PrefixIndex index_;
};

}  // namespace kvstash::scheduler
