// NodeRuntime's step thread: each step takes a store attached meanwhile and the handoffs
// received, admits waiting requests while pages allow (placing each one's prefix from the local
// cache and the store), runs one prefill chunk and one decode step for every running sequence,
// then passes on the step's tokens and KV events and records the load. Finishing a sequence
// (its pages to the local cache or the pool, its result) is here too.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "node/runtime_impl.h"

namespace kvstash::node {

using runtime_internal::CancelledStatus;
using runtime_internal::CeilDiv;
using runtime_internal::Clock;

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

}  // namespace kvstash::node
