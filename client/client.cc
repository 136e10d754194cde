#include "kvstash/client.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstring>
#include <unordered_map>

#include "client/cluster_router.h"
#include "client/connection.h"

namespace kvstash {

std::string_view ToString(TierName tier) {
  switch (tier) {
    case TierName::kHbm: return "hbm";
    case TierName::kDram: return "dram";
    case TierName::kSsd: return "ssd";
    case TierName::kUnknown: break;
  }
  return "unknown";
}

std::string_view ToString(BufferMemory memory) {
  switch (memory) {
    case BufferMemory::kHost: return "host";
    case BufferMemory::kCudaPinned: return "cuda-pinned";
    case BufferMemory::kCudaDevice: return "cuda-device";
  }
  return "unknown";
}

std::string_view ToString(PutOutcome outcome) {
  switch (outcome) {
    case PutOutcome::kStored: return "stored";
    case PutOutcome::kExists: return "exists";
    case PutOutcome::kBusy: return "busy";
    case PutOutcome::kNoSpace: return "no_space";
    case PutOutcome::kUnreachable: return "unreachable";
  }
  return "unknown";
}

struct Client::Impl {
  explicit Impl(const ClientOptions& o) : options(o), engines(o) {}
  ClientOptions options;
  client_internal::EngineSource engines;  // before the connections, which use it
  std::shared_ptr<client_internal::Connection> single;     // one daemon
  std::unique_ptr<client_internal::ClusterRouter> router;  // a cluster
  std::string single_member_id;
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

const ClientOptions& Client::options() const { return impl_->options; }

Result<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  if (options.max_inline_batch_bytes == 0 || options.max_inline_batch_bytes > limits::kMaxInlineBytes) {
    return InvalidArgument("max_inline_batch_bytes must be 1..64MiB");
  }
  auto impl = std::make_unique<Impl>(options);
  if (!options.etcd_endpoints.empty() || !options.peers.empty()) {
    KVSTASH_ASSIGN_OR_RETURN(impl->router, client_internal::ClusterRouter::Start(options, impl->engines));
  } else {
    if (options.address.empty()) return InvalidArgument("no daemon address given");
    KVSTASH_ASSIGN_OR_RETURN(impl->single, client_internal::Connection::Open(options, options.address, impl->engines));
    Result<HealthInfo> health = impl->single->Health();
    if (health.ok()) impl->single_member_id = health->member_id;
  }
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

#define KVSTASH_ROUTE(call) return impl_->router ? impl_->router->call : impl_->single->call

Result<HealthInfo> Client::Health() { KVSTASH_ROUTE(Health()); }

Result<LookupResult> Client::Lookup(std::span<const BlockKey> chain, uint64_t lease_ms) {
  KVSTASH_ROUTE(Lookup(chain, lease_ms));
}

Result<PutResult> Client::Put(std::span<const PutItem> items, const PutOptions& put_options) {
  KVSTASH_ROUTE(Put(items, put_options));
}

Result<PutResult> Client::PutChain(std::span<const BlockKey> chain, std::span<const std::span<const std::byte>> blocks,
                                   const PutOptions& put_options) {
  if (chain.size() != blocks.size()) return InvalidArgument("PutChain needs one block per key");
  std::vector<PutItem> items(chain.size());
  for (size_t i = 0; i < chain.size(); ++i) {
    items[i].key = chain[i];
    if (i > 0) items[i].parent = chain[i - 1];
    items[i].data = blocks[i];
  }
  return Put(items, put_options);
}

Status Client::Get(std::span<GetItem> items) { KVSTASH_ROUTE(Get(items)); }

Status Client::ReleaseLeases(std::span<const BlockInfo> blocks) { KVSTASH_ROUTE(ReleaseLeases(blocks)); }

Result<std::vector<RemoveOutcome>> Client::Remove(std::span<const BlockKey> keys) { KVSTASH_ROUTE(Remove(keys)); }

Result<std::vector<std::optional<BlockInfo>>> Client::Stat(std::span<const BlockKey> keys) { KVSTASH_ROUTE(Stat(keys)); }

Result<StoreStats> Client::Stats() { KVSTASH_ROUTE(Stats()); }

Result<ListResult> Client::List(const std::optional<BlockKey>& start_after, uint32_t limit) {
  KVSTASH_ROUTE(List(start_after, limit));
}

#undef KVSTASH_ROUTE

std::vector<MemberInfo> Client::Members() const {
  if (impl_->router) return impl_->router->Members();
  MemberInfo m;
  m.id = impl_->single_member_id.empty() ? impl_->options.address : impl_->single_member_id;
  m.address = impl_->options.address;
  return {m};
}

std::vector<MemberStats> Client::ClusterStats() {
  if (impl_->router) return impl_->router->ClusterStats();
  MemberStats m;
  m.member = Members().front();
  Result<StoreStats> s = impl_->single->Stats();
  if (s.ok()) {
    m.reachable = true;
    m.stats = std::move(*s);
  } else {
    m.error = s.status().message();
  }
  return {m};
}

std::string Client::OwnerOf(const BlockKey& key) const {
  if (impl_->router) return impl_->router->OwnerOf(key);
  return Members().front().id;
}

std::future<Status> Client::GetAsync(std::span<GetItem> items) {
  return std::async(std::launch::async, [this, items] { return Get(items); });
}

std::future<Result<PutResult>> Client::PutAsync(std::span<const PutItem> items, const PutOptions& put_options) {
  return std::async(std::launch::async, [this, items, put_options] { return Put(items, put_options); });
}

Status Client::RegisterBuffer(void* base, size_t length) {
  std::shared_ptr<transfer::TransferEngine> engine = impl_->engines.Existing();
  if (!engine) return Status::Ok();
  return engine->RegisterBuffer(base, length);
}

Status Client::UnregisterBuffer(void* base) {
  std::shared_ptr<transfer::TransferEngine> engine = impl_->engines.Existing();
  if (!engine) return Status::Ok();
  return engine->UnregisterBuffer(base);
}

std::string Client::data_path() const {
  if (impl_->single) {
    if (!impl_->single->uses_ucx()) return "inline";
    return "ucx (" + impl_->single->ucx_transports() + ", " +
           std::string(transfer::ToString(impl_->single->protocol())) + ")";
  }
  if (!impl_->engines.Existing()) return "inline";
  // In a cluster each member's protocol is chosen on its own.
  return "ucx (" + (impl_->options.ucx_transports.empty() ? std::string("default") : impl_->options.ucx_transports) + ")";
}

}  // namespace kvstash
