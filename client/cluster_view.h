// ClusterView: the SDK's picture of the member set — who owns each key now (weighted rendezvous
// over the serving members, common/rendezvous.h) and, for a grace period after each change, who
// owned it before, so that lookups can fall back to the previous owner after a join.
//
// Thread-safety: Update is called by the member watcher's thread (or once at start); Snapshot
// from any thread. A snapshot is immutable and stays valid after later updates.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "common/mutex.h"
#include "common/rendezvous.h"
#include "kvstash/client.h"

namespace kvstash::client_internal {

class ClusterView {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  struct Ring {
    RendezvousRing ring;                 // serving members, by id
    std::vector<std::string> addresses;  // ring.member(i)'s gRPC address
    TimePoint until{};                   // for a previous ring: end of its grace period
    const std::string& Owner(const BlockKey& key) const { return addresses[ring.Owner(key)]; }
  };

  struct Snapshot {
    std::vector<MemberInfo> members;  // every member, draining ones too, ordered by id
    Ring current;
    std::vector<Ring> previous;  // still in their grace period, newest first
    bool empty() const { return current.ring.empty(); }
    // The owner's address, then the distinct earlier owners still in grace that are still members.
    std::vector<std::string> Sources(const BlockKey& key) const;
    // The owner and the next `replicas` members in the key's rendezvous order (where the owner
    // copies a hot block).
    std::vector<std::string> Copies(const BlockKey& key, uint32_t replicas) const;
  };

  explicit ClusterView(std::chrono::milliseconds grace) : grace_(grace) {}

  // Replaces the member set; when the serving set changed, the old ring enters its grace period.
  // Members that joined less than the grace period ago (by their started_unix_ms, wall clock)
  // also yield a previous ring without them, and members drained less than the grace period ago
  // (draining_since_unix_ms) one with them, so that a client started after a join or a drain
  // falls back too.
  void Update(std::vector<MemberInfo> members, TimePoint now = std::chrono::steady_clock::now(),
              uint64_t now_unix_ms = WallClockMs());
  static uint64_t WallClockMs();
  std::shared_ptr<const Snapshot> Current(TimePoint now = std::chrono::steady_clock::now()) const;

 private:
  static constexpr size_t kMaxPrevious = 4;
  // The ring with the members drained within the grace period still serving; empty when none.
  Ring BeforeDrains(const std::vector<MemberInfo>& members, TimePoint now, uint64_t now_unix_ms) const;
  const std::chrono::milliseconds grace_;
  mutable Mutex mu_;
  std::shared_ptr<const Snapshot> snapshot_ GUARDED_BY(mu_) = std::make_shared<Snapshot>();
};

}  // namespace kvstash::client_internal
