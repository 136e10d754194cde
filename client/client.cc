#include "kvstash/client.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstring>
#include <unordered_map>

#include "client/client_impl.h"

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

std::string_view ToString(PutOutcome outcome) {
  switch (outcome) {
    case PutOutcome::kStored: return "stored";
    case PutOutcome::kExists: return "exists";
    case PutOutcome::kBusy: return "busy";
    case PutOutcome::kNoSpace: return "no_space";
  }
  return "unknown";
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() { impl_->WaitForReleases(); }

const ClientOptions& Client::options() const { return impl_->options; }

Result<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  if (options.address.empty()) return InvalidArgument("no daemon address given");
  if (options.max_inline_batch_bytes == 0 || options.max_inline_batch_bytes > limits::kMaxInlineBytes) {
    return InvalidArgument("max_inline_batch_bytes must be 1..64MiB");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(limits::kMaxGrpcMessageBytes));
  args.SetMaxSendMessageSize(static_cast<int>(limits::kMaxGrpcMessageBytes));
  // Each Client gets its own connection so that independent clients do not share one HTTP/2 stream budget.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // A restarted daemon is found again within about a second rather than gRPC's default backoff
  // of up to two minutes.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  impl->channel = grpc::CreateCustomChannel(options.address, grpc::InsecureChannelCredentials(), args);
  impl->stub = v1::Store::NewStub(impl->channel);
  std::unique_ptr<Client> client(new Client(std::move(impl)));
  Result<HealthInfo> health = client->Health();
  if (!health.ok()) return health.status();
  KVSTASH_RETURN_IF_ERROR(client->impl_->SetUpDataPath());
  return client;
}

Result<HealthInfo> Client::Health() {
  v1::HealthRequest req;
  v1::HealthResponse resp;
  auto ctx = impl_->Context();
  KVSTASH_RETURN_IF_ERROR(impl_->Call(impl_->stub->Health(ctx.get(), req, &resp), "health"));
  return HealthInfo{resp.serving(), resp.version(), resp.member_id()};
}

Result<LookupResult> Client::Lookup(std::span<const BlockKey> chain, uint64_t lease_ms) {
  if (chain.empty()) return LookupResult{};
  if (chain.size() > limits::kMaxBatchKeys) {
    return InvalidArgument("a lookup takes at most " + std::to_string(limits::kMaxBatchKeys) + " keys");
  }
  v1::LookupRequest req;
  for (const BlockKey& key : chain) req.add_keys(std::string(key.AsBytes()));
  req.set_lease_ms(lease_ms);
  v1::LookupResponse resp;
  auto ctx = impl_->Context();
  KVSTASH_RETURN_IF_ERROR(impl_->Call(impl_->stub->Lookup(ctx.get(), req, &resp), "lookup"));
  if (resp.hit_blocks() > chain.size() || static_cast<size_t>(resp.blocks_size()) != resp.hit_blocks()) {
    return Internal("daemon answered a malformed lookup");
  }
  LookupResult result;
  result.hit_blocks = resp.hit_blocks();
  for (int i = 0; i < resp.blocks_size(); ++i) {
    KVSTASH_ASSIGN_OR_RETURN(BlockInfo info, client_internal::FromProto(resp.blocks(i)));
    if (info.key != chain[static_cast<size_t>(i)]) return Internal("daemon answered a lookup out of order");
    result.blocks.push_back(std::move(info));
  }
  return result;
}

