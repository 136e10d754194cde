// kvstash-bench-alloc: how much of a DRAM arena the tier's block allocator can actually use under
// churn, beside a power-of-two size-class (buddy) allocator measured in the same run on the same
// request stream.
//
// Both allocators work on offsets only (no memory is touched), so a large arena costs nothing.
// For each workload and allocator:
//   1. fill from empty until the first allocation fails -> utilisation at first failure;
//   2. free random blocks until the payload is <= 90% of the arena;
//   3. churn: for each request, free random blocks until payload + request <= 90% of the arena,
//      then allocate; while the allocation fails for want of a contiguous range, free another
//      random block ("forced free", what the tier counts as evicted_fragmentation). After every
//      request the payload utilisation and the external fragmentation are sampled.
// Utilisation is payload (requested bytes) / arena bytes, so rounding waste counts against it.
//
// Usage: kvstash-bench-alloc [--quick] [--json] [--seed N] [--arena-gib N] [--ops N] [--seconds S]
#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tiers/block_allocator.h"

namespace {

using kvstash::tiers::BlockAllocator;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;
constexpr uint64_t kMinBlock = 4 * kKiB;
constexpr uint64_t kMaxBlock = 64 * kMiB;
constexpr double kChurnTarget = 0.90;

// The peer: a binary buddy allocator. Requests round up to a power of two (>= 4 KiB); a free block
// merges with its buddy when that is free too. Free lists are ordered sets (lowest address first).
class BuddyAllocator {
 public:
  explicit BuddyAllocator(uint64_t total) : total_(total / kMinBlock * kMinBlock) {
    max_order_ = static_cast<int>(std::bit_width(total_) - 1);
    free_.resize(static_cast<size_t>(max_order_) + 1);
    uint64_t off = 0;  // carve the arena into maximal aligned power-of-two blocks
    while (off < total_) {
      int order = max_order_;
      while (order > kMinOrder &&
             ((off & ((1ULL << order) - 1)) != 0 || off + (1ULL << order) > total_)) {
        --order;
      }
      free_[static_cast<size_t>(order)].insert(off);
      free_bytes_ += 1ULL << order;
      off += 1ULL << order;
    }
  }

  static uint64_t RoundUp(uint64_t bytes) { return std::max(kMinBlock, std::bit_ceil(bytes)); }

  std::optional<uint64_t> Allocate(uint64_t bytes) {
    const int order = static_cast<int>(std::bit_width(RoundUp(bytes)) - 1);
    int k = order;
    while (k <= max_order_ && free_[static_cast<size_t>(k)].empty()) ++k;
    if (k > max_order_) return std::nullopt;
    auto& list = free_[static_cast<size_t>(k)];
    const uint64_t off = *list.begin();
    list.erase(list.begin());
    while (k > order) {
      --k;
      free_[static_cast<size_t>(k)].insert(off + (1ULL << k));
    }
    free_bytes_ -= 1ULL << order;
    return off;
  }

  void Free(uint64_t off, uint64_t bytes) {
    int order = static_cast<int>(std::bit_width(RoundUp(bytes)) - 1);
    free_bytes_ += 1ULL << order;
    while (order < max_order_) {
      const uint64_t buddy = off ^ (1ULL << order);
      auto& list = free_[static_cast<size_t>(order)];
      auto it = list.find(buddy);
      if (it == list.end()) break;
      list.erase(it);
      off = std::min(off, buddy);
      ++order;
    }
    free_[static_cast<size_t>(order)].insert(off);
  }

  // 1 - largest free block / free bytes, as BlockAllocator reports it.
  double fragmentation() const {
    if (free_bytes_ == 0) return 0.0;
    for (int k = max_order_; k >= kMinOrder; --k) {
      if (!free_[static_cast<size_t>(k)].empty()) {
        return 1.0 - static_cast<double>(1ULL << k) / static_cast<double>(free_bytes_);
      }
    }
    return 0.0;
  }

 private:
  static constexpr int kMinOrder = 12;
  uint64_t total_;
  int max_order_ = kMinOrder;
  std::vector<std::set<uint64_t>> free_;
  uint64_t free_bytes_ = 0;
};

// Same interface over the tier's allocator.
class BestFit {
 public:
  explicit BestFit(uint64_t total) : a_(total) {}
  std::optional<uint64_t> Allocate(uint64_t bytes) { return a_.Allocate(bytes); }
  void Free(uint64_t off, uint64_t bytes) { a_.Free(off, bytes); }
  double fragmentation() const { return a_.Stats().fragmentation; }

