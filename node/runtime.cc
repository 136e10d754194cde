// NodeRuntime's public calls (contract in node/runtime.h): Start checks the options and starts
// the step and put threads; Submit validates and queues a request; Stats, Load, AttachStore and
// Drain; shutdown. Attaching a store (at Start or later) is here too. The step thread is in
// runtime_step.cc, the store's side in runtime_store.cc, the layer-wise handoff in
// runtime_handoff.cc; the shared state in runtime_impl.h.
#include "node/runtime.h"

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "node/runtime_impl.h"

namespace kvstash::node {

using runtime_internal::CeilDiv;
using runtime_internal::Clock;

NodeRuntime::Impl::Impl(std::unique_ptr<Engine> e, std::unique_ptr<KvPagePool> p, Client* s, const std::string& ns,
                        const NodeOptions& o)
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

void NodeRuntime::Impl::UseStore(Client* s) {
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

void NodeRuntime::Impl::TakeAttachedStore() {
  Client* attached;
  {
    MutexLock lock(mu);
    attached = std::exchange(attached_store, nullptr);
  }
  if (attached == nullptr || blocks) return;
  UseStore(attached);
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

}  // namespace kvstash::node