Result<PutResult> Client::Put(std::span<const PutItem> items, const PutOptions& put_options) {
  // Validate everything before sending anything.
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].data.empty() || items[i].data.size() > limits::kMaxBlockBytes) {
      return InvalidArgument("item " + std::to_string(i) + ": a block must be 1 B .. 64 MiB, not " +
                             std::to_string(items[i].data.size()) + " bytes");
    }
  }
  PutResult result;
  result.outcomes.reserve(items.size());
  size_t begin = 0;
  while (begin < items.size()) {
    // Greedy batch: by count and by inline bytes (always at least one item).
    size_t end = begin;
    uint64_t bytes = 0;
    while (end < items.size() && end - begin < limits::kMaxBatchKeys &&
           (end == begin || impl_->engine || bytes + items[end].data.size() <= impl_->options.max_inline_batch_bytes)) {
      bytes += items[end].data.size();
      ++end;
    }
    KVSTASH_RETURN_IF_ERROR(impl_->PutRound(items.subspan(begin, end - begin), put_options, result.outcomes));
    begin = end;
  }
  for (PutOutcome o : result.outcomes) {
    if (o == PutOutcome::kStored) ++result.stored;
    else if (o == PutOutcome::kExists) ++result.existed;
    else ++result.failed;
  }
  return result;
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

Status Client::Get(std::span<GetItem> items) {
  std::vector<size_t> pending;
  // Batches by count, and by the callers' buffer sizes as an estimate of the bytes coming back.
  std::vector<size_t> batch;
  uint64_t batch_bytes = 0;
  auto flush = [&]() -> Status {
    if (batch.empty()) return Status::Ok();
    std::vector<size_t> todo = std::move(batch);
    batch.clear();
    batch_bytes = 0;
    if (impl_->engine) return impl_->GetRoundUcx(items, todo);
    while (!todo.empty()) {
      std::vector<size_t> deferred;
      KVSTASH_RETURN_IF_ERROR(impl_->GetRoundInline(items, todo, deferred));
      if (deferred.size() == todo.size()) return Internal("daemon deferred every block of a get");
      todo = std::move(deferred);
    }
    return Status::Ok();
  };
  for (size_t i = 0; i < items.size(); ++i) {
    const uint64_t estimate = std::min<uint64_t>(items[i].buffer.size(), limits::kMaxBlockBytes);
    // The byte budget binds only inline, where the bytes ride in the response.
    const bool over_bytes = !impl_->engine && batch_bytes + estimate > impl_->options.max_inline_batch_bytes;
    if (!batch.empty() && (batch.size() >= limits::kMaxBatchKeys || over_bytes)) {
      KVSTASH_RETURN_IF_ERROR(flush());
    }
    batch.push_back(i);
    batch_bytes += estimate;
  }
  return flush();
}

Status Client::ReleaseLeases(std::span<const BlockInfo> blocks) {
  for (size_t begin = 0; begin < blocks.size(); begin += limits::kMaxBatchKeys) {
    const size_t end = std::min(blocks.size(), begin + limits::kMaxBatchKeys);
    v1::ReleaseLeasesRequest req;
    for (size_t i = begin; i < end; ++i) {
      if (blocks[i].lease_epoch == 0) continue;
      auto* lease = req.add_leases();
      lease->set_key(std::string(blocks[i].key.AsBytes()));
      lease->set_lease_epoch(blocks[i].lease_epoch);
    }
    if (req.leases_size() == 0) continue;
    v1::ReleaseLeasesResponse resp;
    auto ctx = impl_->Context();
    KVSTASH_RETURN_IF_ERROR(impl_->Call(impl_->stub->ReleaseLeases(ctx.get(), req, &resp), "release_leases"));
  }
  return Status::Ok();
}

Result<std::vector<RemoveOutcome>> Client::Remove(std::span<const BlockKey> keys) {
  impl_->WaitForReleases();
  std::vector<RemoveOutcome> outcomes;
  for (size_t begin = 0; begin < keys.size(); begin += limits::kMaxBatchKeys) {
    const size_t end = std::min(keys.size(), begin + limits::kMaxBatchKeys);
    v1::RemoveRequest req;
    for (size_t i = begin; i < end; ++i) req.add_keys(std::string(keys[i].AsBytes()));
    v1::RemoveResponse resp;
    auto ctx = impl_->Context();
    KVSTASH_RETURN_IF_ERROR(impl_->Call(impl_->stub->Remove(ctx.get(), req, &resp), "remove"));
    if (resp.outcomes_size() != static_cast<int>(end - begin)) return Internal("daemon answered a malformed remove");
    for (int o : resp.outcomes()) {
      outcomes.push_back(o == v1::RemoveResponse::REMOVED ? RemoveOutcome::kRemoved : RemoveOutcome::kMissing);
    }
  }
  return outcomes;
}

