// SsdIndex over RocksDB (contract in tiers/ssd_index.h). RocksDB reports errors through
// rocksdb::Status and never throws from these calls; ToStatus() converts at this edge.
#include "tiers/ssd_index.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <array>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "common/logging.h"
#include "tiers/ssd_records.h"

namespace kvstash::tiers {
namespace {

constexpr char kLayoutKey[] = "L";
constexpr char kBlockPrefix = 'b';
constexpr char kSegmentPrefix = 's';

Status ToStatus(const rocksdb::Status& s, const char* what) {
  if (s.ok()) return Status::Ok();
  return Internal(std::string("rocksdb ") + what + ": " + s.ToString());
}

void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
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

// RocksDB's info log, sent to the daemon's log instead of a LOG file in the index directory: a
// LOG file on a full file system fails its writes, and Debian's librocksdb (built with
// assertions) aborts the process on the next write to a file writer that saw an error — which
// RocksDB's own error handler does when it logs the ENOSPC. Warnings and errors only.
class DaemonLogger final : public rocksdb::Logger {
 public:
  DaemonLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override { Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap); }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < rocksdb::InfoLogLevel::WARN_LEVEL) return;
    char buf[1024];
    std::vsnprintf(buf, sizeof(buf), format, ap);
    // Said once when the directory is created; not an error.
    if (std::strstr(buf, "Error when reading") != nullptr && std::strstr(buf, "dir NotFound") != nullptr) return;
    if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL) {
      spdlog::error("rocksdb (ssd index): {}", buf);
    } else {
      spdlog::warn("rocksdb (ssd index): {}", buf);
    }
  }
};

uint64_t NowMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

// A write refused because RocksDB is (still) in an error state.
Status WriteRefused(bool no_space, const std::string& message) {
  if (no_space) return ResourceExhausted("ssd index cannot be written (no space left on device): " + message);
  return Unavailable("ssd index cannot be written: " + message);
}

}  // namespace

struct SsdIndex::Impl {
  std::string path;
  SsdIndexOptions options;
  mutable std::mutex mu;
  std::unique_ptr<rocksdb::DB> db;  // null after a reopen failed; the next Apply tries again
  rocksdb::WriteOptions write_options;
  SsdIndexHealth health;
  bool no_space = false;            // the latest refusal was ENOSPC
  uint64_t last_attempt_ms = 0;
  std::shared_ptr<rocksdb::Logger> logger = std::make_shared<DaemonLogger>();

  rocksdb::Options DbOptions() const {
    rocksdb::Options o;
    o.create_if_missing = true;
    o.keep_log_file_num = 2;
    o.max_log_file_size = 1 << 20;
    if (options.env != nullptr) o.env = options.env;
    o.info_log = logger;
    return o;
  }

  // REQUIRES: mu.
  rocksdb::Status OpenDbLocked() {
    db.reset();
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(DbOptions(), path, &raw);
    if (s.ok()) db.reset(raw);
    return s;
  }

  // Moves the database aside and opens an empty one. REQUIRES: mu.
  Status QuarantineLocked(const std::string& reason) {
    db.reset();
    const std::string aside = path + ".corrupt";
    std::error_code ec;
    std::filesystem::remove_all(aside, ec);
    std::filesystem::rename(path, aside, ec);
    if (ec) {
      return Internal("ssd index in " + path + " is corrupt (" + reason + ") and cannot be moved aside: " + ec.message());
    }
    spdlog::error("ssd index: {} is corrupt ({}); moved to {} and starting an EMPTY index: every block the SSD tier "
                  "held is lost (the cache refills)",
                  path, reason, aside);
    health.quarantined = true;
    health.quarantine_reason = reason;
    health.last_error = reason;
    return ToStatus(OpenDbLocked(), "open after quarantine");
  }

  // Makes writes possible again after a refused one: DB::Resume() clears RocksDB's background
  // error once its cause is gone; when it cannot, the database is closed and reopened (the WAL
  // replays every acknowledged write). REQUIRES: mu.
  void RecoverLocked() {
    last_attempt_ms = NowMs();
    rocksdb::Status s = db ? db->Resume() : rocksdb::Status::Incomplete("closed");
    const char* how = "resumed";
    if (!s.ok()) {
      how = "reopened";
      s = OpenDbLocked();
    }
    if (!s.ok()) {
      no_space = s.IsNoSpace() || no_space;
      health.last_error = s.ToString();
      return;
    }
    health.writable = true;
    ++health.recoveries;
    no_space = false;
    spdlog::info("ssd index: writes work again ({} after: {}); the SSD tier takes blocks again", how,
                 health.last_error);
  }
};

SsdIndex::SsdIndex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SsdIndex::~SsdIndex() = default;

Result<std::unique_ptr<SsdIndex>> SsdIndex::Open(const std::string& path, const SsdIndexOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->options = options;
  impl->write_options.sync = options.sync;
  std::lock_guard lock(impl->mu);
  rocksdb::Status s = impl->OpenDbLocked();
  if (s.IsCorruption()) {
    KVSTASH_RETURN_IF_ERROR(impl->QuarantineLocked(s.ToString()));
  } else {
    KVSTASH_RETURN_IF_ERROR(ToStatus(s, "open"));
  }
  return std::unique_ptr<SsdIndex>(new SsdIndex(std::move(impl)));
}

