#include "common/trace.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace kvstash {
namespace {

Result<uint64_t> ReadUint(const nlohmann::json& obj, const char* field, const std::string& where) {
  auto it = obj.find(field);
  if (it == obj.end()) return InvalidArgument(where + ": missing \"" + field + "\"");
  if (!it->is_number_integer() || it->get<int64_t>() < 0) {
    if (it->is_number_unsigned()) return it->get<uint64_t>();
    return InvalidArgument(where + ": \"" + field + "\" must be a non-negative integer");
  }
  return static_cast<uint64_t>(it->get<int64_t>());
}

Status ParseLine(const std::string& line, const std::string& where, const TraceLimits& limits, TraceRequest& out) {
  // nlohmann::json reports malformed input by exception when not told otherwise; parse without
  // exceptions and check for the discarded value instead.
  const nlohmann::json obj = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (obj.is_discarded() || !obj.is_object()) return InvalidArgument(where + ": not a JSON object");
  KVSTASH_ASSIGN_OR_RETURN(out.timestamp_ms, ReadUint(obj, "timestamp", where));
  KVSTASH_ASSIGN_OR_RETURN(out.input_length, ReadUint(obj, "input_length", where));
  KVSTASH_ASSIGN_OR_RETURN(out.output_length, ReadUint(obj, "output_length", where));
  auto ids = obj.find("hash_ids");
  if (ids == obj.end() || !ids->is_array()) return InvalidArgument(where + ": \"hash_ids\" must be an array");
  if (ids->size() > limits.max_hash_ids_per_request) return InvalidArgument(where + ": too many hash_ids");
  out.hash_ids.clear();
  out.hash_ids.reserve(ids->size());
  for (const auto& id : *ids) {
    if (id.is_number_unsigned()) {
      out.hash_ids.push_back(id.get<uint64_t>());
    } else if (id.is_number_integer() && id.get<int64_t>() >= 0) {
      out.hash_ids.push_back(static_cast<uint64_t>(id.get<int64_t>()));
    } else {
      return InvalidArgument(where + ": hash_ids must be non-negative integers");
    }
  }
  return Status::Ok();
}

Result<std::vector<TraceRequest>> ParseStream(std::istream& in, const std::string& origin, const TraceLimits& limits) {
  std::vector<TraceRequest> out;
  std::string line;
  uint64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (out.size() >= limits.max_requests) return InvalidArgument(origin + ": more than max_requests requests");
    TraceRequest req;
    const std::string where = origin + ":" + std::to_string(line_no);
    KVSTASH_RETURN_IF_ERROR(ParseLine(line, where, limits, req));
    if (!out.empty() && req.timestamp_ms < out.back().timestamp_ms) {
      return InvalidArgument(where + ": timestamp goes backwards");
    }
    out.push_back(std::move(req));
  }
  return out;
}

}  // namespace

Result<std::vector<TraceRequest>> LoadTrace(const std::string& path, const TraceLimits& limits) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot open trace " + path);
  return ParseStream(in, path, limits);
}

Result<std::vector<TraceRequest>> ParseTrace(const std::string& jsonl, const std::string& origin,
                                             const TraceLimits& limits) {
  std::istringstream in(jsonl);
  return ParseStream(in, origin, limits);
}

}  // namespace kvstash
