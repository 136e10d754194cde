// Clock: the one source of time for leases, reservation timeouts and latency. Production code
// uses SteadyClock; tests inject a ManualClock so expiry is driven without sleeping.
//
// Thread-safety: NowMs() may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace kvstash {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic milliseconds since an arbitrary epoch.
  virtual uint64_t NowMs() const = 0;
};

class SteadyClock final : public Clock {
 public:
  uint64_t NowMs() const override {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
  }
  static SteadyClock* Default() {
    static SteadyClock clock;
    return &clock;
  }
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(uint64_t start_ms = 1'000'000) : now_ms_(start_ms) {}
  uint64_t NowMs() const override { return now_ms_.load(std::memory_order_acquire); }
  void AdvanceMs(uint64_t ms) { now_ms_.fetch_add(ms, std::memory_order_acq_rel); }

 private:
  std::atomic<uint64_t> now_ms_;
};

}  // namespace kvstash
