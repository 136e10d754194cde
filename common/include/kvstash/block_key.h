// BlockKey: the 128-bit prefix hash that names one KVCache block (docs/ARCHITECTURE.md §1).
// Stored and sent as 16 bytes, big-endian (XXH128 canonical form); printed as 32 lowercase hex digits.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "kvstash/result.h"

namespace kvstash {

class BlockKey {
 public:
  static constexpr size_t kSize = 16;
  static constexpr size_t kHexSize = 32;

  constexpr BlockKey() = default;  // all zero
  explicit BlockKey(const std::array<uint8_t, kSize>& bytes) : bytes_(bytes) {}

  // Builds a key from exactly 16 bytes; INVALID_ARGUMENT otherwise.
  static Result<BlockKey> FromBytes(std::string_view bytes);
  // Parses exactly 32 hex digits (either case); INVALID_ARGUMENT otherwise.
  static Result<BlockKey> FromHex(std::string_view hex);
  // Test/demo helper: the key whose high and low 64-bit halves are given.
  static BlockKey FromParts(uint64_t high, uint64_t low);

  std::string ToHex() const;
  std::string_view AsBytes() const {
    return {reinterpret_cast<const char*>(bytes_.data()), bytes_.size()};
  }
  const std::array<uint8_t, kSize>& bytes() const { return bytes_; }
  uint64_t High() const;
  uint64_t Low() const;
  bool IsZero() const;

  auto operator<=>(const BlockKey&) const = default;
  bool operator==(const BlockKey&) const = default;

 private:
  std::array<uint8_t, kSize> bytes_{};
};

struct BlockKeyHash {
  // Keys are already uniform hashes; folding the halves is enough.
  size_t operator()(const BlockKey& key) const noexcept { return key.High() ^ (key.Low() * 0x9E3779B97F4A7C15ULL); }
};

}  // namespace kvstash

template <>
struct std::hash<kvstash::BlockKey> {
  size_t operator()(const kvstash::BlockKey& key) const noexcept { return kvstash::BlockKeyHash{}(key); }
};
