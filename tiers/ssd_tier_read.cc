// SsdTier::Read (internals in tiers/ssd_tier_impl.h): blocks are verified as each read completes;
// a read that raced a reclaim is looked up once more.
//
// One pass of a batch read, in steps: LocateReads finds each block under mu (counting the hit and
// noting its segment's epoch), RunReads gives the engine one I/O per block and verifies each as it
// completes, ReportRead turns each block's outcome into the caller's result and the counters.
#include <numeric>

#include "tiers/ssd_tier_impl.h"

namespace kvstash::tiers {

using namespace ssd_detail;  // NOLINT: this component's own internals

namespace ssd_detail {

// What became of one block's read. kPending: the engine failed before reporting it.
enum class ReadOutcome : uint8_t { kPending, kOk, kIoError, kRaced, kBadChecksum };

// One block of a read pass: where the index placed it, its segment's epoch at that moment, a
// bounce buffer when the caller's buffer cannot take the padded record, its I/O and its outcome.
struct ReadJob {
  size_t item = 0;
  MemEntry entry;
  uint64_t epoch = 0;
  AlignedBuffer bounce;
  IoOp op;
  ReadOutcome outcome = ReadOutcome::kPending;
};

}  // namespace ssd_detail

namespace {

// Points the job's I/O at the caller's buffer, or at a bounce buffer when that buffer is not
// aligned or cannot hold the padded record. A bounce buffer that cannot be allocated leaves the
// op without a buffer and with -ENOMEM: it fails without I/O.
void PrepareIo(ReadJob& job, const SsdRead& item) {
  const uint64_t padded = SsdTier::PaddedSize(job.entry.e.size);
  std::byte* dst = item.buffer.data();
  if (!Aligned(dst) || item.buffer.size() < padded) {
    job.bounce = AlignedBuffer(padded);
    dst = job.bounce.data();
  }
  job.op = IoOp{job.entry.e.segment, false, dst, static_cast<uint32_t>(padded), job.entry.e.offset, 0};
  if (dst == nullptr) job.op.result = -ENOMEM;
}

// Decides a completed read's outcome: the whole record arrived, its segment was not reclaimed
// meanwhile (`epoch_now` is the segment's epoch after the I/O) and its bytes match the checksum.
// A good block read through a bounce buffer is copied into the caller's buffer. Takes no lock: it
// runs inside the engine's completion callback.
void VerifyRead(ReadJob& job, const SsdRead& item, uint64_t epoch_now) {
  if (job.op.result != static_cast<int64_t>(job.op.len)) {  // an error, or a transfer cut short
    if (job.op.result >= 0) job.op.result = -EIO;
    job.outcome = ReadOutcome::kIoError;
    return;
  }
  if (epoch_now != job.epoch) {
    job.outcome = ReadOutcome::kRaced;
    return;
  }
  if (BlockChecksum(job.op.buf, job.entry.e.size) != job.entry.e.checksum) {
    job.outcome = ReadOutcome::kBadChecksum;
    return;
  }
  if (job.bounce.data() != nullptr) std::memcpy(item.buffer.data(), job.bounce.data(), job.entry.e.size);
  job.outcome = ReadOutcome::kOk;
}

}  // namespace

std::vector<ReadJob> SsdTier::Impl::LocateReads(std::span<const SsdRead> items, const std::vector<size_t>& pending,
                                                std::vector<Result<SsdBlockInfo>>& out) {
  std::vector<ReadJob> jobs;
  MutexLock lock(mu);
  for (size_t i : pending) {
    auto it = blocks.find(items[i].key);
    if (it == blocks.end()) {
      out[i] = NotFound("block " + items[i].key.ToHex() + " is not on ssd");
      continue;
    }
    if (items[i].buffer.size() < it->second.e.size) {
      out[i] = OutOfRange("buffer of " + std::to_string(items[i].buffer.size()) + " bytes is smaller than block " +
                          items[i].key.ToHex() + " (" + std::to_string(it->second.e.size) + " bytes)");
      continue;
    }
    ++it->second.hits;
    ReadJob job;
    job.item = i;
    job.entry = it->second;
    job.epoch = segments[it->second.e.segment].epoch.load(std::memory_order_acquire);
    jobs.push_back(std::move(job));
  }
  return jobs;
}

Status SsdTier::Impl::RunReads(std::span<const SsdRead> items, std::vector<ReadJob>& jobs) {
  auto verify = [&](ReadJob& job) {
    VerifyRead(job, items[job.item], segments[job.entry.e.segment].epoch.load(std::memory_order_acquire));
  };
  std::vector<IoOp> runnable;
  std::vector<size_t> runnable_of;
  for (size_t j = 0; j < jobs.size(); ++j) {
    PrepareIo(jobs[j], items[jobs[j].item]);
    if (jobs[j].op.buf != nullptr) {
      runnable.push_back(jobs[j].op);
      runnable_of.push_back(j);
    }
  }
  for (ReadJob& job : jobs) {
    if (job.op.buf == nullptr) verify(job);  // no buffer: fails without I/O
  }
  // Each block is verified as soon as its read completes, while the engine keeps the rest of the
  // batch in flight. The callback takes no lock (the engine's ring is held): a checksum failure is
  // only recorded here and the block dropped after the batch (ReportRead).
  return engine->RunEach(runnable, [&](size_t r) {
    ReadJob& job = jobs[runnable_of[r]];
    job.op.result = runnable[r].result;
    verify(job);
  });
}

bool SsdTier::Impl::ReportRead(const SsdRead& item, ReadJob& job, const Status& engine_status,
                               Result<SsdBlockInfo>& out) {
  switch (job.outcome) {
    case ReadOutcome::kPending:  // the engine failed before reporting this op
      out = engine_status.ok() ? Internal("ssd read was never completed") : engine_status;
      read_errors.fetch_add(1, std::memory_order_relaxed);
      return false;
    case ReadOutcome::kIoError:
      out = IoError("segment read failed", job.op.result);
      read_errors.fetch_add(1, std::memory_order_relaxed);
      return false;
    case ReadOutcome::kRaced:
      reads_raced_reclaim.fetch_add(1, std::memory_order_relaxed);
      out = NotFound("block " + item.key.ToHex() + " moved during the read");
      return true;
    case ReadOutcome::kBadChecksum: {
      checksum_failures.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("ssd tier: block {} in segment {} at {} fails its checksum; dropped", item.key.ToHex(),
                   job.entry.e.segment, job.entry.e.offset);
      MutexLock write(write_mu);
      DropLocked(item.key, job.entry.e.seq);
      out = DataLoss("block " + item.key.ToHex() + " failed its checksum on ssd and was dropped");
      return false;
    }
    case ReadOutcome::kOk:
      reads.fetch_add(1, std::memory_order_relaxed);
      read_bytes.fetch_add(job.entry.e.size, std::memory_order_relaxed);
      job.entry.hits += 1;
      out = InfoOf(item.key, job.entry);
      return false;
  }
  return false;
}

std::vector<Result<SsdBlockInfo>> SsdTier::Read(std::span<const SsdRead> items) {
  Impl& d = *impl_;
  std::vector<Result<SsdBlockInfo>> out(items.size(), Result<SsdBlockInfo>(NotFound("not read")));
  std::vector<size_t> pending(items.size());
  std::iota(pending.begin(), pending.end(), size_t{0});
  // A read that raced a reclaim is looked up once more: the block may have been reinserted.
  for (int attempt = 0; attempt < 2 && !pending.empty(); ++attempt) {
    std::vector<ReadJob> jobs = d.LocateReads(items, pending, out);
    pending.clear();
    const Status engine_status = d.RunReads(items, jobs);
    for (ReadJob& job : jobs) {
      if (d.ReportRead(items[job.item], job, engine_status, out[job.item])) pending.push_back(job.item);
    }
  }
  return out;
}

Result<SsdBlockInfo> SsdTier::Read(const BlockKey& key, std::span<std::byte> buffer) {
  SsdRead item{key, buffer};
  return std::move(Read(std::span<const SsdRead>(&item, 1))[0]);
}

}  // namespace kvstash::tiers
