#include "client/connection.h"

#include <algorithm>
#include <cstring>

#include "common/tls.h"

namespace kvstash::client_internal {

Result<std::shared_ptr<Connection>> Connection::Open(const ClientOptions& options,
                                                     const std::string& address,
                                                     EngineSource& engines) {
  std::shared_ptr<Connection> conn(new Connection(options, address));
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(limits::kMaxGrpcMessageBytes));
  args.SetMaxSendMessageSize(static_cast<int>(limits::kMaxGrpcMessageBytes));
  // Each Client gets its own connection so that independent clients do not share one HTTP/2 stream
  // budget.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // A restarted daemon is found again within about a second rather than gRPC's default backoff
  // of up to two minutes.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  KVSTASH_ASSIGN_OR_RETURN(
      std::shared_ptr<grpc::ChannelCredentials> credentials,
      tls::MakeChannelCredentials({options.tls_ca_file, options.tls_cert_file, options.tls_key_file, ""}));
  if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  conn->channel_ = grpc::CreateCustomChannel(address, credentials, args);
  conn->stub_ = v1::Store::NewStub(conn->channel_);
  Result<HealthInfo> health = conn->Health();
  if (!health.ok()) return health.status();
  KVSTASH_RETURN_IF_ERROR(conn->SetUpDataPath(engines));
  return conn;
}

Connection::Connection(const ClientOptions& options, const std::string& address)
    : options_(options), address_(address) {
  options_.address = address;
}

Connection::~Connection() { WaitForReleases(); }

Result<HealthInfo> Connection::Health() {
  v1::HealthRequest req;
  v1::HealthResponse resp;
  auto ctx = Context();
  KVSTASH_RETURN_IF_ERROR(Call(stub_->Health(ctx.get(), req, &resp), "health"));
  return HealthInfo{resp.serving(), resp.version(), resp.member_id()};
}

Result<LookupResult> Connection::Lookup(std::span<const BlockKey> chain, uint64_t lease_ms) {
  if (chain.empty()) return LookupResult{};
  if (chain.size() > limits::kMaxBatchKeys) {
    return InvalidArgument("a lookup takes at most " + std::to_string(limits::kMaxBatchKeys) +
                           " keys");
  }
  v1::LookupRequest req;
  for (const BlockKey& key : chain) req.add_keys(std::string(key.AsBytes()));
  req.set_lease_ms(lease_ms);
  v1::LookupResponse resp;
  auto ctx = Context();
  KVSTASH_RETURN_IF_ERROR(Call(stub_->Lookup(ctx.get(), req, &resp), "lookup"));
  if (resp.hit_blocks() > chain.size() ||
      static_cast<size_t>(resp.blocks_size()) != resp.hit_blocks()) {
    return Internal("daemon answered a malformed lookup");
  }
  LookupResult result;
  result.hit_blocks = resp.hit_blocks();
  for (int i = 0; i < resp.blocks_size(); ++i) {
    KVSTASH_ASSIGN_OR_RETURN(BlockInfo info, client_internal::FromProto(resp.blocks(i)));
    info.member = address_;
    if (info.key != chain[static_cast<size_t>(i)])
      return Internal("daemon answered a lookup out of order");
    result.blocks.push_back(std::move(info));
  }
  return result;
}

Result<PutResult> Connection::Put(std::span<const PutItem> items, const PutOptions& put_options) {
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
           (end == begin || engine_ ||
            bytes + items[end].data.size() <= options_.max_inline_batch_bytes)) {
      bytes += items[end].data.size();
      ++end;
    }
    const auto batch = items.subspan(begin, end - begin);
    KVSTASH_RETURN_IF_ERROR(put_options.eager && engine_ && eager_ ? PutRoundEager(batch, put_options, result.outcomes)
                                  : PutRound(batch, put_options, result.outcomes));
    begin = end;
  }
  client_internal::CountOutcomes(result);
  return result;
}

Status Connection::Get(std::span<GetItem> items) {
  std::vector<size_t> pending;
  // Batches by count, and by the callers' buffer sizes as an estimate of the bytes coming back.
  std::vector<size_t> batch;
  uint64_t batch_bytes = 0;
  // Device buffers only ever move over UCX; pinned ones take HBM copies in place where the
  // daemon offers it (BufferMemory).
  const Status device_gets = DeviceGetsPossible();
  bool hbm_direct = false;
  {
    MutexLock lock(target_mu_);
    hbm_direct = hbm_bytes_ > 0;
  }
  auto direct = [&](const GetItem& item) {
    return item.memory == BufferMemory::kCudaDevice ||
           (item.memory == BufferMemory::kCudaPinned && device_gets.ok() && hbm_direct);
  };
  auto flush = [&]() -> Status {
    if (batch.empty()) return Status::Ok();
    std::vector<size_t> remaining = std::move(batch);
    batch.clear();
    batch_bytes = 0;
    if (engine_) {
      std::vector<size_t> host, device;
      for (size_t i : remaining) (direct(items[i]) ? device : host).push_back(i);
      if (!host.empty()) KVSTASH_RETURN_IF_ERROR(GetRoundUcx(items, host));
      if (!device.empty()) KVSTASH_RETURN_IF_ERROR(GetRoundUcx(items, device, /*device_reader=*/true));
      return Status::Ok();
    }
    while (!remaining.empty()) {
      std::vector<size_t> deferred;
      KVSTASH_RETURN_IF_ERROR(GetRoundInline(items, remaining, deferred));
      if (deferred.size() == remaining.size()) return Internal("daemon deferred every block of a get");
      remaining = std::move(deferred);
    }
    return Status::Ok();
  };
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].memory == BufferMemory::kCudaDevice && !device_gets.ok()) {
      items[i].found = false;
      items[i].size = 0;
      items[i].status = device_gets;
      continue;
    }
    const uint64_t estimate = std::min<uint64_t>(items[i].buffer.size(), limits::kMaxBlockBytes);
    // The byte budget binds only inline, where the bytes ride in the response.
    const bool over_bytes = !engine_ && batch_bytes + estimate > options_.max_inline_batch_bytes;
    if (!batch.empty() && (batch.size() >= limits::kMaxBatchKeys || over_bytes)) {
      KVSTASH_RETURN_IF_ERROR(flush());
    }
    batch.push_back(i);
    batch_bytes += estimate;
  }
  return flush();
}

