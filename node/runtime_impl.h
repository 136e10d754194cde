// NodeRuntime's internals, shared by its implementation files (contract in node/runtime.h):
//   runtime.cc          the public calls (Start, Submit, Stats, Load, AttachStore, Drain, shutdown)
//                       and attaching a store
//   runtime_step.cc     the step thread: admission and page placement, prefill chunks, decode
//                       steps, finishing a sequence, the load a step leaves
//   runtime_store.cc    KV to and from the store: the put thread and its jobs, a handoff's tail
//   runtime_handoff.cc  the layer-wise handoff: slices sent as the engine computes layers, and the
//                       decode side's receptions
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/mutex.h"
#include "kvstash/prefix_hasher.h"
#include "node/handoff_receiver.h"
#include "node/handoff_sender.h"
#include "node/kv_block_store.h"
#include "node/local_prefix_cache.h"
#include "node/runtime.h"

namespace kvstash::node {
namespace runtime_internal {

using Clock = std::chrono::steady_clock;

inline size_t CeilDiv(size_t a, size_t b) { return (a + b - 1) / b; }

inline Status CancelledStatus() {
  return Status(StatusCode::kCancelled, "the request was cancelled (its client went away)");
}

}  // namespace runtime_internal

// Copies of newly computed blocks, put to the store in order by the put thread.
struct PutJob {
  std::vector<BlockKey> keys;
  std::optional<BlockKey> first_parent;
  std::vector<std::vector<std::byte>> bytes;
};

// One request from admission to its last token.
struct Sequence {
  CompletionRequest request;
  TokenCallback on_token;
  std::promise<Result<CompletionResult>> done;
  runtime_internal::Clock::time_point submitted;
  std::optional<Sampler> sampler;
  std::vector<BlockKey> chain;      // the prompt's full blocks
  size_t local_blocks = 0;          // chain[0, local_blocks) are the local cache's pages
  size_t reused_blocks = 0;         // local + fetched: their KV was not computed here
  std::vector<uint32_t> pages;      // the page table: the local cache's pages, then this sequence's own
  size_t computed_to = 0;           // prompt tokens whose KV is in the pages
  std::vector<uint32_t> generated;
  CompletionResult result;
  bool handed_off = false;          // a decode-side handoff loaded the whole prompt: decode at once
  bool first_released = false;      // its first token has been passed on (TTFT stamped)
  // Layer-wise handoff, prefill side: its slices' sequence; the first failure to read them out of
  // the pages; its full blocks, put once the handoff's slices are all in the store.
  std::shared_ptr<HandoffSender::Request> sending;
  Status send_error;
  std::shared_ptr<PutJob> deferred_puts;
  bool receiving = false;           // layer-wise handoff, decode side: its KV comes as slices

  bool cancelled() const { return request.cancel && request.cancel->load(std::memory_order_acquire); }
};

struct NodeRuntime::Impl {
  std::unique_ptr<Engine> engine;
  Client* store = nullptr;       // step thread (and the put thread, for jobs queued after it was set)
  Client* attached_store GUARDED_BY(mu) = nullptr;  // AttachStore's, taken by the next step
  NodeOptions options;
  PrefixHasher hasher;
  std::unique_ptr<KvPagePool> pool_owner;
  KvPagePool& pool;
  LocalPrefixCache cache;
  std::optional<KvBlockStore> blocks;
  size_t pages_per_block;

  mutable Mutex mu;
  std::condition_variable work_cv;
  std::deque<std::unique_ptr<Sequence>> waiting GUARDED_BY(mu);
  bool draining GUARDED_BY(mu) = false;
  bool stop GUARDED_BY(mu) = false;
  size_t in_flight GUARDED_BY(mu) = 0;  // admitted and not finished
  std::condition_variable idle_cv;
  RuntimeStats stats GUARDED_BY(mu);
  RuntimeLoad load GUARDED_BY(mu);  // waiting requests not included

  // Step thread only.
  std::list<std::unique_ptr<Sequence>> prefilling, decoding;

