#include "kvstash/block_key.h"

namespace kvstash {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

uint64_t LoadBigEndian64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

Result<BlockKey> BlockKey::FromBytes(std::string_view bytes) {
  if (bytes.size() != kSize) {
    return InvalidArgument("block key must be 16 bytes, got " + std::to_string(bytes.size()));
  }
  std::array<uint8_t, kSize> raw;
  for (size_t i = 0; i < kSize; ++i) raw[i] = static_cast<uint8_t>(bytes[i]);
  return BlockKey(raw);
}

Result<BlockKey> BlockKey::FromHex(std::string_view hex) {
  if (hex.size() != kHexSize) {
    return InvalidArgument("block key must be 32 hex digits, got " + std::to_string(hex.size()) +
                           " characters");
  }
  std::array<uint8_t, kSize> raw;
  for (size_t i = 0; i < kSize; ++i) {
    const int hi = HexValue(hex[2 * i]);
    const int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return InvalidArgument("block key has a non-hex character: " + std::string(hex));
    raw[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return BlockKey(raw);
}

BlockKey BlockKey::FromParts(uint64_t high, uint64_t low) {
  std::array<uint8_t, kSize> raw;
  for (int i = 0; i < 8; ++i) {
    raw[i] = static_cast<uint8_t>(high >> (56 - 8 * i));
    raw[8 + i] = static_cast<uint8_t>(low >> (56 - 8 * i));
  }
  return BlockKey(raw);
}

std::string BlockKey::ToHex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(kHexSize, '0');
  for (size_t i = 0; i < kSize; ++i) {
    out[2 * i] = kDigits[bytes_[i] >> 4];
    out[2 * i + 1] = kDigits[bytes_[i] & 0xF];
  }
  return out;
}

uint64_t BlockKey::High() const { return LoadBigEndian64(bytes_.data()); }
uint64_t BlockKey::Low() const { return LoadBigEndian64(bytes_.data() + 8); }
bool BlockKey::IsZero() const { return High() == 0 && Low() == 0; }

}  // namespace kvstash
