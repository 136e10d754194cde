// Client::Impl: the state shared by the SDK's files — the gRPC stub, and the UCX transfer engine
// when the one-sided data path is in use. Internal to libkvstash.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <memory>
#include <span>
#include <vector>

#include "client/wire.h"
#include "kvstash/client.h"
#include "kvstash/v1/store.grpc.pb.h"
#include "transfer/transfer_engine.h"

namespace kvstash {

struct Client::Impl {
  ClientOptions options;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Store::Stub> stub;
  // Set when block bytes move over UCX; null on the inline path.
  std::unique_ptr<transfer::TransferEngine> engine;
  // The daemon incarnation the engine's target belongs to; guarded by target_mu with `target`.
  std::mutex target_mu;
  transfer::RemoteTarget target;
  uint64_t instance_id = 0;
  std::string ucx_transports;
  uint64_t lease_ms = 5'000;  // asked for when locating blocks

  std::unique_ptr<grpc::ClientContext> Context() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(options.timeout_ms));
    return ctx;
  }
  Status Call(const grpc::Status& status, std::string_view op) const {
    return client_internal::FromGrpc(status, op, options.address);
  }

  // Sets up the UCX path if the daemon offers it and options allow; probes it with one read.
  Status SetUpDataPath();
  // The target for addresses that came from daemon incarnation `instance_id`: re-fetches the
  // daemon's data-plane description when it restarted since we last asked.
  Result<transfer::RemoteTarget> TargetFor(uint64_t instance_id);

  // One batch (within the count and byte limits): PutBegin, bytes, PutCommit. Appends one outcome
  // per item.
  Status PutRound(std::span<const PutItem> items, const PutOptions& put_options, std::vector<PutOutcome>& outcomes);
  // Gives reservations back (best effort) after a failed round.
  void AbortReservations(const std::vector<uint64_t>& ids);

  // Inline get of items[indices]; present blocks over the response budget land in `deferred`.
  Status GetRoundInline(std::span<GetItem> items, const std::vector<size_t>& indices, std::vector<size_t>& deferred);
  // UCX get of items[indices]: locate and lease (unless the item is already located), read
  // one-sided, verify, and release the leases it took.
  Status GetRoundUcx(std::span<GetItem> items, const std::vector<size_t>& indices);
  // Sends ReleaseLeases without waiting for the answer (a lost release only means the lease runs
  // to its time).
  void ReleaseLeasesAsync(const std::vector<std::pair<BlockKey, uint64_t>>& leases);
  // Blocks until every release sent so far has been answered (or timeout_ms passes). Remove calls
  // it so that a client's own finished reads never hold up its removes; the destructor calls it
  // because the callbacks touch this object.
  void WaitForReleases();

  std::mutex releases_mu;
  std::condition_variable releases_done;
  size_t releases_in_flight = 0;  // guarded by releases_mu
};

}  // namespace kvstash