  Mutex put_mu;
  std::condition_variable put_cv;
  std::deque<PutJob> puts GUARDED_BY(put_mu);
  bool put_stop GUARDED_BY(put_mu) = false;
  size_t puts_busy GUARDED_BY(put_mu) = 0;
  std::thread put_thread, step_thread;

  // Step thread only: what the current step computed, for Engine::FinishStep.
  StepShape step;

  // Layer-wise handoff. The prefill chunk of this step whose KV goes out layer group by layer
  // group (step thread only), and the decode side's sequences waiting for their slices.
  struct LayerCursor {
    Sequence* s;
    size_t first_page, end_page;
    uint32_t sent;  // pool layers [0, sent) queued
  };
  std::optional<LayerCursor> layer_cursor;
  std::unordered_map<uint64_t, std::unique_ptr<Sequence>> receiving;  // step thread only
  uint64_t next_receive_id = 0;                                      // step thread only
  std::vector<std::pair<uint64_t, Result<uint32_t>>> received GUARDED_BY(mu);
  // Created with the store (so after `blocks`); destroyed first, as their threads call back here.
  std::unique_ptr<HandoffSender> sender;      // set under mu
  std::unique_ptr<HandoffReceiver> receiver;  // set under mu


  // Step thread only: the load bookkeeping of StepLoad.
  double decode_step_seconds = 0;
  double prefill_seconds_per_token = 0;
  // Tokens chosen in this step, passed on (callbacks, TTFT) once the step is over.
  std::vector<std::pair<Sequence*, uint32_t>> step_tokens;

  Impl(std::unique_ptr<Engine> e, std::unique_ptr<KvPagePool> p, Client* s, const std::string& ns, const NodeOptions& o);

  // Attaching a store (runtime.cc).
  void UseStore(Client* s);
  void TakeAttachedStore();

  // The step thread (runtime_step.cc).
  void StepLoop();
  // Takes waiting requests while pages allow; false when the first one cannot be placed yet.
  void Admit();
  bool Place(Sequence& s);
  void PrefillChunk(Sequence& s);
  void DecodeStep();
  void Emit(Sequence& s, std::vector<float>& logits);
  void ReleaseTokens();
  void Finish(std::unique_ptr<Sequence> s, Status status);
  void ReportKvEvents();
  // The load after a step of `step_seconds` (as the engine spent it, modelled time included): a
  // step with decode tokens sets the decode step time (what TBT sees); a step with prefill tokens
  // updates the prefill seconds per token.
  RuntimeLoad StepLoad(double step_seconds);
  RuntimeLoad::Sequence Load(const Sequence& s) const {
    const uint64_t generated = s.generated.size();
    return {s.request.prompt.size() + generated, s.request.sampling.max_tokens - std::min<uint64_t>(generated, s.request.sampling.max_tokens)};
  }

  // KV to and from the store (runtime_store.cc).
  void PutLoop();
  void QueuePuts(Sequence& s, size_t from, size_t to);
  std::shared_ptr<PutJob> MakePutJob(Sequence& s, size_t from, size_t to);
  void EnqueuePut(PutJob job);
  // Decode side of a handoff whose full blocks all arrived: the tail too, then the given first token.
  void TakeHandoffTail(Sequence& s);
  // Prefill side of a handoff: the pages after the last full block, under the tail key.
  void PutHandoffTail(Sequence& s);

  // The layer-wise handoff (runtime_handoff.cc).
  uint32_t LayerGroup() const {
    const uint32_t layers = engine->config().num_hidden_layers;
    return options.handoff_layer_group > 0 ? options.handoff_layer_group : std::max<uint32_t>(1, (layers + 7) / 8);
  }
  // Queues slices of pages [first_page, end_page) of `s`, pool layers [first_layer, +layers).
  void SendLayers(Sequence& s, size_t first_page, size_t end_page, uint32_t first_layer, uint32_t layers);
  // The engine's layer-wise progress (model layers [0, done) of this step's tokens computed).
  void OnLayers(uint32_t done);
  // Sends what the engine did not report of this step's chunk, and unhooks the engine.
  void FlushLayers();
  void StartReceiving(std::unique_ptr<Sequence> s);
  void TakeReceived();
};

}  // namespace kvstash::node
