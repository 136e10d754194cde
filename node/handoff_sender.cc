#include "node/handoff_sender.h"

#include <spdlog/spdlog.h>

namespace kvstash::node {

struct HandoffSender::Request {
  BlockKey key;
  uint32_t prompt_tokens = 0;
  uint32_t next_index = 0;  // queued so far; guarded by the sender's mu_
  Status failed;            // the first failed put; sender thread only
};

HandoffSender::HandoffSender(Client& store) : store_(store), thread_([this] { Loop(); }) {}

HandoffSender::~HandoffSender() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::shared_ptr<HandoffSender::Request> HandoffSender::Begin(const BlockKey& handoff_key, uint32_t prompt_tokens) {
  auto r = std::make_shared<Request>();
  r->key = handoff_key;
  r->prompt_tokens = prompt_tokens;
  return r;
}

void HandoffSender::Enqueue(const std::shared_ptr<Request>& request, SliceHeader header,
                            std::vector<std::byte> slice, std::function<void(Status)> then) {
  {
    MutexLock lock(mu_);
    header.index = request->next_index++;
  }
  header.prompt_tokens = request->prompt_tokens;
  Job job;
  job.request = request;
  job.key = SliceKey(request->key, header.index);
  WriteSliceHeader(header, slice);
  job.bytes = std::move(slice);
  job.then = std::move(then);
  {
    MutexLock lock(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_all();
}

void HandoffSender::Send(const std::shared_ptr<Request>& request, SliceHeader header,
                         std::vector<std::byte> slice) {
  header.kind = SliceKind::kData;
  Enqueue(request, header, std::move(slice), {});
}

void HandoffSender::Finish(const std::shared_ptr<Request>& request, SliceKind marker, uint32_t first_token,
                           std::function<void(Status)> then) {
  SliceHeader header;
  header.kind = marker;
  header.first_token = first_token;
  Enqueue(request, header, std::vector<std::byte>(kSliceHeaderBytes), std::move(then));
}

void HandoffSender::WaitIdle() {
  MutexLock lock(mu_);
  lock.Wait(cv_, [&] { mu_.AssertHeld(); return jobs_.empty() && !busy_; });
}

uint64_t HandoffSender::slices_put() const {
  MutexLock lock(mu_);
  return slices_;
}

uint64_t HandoffSender::bytes_put() const {
  MutexLock lock(mu_);
  return bytes_;
}

void HandoffSender::Loop() {
  while (true) {
    std::vector<Job> batch;
    {
      MutexLock lock(mu_);
      lock.Wait(cv_, [&] { mu_.AssertHeld(); return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      // Consecutive jobs go in one Put (up to a marker, whose callback must follow its own put).
      size_t bytes = 0;
      while (!jobs_.empty() && batch.size() < 16 && bytes < 4 * kSliceTargetBytes) {
        bytes += jobs_.front().bytes.size();
        const bool marker = static_cast<bool>(jobs_.front().then);
        batch.push_back(std::move(jobs_.front()));
        jobs_.pop_front();
        if (marker) break;
      }
      busy_ = true;
    }
    std::vector<PutItem> items;
    std::vector<size_t> which;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!batch[i].request->failed.ok()) continue;
      items.push_back(PutItem{batch[i].key, std::nullopt, batch[i].bytes});
      which.push_back(i);
    }
    uint64_t put_slices = 0, put_bytes = 0;
    if (!items.empty()) {
      Result<PutResult> put = store_.Put(items);
      for (size_t j = 0; j < which.size(); ++j) {
        Request& r = *batch[which[j]].request;
        if (!r.failed.ok()) continue;  // an earlier item of this batch failed it
        if (!put.ok()) {
          r.failed = Unavailable("putting handoff slices failed: " + put.status().ToString());
        } else if (const PutOutcome o = put->outcomes[j]; o != PutOutcome::kStored && o != PutOutcome::kExists) {
          r.failed = ResourceExhausted("the store did not take a handoff slice (" + std::string(ToString(o)) + ")");
        } else {
          ++put_slices;
          put_bytes += items[j].data.size();
        }
        if (!r.failed.ok()) spdlog::warn("kvstash-node: handoff {}: {}", r.key.ToHex(), r.failed.ToString());
      }
    }
    for (Job& job : batch) {
      if (job.then) job.then(job.request->failed);
    }
    MutexLock lock(mu_);
    slices_ += put_slices;
    bytes_ += put_bytes;
    busy_ = false;
    cv_.notify_all();
  }
}

}  // namespace kvstash::node
