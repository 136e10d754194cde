// The SSD tier's RocksDB index records as recovery reads them back (tiers/ssd_records.h): a block
// record's value, the layout record, a segment sequence record and an owner label record, from bytes a crash, a torn write
// or a flipped bit may have left. Every decode either refuses or yields an entry that encodes back
// to a value decoding to the same entry; an entry the recovery bounds accept names bytes that lie
// inside its segment (checked here in 128-bit arithmetic, so a wrapped sum cannot pass).
//
// Input: byte 0 picks the geometry's segment size (a power of two from 8 KiB), byte 1 its
// segment count and block limit; the rest is the record value (and, split at its first 5 bytes,
// a segment record's key and value).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "tiers/ssd_records.h"

namespace {

using kvstash::tiers::SsdEntry;

bool Same(const SsdEntry& a, const SsdEntry& b) {
  return a.segment == b.segment && a.offset == b.offset && a.size == b.size && a.checksum == b.checksum &&
         a.seq == b.seq && a.parent == b.parent && a.flags == b.flags && a.created_unix_ms == b.created_unix_ms &&
         a.owner == b.owner;
}

void CheckEntry(std::string_view value, const kvstash::tiers::SsdGeometry& g) {
  const std::optional<SsdEntry> e = kvstash::tiers::DecodeSsdEntry(value);
  if (!e) return;
  if ((e->flags & 0xE0000000u) != 0) std::abort();  // encoding bits never reach the entry
  if (e->owner == kvstash::tiers::kNoOwner && value.size() >= 4 && (static_cast<uint8_t>(value[3]) & 0x20) != 0) {
    std::abort();  // an owner bit with owner 0 decodes to nothing
  }
  const std::optional<SsdEntry> again = kvstash::tiers::DecodeSsdEntry(kvstash::tiers::EncodeSsdEntry(*e));
  if (!again || !Same(*e, *again)) std::abort();
  if (!kvstash::tiers::SsdEntryFits(*e, g)) return;
  const unsigned __int128 padded = (static_cast<unsigned __int128>(e->size) + g.alignment - 1) / g.alignment * g.alignment;
  if (e->segment >= g.segment_count || e->size == 0 || e->size > g.max_block_bytes || e->offset % g.alignment != 0 ||
      static_cast<unsigned __int128>(e->offset) + padded > g.segment_bytes) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  kvstash::tiers::SsdGeometry g;
  g.segment_bytes = uint64_t{8192} << (data[0] % 24);
  g.segment_count = 2 + data[1] % 64;
  g.max_block_bytes = std::min<uint64_t>((data[1] & 0x80) != 0 ? g.segment_bytes : g.segment_bytes / 2, uint64_t{1} << 31);
  const std::string_view value(reinterpret_cast<const char*>(data + 2), size - 2);
  CheckEntry(value, g);
  if (auto layout = kvstash::tiers::DecodeSsdLayout(value); layout && value.size() != 16) std::abort();
  if (value.size() >= 5) {
    auto seq = kvstash::tiers::DecodeSegmentSeq(value.substr(0, 5), value.substr(5));
    if (seq && (value[0] != 's' || value.size() != 13)) std::abort();
    auto label = kvstash::tiers::DecodeOwnerLabel(value.substr(0, 5), value.substr(5));
    if (label && (value[0] != 'o' || label->first == kvstash::tiers::kNoOwner || label->second.empty() ||
                  label->second.size() > kvstash::tiers::kMaxOwnerLabelBytes)) {
      std::abort();
    }
  }
  return 0;
}
