// Connection: libkvstash's link to ONE kvstashd — its gRPC channel, and its UCX target when block
// bytes move one-sided (the transfer engine itself is shared by all connections of a Client).
// Implements every Client operation against that one daemon; Client (client.cc) either forwards
// to a single Connection or, for a cluster, splits each batch by owner (client/cluster_router.h).
// Internal to libkvstash.
//
// Thread-safety: every public method is safe for concurrent use by multiple threads.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <span>
#include <vector>

#include "client/wire.h"
#include "common/mutex.h"
#include "kvstash/client.h"
#include "kvstash/v1/store.grpc.pb.h"
#include "transfer/transfer_engine.h"

namespace kvstash::client_internal {

// The one UCX transfer engine of a Client, created on first need and shared by its connections
// (so that a buffer registered once serves transfers to every daemon). Thread-safe.
class EngineSource {
 public:
  explicit EngineSource(const ClientOptions& options) : options_(options) {}
  // The engine, creating it on the first call; the error of its creation otherwise.
  Result<std::shared_ptr<transfer::TransferEngine>> GetOrCreate();
  // The engine if one was created, else null.
  std::shared_ptr<transfer::TransferEngine> Existing() const;

 private:
  const ClientOptions options_;
  mutable Mutex mu_;
  std::shared_ptr<transfer::TransferEngine> engine_ GUARDED_BY(mu_);
};

class Connection {
 public:
  // Creates the channel to `address`, checks Health and sets up the data path (UNAVAILABLE when
  // the daemon does not answer; with DataPath::kUcx also when UCX does not work to it). `engines`
  // must outlive the connection.
  static Result<std::shared_ptr<Connection>> Open(const ClientOptions& options,
                                                  const std::string& address,
                                                  EngineSource& engines);
  ~Connection();  // waits for in-flight lease releases
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const std::string& address() const { return address_; }
  // How block bytes move to this daemon, fixed at Open and kept across the daemon's restarts:
  // over UCX (with these transports and this protocol) or inline in the gRPC messages.
  bool uses_ucx() const { return engine_ != nullptr; }
  const std::string& ucx_transports() const { return ucx_transports_; }  // empty when inline
  transfer::Protocol protocol() const { return protocol_; }

  // The Client operations against this one daemon (contracts in kvstash/client.h).
  Result<HealthInfo> Health();
  Result<LookupResult> Lookup(std::span<const BlockKey> keys, uint64_t lease_ms);
  Result<PutResult> Put(std::span<const PutItem> items, const PutOptions& put_options);
  Status Get(std::span<GetItem> items);
  Status ReleaseLeases(std::span<const BlockInfo> blocks);
  Result<std::vector<RemoveOutcome>> Remove(std::span<const BlockKey> keys);
  Result<std::vector<std::optional<BlockInfo>>> Stat(std::span<const BlockKey> keys);
  Result<StoreStats> Stats();
  Result<ListResult> List(const std::optional<BlockKey>& start_after, uint32_t limit);
  // Sends ReleaseLeases without waiting for the answer (a lost release only means the lease runs
  // to its time).
  void ReleaseLeasesAsync(const std::vector<std::pair<BlockKey, uint64_t>>& leases);

 private:
  Connection(const ClientOptions& options, const std::string& address);

