// SsdIndex over RocksDB (contract in tiers/ssd_index.h). RocksDB reports errors through
// rocksdb::Status and never throws from these calls; ToStatus() converts at this edge.
#include "tiers/ssd_index.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <array>
#include <cstring>

namespace kvstash::tiers {
namespace {

constexpr char kLayoutKey[] = "L";
constexpr char kBlockPrefix = 'b';
constexpr char kSegmentPrefix = 's';
constexpr uint32_t kHasParent = 1u << 31;  // in the encoded flags word; not a caller flag

Status ToStatus(const rocksdb::Status& s, const char* what) {
  if (s.ok()) return Status::Ok();
  return Internal(std::string("rocksdb ") + what + ": " + s.ToString());
}

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

std::string BlockRecordKey(const BlockKey& key) {
  std::string k(1, kBlockPrefix);
  k.append(key.AsBytes());
  return k;
}
std::string SegmentRecordKey(uint32_t segment) {
  std::string k(1, kSegmentPrefix);
  for (int i = 3; i >= 0; --i) k.push_back(static_cast<char>(segment >> (8 * i)));
  return k;
}

// flags(u32) segment(u32) offset size checksum seq (u64 each) [parent 16 bytes]
constexpr size_t kEntryFixed = 4 + 4 + 8 * 4;

std::string EncodeEntry(const SsdEntry& e) {
  std::string out;
  out.reserve(kEntryFixed + BlockKey::kSize);
  PutU32(out, (e.flags & ~kHasParent) | (e.parent ? kHasParent : 0));
  PutU32(out, e.segment);
  PutU64(out, e.offset);
  PutU64(out, e.size);
  PutU64(out, e.checksum);
  PutU64(out, e.seq);
  if (e.parent) out.append(e.parent->AsBytes());
  return out;
}

std::optional<SsdEntry> DecodeEntry(const rocksdb::Slice& v) {
  if (v.size() < kEntryFixed) return std::nullopt;
  const char* p = v.data();
  SsdEntry e;
  const uint32_t flags = GetU32(p);
  e.flags = flags & ~kHasParent;
  e.segment = GetU32(p + 4);
  e.offset = GetU64(p + 8);
  e.size = GetU64(p + 16);
  e.checksum = GetU64(p + 24);
  e.seq = GetU64(p + 32);
  if (flags & kHasParent) {
    if (v.size() != kEntryFixed + BlockKey::kSize) return std::nullopt;
    auto parent = BlockKey::FromBytes(std::string_view(p + kEntryFixed, BlockKey::kSize));
    if (!parent.ok()) return std::nullopt;
    e.parent = *parent;
  } else if (v.size() != kEntryFixed) {
    return std::nullopt;
  }
  return e;
}

}  // namespace

struct SsdIndex::Impl {
  std::unique_ptr<rocksdb::DB> db;
  rocksdb::WriteOptions write_options;
};

SsdIndex::SsdIndex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SsdIndex::~SsdIndex() = default;

Result<std::unique_ptr<SsdIndex>> SsdIndex::Open(const std::string& path, bool sync) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.keep_log_file_num = 2;
  options.max_log_file_size = 1 << 20;
  rocksdb::DB* raw = nullptr;
  KVSTASH_RETURN_IF_ERROR(ToStatus(rocksdb::DB::Open(options, path, &raw), "open"));
  auto impl = std::make_unique<Impl>();
  impl->db.reset(raw);
  impl->write_options.sync = sync;
  return std::unique_ptr<SsdIndex>(new SsdIndex(std::move(impl)));
}

Result<std::optional<SsdLayout>> SsdIndex::ReadLayout() const {
  std::string value;
  rocksdb::Status s = impl_->db->Get(rocksdb::ReadOptions(), kLayoutKey, &value);
  if (s.IsNotFound()) return std::optional<SsdLayout>();
  KVSTASH_RETURN_IF_ERROR(ToStatus(s, "get layout"));
  if (value.size() != 16) return DataLoss("ssd index layout record is " + std::to_string(value.size()) + " bytes");
  return std::optional<SsdLayout>(SsdLayout{GetU64(value.data()), GetU64(value.data() + 8)});
}

Status SsdIndex::WriteLayout(const SsdLayout& layout) {
  std::string value;
  PutU64(value, layout.segment_bytes);
  PutU64(value, layout.segment_count);
  rocksdb::WriteOptions wo = impl_->write_options;
  wo.sync = true;
  return ToStatus(impl_->db->Put(wo, kLayoutKey, value), "put layout");
}

Status SsdIndex::Load(const std::function<void(const BlockKey&, const SsdEntry&)>& block,
                      const std::function<void(uint32_t, uint64_t)>& segment,
                      uint64_t* undecodable) const {
  *undecodable = 0;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(rocksdb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const rocksdb::Slice k = it->key();
    if (k.size() == 1 + BlockKey::kSize && k[0] == kBlockPrefix) {
      auto key = BlockKey::FromBytes(std::string_view(k.data() + 1, BlockKey::kSize));
      auto entry = DecodeEntry(it->value());
      if (key.ok() && entry) {
        block(*key, *entry);
      } else {
        ++*undecodable;
      }
    } else if (k.size() == 5 && k[0] == kSegmentPrefix && it->value().size() == 8) {
      uint32_t id = 0;
      for (int i = 1; i <= 4; ++i) id = (id << 8) | static_cast<uint8_t>(k[static_cast<size_t>(i)]);
      segment(id, GetU64(it->value().data()));
    } else if (k != rocksdb::Slice(kLayoutKey)) {
      ++*undecodable;
    }
  }
  return ToStatus(it->status(), "iterate");
}

Status SsdIndex::Apply(const Mutation& m) {
  rocksdb::WriteBatch batch;
  for (const BlockKey& key : m.deletes) batch.Delete(BlockRecordKey(key));
  for (const auto& [key, entry] : m.puts) batch.Put(BlockRecordKey(key), EncodeEntry(entry));
  for (const auto& [segment, seq] : m.segment_seqs) {
    std::string value;
    PutU64(value, seq);
    batch.Put(SegmentRecordKey(segment), value);
  }
  if (batch.Count() == 0) return Status::Ok();
  return ToStatus(impl_->db->Write(impl_->write_options, &batch), "write");
}

}  // namespace kvstash::tiers
