// Helpers shared by the files of StoreService (store_service*.cc); not part of its interface.
#pragma once

#include <atomic>
#include <chrono>
#include <new>
#include <string>
#include <string_view>

#include "kvstash/status.h"
#include "kvstash/v1/store.grpc.pb.h"
#include "server/server_metrics.h"
#include "server/store_service.h"
#include "tiers/tier.h"

namespace kvstash::server::store_internal {

v1::Tier ToProtoTier(tiers::TierKind kind);

// Times one handler and records it, whatever the outcome; counts it as in flight meanwhile.
template <typename Fn>
grpc::Status Serve(ServerMetrics& metrics, std::atomic<int64_t>& in_flight, std::string_view op, Fn&& body) {
  in_flight.fetch_add(1, std::memory_order_relaxed);
  struct Done {
    std::atomic<int64_t>& n;
    ~Done() { n.fetch_sub(1, std::memory_order_release); }
  } done{in_flight};
  const auto start = std::chrono::steady_clock::now();
  Status status;
  try {
    status = body();
  } catch (const std::bad_alloc&) {
    status = ResourceExhausted("daemon out of memory while serving " + std::string(op));
  }
  metrics.RecordOp(op, status, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return ToGrpc(status);
}

}  // namespace kvstash::server::store_internal
