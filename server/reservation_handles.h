// ReservationHandles: the names under which clients hold their open two-phase put reservations.
//
// A handle is 16 bytes from the kernel's CSPRNG (getrandom), never derived from the tier's
// sequential reservation id, and it is bound to the session that opened it: the gRPC connection
// (ServerContext::peer(), "ipv4:HOST:PORT" — one per client channel). A handle presented by any
// other connection is treated exactly like one that does not exist, so a client can neither
// guess another's reservation nor use one it overheard from another connection. Each entry also
// keeps its two-sided receive's tag (8 more random bytes) and whether the put is two-sided, which
// decides how PutCommit proves the bytes arrived.
//
// Thread-safety: thread-safe (one mutex; entries are few and short-lived).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/mutex.h"
#include "kvstash/result.h"

namespace kvstash::server {

class ReservationHandles {
 public:
  static constexpr size_t kHandleBytes = 16;

  struct Entry {
    uint64_t id = 0;          // the tier's reservation id (never leaves the daemon)
    std::string session;      // who may use the handle
    uint64_t push_tag = 0;    // two-sided: the tag of the receive posted into the region
    bool two_sided = false;
    uint64_t deadline_ms = 0;  // the reservation's, on the tier's clock
  };

  // A fresh 64-bit tag for a two-sided receive, from the kernel's CSPRNG; never 0.
  static uint64_t RandomTag();

  // Registers `entry` under a new random handle and returns the handle. Entries whose deadline
  // passed before `now_ms` and whose reservation `is_open` no longer reports are forgotten first.
  template <typename IsOpen>
  std::string Open(Entry entry, uint64_t now_ms, IsOpen&& is_open) {
    std::string handle = NewHandle();
    MutexLock lock(mu_);
    while (!by_deadline_.empty() && by_deadline_.begin()->first < now_ms) {
      auto oldest = by_deadline_.begin();
      auto it = entries_.find(oldest->second);
      if (it != entries_.end() && is_open(it->second.id)) break;  // the tier's clock runs behind ours
      if (it != entries_.end()) entries_.erase(it);
      by_deadline_.erase(oldest);
    }
    by_deadline_.emplace(entry.deadline_ms, handle);
    entries_.emplace(handle, std::move(entry));
    return handle;
  }
  // The entry `handle` names, when `session` opened it. NOT_FOUND otherwise — the same answer for
  // a handle that never existed, has ended, or belongs to another connection. INVALID_ARGUMENT
  // for a handle of the wrong size.
  Result<Entry> Find(std::string_view handle, std::string_view session) const;
  // Forgets `handle` (after commit or abort). Unknown handles are ignored.
  void Close(std::string_view handle);
  size_t size() const;

 private:
  static std::string NewHandle();

  mutable Mutex mu_;
  std::unordered_map<std::string, Entry> entries_ GUARDED_BY(mu_);
  std::multimap<uint64_t, std::string> by_deadline_ GUARDED_BY(mu_);  // may name closed handles
};

}  // namespace kvstash::server
