// NodeRuntime: serves completions on one Engine — the prefix from the node's local cache, then
// from the store, the rest computed in chunks, then decode under continuous batching.
//
// A request's prompt is hashed into its block chain (PrefixHasher over `namespace_id`, which the
// caller derives from the model's identity and the KV layout, so two models never share blocks).
// Its longest prefix of full blocks held by the local cache (pages of finished requests, kept by
// LRU until the pool needs them) is used in place; the next blocks are fetched from the store
// (Lookup with a lease, Get, checksum verified) into fresh pages; the remaining tokens are
// computed (chunked prefill, at most max_batch_tokens per step); every newly completed block is
// put to the store in the background (dedup, parents linked) so the step loop never waits on it.
// A block that fails to fetch or verify is computed instead, never used; a store that is down
// means computing, not an error.
//
// Decode: each step, every running sequence advances one token (the step loop interleaves
// prefill chunks of waiting requests with decode steps); sequences join and leave the batch at
// every step. A sequence's tokens depend only on its own prompt and sampling parameters.
//
// Thread-safety: Submit, Stats and Drain may be called from any thread. Token callbacks run on
// the runtime's step thread and must be quick.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvstash/client.h"
#include "kvstash/result.h"
#include "node/engine.h"
#include "node/sampling.h"

