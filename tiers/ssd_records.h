// The SSD tier's on-disk records in its RocksDB index (layout in tiers/ssd_index.h): their byte
// encoding, and the bounds a record read back at recovery must satisfy before the tier trusts it.
// Pure functions of bytes, no I/O, so that a fuzzer (fuzz/ssd_record_fuzz.cc) can reach every one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "tiers/ssd_index.h"

namespace kvstash::tiers {

// An SsdEntry as its "b" + key record's value: flags(u32) segment(u32) offset size checksum seq
// (u64 each, little-endian) [parent: 16 bytes] [created_unix_ms: u64] [owner: u32]. The parent,
// the creation time and the owner are present when their bits are set in the flags word (bits 31,
// 30 and 29; never caller flags). Records written before owners were kept decode as kNoOwner.
std::string EncodeSsdEntry(const SsdEntry& entry);

// The entry a record value encodes, or nullopt when the value's length does not match what its
// flags announce or its parent is not a key. Any such value decodes: its fields are NOT yet checked
// against the tier (see SsdEntryFits). A decoded entry's flags never hold bits 30 or 31.
std::optional<SsdEntry> DecodeSsdEntry(std::string_view value);

// The layout record ("L"): segment_bytes, segment_count (u64 LE each). nullopt unless 16 bytes.
std::optional<SsdLayout> DecodeSsdLayout(std::string_view value);

// A segment sequence record: key "s" + u32 big-endian segment id, value u64 LE. nullopt when the
// key or the value has another shape.
std::optional<std::pair<uint32_t, uint64_t>> DecodeSegmentSeq(std::string_view key, std::string_view value);

// An owner label record: key "o" + u32 big-endian owner id (never kNoOwner), value 1..255 bytes.
// nullopt when the key or the value has another shape.
std::string OwnerLabelKey(OwnerId owner);
inline constexpr size_t kMaxOwnerLabelBytes = 255;
std::optional<std::pair<OwnerId, std::string_view>> DecodeOwnerLabel(std::string_view key, std::string_view value);

// The tier a recovered entry must fit (SsdTier::Open's validated options).
struct SsdGeometry {
  uint64_t segment_count = 0;
  uint64_t segment_bytes = 0;    // a multiple of alignment
  uint64_t max_block_bytes = 0;  // 1 .. min(segment_bytes, 2 GiB)
  uint64_t alignment = 4096;     // of every record's offset and padded size
};

// True when `entry` names bytes inside the tier: segment < segment_count, size in
// 1..max_block_bytes, offset aligned, and offset + size padded to the alignment within
// segment_bytes (computed without overflow: a huge offset never wraps around to fit).
bool SsdEntryFits(const SsdEntry& entry, const SsdGeometry& geometry);

}  // namespace kvstash::tiers
