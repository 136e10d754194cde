// Waiting for a state a test cannot be told about (a daemon's counters settling): polls `done`
// until it holds or `limit` passes, yielding in between — a bounded poll, never a sleep standing
// in for synchronisation.
#pragma once

#include <chrono>
#include <thread>

namespace kvstash::testing {

template <typename Fn>
bool Eventually(Fn&& done, std::chrono::seconds limit) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < give_up) {
    if (done()) return true;
    std::this_thread::yield();
  }
  return done();
}

}  // namespace kvstash::testing
