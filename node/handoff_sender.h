// HandoffSender: the prefill side of a layer-wise P/D handoff. Puts each request's slices
// (node/handoff_slices.h) to the store in the order they were queued, from its own thread, so the
// runtime's step thread only copies the bytes out of its pages.
//
// A request's slices are numbered as they are queued; its marker (done or aborted) is last. The
// callback given with the marker runs on the sender thread once the marker was put, with OK or
// the first failure of any of the request's puts (after a failure its later slices are not put:
// the decode node then waits for slices that never come and gives up, or is cancelled).
//
// Thread-safety: every method may be called from any thread; one request's slices from one thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "kvstash/client.h"
#include "node/handoff_slices.h"

namespace kvstash::node {

class HandoffSender {
 public:
  struct Request;  // one handoff's sequence of slices

  explicit HandoffSender(Client& store);
  ~HandoffSender();  // puts everything queued, then stops

  std::shared_ptr<Request> Begin(const BlockKey& handoff_key, uint32_t prompt_tokens);
  // Queues the next data slice of `request`: `slice` holds kSliceHeaderBytes of room, then the
  // payload (filled by the caller, so the bytes are copied out of the pages once). The header —
  // index and prompt length filled in here — is written into that room.
  void Send(const std::shared_ptr<Request>& request, SliceHeader header, std::vector<std::byte> slice);
  // Queues the marker; `then` runs on the sender thread after it was put (or skipped after a failure).
  void Finish(const std::shared_ptr<Request>& request, SliceKind marker, uint32_t first_token,
              std::function<void(Status)> then);
  // Returns once everything queued so far has been put.
  void WaitIdle();

  uint64_t slices_put() const;
  uint64_t bytes_put() const;

 private:
  struct Job {
    std::shared_ptr<Request> request;
    BlockKey key;
    std::vector<std::byte> bytes;
    std::function<void(Status)> then;
  };
  void Loop();
  void Enqueue(const std::shared_ptr<Request>& request, SliceHeader header, std::vector<std::byte> slice,
               std::function<void(Status)> then);

  Client& store_;
  mutable Mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_ GUARDED_BY(mu_);
  bool busy_ GUARDED_BY(mu_) = false;
  bool stop_ GUARDED_BY(mu_) = false;
  uint64_t slices_ GUARDED_BY(mu_) = 0;
  uint64_t bytes_ GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace kvstash::node
