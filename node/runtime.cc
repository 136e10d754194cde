#include "node/runtime.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "kvstash/prefix_hasher.h"
#include "node/handoff_receiver.h"
#include "node/handoff_sender.h"
#include "node/kv_block_store.h"
#include "node/local_prefix_cache.h"

namespace kvstash::node {
namespace {

using Clock = std::chrono::steady_clock;

size_t CeilDiv(size_t a, size_t b) { return (a + b - 1) / b; }

Status CancelledStatus() { return Status(StatusCode::kCancelled, "the request was cancelled (its client went away)"); }

}  // namespace

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
  Clock::time_point submitted;
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

  Impl(std::unique_ptr<Engine> e, std::unique_ptr<KvPagePool> p, Client* s, const std::string& ns, const NodeOptions& o)
      : engine(std::move(e)),
        store(s),
        options(o),
        hasher(ns, o.block_tokens),
        pool_owner(std::move(p)),
        pool(*pool_owner),
        cache(pool),
        pages_per_block(o.block_tokens / o.page_tokens) {
    cache.set_record_events(static_cast<bool>(o.kv_events));
    if (store != nullptr) UseStore(store);
  }

  void UseStore(Client* s) {
    store = s;
    blocks.emplace(*store, pool, options.block_tokens);
    auto new_sender = std::make_unique<HandoffSender>(*store);
    auto new_receiver = std::make_unique<HandoffReceiver>(
        *store, pool, engine->config().vocab_size, std::chrono::milliseconds(options.handoff_timeout_ms),
        [this](uint64_t id, Result<uint32_t> first) {
          {
            MutexLock lock(mu);
            received.emplace_back(id, std::move(first));
          }
          work_cv.notify_all();
        });
    MutexLock lock(mu);
    sender = std::move(new_sender);
    receiver = std::move(new_receiver);
  }
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
  std::shared_ptr<PutJob> MakePutJob(Sequence& s, size_t from, size_t to);
  void EnqueuePut(PutJob job);

  void StepLoop();
  void PutLoop();
  // Takes waiting requests while pages allow; false when the first one cannot be placed yet.
  void Admit();
  bool Place(Sequence& s);
  void PrefillChunk(Sequence& s);
  void DecodeStep();
  void Emit(Sequence& s, std::vector<float>& logits);
  void Finish(std::unique_ptr<Sequence> s, Status status);
  void QueuePuts(Sequence& s, size_t from, size_t to);
  void ReportKvEvents();
  // Decode side of a handoff whose full blocks all arrived: the tail too, then the given first token.
  void TakeHandoffTail(Sequence& s) {
    const std::vector<uint32_t>& prompt = s.request.prompt;
    const size_t tail = prompt.size() - s.computed_to;
    const size_t first_page = s.computed_to / options.page_tokens;
    const size_t tail_pages = CeilDiv(tail, options.page_tokens);
    if (tail > 0 && !blocks->FetchTail(s.request.handoff->tail_key,
                                      std::span(s.pages).subspan(first_page, tail_pages), pool)) {
      return;  // computed here instead
    }
    if (tail > 0) blocks->RemoveTail(s.request.handoff->tail_key);
    s.computed_to = prompt.size();
    s.result.prompt.store += tail;
    const uint32_t first = *s.request.handoff->first_token;
    s.sampler->Skip();
    s.result.ttft_seconds = std::chrono::duration<double>(Clock::now() - s.submitted).count();
    s.first_released = true;
    s.generated.push_back(first);
    if (s.on_token) s.on_token(first);
    s.handed_off = true;
  }
  // Prefill side of a handoff: the pages after the last full block, under the tail key.
  void PutHandoffTail(Sequence& s) {
    const size_t full_tokens = s.chain.size() * options.block_tokens;
    const size_t tail = s.request.prompt.size() - full_tokens;
    if (tail == 0 || !blocks) return;
    const size_t first_page = full_tokens / options.page_tokens;
    const Status put = blocks->StoreTail(s.request.handoff->tail_key,
                                         s.chain.empty() ? std::nullopt : std::optional(s.chain.back()),
                                         std::span(s.pages).subspan(first_page, CeilDiv(tail, options.page_tokens)),
                                         pool);
    if (!put.ok()) spdlog::warn("kvstash-node: the handoff tail was not stored ({}): the decode node computes it",
                                put.ToString());
  }
  void TakeAttachedStore() {
    Client* attached;
    {
      MutexLock lock(mu);
      attached = std::exchange(attached_store, nullptr);
    }
    if (attached == nullptr || blocks) return;
    UseStore(attached);
  }
  // The load after a step of `step_seconds` (as the engine spent it, modelled time included): a
  // step with decode tokens sets the decode step time (what TBT sees); a step with prefill tokens
  // updates the prefill seconds per token.
  RuntimeLoad StepLoad(double step_seconds);
  double decode_step_seconds = 0;  // step thread only
  // Tokens chosen in this step, passed on (callbacks, TTFT) once the step is over.
  std::vector<std::pair<Sequence*, uint32_t>> step_tokens;
  void ReleaseTokens();
  double prefill_seconds_per_token = 0;  // step thread only
  RuntimeLoad::Sequence Load(const Sequence& s) const {
    const uint64_t generated = s.generated.size();
    return {s.request.prompt.size() + generated, s.request.sampling.max_tokens - std::min<uint64_t>(generated, s.request.sampling.max_tokens)};
  }
};