Result<std::optional<SsdLayout>> SsdIndex::ReadLayout() const {
  std::lock_guard lock(impl_->mu);
  if (!impl_->db) return Unavailable("ssd index is closed: " + impl_->health.last_error);
  std::string value;
  rocksdb::Status s = impl_->db->Get(rocksdb::ReadOptions(), kLayoutKey, &value);
  if (s.IsNotFound()) return std::optional<SsdLayout>();
  if (s.IsCorruption()) return DataLoss("rocksdb get layout: " + s.ToString());
  KVSTASH_RETURN_IF_ERROR(ToStatus(s, "get layout"));
  std::optional<SsdLayout> layout = DecodeSsdLayout(value);
  if (!layout) return DataLoss("ssd index layout record is " + std::to_string(value.size()) + " bytes");
  return layout;
}

Status SsdIndex::WriteLayout(const SsdLayout& layout) {
  std::string value;
  PutU64(value, layout.segment_bytes);
  PutU64(value, layout.segment_count);
  std::lock_guard lock(impl_->mu);
  if (!impl_->db) return Unavailable("ssd index is closed: " + impl_->health.last_error);
  rocksdb::WriteOptions wo = impl_->write_options;
  wo.sync = true;
  return ToStatus(impl_->db->Put(wo, kLayoutKey, value), "put layout");
}

Status SsdIndex::Load(const std::function<void(const BlockKey&, const SsdEntry&)>& block,
                      const std::function<void(uint32_t, uint64_t)>& segment,
                      const std::function<void(OwnerId, std::string_view)>& owner, uint64_t* undecodable) const {
  *undecodable = 0;
  std::lock_guard lock(impl_->mu);
  if (!impl_->db) return Unavailable("ssd index is closed: " + impl_->health.last_error);
  rocksdb::ReadOptions ro;
  ro.verify_checksums = true;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const rocksdb::Slice k = it->key();
    if (k.size() == 1 + BlockKey::kSize && k[0] == kBlockPrefix) {
      auto key = BlockKey::FromBytes(std::string_view(k.data() + 1, BlockKey::kSize));
      auto entry = DecodeSsdEntry(std::string_view(it->value().data(), it->value().size()));
      if (key.ok() && entry) {
        block(*key, *entry);
      } else {
        ++*undecodable;
      }
    } else if (auto seq = DecodeSegmentSeq(std::string_view(k.data(), k.size()),
                                           std::string_view(it->value().data(), it->value().size()))) {
      segment(seq->first, seq->second);
    } else if (auto label = DecodeOwnerLabel(std::string_view(k.data(), k.size()),
                                             std::string_view(it->value().data(), it->value().size()))) {
      owner(label->first, label->second);
    } else if (k != rocksdb::Slice(kLayoutKey)) {
      ++*undecodable;
    }
  }
  if (it->status().IsCorruption()) return DataLoss("rocksdb iterate: " + it->status().ToString());
  return ToStatus(it->status(), "iterate");
}

Status SsdIndex::Apply(const Mutation& m) {
  rocksdb::WriteBatch batch;
  for (const BlockKey& key : m.deletes) batch.Delete(BlockRecordKey(key));
  for (const auto& [key, entry] : m.puts) batch.Put(BlockRecordKey(key), EncodeSsdEntry(entry));
  for (const auto& [segment, seq] : m.segment_seqs) {
    std::string value;
    PutU64(value, seq);
    batch.Put(SegmentRecordKey(segment), value);
  }
  for (const auto& [owner, label] : m.owner_labels) batch.Put(OwnerLabelKey(owner), label);
  if (batch.Count() == 0) return Status::Ok();
  Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  if (!d.health.writable) {
    if (NowMs() - d.last_attempt_ms < d.options.recovery_interval_ms) {
      ++d.health.errors;
      return WriteRefused(d.no_space, d.health.last_error);
    }
    d.RecoverLocked();
    if (!d.health.writable) {
      ++d.health.errors;
      return WriteRefused(d.no_space, d.health.last_error);
    }
  }
  rocksdb::Status s = d.db->Write(d.write_options, &batch);
  if (s.ok()) return Status::Ok();
  ++d.health.errors;
  d.health.writable = false;
  d.health.last_error = s.ToString();
  d.no_space = s.IsNoSpace();
  d.last_attempt_ms = NowMs();
  spdlog::error("ssd index: RocksDB refused a write ({}); the SSD tier takes no new blocks and keeps serving what "
                "it holds until writes work again (retried at most every {} ms)",
                d.health.last_error, d.options.recovery_interval_ms);
  return WriteRefused(d.no_space, d.health.last_error);
}

Status SsdIndex::Quarantine(const std::string& reason) {
  std::lock_guard lock(impl_->mu);
  return impl_->QuarantineLocked(reason);
}

SsdIndexHealth SsdIndex::Health() const {
  std::lock_guard lock(impl_->mu);
  return impl_->health;
}

}  // namespace kvstash::tiers
