#include "node/handoff_receiver.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>

namespace kvstash::node {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kBatch = 4;  // slice keys asked for per poll
// A request's polls pause 1 ms after a miss, doubling while nothing arrives up to 64 ms (a request
// whose prefill is still queued costs ~16 Gets a second), and none after a slice arrived.
constexpr auto kFirstPause = std::chrono::microseconds(1000), kLongestPause = std::chrono::microseconds(64'000);

}  // namespace

struct HandoffReceiver::Active {
  Job job;
  uint32_t next = 0;  // the next slice index
  SliceCoverage coverage;
  Clock::time_point last_progress;
  std::optional<Result<uint32_t>> result;
  Clock::time_point next_poll;
  std::chrono::microseconds pause;
};

HandoffReceiver::HandoffReceiver(Client& store, KvPagePool& pool, uint32_t vocab_size,
                                 std::chrono::milliseconds idle_timeout, Done done)
    : store_(store), pool_(pool), vocab_size_(vocab_size), idle_timeout_(idle_timeout), done_(std::move(done)) {
  buffers_.resize(kBatch);
  for (auto& b : buffers_) b.resize(SliceBufferBytes(pool_.page_bytes()));
  thread_ = std::thread([this] { Loop(); });
}

HandoffReceiver::~HandoffReceiver() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void HandoffReceiver::Start(Job job) {
  {
    MutexLock lock(mu_);
    incoming_.push_back(std::move(job));
  }
  cv_.notify_all();
}

bool HandoffReceiver::Poll(Active& a) {
  SliceLimits limits;
  limits.prompt_tokens = a.job.prompt_tokens;
  limits.prompt_pages = static_cast<uint32_t>(a.job.pages.size());
  limits.layers = pool_.geometry().layers;
  limits.layer_bytes_per_page = 2 * pool_.plane_bytes();
  limits.vocab_size = vocab_size_;
  std::vector<GetItem> items(kBatch);
  for (size_t i = 0; i < kBatch; ++i) {
    items[i].key = SliceKey(a.job.handoff_key, a.next + static_cast<uint32_t>(i));
    items[i].buffer = buffers_[i];
  }
  if (!store_.Get(items).ok()) return false;  // the store is unreachable: try again until the timeout
  std::vector<BlockKey> applied;
  for (size_t i = 0; i < kBatch && !a.result; ++i) {
    GetItem& item = items[i];
    if (!item.found) {
      if (item.status.code() != StatusCode::kNotFound) {
        a.result = Status(StatusCode::kDataLoss, "handoff slice " + std::to_string(a.next) +
                                                     " could not be read: " + item.status.ToString());
      }
      break;
    }
    limits.expected_index = a.next;
    Result<ParsedSlice> slice = ParseSlice(std::span(buffers_[i]).first(item.size), limits);
    if (!slice.ok()) {
      a.result = slice.status();
      break;
    }
    const SliceHeader& h = slice->header;
    applied.push_back(item.key);
    ++a.next;
    slices_.fetch_add(1, std::memory_order_relaxed);
    bytes_.fetch_add(item.size, std::memory_order_relaxed);
    if (h.kind == SliceKind::kAborted) {
      a.result = Unavailable("the prefill node gave up on the request (its prefill failed or was cancelled)");
    } else if (h.kind == SliceKind::kDone) {
      if (auto gap = a.coverage.FirstGap()) {
        a.result = Status(StatusCode::kDataLoss, "handoff done without the KV of page " + std::to_string(gap->first) +
                                                     ", layer " + std::to_string(gap->second));
      } else {
        a.result = h.first_token;
      }
    } else {
      const size_t per_page = size_t{h.layers} * limits.layer_bytes_per_page;
      for (uint32_t p = 0; p < h.pages; ++p) {
        const Status written =
            pool_.WriteLayers(a.job.pages[h.first_page + p], h.first_layer, h.layers,
                              slice->payload.subspan(size_t{p} * per_page, per_page));
        if (!written.ok()) {
          a.result = Status(StatusCode::kInternal, "writing handoff slice " + std::to_string(h.index) +
                                                       " into the pages: " + written.ToString());
          break;
        }
      }
      a.coverage.Add(h);
    }
  }
  if (!applied.empty()) (void)store_.Remove(applied);
  return !applied.empty();
}

void HandoffReceiver::Loop() {
  std::list<Active> active;
  while (true) {
    {
      MutexLock lock(mu_);
      if (active.empty()) {
        lock.Wait(cv_, [&] { mu_.AssertHeld(); return stop_ || !incoming_.empty(); });
      } else {
        Clock::time_point earliest = active.front().next_poll;
        for (const Active& a : active) earliest = std::min(earliest, a.next_poll);
        lock.WaitUntil(cv_, earliest, [&] { mu_.AssertHeld(); return stop_ || !incoming_.empty(); });
      }
      for (Job& job : incoming_) {
        const uint32_t pages = static_cast<uint32_t>(job.pages.size());
        const auto now = Clock::now();
        active.push_back(Active{std::move(job), 0, SliceCoverage(pages, pool_.geometry().layers), now, {}, now,
                                kFirstPause});
      }
      incoming_.clear();
      if (stop_) break;
    }
    for (auto it = active.begin(); it != active.end();) {
      Active& a = *it;
      const auto now = Clock::now();
      if (a.job.cancel && a.job.cancel->load(std::memory_order_acquire)) {
        a.result = Status(StatusCode::kCancelled, "the request was cancelled during its handoff");
      } else if (now < a.next_poll) {
        ++it;
        continue;
      } else if (Poll(a)) {
        // Slices are flowing: ask again at once, and soon after that.
        a.last_progress = a.next_poll = Clock::now();
        a.pause = kFirstPause;
      } else if (!a.result && now - a.last_progress > idle_timeout_) {
        a.result = Status(StatusCode::kDeadlineExceeded,
                          "no KV from the prefill node for " + std::to_string(idle_timeout_.count()) +
                              " ms (waiting for handoff slice " + std::to_string(a.next) + ")");
      } else {
        a.next_poll = now + a.pause;
        a.pause = std::min(a.pause * 2, kLongestPause);
      }
      if (!a.result) {
        ++it;
        continue;
      }
      if (!a.result->ok()) spdlog::warn("kvstash-node: handoff {}: {}", a.job.handoff_key.ToHex(), a.result->status().ToString());
      done_(a.job.id, std::move(*a.result));
      it = active.erase(it);
    }
  }
  for (Active& a : active) done_(a.job.id, Status(StatusCode::kCancelled, "the node is stopping"));
}

}  // namespace kvstash::node
