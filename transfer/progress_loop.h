// The wait of a batch on its worker: progress until every op is over or, in a round in which
// nothing happened, the batch's deadline has passed. Time comes from a Clock (common/clock.h), so
// a test drives the timeout with a ManualClock and a fake progress function, without UCX
// (tests/unit/transfer_plan_test.cc).
#pragma once

#include <cstdint>

#include "common/clock.h"

namespace kvstash::transfer {

// A point in time on `clock`, `timeout_ms` after construction.
class Deadline {
 public:
  // REQUIRES: clock outlives the Deadline.
  Deadline(const Clock* clock, uint64_t timeout_ms) : clock_(clock), at_ms_(clock->NowMs() + timeout_ms) {}
  bool Passed() const { return clock_->NowMs() > at_ms_; }

 private:
  const Clock* clock_;
  uint64_t at_ms_;
};

// Calls progress() (returns the number of events it processed) until finished() is true — true
// then — or until a round with no events finds the deadline passed — false then (timed out).
// A round that processed events never times out: the batch is still moving. After each round
// that did not finish, idle(events) may sleep until the worker has something to do.
template <typename Progress, typename Finished, typename Idle>
bool ProgressUntil(const Deadline& deadline, Progress&& progress, Finished&& finished, Idle&& idle) {
  while (true) {
    const unsigned events = progress();
    if (finished()) return true;
    if (events == 0 && deadline.Passed()) return false;
    idle(events);
  }
}

}  // namespace kvstash::transfer
