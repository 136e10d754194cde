// ClusterView: what a policy may read about the cluster at decision time. The simulator implements
// it over its modelled instances; a live conductor implements it over heartbeats and KV events.
//
// Prefill instances are numbered 0..prefill_count()-1 and decode instances 0..decode_count()-1.
// The global pool is the union of the prefill instances' local caches (as in Mooncake, where the
// DRAM of the prefill nodes forms the distributed KVCache pool), so the best holder of a prefix is
// the instance with the longest local match.
//
// Thread-safety: a view is read by one Route call at a time; implementations say more.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "scheduler/block_cache.h"

namespace kvstash::scheduler {

struct DecodeLoad {
  uint64_t batch = 0;           // sequences
  uint64_t context_tokens = 0;  // KV tokens held by those sequences
};

class ClusterView {
 public:
  virtual ~ClusterView() = default;
  virtual size_t prefill_count() const = 0;
  virtual size_t decode_count() const = 0;
  // Seconds of work queued ahead of a request that reaches prefill instance i at now_s.
  virtual double PrefillQueueSeconds(size_t i, double now_s) const = 0;
  // out[i] = leading blocks of chain held by prefill instance i (out is resized to
  // prefill_count()).
  virtual void PrefixMatches(std::span<const BlockId> chain, std::vector<uint32_t>& out) const = 0;
  // Load of decode instance j now (sequences running or waiting there).
  virtual DecodeLoad DecodeLoadNow(size_t j) const = 0;
  // Load predicted for decode instance j at at_s >= now: running sequences not yet finished by
  // then, plus those waiting, plus those whose prefill completes by then.
  virtual DecodeLoad DecodeLoadAt(size_t j, double at_s) const = 0;
};

}  // namespace kvstash::scheduler
