#include "server/request_validation.h"

#include <unordered_set>

#include "kvstash/limits.h"

namespace kvstash::server {

std::string FieldAt(std::string_view field, size_t index) {
  return std::string(field) + "[" + std::to_string(index) + "]";
}

Status CheckBatchCount(size_t count, std::string_view field) {
  if (count == 0) return InvalidArgument(std::string(field) + " is empty");
  if (count > limits::kMaxBatchKeys) {
    return InvalidArgument(std::string(field) + " has " + std::to_string(count) + " entries; the limit is " +
                           std::to_string(limits::kMaxBatchKeys));
  }
  return Status::Ok();
}

Status CheckBlockSize(uint64_t size, uint64_t max_block, std::string_view field) {
  if (size == 0) return InvalidArgument(std::string(field) + " is zero bytes");
  if (size > max_block) {
    return InvalidArgument(std::string(field) + " is " + std::to_string(size) + " bytes; the limit is " +
                           std::to_string(max_block));
  }
  return Status::Ok();
}

Result<BlockKey> ParseKey(const std::string& bytes, std::string_view field) {
  auto key = BlockKey::FromBytes(bytes);
  if (!key.ok()) return InvalidArgument(std::string(field) + ": " + key.status().message());
  return key;
}

Result<std::optional<BlockKey>> ParseOptionalKey(const std::string& bytes, std::string_view field) {
  if (bytes.empty()) return std::optional<BlockKey>();
  KVSTASH_ASSIGN_OR_RETURN(BlockKey key, ParseKey(bytes, field));
  return std::optional<BlockKey>(key);
}

Result<std::vector<BlockKey>> ParseKeyBatch(const google::protobuf::RepeatedPtrField<std::string>& keys,
                                            std::string_view field) {
  KVSTASH_RETURN_IF_ERROR(CheckBatchCount(static_cast<size_t>(keys.size()), field));
  std::vector<BlockKey> out;
  out.reserve(static_cast<size_t>(keys.size()));
  std::unordered_set<BlockKey, BlockKeyHash> seen;
  seen.reserve(static_cast<size_t>(keys.size()));
  for (int i = 0; i < keys.size(); ++i) {
    KVSTASH_ASSIGN_OR_RETURN(BlockKey key, ParseKey(keys[i], FieldAt(field, static_cast<size_t>(i))));
    if (!seen.insert(key).second) {
      return InvalidArgument(FieldAt(field, static_cast<size_t>(i)) + " repeats key " + key.ToHex());
    }
    out.push_back(key);
  }
  return out;
}

Result<std::optional<ReuseAdvice>> ParseAdvice(v1::ReuseAdvice advice, std::string_view field) {
  switch (advice) {
    case v1::REUSE_ADVICE_UNSPECIFIED: return std::optional<ReuseAdvice>();
    case v1::REUSE_ADVICE_LIKELY: return std::optional<ReuseAdvice>(ReuseAdvice::kLikely);
    case v1::REUSE_ADVICE_UNLIKELY: return std::optional<ReuseAdvice>(ReuseAdvice::kUnlikely);
    default:
      return InvalidArgument(std::string(field) + ": unknown reuse advice " + std::to_string(static_cast<int>(advice)));
  }
}

}  // namespace kvstash::server
