// HandoffReceiver: the decode side of a layer-wise P/D handoff. For each request it reads the
// prefill node's slices (node/handoff_slices.h) from the store as they appear, checks each one,
// writes its bytes into the request's pages, removes it from the store, and reports the request
// ready — with the prefill's first token — once the `done` marker arrived and every (page, layer)
// of the prompt was covered.
//
// It polls each request on its own schedule: a batched Get of its next few slice keys, at once
// again after a slice arrived, else after a pause that starts at 1 ms and doubles up to 64 ms while
// nothing arrives (a request whose prefill is still queued costs ~16 Gets a second; one whose slices
// flow waits at most a few ms for each).
// A request ends with an error, never with partial KV: DATA_LOSS for a slice that fails its
// checks (or a marker before full coverage), UNAVAILABLE for an `aborted` marker, DEADLINE_EXCEEDED
// when no slice arrived for `idle_timeout`, CANCELLED when its cancel flag is set or the receiver
// stops. A failed request's pages hold partial KV and must be freed, not used.
//
// Thread-safety: Start may be called from any thread; `done` runs on the receiver's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "kvstash/client.h"
#include "node/handoff_slices.h"
#include "node/kv_pages.h"

namespace kvstash::node {

class HandoffReceiver {
 public:
  struct Job {
    uint64_t id = 0;                       // the caller's, passed back to `done`
    BlockKey handoff_key;
    std::vector<uint32_t> pages;           // the prompt's pages, in token order
    uint32_t prompt_tokens = 0;
    std::shared_ptr<std::atomic<bool>> cancel;  // optional
  };
  using Done = std::function<void(uint64_t id, Result<uint32_t> first_token)>;

  HandoffReceiver(Client& store, KvPagePool& pool, uint32_t vocab_size, std::chrono::milliseconds idle_timeout,
                  Done done);
  ~HandoffReceiver();  // ends the jobs still running with CANCELLED

  void Start(Job job);

  uint64_t slices_received() const { return slices_.load(std::memory_order_relaxed); }
  uint64_t bytes_received() const { return bytes_.load(std::memory_order_relaxed); }

 private:
  struct Active;
  void Loop();
  // Reads and applies what has arrived for `a`; true when it made progress. Sets `a.result` when
  // the job is over.
  bool Poll(Active& a);

  Client& store_;
  KvPagePool& pool_;
  const uint32_t vocab_size_;
  const std::chrono::milliseconds idle_timeout_;
  Done done_;
  std::vector<std::vector<std::byte>> buffers_;  // receiver thread only
  Mutex mu_;
  std::condition_variable cv_;
  std::vector<Job> incoming_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> slices_{0}, bytes_{0};
  std::thread thread_;
};

}  // namespace kvstash::node
