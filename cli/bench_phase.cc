#include "cli/bench_phase.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "cli/output.h"

namespace kvstash::cli {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kPoolOffsets = 8192;
constexpr uint64_t kPoolStride = 8;

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace

Workload::Workload(uint64_t block_size, uint64_t run_hi, uint64_t run_lo)
    : block_size_(block_size),
      run_hi_(run_hi),
      run_lo_(run_lo),
      pool_(block_size + kPoolOffsets * kPoolStride) {
  uint64_t state = run_hi ^ run_lo;
  for (size_t i = 0; i < pool_.size(); i += 8) {
    const uint64_t word = SplitMix64(state++) | 1;  // never an all-zero word
    std::memcpy(pool_.data() + i, &word, std::min<size_t>(8, pool_.size() - i));
  }
}

BlockKey Workload::Key(uint64_t index) const {
  return BlockKey::FromParts(SplitMix64(run_hi_ + index), run_lo_ + index);
}

std::span<const std::byte> Workload::Block(uint64_t index) const {
  return std::span<const std::byte>(pool_).subspan((index % kPoolOffsets) * kPoolStride,
                                                   block_size_);
}

PhaseResult RunPhase(Op op, Client& client, const BenchPlan& plan, const Workload& work,
                     const std::vector<uint64_t>& indices, std::vector<uint8_t>& present,
                     bool progress) {
  PhaseResult total;
  total.op = op == Op::kPut ? "put" : "get";
  std::atomic<uint64_t> next{0};
  std::atomic<uint64_t> done_blocks{0};
  std::atomic<uint64_t> done_bytes{0};
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::condition_variable cv;
  uint32_t running = plan.threads;
  LatencySamples rpc_all, block_all;

  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(plan.duration_s));
  auto worker = [&] {
    PhaseResult mine;
    LatencySamples rpc_lat, block_lat;
    std::vector<std::byte> buffer(op == Op::kGet ? plan.batch * work.block_size() : 0);
    std::vector<PutItem> puts;
    std::vector<GetItem> gets;
    while (!stop.load(std::memory_order_relaxed) && Clock::now() < deadline) {
      const uint64_t begin = next.fetch_add(plan.batch);
      if (begin >= indices.size()) break;
      const uint64_t end = std::min<uint64_t>(indices.size(), begin + plan.batch);
      const uint64_t n = end - begin;
      puts.clear();
      gets.clear();
      for (uint64_t j = begin; j < end; ++j) {
        const uint64_t index = indices[j];
        if (op == Op::kPut) {
          puts.push_back(PutItem{work.Key(index), std::nullopt, work.Block(index)});
        } else {
          const size_t size = work.Block(index).size();
          GetItem item;
          item.key = work.Key(index);
          item.buffer = std::span<std::byte>(buffer).subspan((j - begin) * size, size);
          gets.push_back(std::move(item));
        }
      }
      const auto t0 = Clock::now();
      Status status;
      std::optional<PutResult> put_result;
      if (op == Op::kPut) {
        auto r = client.Put(puts, PutOptions{.eager = plan.eager_puts});
        if (r.ok())
          put_result = std::move(*r);
        else
          status = r.status();
      } else {
        status = client.Get(gets);
      }
      const uint64_t ns = static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
      if (!status.ok()) {
        ++mine.errors;
        if (mine.first_error.ok()) mine.first_error = status;
        stop = true;
        break;
      }
      ++mine.rpcs;
      mine.ops += n;
      rpc_lat.Add(ns);
      block_lat.Add(ns / n);
      uint64_t bytes = 0;
      if (op == Op::kPut) {
        for (uint64_t k = 0; k < n; ++k) {
          const PutOutcome outcome = put_result->outcomes.at(k);
          if (outcome == PutOutcome::kStored || outcome == PutOutcome::kExists) {
            present[indices[begin + k]] = 1;
            bytes += puts[k].data.size();
          }
          mine.stored += outcome == PutOutcome::kStored;
          mine.existed += outcome == PutOutcome::kExists;
          mine.failed += outcome == PutOutcome::kBusy || outcome == PutOutcome::kNoSpace;
          mine.unreachable += outcome == PutOutcome::kUnreachable;
        }
        if (mine.unreachable_member.empty() && !put_result->unreachable.empty())
          mine.unreachable_member = put_result->unreachable.front();
      } else {
        for (uint64_t k = 0; k < n; ++k) {
          const GetItem& item = gets[k];
          const uint64_t index = indices[begin + k];
          if (!item.found) {
            if (item.status.code() == StatusCode::kNotFound || item.status.ok()) {
              ++mine.misses;
            } else if (item.status.code() == StatusCode::kUnavailable) {
              ++mine.misses;
              ++mine.unreachable;
              if (mine.unreachable_member.empty()) mine.unreachable_member = item.status.message();
            } else {
              ++mine.mismatches;  // DATA_LOSS (checksum) or OUT_OF_RANGE (wrong size)
              if (mine.first_error.ok()) mine.first_error = item.status;
            }
            continue;
          }
          ++mine.hits;
          bytes += item.size;
          if ((begin + k) % plan.verify_every == 0) {
            const auto expected = work.Block(index);
            const bool same =
                item.size == expected.size() &&
                std::memcmp(item.buffer.data(), expected.data(), expected.size()) == 0;
            ++mine.verified;
            if (!same) {
              ++mine.mismatches;
              if (mine.first_error.ok()) {
                mine.first_error =
                    DataLoss("bytes of " + item.key.ToHex() + " differ from what was put");
              }
            }
          }
        }
      }
      mine.bytes += bytes;
      done_blocks += n;
      done_bytes += bytes;
    }
    std::lock_guard lock(mu);
    total.Add(mine);
    rpc_all.Merge(rpc_lat);
    block_all.Merge(block_lat);
    --running;
    cv.notify_all();
  };

  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < plan.threads; ++t) threads.emplace_back(worker);
  {
    ProgressBar bar(total.op, indices.size(), progress);
    std::unique_lock lock(mu);
    while (running > 0) {
      cv.wait_for(lock, std::chrono::milliseconds(100));
      const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      bar.Update(done_blocks.load(), done_bytes.load(), elapsed);
    }
  }
  for (std::thread& t : threads) t.join();
  total.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  total.rpc_latency = rpc_all.Summarize();
  total.block_latency = block_all.Summarize();
  return total;
}

}  // namespace kvstash::cli
