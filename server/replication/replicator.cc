#include "server/replication/replicator.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "kvstash/limits.h"

namespace kvstash::server {

Replicator::Replicator(ReplicatorOptions options, tiers::Tier& tier, metrics::Registry& registry)
    : options_(std::move(options)),
      tier_(tier),
      tracker_(options_.hot_rate, options_.clock),
      hot_keys_(registry
                    .AddCounter("kvstash_hot_keys_total",
                                "Times a key this daemon owns reached the hot rate.")
                    .WithLabels({})),
      dropped_(registry
                   .AddCounter("kvstash_replication_dropped_total",
                               "Hot keys not copied: the queue was full.")
                   .WithLabels({})),
      copies_(registry.AddCounter(
          "kvstash_replica_copies_total",
          "Hot-block copies sent to other members, by result (stored, exists, failed).",
          {"result"})),
      replicated_keys_(
          registry.AddGauge("kvstash_replicated_keys", "Keys with live copies on other members.")
              .WithLabels({})) {}

Replicator::~Replicator() { Stop(); }

Status Replicator::Start(const std::string& self_id) {
  KVSTASH_ASSIGN_OR_RETURN(credentials_, tls::MakeChannelCredentials(options_.peer_tls));
  {
    MutexLock lock(mu_);
    self_id_ = self_id;
  }
  if (!options_.static_peers.empty()) {
    std::vector<membership::MemberRecord> records;
    for (const std::string& peer : options_.static_peers) {
      membership::MemberRecord r;
      r.id = peer;
      r.grpc_address = peer;
      records.push_back(std::move(r));
    }
    std::sort(records.begin(), records.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    if (std::none_of(records.begin(), records.end(), [&](const auto& r) { return r.id == self_id; })) {
      return InvalidArgument("--peers must list this daemon's own address (its member id '" + self_id + "')");
    }
    OnMembers(records);
  } else {
    KVSTASH_ASSIGN_OR_RETURN(
        watcher_, membership::MemberWatcher::Start(
                      options_.etcd, options_.cluster,
                      [this](const std::vector<membership::MemberRecord>& r) { OnMembers(r); },
                      membership::MemberWatcher::AtStart::kRetryEtcd));
  }
  worker_ = std::thread([this] { WorkerLoop(); });
  return Status::Ok();
}

void Replicator::Stop() {
  {
    MutexLock lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  watcher_.reset();
}

void Replicator::OnMembers(const std::vector<membership::MemberRecord>& records) {
  auto ring = std::make_shared<Ring>();
  std::vector<RendezvousMember> members;
  for (const auto& r : records) {  // ordered by id
    if (r.state != membership::MemberState::kServing) continue;
    members.push_back({r.id, r.weight});
    ring->addresses.push_back(r.grpc_address);
  }
  ring->ring = RendezvousRing(std::move(members));
  MutexLock lock(mu_);
  ring_ = std::move(ring);
}

void Replicator::OnHit(const BlockKey& key) {
  if (!tracker_.Record(key)) return;
  MutexLock lock(mu_);
  if (stopping_ || !ring_ || ring_->ring.empty()) return;
  // Only the owner copies: a replica that gets hot does not cascade.
  if (ring_->ring.member(ring_->ring.Owner(key)).id != self_id_) return;
  hot_keys_.Inc();
  auto made = replicated_.find(key);
  if (made != replicated_.end() && made->second.until_ms > options_.clock->NowMs()) return;
  if (queued_.count(key) > 0) return;
  if (queue_.size() >= options_.queue_limit) {
    dropped_.Inc();
    return;
  }
  queue_.push_back(key);
  queued_.insert(key);
  cv_.notify_one();
}

uint32_t Replicator::ReplicasOf(const BlockKey& key) const {
  MutexLock lock(mu_);
  auto it = replicated_.find(key);
  if (it == replicated_.end() || it->second.until_ms <= options_.clock->NowMs()) return 0;
  return it->second.copies;
}

void Replicator::WorkerLoop() {
  MutexLock lock(mu_);
  while (true) {
    // Wakes for work, or once a second to forget copies older than remember_ms.
    lock.WaitFor(cv_, std::chrono::seconds(1), [this] {
      mu_.AssertHeld();  // a wait predicate runs with the mutex held
      return stopping_ || !queue_.empty();
    });
    if (stopping_) return;
    const uint64_t now = options_.clock->NowMs();
    std::erase_if(replicated_, [now](const auto& kv) { return kv.second.until_ms <= now; });
    replicated_keys_.Set(static_cast<double>(replicated_.size()));
    while (!queue_.empty() && !stopping_) {
      const BlockKey key = queue_.front();
      queue_.pop_front();
      lock.Unlock();
      Replicate(key);
      lock.Lock();
      queued_.erase(key);
    }
  }
}

v1::Store::Stub* Replicator::StubFor(const std::string& address) {
  auto& stub = stubs_[address];
  if (!stub) {
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(static_cast<int>(limits::kMaxGrpcMessageBytes));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    stub = v1::Store::NewStub(
        grpc::CreateCustomChannel(address, credentials_, args));
  }
  return stub.get();
}

void Replicator::Replicate(const BlockKey& key) {
  std::shared_ptr<const Ring> ring;
  std::string self;
  {
    MutexLock lock(mu_);
    ring = ring_;
    self = self_id_;
  }
  if (!ring) return;
  std::optional<tiers::BlockMeta> meta = tier_.Peek(key);
  if (!meta) return;  // evicted or removed meanwhile
  std::string bytes(meta->size, '\0');
  Result<tiers::BlockMeta> read =
      tier_.Read(key, std::as_writable_bytes(std::span(bytes.data(), bytes.size())));
  if (!read.ok() || read->size != meta->size) return;

  v1::PutRequest req;
  req.set_replica(true);
  v1::PutItem* item = req.add_items();
  item->set_key(std::string(key.AsBytes()));
  if (read->parent) item->set_parent(std::string(read->parent->AsBytes()));
  item->set_checksum(read->checksum);
  item->set_data(std::move(bytes));
  uint32_t made = 0;
  for (size_t idx : ring->ring.Order(key, options_.copies)) {
    if (ring->ring.member(idx).id == self) continue;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(options_.rpc_timeout_ms));
    if (!options_.peer_token.empty()) ctx.AddMetadata("authorization", "Bearer " + options_.peer_token);
    v1::PutResponse resp;
    const grpc::Status st = StubFor(ring->addresses[idx])->Put(&ctx, req, &resp);
    if (!st.ok() || resp.outcomes_size() != 1) {
      copies_.WithLabels({"failed"}).Inc();
      spdlog::debug("copy of hot block {} to {} failed: {}", key.ToHex(), ring->addresses[idx],
                    st.error_message());
      continue;
    }
    const bool stored = resp.outcomes(0) == v1::PutResponse::STORED;
    const bool exists = resp.outcomes(0) == v1::PutResponse::EXISTS;
    copies_.WithLabels({stored ? "stored" : exists ? "exists" : "failed"}).Inc();
    if (stored || exists) ++made;
  }
  MutexLock lock(mu_);
  if (made > 0) replicated_[key] = {made, options_.clock->NowMs() + options_.remember_ms};
}

}  // namespace kvstash::server