void NodeRuntime::Impl::ReportKvEvents() {
  if (!options.kv_events) return;
  auto [stored, evicted] = cache.TakeEvents();
  if (!stored.empty() || !evicted.empty()) options.kv_events(std::move(stored), std::move(evicted));
}

RuntimeLoad NodeRuntime::Impl::StepLoad(double step_seconds) {
  uint64_t prefilled = 0;
  for (const StepShape::Chunk& c : step.prefill) prefilled += c.tokens;
  if (prefilled > 0) {
    const double per_token = step_seconds / double(prefilled);
    prefill_seconds_per_token =
        prefill_seconds_per_token == 0 ? per_token : 0.8 * prefill_seconds_per_token + 0.2 * per_token;
  }
  if (step.decode_sequences > 0) decode_step_seconds = step_seconds;
  RuntimeLoad l;
  l.prefill_seconds_per_token = prefill_seconds_per_token;
  l.decode_step_seconds = decode_step_seconds;
  for (const auto& s : prefilling) {
    l.queued_prefill_tokens += s->request.prompt.size() - s->computed_to;
    l.sequences.push_back(Load(*s));
  }
  for (const auto& s : decoding) l.sequences.push_back(Load(*s));
  return l;
}

Result<std::unique_ptr<NodeRuntime>> NodeRuntime::Start(std::unique_ptr<Engine> engine, Client* store,
                                                        std::string namespace_id, const NodeOptions& options) {
  if (engine == nullptr) return InvalidArgument("no engine");
  if (options.page_tokens == 0 || options.block_tokens == 0 || options.block_tokens % options.page_tokens != 0) {
    return InvalidArgument("block_tokens (" + std::to_string(options.block_tokens) + ") must be a multiple of page_tokens (" +
                           std::to_string(options.page_tokens) + ")");
  }
  if (options.pool_pages == 0 || options.max_batch_tokens == 0 || options.max_running == 0) {
    return InvalidArgument("pool_pages, max_batch_tokens and max_running must be positive");
  }
  const KvGeometry geometry = engine->kv_geometry();
  const uint64_t page_bytes = uint64_t{options.page_tokens} * geometry.BytesPerToken();
  if (page_bytes == 0 || options.pool_pages > (uint64_t{1} << 46) / page_bytes) {
    return InvalidArgument("a pool of " + std::to_string(options.pool_pages) + " pages of " + std::to_string(page_bytes) +
                           " bytes is too large");
  }
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<PageMemory> memory,
                           engine->AllocatePageMemory(options.pool_pages * page_bytes));
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<KvPagePool> pool,
                           KvPagePool::Create(geometry, options.page_tokens, options.pool_pages, std::move(memory)));
  auto impl = std::make_unique<Impl>(std::move(engine), std::move(pool), store, namespace_id, options);
  Impl* raw = impl.get();
  {
    MutexLock lock(raw->mu);  // no other thread yet; taken for the analysis' rule
    raw->stats.pool_pages = options.pool_pages;
  }
  raw->step_thread = std::thread([raw] { raw->StepLoop(); });
  raw->put_thread = std::thread([raw] { raw->PutLoop(); });
  return std::unique_ptr<NodeRuntime>(new NodeRuntime(std::move(impl)));
}