  std::unique_ptr<grpc::ClientContext> Context() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(options_.timeout_ms));
    Authorize(*ctx);
    return ctx;
  }
  // Adds the bearer token (ClientOptions::token) and the shared namespace, if any, to a call's
  // metadata. (The daemon's name for the namespace key is auth::kSharedNamespaceHeader.)
  void Authorize(grpc::ClientContext& ctx) const {
    if (!options_.token.empty()) ctx.AddMetadata("authorization", "Bearer " + options_.token);
    if (!options_.shared_namespace.empty()) ctx.AddMetadata("kvstash-namespace", options_.shared_namespace);
  }
  Status Call(const grpc::Status& status, std::string_view op) const {
    return client_internal::FromGrpc(status, op, options_.address);
  }

  // --- the data path (data_path.cc: setup; data_path_put.cc, data_path_get.cc) ---
  // Sets up the UCX path if the daemon offers it and options allow; probes it with one read.
  Status SetUpDataPath(EngineSource& engines);
  // The target for addresses that came from daemon incarnation `instance_id`: re-fetches the
  // daemon's data-plane description when it restarted since we last asked.
  Result<transfer::RemoteTarget> TargetFor(uint64_t instance_id);
  transfer::RemoteTarget TargetOf(const v1::DataPlaneResponse& dp) const;
  // push_lane where `dp` has it, else lane 0.
  uint32_t LaneOf(const v1::DataPlaneResponse& dp) const;
  // The protocol to use with the daemon `dp` describes (ClientOptions::ucx_protocol).
  Result<transfer::Protocol> ChooseProtocol(const v1::DataPlaneResponse& dp);

  // One batch (within the count and byte limits): PutBegin, bytes, PutCommit. Appends one outcome
  // per item.
  Status PutRound(std::span<const PutItem> items, const PutOptions& put_options,
                  std::vector<PutOutcome>& outcomes);
  // One batch as eager puts (PutOptions::eager; two-sided protocol only): request and bytes in one
  // message pair per block, the daemon's answer per block. Items whose transfer failed (the daemon
  // restarted, timed out) are retried once with PutRound. Appends one outcome per item.
  Status PutRoundEager(std::span<const PutItem> items, const PutOptions& put_options,
                       std::vector<PutOutcome>& outcomes);
  // Gives reservations back (best effort) after a failed round.
  void AbortReservations(const std::vector<std::string>& handles);

  // Inline get of items[indices]; present blocks over the response budget land in `deferred`.
  Status GetRoundInline(std::span<GetItem> items, const std::vector<size_t>& indices,
                        std::vector<size_t>& deferred);
  // UCX get of items[indices]: locate and lease (unless the item is already located), read
  // one-sided, verify, and release the leases it took.
  // `device_reader`: the items' buffers are kCudaDevice or kCudaPinned and the daemon may answer
  // with HBM copies in place (GetRequest.device_reader); every read is then two-sided, none is
  // pre-located or asked for by key, and device buffers are not re-hashed.
  Status GetRoundUcx(std::span<GetItem> items, const std::vector<size_t>& indices, bool device_reader = false);
  // Device readers' reads (located with device_reader): two-sided, HBM addresses against the HBM
  // arena's range and the rest against the DRAM arena's. Per-read statuses in reads[k].status.
  Status RunDeviceReads(uint64_t incarnation, std::span<transfer::TransferOp> reads);
  // Whether device-memory items can be read from this daemon at all; the reason when not.
  Status DeviceGetsPossible() const;
  // TargetFor(instance_id) turned two-sided, and the same over the daemon's HBM arena (length 0
  // when it does not serve HBM directly).
  Result<std::pair<transfer::RemoteTarget, transfer::RemoteTarget>> DeviceTargetsFor(uint64_t instance_id);
  // Two-sided only: asks for items[indices] by key, with no locate RPC (the daemon sends what it
  // holds in DRAM). Fills found items and misses; appends to `to_locate` the items to locate the
  // usual way (held below DRAM, or the transfer failed).
  Status GetByKey(std::span<GetItem> items, const std::vector<size_t>& indices, std::vector<size_t>& to_locate);
  // Blocks until every release sent so far has been answered (or timeout_ms passes). Remove calls
  // it so that a client's own finished reads never hold up its removes; the destructor calls it
  // because the callbacks touch this object.
  void WaitForReleases();

  // Set by Open and SetUpDataPath before the connection is shared; read-only afterwards.
  ClientOptions options_;  // options.address is this daemon's
  const std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Store::Stub> stub_;
  // Set when block bytes move over UCX; null on the inline path.
  std::shared_ptr<transfer::TransferEngine> engine_;
  std::string ucx_transports_;
  // How bytes move to this daemon, chosen once at connect and kept across its restarts.
  transfer::Protocol protocol_ = transfer::Protocol::kOneSided;
  // Two-sided, and the daemon takes eager requests (DataPlaneResponse.eager_requests).
  bool eager_ = false;
  uint32_t push_lane_ = 0;  // the lane the daemon suggested at connect; kept across its restarts
  uint64_t lease_ms_ = 5'000;  // asked for when locating blocks

  // The daemon's UCX target and the incarnation it belongs to; re-fetched when it restarts.
  Mutex target_mu_;
  transfer::RemoteTarget target_ GUARDED_BY(target_mu_);
  uint64_t instance_id_ GUARDED_BY(target_mu_) = 0;
  uint32_t target_lane_ GUARDED_BY(target_mu_) = 0;  // the two-sided lane `target_` sends to
  // The daemon's HBM arena when it sends HBM blocks from GPU memory (DataPlaneResponse.hbm_region_*).
  uint64_t hbm_base_ GUARDED_BY(target_mu_) = 0;
  uint64_t hbm_bytes_ GUARDED_BY(target_mu_) = 0;
  // Set by SetUpDataPath: the daemon serves two-sided reads and this client's UCX moves CUDA memory.
  bool two_sided_offered_ = false;
  bool moves_device_memory_ = false;

  // Lease releases sent and not answered yet (ReleaseLeasesAsync).
  Mutex releases_mu_;
  std::condition_variable releases_done_;
  size_t releases_in_flight_ GUARDED_BY(releases_mu_) = 0;
};

}  // namespace kvstash::client_internal