 private:
  BlockAllocator a_;
};

struct Workload {
  std::string name;
  // Draws one request size.
  uint64_t (*draw)(std::mt19937_64&);
};

uint64_t DrawLogUniform(std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(std::log2(static_cast<double>(kMinBlock)),
                                           std::log2(static_cast<double>(kMaxBlock)));
  return std::clamp<uint64_t>(static_cast<uint64_t>(std::exp2(u(rng))), kMinBlock, kMaxBlock);
}

// A few fixed KV block sizes (16-token blocks, fp16): 8B-class model 2 MiB, 70B-class 5 MiB,
// small model 512 KiB, and 128-token blocks of a 70B-class model 40 MiB.
uint64_t DrawKvLike(std::mt19937_64& rng) {
  static constexpr uint64_t kSizes[] = {512 * kKiB, 2 * kMiB, 5 * kMiB, 40 * kMiB};
  std::discrete_distribution<int> pick({30, 45, 20, 5});
  return kSizes[pick(rng)];
}

struct Config {
  uint64_t arena_bytes = 64 * kGiB;
  uint64_t churn_ops = 2'000'000;
  double seconds = 20.0;  // per (workload, allocator) churn phase
  uint64_t seed = 42;
  bool json = false;
};

struct Outcome {
  std::string workload, allocator;
  double util_first_failure = 0;
  double util_mean = 0, util_min = 1;
  double frag_mean = 0;
  double forced_frees_per_kalloc = 0;
  double mops = 0;
  uint64_t churn_requests = 0;
};

template <typename Alloc>
Outcome Run(const Config& cfg, const Workload& w, const char* alloc_name) {
  Alloc a(cfg.arena_bytes);
  std::mt19937_64 rng(cfg.seed);  // same seed: both allocators see the same request stream
  std::mt19937_64 victims(cfg.seed ^ 0x5eed);
  struct Live {
    uint64_t off, size;
  };
  std::vector<Live> live;
  uint64_t payload = 0;
  const double arena = static_cast<double>(cfg.arena_bytes);

  auto free_random = [&] {
    const size_t i = victims() % live.size();
    a.Free(live[i].off, live[i].size);
    payload -= live[i].size;
    live[i] = live.back();
    live.pop_back();
  };

  Outcome o;
  o.workload = w.name;
  o.allocator = alloc_name;
  for (;;) {  // 1. fill until the first failure
    const uint64_t size = w.draw(rng);
    auto off = a.Allocate(size);
    if (!off) break;
    live.push_back({*off, size});
    payload += size;
  }
  o.util_first_failure = static_cast<double>(payload) / arena;
  const uint64_t target = static_cast<uint64_t>(kChurnTarget * arena);
  while (payload > target && !live.empty()) free_random();  // 2.

  uint64_t allocs = 0, frees = 0, forced = 0;
  double util_sum = 0, frag_sum = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  uint64_t n = 0;
  for (; n < cfg.churn_ops; ++n) {  // 3.
    if ((n & 1023) == 0) {
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (elapsed > cfg.seconds) break;
    }
    const uint64_t size = w.draw(rng);
    while (payload + size > target && !live.empty()) {
      free_random();
      ++frees;
    }
    std::optional<uint64_t> off = a.Allocate(size);
    while (!off && !live.empty()) {
      free_random();
      ++frees;
      ++forced;
      off = a.Allocate(size);
    }
    if (!off) break;  // cannot happen: an empty arena holds any request
    ++allocs;
    live.push_back({*off, size});
    payload += size;
    const double util = static_cast<double>(payload) / arena;
    util_sum += util;
    o.util_min = std::min(o.util_min, util);
    frag_sum += a.fragmentation();
  }
  elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  o.churn_requests = n;
  if (n > 0) {
    o.util_mean = util_sum / static_cast<double>(n);
    o.frag_mean = frag_sum / static_cast<double>(n);
    o.forced_frees_per_kalloc = 1000.0 * static_cast<double>(forced) / static_cast<double>(allocs);
  }
  // Ops/s includes the stats sampling of both allocators (O(1) for best fit, O(orders) for buddy).
  o.mops = elapsed > 0 ? static_cast<double>(allocs + frees) / elapsed / 1e6 : 0;
  return o;
}

bool ParseArgs(int argc, char** argv, Config& cfg) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&](const char* what) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", what);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--quick") {
      cfg.arena_bytes = 8 * kGiB;
      cfg.churn_ops = 200'000;
      cfg.seconds = 1.0;
    } else if (arg == "--json") {
      cfg.json = true;
    } else if (arg == "--seed") {
      cfg.seed = std::strtoull(next("--seed"), nullptr, 10);
    } else if (arg == "--arena-gib") {
      cfg.arena_bytes = std::strtoull(next("--arena-gib"), nullptr, 10) * kGiB;
    } else if (arg == "--ops") {
      cfg.churn_ops = std::strtoull(next("--ops"), nullptr, 10);
    } else if (arg == "--seconds") {
      cfg.seconds = std::strtod(next("--seconds"), nullptr);
    } else {
      std::fprintf(
          stderr,
          "usage: %s [--quick] [--json] [--seed N] [--arena-gib N] [--ops N] [--seconds S]\n",
          argv[0]);
      return false;
    }
  }
  if (cfg.arena_bytes < kMaxBlock) {
    std::fprintf(stderr, "--arena-gib must be at least 1\n");
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  if (!ParseArgs(argc, argv, cfg)) return 2;

  const Workload workloads[] = {{"log-uniform 4 KiB..64 MiB", DrawLogUniform},
                                {"KV-like 512K/2M/5M/40M", DrawKvLike}};
  std::vector<Outcome> results;
  for (const Workload& w : workloads) {
    results.push_back(Run<BestFit>(cfg, w, "kvstash best-fit (4 KiB granules)"));
    results.push_back(Run<BuddyAllocator>(cfg, w, "peer: power-of-two buddy"));
  }

  if (cfg.json) {
    std::printf("[\n");
    for (size_t i = 0; i < results.size(); ++i) {
      const Outcome& o = results[i];
      std::printf(
          "  {\"workload\": \"%s\", \"allocator\": \"%s\", \"arena_bytes\": %llu, \"seed\": %llu, "
          "\"util_first_failure\": %.4f, \"util_mean\": %.4f, \"util_min\": %.4f, "
          "\"ext_fragmentation_mean\": %.4f, \"forced_frees_per_kalloc\": %.2f, "
          "\"alloc_free_mops\": %.3f, \"churn_requests\": %llu}%s\n",
          o.workload.c_str(), o.allocator.c_str(), static_cast<unsigned long long>(cfg.arena_bytes),
          static_cast<unsigned long long>(cfg.seed), o.util_first_failure, o.util_mean, o.util_min,
          o.frag_mean, o.forced_frees_per_kalloc, o.mops,
          static_cast<unsigned long long>(o.churn_requests), i + 1 < results.size() ? "," : "");
    }
    std::printf("]\n");
    return 0;
  }

  std::printf(
      "Arena %.0f GiB (offsets only), seed %llu, churn at %.0f%% payload target, up to %llu "
      "requests or %.1f s per row.\n\n",
      static_cast<double>(cfg.arena_bytes) / static_cast<double>(kGiB),
      static_cast<unsigned long long>(cfg.seed), kChurnTarget * 100,
      static_cast<unsigned long long>(cfg.churn_ops), cfg.seconds);
  std::printf(
      "| workload | allocator | util. at first failure | churn util. mean | churn util. min | "
      "ext. fragmentation (mean) | forced frees / 1k allocs | alloc+free Mops/s | requests |\n");
  std::printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (const Outcome& o : results) {
    std::printf("| %s | %s | %.1f%% | %.1f%% | %.1f%% | %.3f | %.1f | %.2f | %llu |\n",
                o.workload.c_str(), o.allocator.c_str(), 100 * o.util_first_failure,
                100 * o.util_mean, 100 * o.util_min, o.frag_mean, o.forced_frees_per_kalloc, o.mops,
                static_cast<unsigned long long>(o.churn_requests));
  }
  return 0;
}
