// Limits every kvstash daemon enforces on remote input, and that the SDK respects when it splits
// batches. proto/kvstash/v1/store.proto documents the same numbers field by field.
#pragma once

#include <cstdint>

namespace kvstash::limits {

inline constexpr uint32_t kMaxBatchKeys = 4096;                 // keys in one request
inline constexpr uint64_t kMaxBlockBytes = 64ULL << 20;         // one block: 1 B .. 64 MiB
inline constexpr uint64_t kMaxInlineBytes = 64ULL << 20;        // block bytes carried by one request or response
inline constexpr uint64_t kMaxGrpcMessageBytes = kMaxInlineBytes + (4ULL << 20);  // plus framing and metadata
inline constexpr uint64_t kMaxLeaseMs = 60'000;                 // one lease
inline constexpr uint64_t kDefaultReservationTimeoutMs = 30'000;
inline constexpr uint64_t kMaxReservationTimeoutMs = 600'000;
inline constexpr uint32_t kMaxListLimit = 1000;                 // blocks in one List page
inline constexpr uint32_t kDefaultListLimit = 100;

}  // namespace kvstash::limits
