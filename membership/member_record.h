// MemberRecord: what one kvstashd publishes about itself at /kvstash/<cluster>/members/<id>
// (docs/ARCHITECTURE.md §4, Member join), and its JSON form. The value is owned by the daemon's etcd lease:
// it disappears when the daemon stops or its lease runs out.
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvstash/result.h"

namespace kvstash::membership {

enum class MemberState { kServing, kDraining };

struct MemberRecord {
  std::string id;
  std::string grpc_address;        // host:port of the Store service
  std::string metrics_address;     // host:port of /metrics
  std::string ucx_worker_address;  // packed UCX worker address (binary); empty without UCX
  double weight = 1.0;             // share of the key space, relative to the other members
  uint64_t dram_capacity_bytes = 0;
  uint64_t ssd_capacity_bytes = 0;
  uint64_t hbm_capacity_bytes = 0;
  MemberState state = MemberState::kServing;  // draining members own no keys but still answer
  uint64_t draining_since_unix_ms = 0;  // when the drain began (wall clock); 0 when serving or unknown
  uint64_t started_unix_ms = 0;
  std::string version;
};

std::string ToJson(const MemberRecord& record);
// INVALID_ARGUMENT when the text is not a member record (missing id or address, bad weight).
Result<MemberRecord> MemberRecordFromJson(std::string_view text);

std::string_view ToString(MemberState state);

// "/kvstash/<cluster>/members/" and that plus the id.
std::string MembersPrefix(const std::string& cluster);
std::string MemberKey(const std::string& cluster, const std::string& id);

// A member's drain mark, "/kvstash/<cluster>/drain/<id>": kept without a lease, so that a drain
// outlives the member's lease and restarts until `kvstash drain --undo` deletes it. Its value is
// DrainMarkJson; the member's registrar copies it into the member record.
std::string DrainKey(const std::string& cluster, const std::string& id);
std::string DrainMarkJson(uint64_t since_unix_ms);
// The drain's start time (wall clock, ms); INVALID_ARGUMENT when the text is not a drain mark.
Result<uint64_t> DrainMarkFromJson(std::string_view text);

// Cluster names and member ids: 1..128 of [A-Za-z0-9._:-] (they become etcd key segments).
Status ValidateName(std::string_view what, std::string_view name);

}  // namespace kvstash::membership
