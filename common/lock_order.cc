// The run-time lock-order check of common/mutex.h: a per-thread list of the ranked mutexes held.
// Compiled in every build; Mutex calls it only where KVSTASH_CHECK_LOCK_ORDER is 1.
#include "common/mutex.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

namespace kvstash::lock_order {
namespace {

// Ranked mutexes this thread holds, in the order taken. A thread holds a handful at most.
std::vector<std::pair<int, const void*>>& Held() {
  thread_local std::vector<std::pair<int, const void*>> held;
  return held;
}

}  // namespace

void NoteAcquire(int rank, const void* mutex) {
  auto& held = Held();
  for (const auto& [held_rank, held_mutex] : held) {
    if (held_rank >= rank) {
      std::fprintf(stderr,
                   "kvstash: lock order violated: taking a mutex of rank %d (%p) while holding one of rank "
                   "%d (%p); see docs/ARCHITECTURE.md section 6\n",
                   rank, mutex, held_rank, held_mutex);
      std::abort();
    }
  }
  held.emplace_back(rank, mutex);
}

void NoteRelease(int rank, const void* mutex) {
  auto& held = Held();
  auto it = std::find(held.rbegin(), held.rend(), std::pair<int, const void*>(rank, mutex));
  if (it != held.rend()) held.erase(std::next(it).base());
}

}  // namespace kvstash::lock_order
