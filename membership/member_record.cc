#include "membership/member_record.h"

#include <nlohmann/json.hpp>

#include "membership/etcd_client.h"

namespace kvstash::membership {

using nlohmann::json;

std::string_view ToString(MemberState state) {
  return state == MemberState::kDraining ? "draining" : "serving";
}

std::string ToJson(const MemberRecord& r) {
  json j{{"id", r.id},
         {"grpc", r.grpc_address},
         {"metrics", r.metrics_address},
         {"ucx_worker", Base64Encode(r.ucx_worker_address)},
         {"weight", r.weight},
         {"capacity",
          {{"dram", r.dram_capacity_bytes},
           {"ssd", r.ssd_capacity_bytes},
           {"hbm", r.hbm_capacity_bytes}}},
         {"state", ToString(r.state)},
         {"draining_since_unix_ms", r.draining_since_unix_ms},
         {"started_unix_ms", r.started_unix_ms},
         {"version", r.version}};
  return j.dump();
}

Result<MemberRecord> MemberRecordFromJson(std::string_view text) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return InvalidArgument("member record is not a JSON object");
  MemberRecord r;
  auto str = [&](const char* field) {
    auto it = j.find(field);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  auto u64 = [](const json& obj, const char* field) -> uint64_t {
    auto it = obj.find(field);
    return it != obj.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
  };
  r.id = str("id");
  r.grpc_address = str("grpc");
  r.metrics_address = str("metrics");
  r.version = str("version");
  KVSTASH_ASSIGN_OR_RETURN(r.ucx_worker_address, Base64Decode(str("ucx_worker")));
  if (auto it = j.find("weight"); it != j.end() && it->is_number()) r.weight = it->get<double>();
  if (auto it = j.find("capacity"); it != j.end() && it->is_object()) {
    r.dram_capacity_bytes = u64(*it, "dram");
    r.ssd_capacity_bytes = u64(*it, "ssd");
    r.hbm_capacity_bytes = u64(*it, "hbm");
  }
  const std::string state = str("state");
  if (state == "draining")
    r.state = MemberState::kDraining;
  else if (state.empty() || state == "serving")
    r.state = MemberState::kServing;
  else
    return InvalidArgument("member record has an unknown state '" + state + "'");
  r.started_unix_ms = u64(j, "started_unix_ms");
  r.draining_since_unix_ms = r.state == MemberState::kDraining ? u64(j, "draining_since_unix_ms") : 0;
  KVSTASH_RETURN_IF_ERROR(ValidateName("member id", r.id));
  if (r.grpc_address.empty())
    return InvalidArgument("member record " + r.id + " has no gRPC address");
  if (!(r.weight > 0) || r.weight > 1e6)
    return InvalidArgument("member record " + r.id + " has a bad weight");
  return r;
}

std::string MembersPrefix(const std::string& cluster) {
  return "/kvstash/" + cluster + "/members/";
}
std::string MemberKey(const std::string& cluster, const std::string& id) {
  return MembersPrefix(cluster) + id;
}

std::string DrainKey(const std::string& cluster, const std::string& id) {
  return "/kvstash/" + cluster + "/drain/" + id;
}

std::string DrainMarkJson(uint64_t since_unix_ms) {
  return json{{"since_unix_ms", since_unix_ms}}.dump();
}

Result<uint64_t> DrainMarkFromJson(std::string_view text) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgument("drain mark is not a JSON object");
  auto it = j.find("since_unix_ms");
  if (it == j.end() || !it->is_number_unsigned()) return InvalidArgument("drain mark has no since_unix_ms");
  return it->get<uint64_t>();
}

Status ValidateName(std::string_view what, std::string_view name) {
  if (name.empty() || name.size() > 128)
    return InvalidArgument(std::string(what) + " must be 1..128 characters");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok)
      return InvalidArgument(std::string(what) + " '" + std::string(name) +
                             "' may hold only A-Z a-z 0-9 . _ : -");
  }
  return Status::Ok();
}

}  // namespace kvstash::membership
