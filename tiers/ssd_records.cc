// The SSD index's record codec and recovery bounds (contract in tiers/ssd_records.h).
#include "tiers/ssd_records.h"

namespace kvstash::tiers {
namespace {

constexpr uint32_t kHasParent = 1u << 31;   // in the encoded flags word; not a caller flag
constexpr uint32_t kHasCreated = 1u << 30;  // a u64 creation time follows (after the parent)
constexpr uint32_t kHasOwner = 1u << 29;    // a u32 owner follows (after the creation time)
constexpr uint32_t kEncodingFlags = kHasParent | kHasCreated | kHasOwner;
// flags(u32) segment(u32) offset size checksum seq (u64 each)
constexpr size_t kEntryFixed = 4 + 4 + 8 * 4;

void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

}  // namespace

// Records written before creation times were kept have no kHasCreated and decode with 0.
std::string EncodeSsdEntry(const SsdEntry& e) {
  std::string out;
  out.reserve(kEntryFixed + BlockKey::kSize + 8);
  PutU32(out, (e.flags & ~kEncodingFlags) | (e.parent ? kHasParent : 0) | (e.created_unix_ms ? kHasCreated : 0) |
                  (e.owner != kNoOwner ? kHasOwner : 0));
  PutU32(out, e.segment);
  PutU64(out, e.offset);
  PutU64(out, e.size);
  PutU64(out, e.checksum);
  PutU64(out, e.seq);
  if (e.parent) out.append(e.parent->AsBytes());
  if (e.created_unix_ms) PutU64(out, e.created_unix_ms);
  if (e.owner != kNoOwner) PutU32(out, e.owner);
  return out;
}

std::optional<SsdEntry> DecodeSsdEntry(std::string_view v) {
  if (v.size() < kEntryFixed) return std::nullopt;
  const char* p = v.data();
  SsdEntry e;
  const uint32_t flags = GetU32(p);
  e.flags = flags & ~kEncodingFlags;
  e.segment = GetU32(p + 4);
  e.offset = GetU64(p + 8);
  e.size = GetU64(p + 16);
  e.checksum = GetU64(p + 24);
  e.seq = GetU64(p + 32);
  const size_t expected = kEntryFixed + ((flags & kHasParent) ? BlockKey::kSize : 0) +
                          ((flags & kHasCreated) ? 8 : 0) + ((flags & kHasOwner) ? 4 : 0);
  if (v.size() != expected) return std::nullopt;
  size_t at = kEntryFixed;
  if (flags & kHasParent) {
    auto parent = BlockKey::FromBytes(std::string_view(p + at, BlockKey::kSize));
    if (!parent.ok()) return std::nullopt;
    e.parent = *parent;
    at += BlockKey::kSize;
  }
  if (flags & kHasCreated) {
    e.created_unix_ms = GetU64(p + at);
    at += 8;
  }
  if (flags & kHasOwner) {
    e.owner = GetU32(p + at);
    if (e.owner == kNoOwner) return std::nullopt;  // the encoder never writes it
  }
  return e;
}

std::optional<SsdLayout> DecodeSsdLayout(std::string_view value) {
  if (value.size() != 16) return std::nullopt;
  return SsdLayout{GetU64(value.data()), GetU64(value.data() + 8)};
}

std::optional<std::pair<uint32_t, uint64_t>> DecodeSegmentSeq(std::string_view key, std::string_view value) {
  if (key.size() != 5 || key[0] != 's' || value.size() != 8) return std::nullopt;
  uint32_t id = 0;
  for (size_t i = 1; i <= 4; ++i) id = (id << 8) | static_cast<uint8_t>(key[i]);
  return std::make_pair(id, GetU64(value.data()));
}

std::string OwnerLabelKey(OwnerId owner) {
  std::string k(1, 'o');
  for (int i = 3; i >= 0; --i) k.push_back(static_cast<char>(owner >> (8 * i)));
  return k;
}

std::optional<std::pair<OwnerId, std::string_view>> DecodeOwnerLabel(std::string_view key, std::string_view value) {
  if (key.size() != 5 || key[0] != 'o' || value.empty() || value.size() > kMaxOwnerLabelBytes) return std::nullopt;
  OwnerId id = 0;
  for (size_t i = 1; i <= 4; ++i) id = (id << 8) | static_cast<uint8_t>(key[i]);
  if (id == kNoOwner) return std::nullopt;
  return std::make_pair(id, value);
}

bool SsdEntryFits(const SsdEntry& e, const SsdGeometry& g) {
  if (e.segment >= g.segment_count || e.size == 0 || e.size > g.max_block_bytes) return false;
  if (g.alignment == 0 || e.offset % g.alignment != 0 || e.offset > g.segment_bytes) return false;
  // size <= max_block_bytes <= 2 GiB: rounding it up cannot overflow. Compared as room left, so
  // that an offset near 2^64 cannot wrap offset + padded around to a small number.
  const uint64_t padded = (e.size + g.alignment - 1) / g.alignment * g.alignment;
  return padded <= g.segment_bytes - e.offset;
}

}  // namespace kvstash::tiers
