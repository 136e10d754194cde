#include "node/conductor_link.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "common/mutex.h"
#include "kvstash/v1/conductor.grpc.pb.h"

namespace kvstash::node {
namespace {

constexpr size_t kMaxPendingTtfts = 100'000;
constexpr size_t kEventsPerBatch = 10'000;
constexpr size_t kMaxInstanceIdBytes = 200;

bool ServesPrefill(NodeRole role) { return role != NodeRole::kDecode; }
bool ServesDecode(NodeRole role) { return role != NodeRole::kPrefill; }

}  // namespace

std::vector<std::string> ConductorInstanceIds(const ConductorLinkOptions& o) {
  if (o.role == NodeRole::kBoth) return {o.instance_id + "/prefill", o.instance_id + "/decode"};
  return {o.instance_id};
}

struct ConductorLink::Impl {
  ConductorLinkOptions options;
  std::function<RuntimeLoad()> load;
  std::unique_ptr<v1::Conductor::Stub> conductor;  // the generated gRPC client
  std::string prefill_id, decode_id;  // empty when that role is not served

  mutable Mutex mu;
  std::condition_variable cv;
  bool stopping GUARDED_BY(mu) = false;
  std::vector<BlockKey> stored, evicted GUARDED_BY(mu);  // not yet sent
  std::unordered_set<BlockKey, BlockKeyHash> held GUARDED_BY(mu);  // what the cache holds now
  std::deque<std::pair<uint64_t, double>> ttfts GUARDED_BY(mu);
  ConductorLinkStats stats GUARDED_BY(mu);
  std::thread thread;

  std::unique_ptr<grpc::ClientContext> Context() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(options.rpc_timeout_ms));
    if (!options.token.empty()) ctx->AddMetadata("authorization", "Bearer " + options.token);
    return ctx;
  }

  bool Register();
  // false when the conductor no longer knows an id (register again).
  bool Heartbeat(bool& unreachable);
  void SendEvents(std::vector<BlockKey> add, std::vector<BlockKey> remove);
  void SendTtfts();
  void Loop();
  void CountFailure(const char* what, const grpc::Status& s) {
    {
      MutexLock lock(mu);
      ++stats.failures;
    }
    spdlog::debug("conductor {}: {} failed: {}", options.address, what, s.error_message());
  }
};

bool ConductorLink::Impl::Register() {
  for (const auto& [id, role] : {std::pair{prefill_id, v1::INSTANCE_ROLE_PREFILL},
                                 std::pair{decode_id, v1::INSTANCE_ROLE_DECODE}}) {
    if (id.empty()) continue;
    v1::RegisterInstanceRequest req;
    req.set_instance_id(id);
    req.set_role(role);
    req.set_address(options.node_address);
    req.set_namespace_id(options.namespace_id);
    v1::RegisterInstanceResponse resp;
    const grpc::Status s = conductor->RegisterInstance(Context().get(), req, &resp);
    if (!s.ok()) {
      CountFailure("RegisterInstance", s);
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE && s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
        spdlog::warn("conductor {} refused instance {}: {}", options.address, id, s.error_message());
      }
      return false;
    }
  }
  std::vector<BlockKey> everything;
  {
    MutexLock lock(mu);
    ++stats.registrations;
    stats.registered = true;
    everything.assign(held.begin(), held.end());
    stored.clear();
    evicted.clear();
  }
  spdlog::info("registered with the conductor at {} as {}{}{}", options.address, prefill_id,
               !prefill_id.empty() && !decode_id.empty() ? " and " : "", decode_id);
  SendEvents(std::move(everything), {});
  return true;
}

bool ConductorLink::Impl::Heartbeat(bool& unreachable) {
  const RuntimeLoad now = load();
  unreachable = false;
  for (const std::string* id : {&prefill_id, &decode_id}) {
    if (id->empty()) continue;
    v1::HeartbeatRequest req;
    req.set_instance_id(*id);
    if (id == &prefill_id) {
      req.set_queue_seconds(now.queue_seconds);
    } else {
      req.set_step_seconds(now.decode_step_seconds);
      for (const RuntimeLoad::Sequence& s : now.sequences) {
        v1::DecodeSequence* seq = req.add_sequences();
        seq->set_context_tokens(s.context_tokens);
        seq->set_remaining_tokens(s.remaining_tokens);
      }
    }
    v1::HeartbeatResponse resp;
    const grpc::Status s = conductor->Heartbeat(Context().get(), req, &resp);
    if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
      spdlog::warn("conductor {} no longer knows {}: registering again", options.address, *id);
      MutexLock lock(mu);
      stats.registered = false;
      return false;
    }
    if (!s.ok()) {
      CountFailure("Heartbeat", s);
      unreachable = true;
      return true;
    }
  }
  MutexLock lock(mu);
  ++stats.heartbeats;
  return true;
}

