// NodeRuntime and the store: newly computed blocks copied out of the pages into put jobs, which
// the put thread stores in order (dedup, parents linked) so the step loop never waits on the
// store; and a prefill/decode handoff's tail (the tokens after the last full block) stored by
// the prefill side and fetched by the decode side.
#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "node/runtime_impl.h"

namespace kvstash::node {

using runtime_internal::CeilDiv;
using runtime_internal::Clock;

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

void NodeRuntime::Impl::TakeHandoffTail(Sequence& s) {
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

void NodeRuntime::Impl::PutHandoffTail(Sequence& s) {
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
