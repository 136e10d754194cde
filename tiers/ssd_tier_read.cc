// SsdTier::Read (internals in tiers/ssd_tier_impl.h): blocks are verified as each read completes;
// a read that raced a reclaim is looked up once more.
#include "tiers/ssd_tier_impl.h"

namespace kvstash::tiers {

using namespace ssd_detail;  // NOLINT: this component's own internals

std::vector<Result<SsdBlockInfo>> SsdTier::Read(std::span<const SsdRead> items) {
  Impl& d = *impl_;
  std::vector<Result<SsdBlockInfo>> out(items.size(), Result<SsdBlockInfo>(NotFound("not read")));
  struct Job {
    size_t item;
    MemEntry entry;
    uint64_t epoch;
    AlignedBuffer bounce;
  };
  std::vector<size_t> pending_items(items.size());
  for (size_t i = 0; i < items.size(); ++i) pending_items[i] = i;
  // A read that raced a reclaim is looked up once more: the block may have been reinserted.
  for (int attempt = 0; attempt < 2 && !pending_items.empty(); ++attempt) {
    std::vector<Job> jobs;
    {
      MutexLock lock(d.mu);
      for (size_t i : pending_items) {
        auto it = d.blocks.find(items[i].key);
        if (it == d.blocks.end()) {
          out[i] = NotFound("block " + items[i].key.ToHex() + " is not on ssd");
          continue;
        }
        if (items[i].buffer.size() < it->second.e.size) {
          out[i] = OutOfRange("buffer of " + std::to_string(items[i].buffer.size()) + " bytes is smaller than block " +
                              items[i].key.ToHex() + " (" + std::to_string(it->second.e.size) + " bytes)");
          continue;
        }
        ++it->second.hits;
        jobs.push_back({i, it->second, d.segments[it->second.e.segment].epoch.load(std::memory_order_acquire), {}});
      }
    }
    pending_items.clear();
    std::vector<IoOp> ops(jobs.size());
    for (size_t j = 0; j < jobs.size(); ++j) {
      Job& job = jobs[j];
      const uint64_t padded = PaddedSize(job.entry.e.size);
      std::byte* dst = items[job.item].buffer.data();
      if (!Aligned(dst) || items[job.item].buffer.size() < padded) {
        job.bounce = AlignedBuffer(padded);
        dst = job.bounce.data();
      }
      ops[j] = IoOp{job.entry.e.segment, false, dst, static_cast<uint32_t>(padded), job.entry.e.offset, 0};
      if (dst == nullptr) ops[j].result = -ENOMEM;
    }
    std::vector<IoOp> runnable;
    std::vector<size_t> runnable_of;
    for (size_t j = 0; j < ops.size(); ++j) {
      if (ops[j].buf != nullptr) {
        runnable.push_back(ops[j]);
        runnable_of.push_back(j);
      }
    }
    // Each block is verified as soon as its read completes, while the engine keeps the rest of
    // the batch in flight. The callback takes no lock (the engine's ring is held): a checksum
    // failure is only recorded here and the block dropped after the batch.
    enum class Outcome : uint8_t { kPending, kOk, kIoError, kRaced, kBadChecksum };
    std::vector<Outcome> outcome(jobs.size(), Outcome::kPending);
    auto verify = [&](size_t j) {
      Job& job = jobs[j];
      if (ops[j].result != static_cast<int64_t>(ops[j].len)) {  // an error, or a transfer cut short
        if (ops[j].result >= 0) ops[j].result = -EIO;
        outcome[j] = Outcome::kIoError;
        return;
      }
      if (d.segments[job.entry.e.segment].epoch.load(std::memory_order_acquire) != job.epoch) {
        outcome[j] = Outcome::kRaced;
        return;
      }
      if (BlockChecksum(ops[j].buf, job.entry.e.size) != job.entry.e.checksum) {
        outcome[j] = Outcome::kBadChecksum;
        return;
      }
      if (job.bounce.data() != nullptr) std::memcpy(items[job.item].buffer.data(), job.bounce.data(), job.entry.e.size);
      outcome[j] = Outcome::kOk;
    };
    for (size_t j = 0; j < ops.size(); ++j) {
      if (ops[j].buf == nullptr) verify(j);  // no buffer: fails without I/O
    }
    const Status engine_status = d.engine->RunEach(runnable, [&](size_t r) {
      ops[runnable_of[r]].result = runnable[r].result;
      verify(runnable_of[r]);
    });

    for (size_t j = 0; j < jobs.size(); ++j) {
      Job& job = jobs[j];
      const SsdRead& item = items[job.item];
      switch (outcome[j]) {
        case Outcome::kPending:  // the engine failed before reporting this op
          out[job.item] = engine_status.ok() ? Internal("ssd read was never completed") : engine_status;
          d.read_errors.fetch_add(1, std::memory_order_relaxed);
          break;
        case Outcome::kIoError:
          out[job.item] = Impl::IoError("segment read failed", ops[j].result);
          d.read_errors.fetch_add(1, std::memory_order_relaxed);
          break;
        case Outcome::kRaced:
          d.reads_raced_reclaim.fetch_add(1, std::memory_order_relaxed);
          out[job.item] = NotFound("block " + item.key.ToHex() + " moved during the read");
          pending_items.push_back(job.item);
          break;
        case Outcome::kBadChecksum: {
          d.checksum_failures.fetch_add(1, std::memory_order_relaxed);
          spdlog::warn("ssd tier: block {} in segment {} at {} fails its checksum; dropped", item.key.ToHex(),
                       job.entry.e.segment, job.entry.e.offset);
          MutexLock write(d.write_mu);
          d.DropLocked(item.key, job.entry.e.seq);
          out[job.item] = DataLoss("block " + item.key.ToHex() + " failed its checksum on ssd and was dropped");
          break;
        }
        case Outcome::kOk:
          d.reads.fetch_add(1, std::memory_order_relaxed);
          d.read_bytes.fetch_add(job.entry.e.size, std::memory_order_relaxed);
          job.entry.hits += 1;
          out[job.item] = Impl::InfoOf(item.key, job.entry);
          break;
      }
    }
  }
  return out;
}

Result<SsdBlockInfo> SsdTier::Read(const BlockKey& key, std::span<std::byte> buffer) {
  SsdRead item{key, buffer};
  return std::move(Read(std::span<const SsdRead>(&item, 1))[0]);
}

}  // namespace kvstash::tiers