namespace kvstash::node {

struct NodeOptions {
  uint32_t page_tokens = 16;         // KV page size; divides block_tokens
  size_t pool_pages = 4096;          // pages in the KV pool (all sequences plus the local cache)
  uint32_t block_tokens = 512;       // the store's block size (PrefixHasher's)
  size_t max_batch_tokens = 2048;    // prefill tokens per step (chunked prefill)
  size_t max_running = 64;           // sequences decoding at once
  uint64_t lease_ms = 5'000;         // lease on blocks between Lookup and Get
  bool local_cache = true;           // keep finished requests' full blocks for reuse
  bool store_puts = true;            // put newly computed blocks to the store
  // Look prompts' prefixes up (local cache, then store). Off: every prefill recomputes its whole
  // prompt (the "store off" baseline); a decode node still takes a P/D handoff's blocks.
  bool reuse_prefixes = true;
  // When set, called on the step thread after a step in which full blocks joined (`stored`) or
  // left (`evicted`) the local cache: the KV events a conductor indexes this node's cache by.
  // Must be quick (queue them).
  std::function<void(std::vector<BlockKey> stored, std::vector<BlockKey> evicted)> kv_events;
  // Layer-wise handoff: the grain (model layers per slice group; 0: an eighth of the layers,
  // rounded up) and how long a decode node waits for the next slice before it gives up.
  uint32_t handoff_layer_group = 0;
  // (The front door cancels a decode whose prefill failed; this bounds what a client that never
  // sends the slices can hold. A prefill may wait in its node's queue: default as the front door's
  // node timeout.)
  uint64_t handoff_timeout_ms = 600'000;
  // When set, called on the step thread with the TTFT of every request that has a request_id.
  std::function<void(uint64_t request_id, double ttft_seconds)> ttft_reports;
};

struct CompletionRequest {
  std::vector<uint32_t> prompt;  // token ids, 1..context
  SamplingParams sampling;
  // Optional. Set it (from any thread) to end the sequence before its next step — its client went
  // away: the result is CANCELLED, its pages go back to the pool, nothing it computed is lost
  // (blocks already queued for the store are still stored).
  std::shared_ptr<std::atomic<bool>> cancel;
  // The conductor's id for this request (its Route's request_id), when it routed it: the TTFT is
  // reported to NodeOptions::ttft_reports.
  std::optional<uint64_t> request_id;
  // Prefill/decode handoff through the store (the conductor's front door sets both sides).
  // Prefill side: once the prompt is computed, the partial last block's pages (the tokens after
  // the last full block) are also put, under `tail_key` (a request-scoped key), before the first
  // token is returned; the full blocks go as usual. Decode side (with `first_token`): every full
  // block and the tail are fetched; when all arrive nothing is computed, `first_token` is the
  // first generated token, and the tail is removed from the store. Whatever does not arrive is
  // computed as usual (the first token then comes from this node's own logits).
  //
  // Layer-wise instead (`send_layers` on the prefill side, `receive_layers` on the decode side):
  // the prefill node sends the prompt's KV as slices (node/handoff_slices.h) keyed by `tail_key`
  // — a reused prefix at admission, each computed chunk group of layers by group as the engine
  // reports them — then a `done` marker with its first token; its result is ready once all of it
  // is in the store (an error if a put failed), and only then are its full blocks put as prefix
  // blocks. The decode node loads the slices as they arrive (HandoffReceiver), computes nothing
  // and starts decoding from the marker's first token; a handoff that fails ends the request
  // with that error (never with partial KV).
  struct Handoff {
    BlockKey tail_key;
    std::optional<uint32_t> first_token;  // set on the decode side (after-prefill handoff)
    bool send_layers = false;
    bool receive_layers = false;
  };
  std::optional<Handoff> handoff;
};

// Where each prompt token's KV came from.
struct PromptSources {
  // On a decode node taking a handoff, `store` includes the tail tokens fetched under the
  // request's tail key.
  uint64_t local = 0;     // the node's own cache
  uint64_t store = 0;     // fetched from kvstash
  uint64_t computed = 0;  // prefilled here
};

struct CompletionResult {
  std::vector<uint32_t> tokens;   // generated
  std::string finish_reason;      // "length" or "stop"
  PromptSources prompt;
  double ttft_seconds = 0;        // submit to first token
  std::vector<float> first_logits;  // logits that chose the first token (for tests and debugging)
};

struct RuntimeStats {
  uint64_t requests_done = 0, requests_failed = 0, requests_cancelled = 0;
  uint64_t prompt_tokens_local = 0, prompt_tokens_store = 0, prompt_tokens_computed = 0;
  uint64_t kv_bytes_fetched = 0, kv_bytes_stored = 0;
  uint64_t blocks_rejected = 0;    // fetched but not used (missing, corrupt, wrong size)
  uint64_t store_errors = 0;       // lookups or puts that could not reach the store
  uint64_t handoff_slices_sent = 0, handoff_bytes_sent = 0;          // layer-wise, prefill side
  uint64_t handoff_slices_received = 0, handoff_bytes_received = 0;  // layer-wise, decode side
  size_t running = 0, waiting = 0;
  size_t pool_pages = 0, pool_free_pages = 0, cached_blocks = 0;
  double last_step_seconds = 0;
};

// What a conductor needs to predict this node's next TTFT and TBT (its heartbeat).
struct RuntimeLoad {
  struct Sequence {
    uint64_t context_tokens = 0, remaining_tokens = 0;
  };
  uint64_t queued_prefill_tokens = 0;  // prompt tokens waiting or not yet computed
  double prefill_seconds_per_token = 0;  // measured (moving average of recent chunks); 0 until one ran
  double queue_seconds = 0;            // queued_prefill_tokens × prefill_seconds_per_token
  double decode_step_seconds = 0;      // the last decode step
  std::vector<Sequence> sequences;     // decoding, prefilling and waiting
};

// Called with each generated token as it is chosen (on the step thread).
using TokenCallback = std::function<void(uint32_t token)>;

class NodeRuntime {
 public:
  // `store` may be null (no store: local cache and compute only); not owned, outlives the runtime.
  static Result<std::unique_ptr<NodeRuntime>> Start(std::unique_ptr<Engine> engine, Client* store,
                                                    std::string namespace_id, const NodeOptions& options);
  ~NodeRuntime();  // Drain()

  const ModelConfig& config() const;
  // Queues a request. INVALID_ARGUMENT at once (nothing queued) for an empty prompt, a token id
  // outside the vocabulary, prompt + max_tokens beyond the context, or bad sampling parameters;
  // UNAVAILABLE after Drain. The future holds the result once the sequence has finished.
  Result<std::future<Result<CompletionResult>>> Submit(CompletionRequest request, TokenCallback on_token = {});
  // Submit and wait.
  Result<CompletionResult> Complete(CompletionRequest request);
  RuntimeStats Stats() const;
  // Gives a runtime started without a store (it was down) one; requests admitted from the next
  // step on use it. Ignored when the runtime already has a store. Not owned; outlives the runtime.
  void AttachStore(Client* store);
  // As of the end of the last step (waiting requests as of now).
  RuntimeLoad Load() const;
  // Refuses new requests, finishes those in flight and waits for the background puts.
  void Drain();

 private:
  struct Impl;
  explicit NodeRuntime(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstash::node
