// ClusterRouter's helpers shared by its implementation files (contract in client/cluster_router.h):
//   cluster_router.cc        the member view and its updates, connections to members, replica
//                            bookkeeping and where a read looks for a key
//   cluster_router_blocks.cc the data path per call: Lookup, Put, Get (with the previous owners of
//                            a join's grace, and the pull to the new owner), ReleaseLeases
//   cluster_router_admin.cc  Remove (owner and copies), Stat, Stats, ClusterStats, List, Health
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <string>
#include <vector>

#include "client/cluster_view.h"
#include "kvstash/status.h"

namespace kvstash::client_internal::router_detail {

// Lookup rounds during a grace period; each round settles at least the first unsettled key.
inline constexpr size_t kMaxLookupRounds = 64;
// Remove also asks the members after the owner in rendezvous order: the daemons copy hot blocks to
// at most 8 members in all.
inline constexpr uint32_t kMaxRemoveCopies = 7;

// Errors the caller must see: the request itself is wrong. Everything else (the member is down,
// timed out, restarted, answered nonsense) is answered as a miss.
inline bool IsRequestError(const Status& st) {
  return st.code() == StatusCode::kInvalidArgument || st.code() == StatusCode::kFailedPrecondition;
}

// Runs fn(0..n-1), n-1 of them on their own threads and one on this thread.
inline void RunParallel(size_t n, const std::function<void(size_t)>& fn) {
  std::vector<std::future<void>> others;
  for (size_t i = 1; i < n; ++i) others.push_back(std::async(std::launch::async, fn, i));
  if (n > 0) fn(0);
  for (auto& f : others) f.get();
}

// Groups of indices by the address they go to, in first-seen order.
struct Groups {
  std::vector<std::string> addresses;
  std::vector<std::vector<size_t>> indices;
  void Add(const std::string& address, size_t i) {
    auto it = std::find(addresses.begin(), addresses.end(), address);
    if (it == addresses.end()) {
      addresses.push_back(address);
      indices.emplace_back();
      it = addresses.end() - 1;
    }
    indices[static_cast<size_t>(it - addresses.begin())].push_back(i);
  }
};

// "<id> at <address>" for a member of the snapshot; the address alone for one that left it.
inline std::string NameOf(const ClusterView::Snapshot& snap, const std::string& address) {
  for (const MemberInfo& m : snap.members) {
    if (m.address == address) return "member " + m.id + " at " + address;
  }
  return "member at " + address;
}

}  // namespace kvstash::client_internal::router_detail
