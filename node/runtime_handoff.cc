// NodeRuntime's layer-wise handoff. Prefill side: as the engine reports layers of a chunk
// computed, their pages are read out as slices (node/handoff_slices.h) and queued on the
// HandoffSender. Decode side: a sequence whose KV comes as slices waits in `receiving` while the
// HandoffReceiver loads them into its pages; TakeReceived moves it to decoding, or finishes it
// with the handoff's error.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "node/runtime_impl.h"

namespace kvstash::node {

using runtime_internal::CeilDiv;
using runtime_internal::Clock;

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

}  // namespace kvstash::node