NodeRuntime::NodeRuntime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

NodeRuntime::~NodeRuntime() {
  Drain();
  {
    MutexLock lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->work_cv.notify_all();
  impl_->step_thread.join();
  {
    MutexLock lock(impl_->put_mu);
    impl_->put_stop = true;
  }
  impl_->put_cv.notify_all();
  impl_->put_thread.join();
}

const ModelConfig& NodeRuntime::config() const { return impl_->engine->config(); }

Result<std::future<Result<CompletionResult>>> NodeRuntime::Submit(CompletionRequest request, TokenCallback on_token) {
  const ModelConfig& c = config();
  if (request.prompt.empty()) return InvalidArgument("the prompt has no tokens");
  for (size_t i = 0; i < request.prompt.size(); ++i) {
    if (request.prompt[i] >= c.vocab_size) {
      return InvalidArgument("prompt token " + std::to_string(i) + " is id " + std::to_string(request.prompt[i]) +
                             "; the vocabulary has " + std::to_string(c.vocab_size));
    }
  }
  KVSTASH_RETURN_IF_ERROR(request.sampling.Validate(c.vocab_size));
  const size_t total = request.prompt.size() + request.sampling.max_tokens;
  if (total > c.max_position_embeddings) {
    return InvalidArgument("prompt (" + std::to_string(request.prompt.size()) + " tokens) plus max_tokens (" +
                           std::to_string(request.sampling.max_tokens) + ") exceeds the context of " +
                           std::to_string(c.max_position_embeddings));
  }
  if (CeilDiv(total, impl_->options.page_tokens) > impl_->options.pool_pages) {
    return InvalidArgument("the request needs more KV pages than the pool has (" +
                           std::to_string(impl_->options.pool_pages) + ")");
  }
  auto s = std::make_unique<Sequence>();
  s->request = std::move(request);
  s->on_token = std::move(on_token);
  s->submitted = Clock::now();
  auto future = s->done.get_future();
  {
    MutexLock lock(impl_->mu);
    if (impl_->draining) return Unavailable("the node is draining: no new requests");
    impl_->waiting.push_back(std::move(s));
    impl_->stats.waiting = impl_->waiting.size();
  }
  impl_->work_cv.notify_all();
  return future;
}

Result<CompletionResult> NodeRuntime::Complete(CompletionRequest request) {
  KVSTASH_ASSIGN_OR_RETURN(auto future, Submit(std::move(request)));
  return future.get();
}

RuntimeStats NodeRuntime::Stats() const {
  MutexLock lock(impl_->mu);
  RuntimeStats s = impl_->stats;
  s.pool_free_pages = impl_->pool.free_pages();
  if (impl_->sender) {
    s.handoff_slices_sent = impl_->sender->slices_put();
    s.handoff_bytes_sent = impl_->sender->bytes_put();
  }
  if (impl_->receiver) {
    s.handoff_slices_received = impl_->receiver->slices_received();
    s.handoff_bytes_received = impl_->receiver->bytes_received();
  }
  return s;
}

void NodeRuntime::AttachStore(Client* store) {
  {
    MutexLock lock(impl_->mu);
    impl_->attached_store = store;
  }
  impl_->work_cv.notify_all();
}

RuntimeLoad NodeRuntime::Load() const {
  MutexLock lock(impl_->mu);
  RuntimeLoad l = impl_->load;
  for (const auto& s : impl_->waiting) {
    l.queued_prefill_tokens += s->request.prompt.size();
    l.sequences.push_back(impl_->Load(*s));
  }
  l.queue_seconds = double(l.queued_prefill_tokens) * l.prefill_seconds_per_token;
  return l;
}

void NodeRuntime::Drain() {
  {
    MutexLock lock(impl_->mu);
    impl_->draining = true;
    impl_->work_cv.notify_all();
    lock.Wait(impl_->idle_cv, [&] { impl_->mu.AssertHeld(); return impl_->waiting.empty() && impl_->in_flight == 0; });
  }
  HandoffSender* sender;
  {
    MutexLock lock(impl_->mu);
    sender = impl_->sender.get();
  }
  if (sender != nullptr) sender->WaitIdle();  // its callbacks queue the last puts
  MutexLock lock(impl_->put_mu);
  lock.Wait(impl_->put_cv, [&] { impl_->put_mu.AssertHeld(); return impl_->puts.empty() && impl_->puts_busy == 0; });
}

// ---- the step thread ------------------------------------------------------------------------

void NodeRuntime::Impl::StepLoop() {
  while (true) {
    {
      MutexLock lock(mu);
      lock.Wait(work_cv, [&] {
        mu.AssertHeld();  // a wait predicate runs with the mutex held
        return stop || !waiting.empty() || !prefilling.empty() || !decoding.empty() || !received.empty();
      });
      if (stop && waiting.empty() && prefilling.empty() && decoding.empty() && receiving.empty()) return;
    }
    const auto step_start = Clock::now();
    step = StepShape{};
    TakeAttachedStore();
    TakeReceived();
    Admit();
    for (auto it = prefilling.begin(); it != prefilling.end();) {
      if (!(*it)->cancelled()) {
        ++it;
        continue;
      }
      std::unique_ptr<Sequence> gone = std::move(*it);
      it = prefilling.erase(it);
      Finish(std::move(gone), CancelledStatus());
    }
    if (!prefilling.empty()) PrefillChunk(*prefilling.front());
    DecodeStep();
    // A sequence whose prefill ended in this step joins the batch from the next one, after its
    // first token has been passed on.
    if (!prefilling.empty() && prefilling.front()->computed_to == prefilling.front()->request.prompt.size()) {
      decoding.push_back(std::move(prefilling.front()));
      prefilling.pop_front();
    }
    if (!step.empty()) engine->FinishStep(step);
    FlushLayers();
    // Tokens become visible only once the step is over (an engine with modelled time has slept it).
    ReleaseTokens();
    ReportKvEvents();
    RuntimeLoad now = StepLoad(std::chrono::duration<double>(Clock::now() - step_start).count());
    MutexLock lock(mu);
    load = std::move(now);
    stats.running = prefilling.size() + decoding.size();
    stats.cached_blocks = cache.blocks();
    stats.last_step_seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
  }
}

void NodeRuntime::Impl::Admit() {
  while (prefilling.size() + decoding.size() + receiving.size() < options.max_running) {
    std::unique_ptr<Sequence> s;
    {
      MutexLock lock(mu);
      if (waiting.empty()) return;
      s = std::move(waiting.front());
      waiting.pop_front();
      stats.waiting = waiting.size();
      ++in_flight;
    }
    if (s->cancelled()) {
      Finish(std::move(s), CancelledStatus());
      continue;
    }
    if (!Place(*s)) {
      // No room while others run: back to the head of the queue until pages free up.
      MutexLock lock(mu);
      waiting.push_front(std::move(s));
      stats.waiting = waiting.size();
      --in_flight;
      return;
    }
    if (s->receiving) {
      StartReceiving(std::move(s));
    } else if (s->handed_off) {
      decoding.push_back(std::move(s));
    } else {
      prefilling.push_back(std::move(s));
    }
  }
}

bool NodeRuntime::Impl::Place(Sequence& s) {
  const std::vector<uint32_t>& prompt = s.request.prompt;
  const size_t total = prompt.size() + s.request.sampling.max_tokens;
  s.chain = hasher.Chain(prompt);
  if (s.request.handoff && s.request.handoff->receive_layers && receiver) {
    // Every prompt token's KV comes from the prefill node's slices.
    s.pages.clear();
    s.local_blocks = 0;
    const size_t own = CeilDiv(total, options.page_tokens);
    cache.MakeRoom(own);
    auto allocated = pool.AllocateMany(own);
    if (!allocated) return false;
    s.pages = std::move(*allocated);
    s.sampler.emplace(s.request.sampling);
    s.receiving = true;
    return true;
  }
  // At least the last prompt token is computed: its logits choose the first output token. A
  // decode node taking a handoff is given that token, so it may reuse every full block.
  const bool taking_handoff = s.request.handoff && s.request.handoff->first_token && blocks;
  const size_t reusable =
      taking_handoff ? s.chain.size() : std::min(s.chain.size(), (prompt.size() - 1) / options.block_tokens);
  s.pages.clear();
  // Without prefix reuse only a handoff's blocks are taken (they are this request's own KV).
  const bool reuse = options.reuse_prefixes || taking_handoff;
  s.local_blocks = options.local_cache && reuse ? cache.AcquirePrefix(s.chain, reusable, s.pages) : 0;
  const size_t own = CeilDiv(total, options.page_tokens) - s.pages.size();
  cache.MakeRoom(own);
  auto allocated = pool.AllocateMany(own);
  if (!allocated) {
    cache.Release(std::span(s.chain).first(s.local_blocks));
    s.pages.clear();
    return false;
  }
  s.pages.insert(s.pages.end(), allocated->begin(), allocated->end());
  size_t fetched = 0;
  if (blocks && reuse && s.local_blocks < reusable) {
    const FetchResult got =
        blocks->FetchPrefix(std::span(s.chain).subspan(s.local_blocks), reusable - s.local_blocks,
                            std::span(s.pages).subspan(s.local_blocks * pages_per_block), pool, options.lease_ms);
    fetched = got.blocks;
    MutexLock lock(mu);
    stats.kv_bytes_fetched += got.blocks * blocks->block_bytes();
    stats.blocks_rejected += got.rejected;
    stats.store_errors += got.store_down ? 1 : 0;
  }
  s.reused_blocks = s.local_blocks + fetched;
  s.computed_to = s.reused_blocks * options.block_tokens;
  s.result.prompt.local = s.local_blocks * options.block_tokens;
  s.result.prompt.store = fetched * options.block_tokens;
  s.sampler.emplace(s.request.sampling);
  if (taking_handoff && s.reused_blocks == s.chain.size()) TakeHandoffTail(s);
  s.result.prompt.computed = prompt.size() - s.computed_to;
  if (s.request.handoff && s.request.handoff->send_layers && sender) {
    s.sending = sender->Begin(s.request.handoff->tail_key, static_cast<uint32_t>(prompt.size()));
    SendLayers(s, 0, s.computed_to / options.page_tokens, 0, pool.geometry().layers);  // the reused prefix
  }
  return true;
}

void NodeRuntime::Impl::PrefillChunk(Sequence& s) {
  const std::vector<uint32_t>& prompt = s.request.prompt;
  const size_t n = std::min(options.max_batch_tokens, prompt.size() - s.computed_to);
  const bool last = s.computed_to + n == prompt.size();
  std::vector<float> logits;
  if (s.sending) {
    layer_cursor = LayerCursor{&s, s.computed_to / options.page_tokens, CeilDiv(s.computed_to + n, options.page_tokens), 0};
    engine->SetLayerProgress([this](uint32_t done) { OnLayers(done); }, LayerGroup());
  }
  const Status st = engine->Forward(std::span(prompt).subspan(s.computed_to, n), static_cast<uint32_t>(s.computed_to),
                                    s.pages, pool, last ? &logits : nullptr);
  step.prefill.push_back({n, s.computed_to});
  if (!st.ok()) {
    layer_cursor.reset();
    std::unique_ptr<Sequence> failed = std::move(prefilling.front());
    prefilling.pop_front();
    Finish(std::move(failed), st);
    return;
  }
  s.computed_to += n;
  if (!last) return;
  // Every full prompt block computed here goes to the store, in the background (after a
  // layer-wise handoff's slices: they are on the decode node's critical path).
  if (s.sending) {
    s.deferred_puts = MakePutJob(s, s.reused_blocks, s.chain.size());
  } else {
    QueuePuts(s, s.reused_blocks, s.chain.size());
    if (s.request.handoff && !s.request.handoff->first_token) PutHandoffTail(s);
  }
  s.result.first_logits = logits;
  Emit(s, logits);
}

void NodeRuntime::Impl::Emit(Sequence& s, std::vector<float>& logits) {
  const uint32_t token = s.sampler->Next(logits);
  s.generated.push_back(token);
  step_tokens.emplace_back(&s, token);
}

void NodeRuntime::Impl::ReleaseTokens() {
  // Every sequence here is alive: none is finished in the step that chose one of its tokens.
  for (const auto& [s, token] : step_tokens) {
    if (!s->first_released) {
      s->first_released = true;
      s->result.ttft_seconds = std::chrono::duration<double>(Clock::now() - s->submitted).count();
      if (s->request.request_id && options.ttft_reports) options.ttft_reports(*s->request.request_id, s->result.ttft_seconds);
    }
    if (s->on_token) s->on_token(token);
  }
  step_tokens.clear();
}

void NodeRuntime::Impl::DecodeStep() {
  for (auto it = decoding.begin(); it != decoding.end();) {
    Sequence& s = **it;
    if (s.cancelled()) {
      std::unique_ptr<Sequence> gone = std::move(*it);
      it = decoding.erase(it);
      Finish(std::move(gone), CancelledStatus());
      continue;
    }
    const auto& stops = s.request.sampling.stop_tokens;
    const bool stopped = !s.generated.empty() && std::find(stops.begin(), stops.end(), s.generated.back()) != stops.end();
    if (stopped || s.generated.size() >= s.request.sampling.max_tokens) {
      s.result.finish_reason = stopped ? "stop" : "length";
      std::unique_ptr<Sequence> done = std::move(*it);
      it = decoding.erase(it);
      Finish(std::move(done), Status::Ok());
      continue;
    }
    const uint32_t position = static_cast<uint32_t>(s.request.prompt.size() + s.generated.size() - 1);
    std::vector<float> logits;
    const Status st = engine->Forward(std::span(&s.generated.back(), 1), position, s.pages, pool, &logits);
    ++step.decode_sequences;
    step.decode_context_tokens += position + 1;
    if (!st.ok()) {
      std::unique_ptr<Sequence> failed = std::move(*it);
      it = decoding.erase(it);
      Finish(std::move(failed), st);
      continue;
    }
    Emit(s, logits);
    ++it;
  }
}

void NodeRuntime::Impl::QueuePuts(Sequence& s, size_t from, size_t to) {
  if (std::shared_ptr<PutJob> job = MakePutJob(s, from, to)) EnqueuePut(std::move(*job));
}

std::shared_ptr<PutJob> NodeRuntime::Impl::MakePutJob(Sequence& s, size_t from, size_t to) {
  if (!blocks || !options.store_puts || from >= to) return nullptr;
  auto job = std::make_shared<PutJob>();
  job->keys.assign(s.chain.begin() + static_cast<long>(from), s.chain.begin() + static_cast<long>(to));
  if (from > 0) job->first_parent = s.chain[from - 1];
  const size_t page_bytes = pool.page_bytes();
  for (size_t b = from; b < to; ++b) {
    std::vector<std::byte> bytes(blocks->block_bytes());
    for (size_t p = 0; p < pages_per_block; ++p) {
      const Status read =
          pool.ReadPage(s.pages[b * pages_per_block + p], std::span(bytes).subspan(p * page_bytes, page_bytes));
      if (!read.ok()) {  // not stored (the chain stops here); the request itself is unaffected
        spdlog::warn("kvstash-node: cannot read block {} of a sequence for the store: {}", b, read.ToString());
        to = b;
        break;
      }
    }
    if (b >= to) break;
    job->bytes.push_back(std::move(bytes));
  }
  job->keys.resize(job->bytes.size());
  if (job->keys.empty()) return nullptr;
  return job;
}

void NodeRuntime::Impl::EnqueuePut(PutJob job) {
  {
    MutexLock lock(put_mu);
    puts.push_back(std::move(job));
  }
  put_cv.notify_one();
}

void NodeRuntime::Impl::SendLayers(Sequence& s, size_t first_page, size_t end_page, uint32_t first_layer,
                                   uint32_t layers) {
  if (!s.sending || !s.send_error.ok() || layers == 0 || first_page >= end_page) return;
  const size_t per_page = size_t{layers} * 2 * pool.plane_bytes();
  const uint32_t run = SlicePages(2 * pool.plane_bytes(), layers);
  for (size_t p = first_page; p < end_page; p += run) {
    const size_t n = std::min<size_t>(run, end_page - p);
    std::vector<std::byte> slice(kSliceHeaderBytes + n * per_page);
    for (size_t i = 0; i < n && s.send_error.ok(); ++i) {
      s.send_error = pool.ReadLayers(s.pages[p + i], first_layer, layers,
                                     std::span(slice).subspan(kSliceHeaderBytes + i * per_page, per_page));
    }
    if (!s.send_error.ok()) {
      spdlog::warn("kvstash-node: cannot read KV for the handoff: {}", s.send_error.ToString());
      return;
    }
    SliceHeader header;
    header.first_page = static_cast<uint32_t>(p);
    header.pages = static_cast<uint32_t>(n);
    header.first_layer = first_layer;
    header.layers = layers;
    sender->Send(s.sending, header, std::move(slice));
  }
}

void NodeRuntime::Impl::OnLayers(uint32_t done) {
  if (!layer_cursor) return;
  const uint32_t pool_layers = pool.geometry().layers, model_layers = engine->config().num_hidden_layers;
  // An emulated pool may keep fewer layers than the model has: the same share of them.
  const uint32_t ready = static_cast<uint32_t>(uint64_t{std::min(done, model_layers)} * pool_layers / model_layers);
  LayerCursor& c = *layer_cursor;
  if (ready <= c.sent) return;
  SendLayers(*c.s, c.first_page, c.end_page, c.sent, ready - c.sent);
  c.sent = ready;
}

void NodeRuntime::Impl::FlushLayers() {
  if (!layer_cursor) return;
  OnLayers(engine->config().num_hidden_layers);
  layer_cursor.reset();
  engine->SetLayerProgress({}, 1);
}

void NodeRuntime::Impl::StartReceiving(std::unique_ptr<Sequence> s) {
  const uint64_t id = next_receive_id++;
  HandoffReceiver::Job job;
  job.id = id;
  job.handoff_key = s->request.handoff->tail_key;
  job.prompt_tokens = static_cast<uint32_t>(s->request.prompt.size());
  job.pages.assign(s->pages.begin(), s->pages.begin() + static_cast<long>(CeilDiv(job.prompt_tokens, options.page_tokens)));
  job.cancel = s->request.cancel;
  receiving.emplace(id, std::move(s));
  receiver->Start(std::move(job));
}

void NodeRuntime::Impl::TakeReceived() {
  std::vector<std::pair<uint64_t, Result<uint32_t>>> got;
  {
    MutexLock lock(mu);
    got.swap(received);
  }
  for (auto& [id, first] : got) {
    auto found = receiving.find(id);
    if (found == receiving.end()) continue;
    std::unique_ptr<Sequence> s = std::move(found->second);
    receiving.erase(found);
    if (!first.ok()) {
      Finish(std::move(s), first.status());
      continue;
    }
    const size_t prompt = s->request.prompt.size();
    s->computed_to = prompt;
    s->result.prompt = PromptSources{0, prompt, 0};
    s->sampler->Skip();
    s->result.ttft_seconds = std::chrono::duration<double>(Clock::now() - s->submitted).count();
    s->first_released = true;
    s->generated.push_back(*first);
    if (s->on_token) s->on_token(*first);
    s->handed_off = true;
    decoding.push_back(std::move(s));
  }
}

void NodeRuntime::Impl::Finish(std::unique_ptr<Sequence> s, Status status) {
  // Full prompt blocks held in this sequence's own pages join the local cache; the rest is freed.
  const size_t full = s->chain.size();
  std::vector<bool> kept(s->pages.size(), false);
  for (size_t b = 0; b < s->local_blocks; ++b) {
    for (size_t p = 0; p < pages_per_block; ++p) kept[b * pages_per_block + p] = true;  // the cache's own pages
  }
  if (status.ok() && options.local_cache) {
    for (size_t b = s->local_blocks; b < full; ++b) {
      std::span<const uint32_t> block_pages = std::span(s->pages).subspan(b * pages_per_block, pages_per_block);
      if (cache.Insert(s->chain[b], block_pages)) {
        for (size_t p = 0; p < pages_per_block; ++p) kept[b * pages_per_block + p] = true;
      }
    }
  }
  for (size_t i = 0; i < s->pages.size(); ++i) {
    if (!kept[i]) pool.Free(s->pages[i]);
  }
  cache.Release(std::span(s->chain).first(s->local_blocks));
  {
    MutexLock lock(mu);
    if (status.ok()) {
      ++stats.requests_done;
      stats.prompt_tokens_local += s->result.prompt.local;
      stats.prompt_tokens_store += s->result.prompt.store;
      stats.prompt_tokens_computed += s->result.prompt.computed;
    } else if (status.code() == StatusCode::kCancelled) {
      ++stats.requests_cancelled;
    } else {
      ++stats.requests_failed;
    }
    --in_flight;
  }
  idle_cv.notify_all();
  if (s->sending) {
    // A layer-wise handoff's prefill: the result waits for its slices and marker to be stored.
    const bool sent_all = status.ok() && s->send_error.ok() && !s->generated.empty();
    auto done = std::make_shared<std::promise<Result<CompletionResult>>>(std::move(s->done));
    auto result = std::make_shared<CompletionResult>(std::move(s->result));
    result->tokens = s->generated;
    sender->Finish(s->sending, sent_all ? SliceKind::kDone : SliceKind::kAborted,
                   sent_all ? s->generated.front() : 0,
                   [this, done, result, status, send_error = s->send_error, puts = s->deferred_puts](Status stored) {
                     if (puts && stored.ok()) EnqueuePut(std::move(*puts));
                     if (!status.ok()) {
                       done->set_value(status);
                     } else if (!send_error.ok()) {
                       done->set_value(Status(StatusCode::kInternal, "handoff: " + send_error.ToString()));
                     } else if (!stored.ok()) {
                       done->set_value(stored);
                     } else {
                       done->set_value(std::move(*result));
                     }
                   });
    return;
  }
  if (status.ok()) {
    s->result.tokens = std::move(s->generated);
    s->done.set_value(std::move(s->result));
  } else {
    s->done.set_value(status);
  }
}

void NodeRuntime::Impl::PutLoop() {
  while (true) {
    PutJob job;
    {
      MutexLock lock(put_mu);
      lock.Wait(put_cv, [&] { put_mu.AssertHeld(); return put_stop || !puts.empty(); });
      if (puts.empty()) return;
      job = std::move(puts.front());
      puts.pop_front();
      ++puts_busy;
    }
    std::vector<PutItem> items;
    for (size_t i = 0; i < job.keys.size(); ++i) {
      PutItem item;
      item.key = job.keys[i];
      item.parent = i == 0 ? job.first_parent : std::optional<BlockKey>(job.keys[i - 1]);
      item.data = job.bytes[i];
      items.push_back(item);
    }
    Result<PutResult> put = store->Put(items);
    {
      MutexLock lock(mu);
      if (put.ok()) {
        stats.kv_bytes_stored += put->stored * (job.bytes.empty() ? 0 : job.bytes.front().size());
      } else {
        ++stats.store_errors;
      }
    }
    if (!put.ok()) spdlog::warn("kvstash-node: storing {} blocks failed: {}", items.size(), put.status().ToString());
    MutexLock lock(put_mu);
    --puts_busy;
    put_cv.notify_all();
  }
}

}  // namespace kvstash::node
