// Validation of remote input at the edge, once (docs/ARCHITECTURE.md §5). Every function answers
// INVALID_ARGUMENT naming the field and index, before anything is changed.
#pragma once

#include <google/protobuf/repeated_field.h>

#include <optional>
#include <string>
#include <vector>

#include "kvstash/block_key.h"
#include "kvstash/result.h"
#include "kvstash/reuse_advice.h"
#include "kvstash/v1/store.pb.h"

namespace kvstash::server {

// 1..kMaxBatchKeys keys of exactly 16 bytes, none repeated.
Result<std::vector<BlockKey>> ParseKeyBatch(const google::protobuf::RepeatedPtrField<std::string>& keys,
                                            std::string_view field);
// Exactly 16 bytes.
Result<BlockKey> ParseKey(const std::string& bytes, std::string_view field);
// Empty (no parent) or exactly 16 bytes.
Result<std::optional<BlockKey>> ParseOptionalKey(const std::string& bytes, std::string_view field);
// 1..kMaxBatchKeys items (or ids).
Status CheckBatchCount(size_t count, std::string_view field);
// 1 .. max_block bytes.
Status CheckBlockSize(uint64_t size, uint64_t max_block, std::string_view field);

// UNSPECIFIED -> nullopt (no advice); LIKELY/UNLIKELY; any other number is INVALID_ARGUMENT.
Result<std::optional<ReuseAdvice>> ParseAdvice(v1::ReuseAdvice advice, std::string_view field);

// "field[index]".
std::string FieldAt(std::string_view field, size_t index);

}  // namespace kvstash::server
