// One phase of `kvstash bench`: many threads issuing put or get RPCs through one Client, with
// per-RPC latency samples. The workload makes keys unique per run and block bytes reproducible,
// so every fetched block can be compared with what was put.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cli/latency.h"
#include "kvstash/client.h"

namespace kvstash::cli {

// What one bench run does; validated by the command before use.
struct BenchPlan {
  uint64_t block_size = 0;
  uint64_t count = 0;
  uint32_t threads = 0;
  uint32_t batch = 0;
  double duration_s = 0;
  uint32_t verify_every = 1;  // gets compare every Nth block (by position) with what was put
  bool eager_puts = false;    // PutOptions::eager
};

// The keys and bytes of one run. A run id of two random words makes its keys unique: block i has
// key (mix(run_hi + i), run_lo + i). Block i's bytes are a window of one random pool starting at
// byte 8 * (i mod 8192), so puts send spans of the pool without copying and gets compare against
// the pool. Immutable after construction; safe to share between threads.
class Workload {
 public:
  Workload(uint64_t block_size, uint64_t run_hi, uint64_t run_lo);

  BlockKey Key(uint64_t index) const;
  std::span<const std::byte> Block(uint64_t index) const;
  uint64_t block_size() const { return block_size_; }

 private:
  uint64_t block_size_;
  uint64_t run_hi_;
  uint64_t run_lo_;
  std::vector<std::byte> pool_;
};

// What one phase did; the per-thread results are summed with Add.
struct PhaseResult {
  std::string op;    // "put" or "get"
  uint64_t ops = 0;  // blocks attempted in RPCs that answered
  uint64_t rpcs = 0;
  uint64_t bytes = 0;   // bytes moved (stored or fetched)
  uint64_t errors = 0;  // RPCs that failed outright
  double seconds = 0;
  LatencySummary rpc_latency;
  LatencySummary block_latency;  // RPC latency / blocks in that RPC
  // put outcomes per block
  uint64_t stored = 0, existed = 0, failed = 0;  // failed: busy or no space
  // blocks whose member did not answer (puts: PutOutcome::kUnreachable; gets: misses too), and
  // the first such member as the SDK named it
  uint64_t unreachable = 0;
  std::string unreachable_member;
  // get outcomes per block; a mismatch is wrong bytes, a checksum failure or a wrong size
  uint64_t hits = 0, misses = 0, verified = 0, mismatches = 0;
  Status first_error;  // the first failure seen, OK when none

  void Add(const PhaseResult& o) {
    ops += o.ops;
    rpcs += o.rpcs;
    bytes += o.bytes;
    errors += o.errors;
    stored += o.stored;
    existed += o.existed;
    failed += o.failed;
    unreachable += o.unreachable;
    if (unreachable_member.empty()) unreachable_member = o.unreachable_member;
    hits += o.hits;
    misses += o.misses;
    verified += o.verified;
    mismatches += o.mismatches;
    if (first_error.ok()) first_error = o.first_error;
  }
};

enum class Op { kPut, kGet };

// Runs one phase over the blocks `indices` with plan.threads workers, each taking plan.batch
// blocks per RPC, until all are done, plan.duration_s has passed, or an RPC fails (the phase stops
// at the first failed RPC). A put sets present[i] for every block the daemon then holds
// (REQUIRES: present.size() > every index). Draws a progress bar on stderr from the calling
// thread when `progress`.
PhaseResult RunPhase(Op op, Client& client, const BenchPlan& plan, const Workload& work,
                     const std::vector<uint64_t>& indices, std::vector<uint8_t>& present,
                     bool progress);

}  // namespace kvstash::cli