Result<std::vector<std::optional<BlockInfo>>> Client::Stat(std::span<const BlockKey> keys) {
  std::vector<std::optional<BlockInfo>> out;
  for (size_t begin = 0; begin < keys.size(); begin += limits::kMaxBatchKeys) {
    const size_t end = std::min(keys.size(), begin + limits::kMaxBatchKeys);
    v1::StatRequest req;
    for (size_t i = begin; i < end; ++i) req.add_keys(std::string(keys[i].AsBytes()));
    v1::StatResponse resp;
    auto ctx = impl_->Context();
    KVSTASH_RETURN_IF_ERROR(impl_->Call(impl_->stub->Stat(ctx.get(), req, &resp), "stat"));
    if (resp.entries_size() != static_cast<int>(end - begin)) return Internal("daemon answered a malformed stat");
    for (const auto& e : resp.entries()) {
      if (!e.found()) {
        out.emplace_back();
        continue;
      }
      KVSTASH_ASSIGN_OR_RETURN(BlockInfo info, client_internal::FromProto(e.info()));
      out.emplace_back(std::move(info));
    }
  }
  return out;
}

Result<StoreStats> Client::Stats() {
  v1::StatsRequest req;
  v1::StatsResponse resp;
  auto ctx = impl_->Context();
  KVSTASH_RETURN_IF_ERROR(impl_->Call(impl_->stub->Stats(ctx.get(), req, &resp), "stats"));
  return client_internal::FromProto(resp);
}

Result<ListResult> Client::List(const std::optional<BlockKey>& start_after, uint32_t limit) {
  if (limit == 0 || limit > limits::kMaxListLimit) {
    return InvalidArgument("list limit must be 1.." + std::to_string(limits::kMaxListLimit));
  }
  v1::ListRequest req;
  if (start_after) req.set_start_after(std::string(start_after->AsBytes()));
  req.set_limit(limit);
  v1::ListResponse resp;
  auto ctx = impl_->Context();
  KVSTASH_RETURN_IF_ERROR(impl_->Call(impl_->stub->List(ctx.get(), req, &resp), "list"));
  ListResult result;
  for (const auto& b : resp.blocks()) {
    KVSTASH_ASSIGN_OR_RETURN(BlockInfo info, client_internal::FromProto(b));
    result.blocks.push_back(std::move(info));
  }
  if (!resp.next_start_after().empty()) {
    KVSTASH_ASSIGN_OR_RETURN(result.next_start_after, BlockKey::FromBytes(resp.next_start_after()));
  }
  return result;
}

std::future<Status> Client::GetAsync(std::span<GetItem> items) {
  return std::async(std::launch::async, [this, items] { return Get(items); });
}

std::future<Result<PutResult>> Client::PutAsync(std::span<const PutItem> items, const PutOptions& put_options) {
  return std::async(std::launch::async, [this, items, put_options] { return Put(items, put_options); });
}

Status Client::RegisterBuffer(void* base, size_t length) {
  if (!impl_->engine) return Status::Ok();
  return impl_->engine->RegisterBuffer(base, length);
}

Status Client::UnregisterBuffer(void* base) {
  if (!impl_->engine) return Status::Ok();
  return impl_->engine->UnregisterBuffer(base);
}

std::string Client::data_path() const {
  return impl_->engine ? "ucx (" + impl_->ucx_transports + ")" : "inline";
}

}  // namespace kvstash