void ConductorLink::Impl::SendEvents(std::vector<BlockKey> add, std::vector<BlockKey> remove) {
  if (prefill_id.empty() || (add.empty() && remove.empty())) return;
  v1::KvEventsSummary summary;
  auto ctx = Context();
  std::unique_ptr<grpc::ClientWriter<v1::KvEventBatch>> writer = conductor->StreamKvEvents(ctx.get(), &summary);
  size_t a = 0, r = 0, batches = 0;
  while (a < add.size() || r < remove.size()) {
    v1::KvEventBatch batch;
    batch.set_instance_id(prefill_id);
    for (size_t n = 0; n < kEventsPerBatch && a < add.size(); ++n) batch.add_stored_keys(std::string(add[a++].AsBytes()));
    for (size_t n = 0; n < kEventsPerBatch && r < remove.size(); ++n) {
      batch.add_evicted_keys(std::string(remove[r++].AsBytes()));
    }
    if (!writer->Write(batch)) break;
    ++batches;
  }
  writer->WritesDone();
  const grpc::Status s = writer->Finish();
  if (!s.ok()) {
    CountFailure("StreamKvEvents", s);
    // The index may now miss these blocks; it is rebuilt whole at the next registration.
    MutexLock lock(mu);
    stats.registered = s.error_code() != grpc::StatusCode::NOT_FOUND && stats.registered;
    return;
  }
  MutexLock lock(mu);
  stats.kv_event_batches += batches;
}

void ConductorLink::Impl::SendTtfts() {
  std::deque<std::pair<uint64_t, double>> pending;
  {
    MutexLock lock(mu);
    pending.swap(ttfts);
  }
  for (const auto& [request_id, seconds] : pending) {
    v1::ReportTtftRequest req;
    req.set_request_id(request_id);
    req.set_ttft_seconds(seconds);
    v1::ReportTtftResponse resp;
    const grpc::Status s = conductor->ReportTtft(Context().get(), req, &resp);
    if (!s.ok()) {
      CountFailure("ReportTtft", s);  // a request the conductor did not route is NOT_FOUND: dropped
      continue;
    }
    MutexLock lock(mu);
    ++stats.ttft_reports;
  }
}

void ConductorLink::Impl::Loop() {
  using Clock = std::chrono::steady_clock;
  Clock::time_point next_heartbeat = Clock::now();
  bool registered = false;
  while (true) {
    bool stop;
    {
      MutexLock lock(mu);
      lock.WaitUntil(cv, next_heartbeat, [&] {
        mu.AssertHeld();  // a wait predicate runs with the mutex held
        return stopping || (registered && (!stored.empty() || !evicted.empty() || !ttfts.empty()));
      });
      stop = stopping;
    }
    if (stop && !registered) return;  // nothing to flush to a conductor that is not there
    if (!registered || Clock::now() >= next_heartbeat) {
      if (!registered) registered = Register();
      if (registered) {
        bool unreachable = false;
        registered = Heartbeat(unreachable);
        if (!registered) registered = Register();
      }
      next_heartbeat = Clock::now() + std::chrono::milliseconds(options.heartbeat_ms);
    }
    if (registered) {
      std::vector<BlockKey> add, remove;
      {
        MutexLock lock(mu);
        add.swap(stored);
        remove.swap(evicted);
      }
      SendEvents(std::move(add), std::move(remove));
      SendTtfts();
      MutexLock lock(mu);
      registered = stats.registered;
    }
    if (stop) return;
  }
}

Result<std::unique_ptr<ConductorLink>> ConductorLink::Start(const ConductorLinkOptions& options,
                                                            std::function<RuntimeLoad()> load) {
  if (options.address.empty()) return InvalidArgument("no conductor address");
  if (options.instance_id.empty() || options.instance_id.size() > kMaxInstanceIdBytes) {
    return InvalidArgument("the instance id must be 1.." + std::to_string(kMaxInstanceIdBytes) + " bytes");
  }
  if (options.heartbeat_ms == 0 || options.rpc_timeout_ms == 0) return InvalidArgument("intervals must be positive");
  KVSTASH_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials, tls::MakeChannelCredentials(options.tls));
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->load = std::move(load);
  // Reconnect within about a second of the conductor coming back (gRPC's default backoff grows
  // to two minutes, which would keep a node out of routing long after a conductor restart).
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  impl->conductor = v1::Conductor::NewStub(
      grpc::CreateCustomChannel(options.address, credentials, args));
  const std::vector<std::string> ids = ConductorInstanceIds(options);
  if (ServesPrefill(options.role)) impl->prefill_id = ids.front();
  if (ServesDecode(options.role)) impl->decode_id = ids.back();
  Impl* raw = impl.get();
  raw->thread = std::thread([raw] { raw->Loop(); });
  return std::unique_ptr<ConductorLink>(new ConductorLink(std::move(impl)));
}

ConductorLink::ConductorLink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ConductorLink::~ConductorLink() { Stop(); }

void ConductorLink::KvEvents(std::vector<BlockKey> stored, std::vector<BlockKey> evicted) {
  if (impl_->prefill_id.empty()) return;
  {
    MutexLock lock(impl_->mu);
    for (const BlockKey& k : stored) impl_->held.insert(k);
    for (const BlockKey& k : evicted) impl_->held.erase(k);
    impl_->stored.insert(impl_->stored.end(), stored.begin(), stored.end());
    impl_->evicted.insert(impl_->evicted.end(), evicted.begin(), evicted.end());
  }
  impl_->cv.notify_all();
}

void ConductorLink::ReportTtft(uint64_t request_id, double ttft_seconds) {
  {
    MutexLock lock(impl_->mu);
    if (impl_->ttfts.size() >= kMaxPendingTtfts) impl_->ttfts.pop_front();
    impl_->ttfts.emplace_back(request_id, ttft_seconds);
  }
  impl_->cv.notify_all();
}

ConductorLinkStats ConductorLink::Stats() const {
  MutexLock lock(impl_->mu);
  return impl_->stats;
}

void ConductorLink::Stop() {
  {
    MutexLock lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace kvstash::node