Status Connection::ReleaseLeases(std::span<const BlockInfo> blocks) {
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
    auto ctx = Context();
    KVSTASH_RETURN_IF_ERROR(Call(stub_->ReleaseLeases(ctx.get(), req, &resp), "release_leases"));
  }
  return Status::Ok();
}

Result<std::vector<RemoveOutcome>> Connection::Remove(std::span<const BlockKey> keys) {
  WaitForReleases();
  std::vector<RemoveOutcome> outcomes;
  for (size_t begin = 0; begin < keys.size(); begin += limits::kMaxBatchKeys) {
    const size_t end = std::min(keys.size(), begin + limits::kMaxBatchKeys);
    v1::RemoveRequest req;
    for (size_t i = begin; i < end; ++i) req.add_keys(std::string(keys[i].AsBytes()));
    v1::RemoveResponse resp;
    auto ctx = Context();
    KVSTASH_RETURN_IF_ERROR(Call(stub_->Remove(ctx.get(), req, &resp), "remove"));
    if (resp.outcomes_size() != static_cast<int>(end - begin))
      return Internal("daemon answered a malformed remove");
    for (int o : resp.outcomes()) {
      outcomes.push_back(o == v1::RemoveResponse::REMOVED ? RemoveOutcome::kRemoved
                                                          : RemoveOutcome::kMissing);
    }
  }
  return outcomes;
}

Result<std::vector<std::optional<BlockInfo>>> Connection::Stat(std::span<const BlockKey> keys) {
  std::vector<std::optional<BlockInfo>> out;
  for (size_t begin = 0; begin < keys.size(); begin += limits::kMaxBatchKeys) {
    const size_t end = std::min(keys.size(), begin + limits::kMaxBatchKeys);
    v1::StatRequest req;
    for (size_t i = begin; i < end; ++i) req.add_keys(std::string(keys[i].AsBytes()));
    v1::StatResponse resp;
    auto ctx = Context();
    KVSTASH_RETURN_IF_ERROR(Call(stub_->Stat(ctx.get(), req, &resp), "stat"));
    if (resp.entries_size() != static_cast<int>(end - begin))
      return Internal("daemon answered a malformed stat");
    for (const auto& e : resp.entries()) {
      if (!e.found()) {
        out.emplace_back();
        continue;
      }
      KVSTASH_ASSIGN_OR_RETURN(BlockInfo info, client_internal::FromProto(e.info()));
      info.member = address_;
      out.emplace_back(std::move(info));
    }
  }
  return out;
}

Result<StoreStats> Connection::Stats() {
  v1::StatsRequest req;
  v1::StatsResponse resp;
  auto ctx = Context();
  KVSTASH_RETURN_IF_ERROR(Call(stub_->Stats(ctx.get(), req, &resp), "stats"));
  return client_internal::FromProto(resp);
}

Result<ListResult> Connection::List(const std::optional<BlockKey>& start_after, uint32_t limit) {
  if (limit == 0 || limit > limits::kMaxListLimit) {
    return InvalidArgument("list limit must be 1.." + std::to_string(limits::kMaxListLimit));
  }
  v1::ListRequest req;
  if (start_after) req.set_start_after(std::string(start_after->AsBytes()));
  req.set_limit(limit);
  v1::ListResponse resp;
  auto ctx = Context();
  KVSTASH_RETURN_IF_ERROR(Call(stub_->List(ctx.get(), req, &resp), "list"));
  ListResult result;
  for (const auto& b : resp.blocks()) {
    KVSTASH_ASSIGN_OR_RETURN(BlockInfo info, client_internal::FromProto(b));
    info.member = address_;
    result.blocks.push_back(std::move(info));
  }
  if (!resp.next_start_after().empty()) {
    KVSTASH_ASSIGN_OR_RETURN(result.next_start_after, BlockKey::FromBytes(resp.next_start_after()));
  }
  return result;
}

}  // namespace kvstash::client_internal
