#include "node/grpc_service.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <optional>
#include <thread>

#include "common/mutex.h"
#include "kvstash/prefix_hasher.h"
#include "kvstash/v1/node.grpc.pb.h"
#include "node/grpc_requests.h"

namespace kvstash::node {
namespace {

using Clock = std::chrono::steady_clock;
// How long an RPC waiting on the runtime goes without looking whether its client left. The sync
// API has no cancellation callback; this bounds how long a cancelled request keeps computing.
constexpr auto kWake = std::chrono::milliseconds(20);
constexpr auto kStopGrace = std::chrono::seconds(5);

grpc::Status ToGrpc(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), status.message());
}

Status ClientGone() { return Status(StatusCode::kCancelled, "the client cancelled the request or went away"); }

void SetSources(const PromptSources& in, v1::PromptSources* out) {
  out->set_local(in.local);
  out->set_store(in.store);
  out->set_computed(in.computed);
}

v1::FinishReason ToFinishReason(const std::string& reason) {
  if (reason == "length") return v1::FINISH_REASON_LENGTH;
  if (reason == "stop") return v1::FINISH_REASON_STOP;
  return v1::FINISH_REASON_UNSPECIFIED;
}

// Tokens from the runtime's step thread to the RPC's thread.
struct TokenQueue {
  Mutex mu;
  std::condition_variable cv;
  std::deque<uint32_t> pending GUARDED_BY(mu);

  void Push(uint32_t token) {
    {
      MutexLock lock(mu);
      pending.push_back(token);
    }
    cv.notify_one();
  }
  // Whatever is queued, waiting up to `wait` for the first token.
  std::deque<uint32_t> Take(std::chrono::milliseconds wait) {
    MutexLock lock(mu);
    lock.WaitFor(cv, wait, [&] { mu.AssertHeld(); return !pending.empty(); });
    std::deque<uint32_t> out;
    out.swap(pending);
    return out;
  }
};

}  // namespace

class NodeService final : public v1::Node::Service {
 public:
  NodeService(NodeRuntime& runtime, const GrpcServiceOptions& options)
      : runtime_(runtime), options_(options), hasher_(options.namespace_id, options.block_tokens), store_(options.store) {
    const ModelConfig& c = runtime.config();
    limits_.vocab_size = c.vocab_size;
    limits_.context_tokens = c.max_position_embeddings;
    limits_.max_request_bytes = options.max_request_bytes;
  }

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* req,
                        grpc::ServerWriter<v1::GenerateEvent>* writer) override;
  grpc::Status Prefill(grpc::ServerContext* context, const v1::PrefillRequest* req, v1::PrefillResult* out) override;
  grpc::Status Info(grpc::ServerContext* context, const v1::InfoRequest* req, v1::InfoResult* out) override;

  void BeginDrain() { draining_.store(true); }
  void AttachStore(Client* store) { store_.store(store, std::memory_order_release); }
  bool WaitIdle(std::chrono::milliseconds timeout) {
    MutexLock lock(idle_mu_);
    return lock.WaitFor(idle_cv_, timeout, [&] { idle_mu_.AssertHeld(); return in_flight_ == 0; });
  }

 private:
  // Held by an RPC from its first line to its answer, so that WaitIdle sees it.
  class InFlight {
   public:
    explicit InFlight(NodeService& s) : s_(s) {
      MutexLock lock(s_.idle_mu_);
      ++s_.in_flight_;
    }
    ~InFlight() {
      MutexLock lock(s_.idle_mu_);
      if (--s_.in_flight_ == 0) s_.idle_cv_.notify_all();
    }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;

   private:
    NodeService& s_;
  };

  // OK without a tokens file; else the call's bearer token must hold `needed` (common/authorizer.h).
  Status Admit(const grpc::ServerContext& context, auth::Role needed) {
    if (options_.authorizer == nullptr) return Status::Ok();
    return options_.authorizer->Admit(context, needed).status();
  }
  grpc::Status Refuse(const Status& status) {
    if (options_.metrics != nullptr) options_.metrics->RecordRequest(status);
    return ToGrpc(status);
  }
  void Finished(const Result<CompletionResult>& result) {
    if (options_.metrics == nullptr) return;
    options_.metrics->RecordRequest(result.ok() ? Status::Ok() : result.status());
    if (result.ok()) options_.metrics->RecordCompletion(result->ttft_seconds, result->tokens.size());
  }
  // Forwards each token to `next` and records the time between consecutive tokens.
  TokenCallback Timed(std::function<void(uint32_t)> next) {
    NodeMetrics* metrics = options_.metrics;
    return [metrics, next = std::move(next), last = std::optional<Clock::time_point>()](uint32_t token) mutable {
      const auto now = Clock::now();
      if (metrics != nullptr && last) metrics->RecordTokenGap(std::chrono::duration<double>(now - *last).count());
      last = now;
      next(token);
    };
  }
  // Waits for the runtime's answer, cancelling the request if the client leaves first.
  Result<CompletionResult> Await(grpc::ServerContext* context, std::future<Result<CompletionResult>>& done,
                                 std::atomic<bool>& cancel) {
    while (done.wait_for(kWake) != std::future_status::ready) {
      if (context->IsCancelled()) {
        cancel.store(true, std::memory_order_release);
        return ClientGone();
      }
    }
    return done.get();
  }
  // How many leading blocks of `chain` the store holds, waiting up to `wait` for puts in flight.
  uint32_t ConfirmInStore(grpc::ServerContext* context, const std::vector<BlockKey>& chain,
                          std::chrono::milliseconds wait);

  NodeRuntime& runtime_;
  const GrpcServiceOptions options_;
  RequestLimits limits_;
  PrefixHasher hasher_;
  std::atomic<Client*> store_;  // options_.store, or the one attached later
  std::atomic<bool> draining_{false};
  Mutex idle_mu_;
  std::condition_variable idle_cv_;
  size_t in_flight_ GUARDED_BY(idle_mu_) = 0;
};

grpc::Status NodeService::Generate(grpc::ServerContext* context, const v1::GenerateRequest* req,
                                   grpc::ServerWriter<v1::GenerateEvent>* writer) {
  InFlight guard(*this);
  if (Status admitted = Admit(*context, auth::Role::kWrite); !admitted.ok()) return Refuse(admitted);
  if (draining_.load()) return Refuse(Unavailable("the node is draining: no new requests"));
  Result<ParsedRequest> parsed = ParseGenerateRequest(*req, options_.tokenizer, limits_);
  if (!parsed.ok()) return Refuse(parsed.status());
  const std::vector<uint32_t> prompt = parsed->request.prompt;
  const SamplingParams sampling = parsed->request.sampling;
  auto queue = std::make_shared<TokenQueue>();  // the runtime keeps it alive while it holds the callback
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  parsed->request.cancel = cancel;
  auto submitted = runtime_.Submit(std::move(parsed->request), Timed([queue](uint32_t t) { queue->Push(t); }));
  if (!submitted.ok()) return Refuse(submitted.status());
  std::future<Result<CompletionResult>>& done = *submitted;

  std::optional<IncrementalDecoder> decoder;
  if (options_.tokenizer != nullptr) decoder.emplace(*options_.tokenizer, prompt);
  uint32_t sent = 0;
  std::optional<uint32_t> last;
  auto send = [&](uint32_t id) {
    v1::GenerateEvent event;
    v1::GeneratedToken* token = event.mutable_token();
    token->set_id(id);
    token->set_index(sent);
    if (decoder) token->set_text(decoder->Push(id));
    if (!writer->Write(event)) return false;
    ++sent;
    last = id;
    return true;
  };
  auto cancelled = [&] {
    cancel->store(true, std::memory_order_release);  // nobody reads the rest: stop computing it
    const Status gone = ClientGone();
    if (options_.metrics != nullptr) options_.metrics->RecordRequest(gone);
    return ToGrpc(gone);
  };
  while (true) {
    // Every token is pushed before the result is set: once it is ready, one more Take gets them all.
    const bool ready = done.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
    const bool last_was_final =
        sent >= sampling.max_tokens ||
        (last && std::find(sampling.stop_tokens.begin(), sampling.stop_tokens.end(), *last) != sampling.stop_tokens.end());
    if (last_was_final && !ready) {
      done.wait();  // the runtime finishes the sequence at its next step
      continue;
    }
    for (uint32_t id : queue->Take(ready ? std::chrono::milliseconds(0) : kWake)) {
      if (!send(id)) return cancelled();
    }
    if (ready) break;
    if (context->IsCancelled()) return cancelled();
  }
  const Result<CompletionResult> result = done.get();
  Finished(result);
  if (!result.ok()) return ToGrpc(result.status());
  // Tokens the callback had not delivered (none in practice) are still sent one by one.
  for (size_t i = sent; i < result->tokens.size(); ++i) {
    if (!send(result->tokens[i])) return ToGrpc(ClientGone());
  }
  v1::GenerateEvent event;
  v1::GenerateFinished* fin = event.mutable_finished();
  fin->set_finish_reason(ToFinishReason(result->finish_reason));
  v1::Usage* usage = fin->mutable_usage();
  usage->set_prompt_tokens(prompt.size());
  usage->set_completion_tokens(result->tokens.size());
  usage->set_cached_tokens(result->prompt.local + result->prompt.store);
  SetSources(result->prompt, usage->mutable_prompt());
  usage->set_ttft_seconds(result->ttft_seconds);
  fin->mutable_token_ids()->Add(result->tokens.begin(), result->tokens.end());
  if (decoder) {
    decoder->Finish();
    fin->set_text(decoder->text());
  }
  if (!req->prompt_text().empty()) fin->mutable_prompt_token_ids()->Add(prompt.begin(), prompt.end());
  writer->WriteLast(event, grpc::WriteOptions());
  return grpc::Status::OK;
}

grpc::Status NodeService::Prefill(grpc::ServerContext* context, const v1::PrefillRequest* req,
                                  v1::PrefillResult* out) {
  InFlight guard(*this);
  if (Status admitted = Admit(*context, auth::Role::kWrite); !admitted.ok()) return Refuse(admitted);
  if (draining_.load()) return Refuse(Unavailable("the node is draining: no new requests"));
  uint32_t store_wait_ms = 0;
  Result<ParsedRequest> parsed = ParsePrefillRequest(*req, options_.tokenizer, limits_, &store_wait_ms);
  if (!parsed.ok()) return Refuse(parsed.status());
  const std::vector<uint32_t> prompt = parsed->request.prompt;
  const SamplingParams sampling = parsed->request.sampling;
  parsed->request.sampling.max_tokens = 1;  // the first token only; the whole request was checked
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  parsed->request.cancel = cancel;
  auto submitted = runtime_.Submit(std::move(parsed->request));
  if (!submitted.ok()) return Refuse(submitted.status());
  const Result<CompletionResult> result = Await(context, *submitted, *cancel);
  Finished(result);
  if (!result.ok()) return ToGrpc(result.status());
  if (result->tokens.empty()) return ToGrpc(Internal("the prefill chose no token"));

  const uint32_t first = result->tokens.front();
  v1::GeneratedToken* token = out->mutable_first_token();
  token->set_id(first);
  token->set_index(0);
  const bool finished = sampling.max_tokens == 1 || std::find(sampling.stop_tokens.begin(), sampling.stop_tokens.end(),
                                                               first) != sampling.stop_tokens.end();
  out->set_finished(finished);
  if (options_.tokenizer != nullptr) {
    // As Generate's first token event: whole characters only, unless nothing follows.
    IncrementalDecoder decoder(*options_.tokenizer, prompt);
    std::string text = decoder.Push(first);
    if (finished) text += decoder.Finish();
    token->set_text(text);
  }
  out->set_prompt_tokens(prompt.size());
  SetSources(result->prompt, out->mutable_prompt());
  out->set_ttft_seconds(result->ttft_seconds);
  if (!req->prompt_text().empty()) out->mutable_prompt_token_ids()->Add(prompt.begin(), prompt.end());
  const std::vector<BlockKey> chain = hasher_.Chain(prompt);
  for (const BlockKey& key : chain) out->add_block_keys(std::string(key.AsBytes()));
  out->set_store_connected(store_.load(std::memory_order_acquire) != nullptr);
  out->set_blocks_in_store(ConfirmInStore(context, chain, std::chrono::milliseconds(store_wait_ms)));
  return grpc::Status::OK;
}

// The runtime puts a prefill's computed blocks from a background thread and tells no one when
// they are stored, so this looks them up until the whole chain is there, with a growing pause,
// bounded by `wait`. (A per-request "stored" signal from the runtime would replace the polling.)
uint32_t NodeService::ConfirmInStore(grpc::ServerContext* context, const std::vector<BlockKey>& chain,
                                     std::chrono::milliseconds wait) {
  Client* store = store_.load(std::memory_order_acquire);
  if (store == nullptr || chain.empty()) return 0;
  const auto give_up = Clock::now() + wait;
  auto pause = std::chrono::milliseconds(1);
  while (true) {
    Result<LookupResult> found = store->Lookup(chain);
    if (!found.ok()) {
      spdlog::warn("kvstash-node: Prefill cannot look its blocks up in the store: {}", found.status().ToString());
      return 0;
    }
    const auto now = Clock::now();
    if (found->hit_blocks >= chain.size() || now >= give_up || context->IsCancelled()) {
      return static_cast<uint32_t>(found->hit_blocks);
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(pause, give_up - now));
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

grpc::Status NodeService::Info(grpc::ServerContext* context, const v1::InfoRequest*, v1::InfoResult* out) {
  if (Status admitted = Admit(*context, auth::Role::kRead); !admitted.ok()) return ToGrpc(admitted);
  const ModelConfig& c = runtime_.config();
  out->set_model_name(options_.model_name);
  out->set_engine(options_.engine);
  out->set_namespace_id(options_.namespace_id);
  out->set_page_tokens(options_.page_tokens);
  out->set_block_tokens(options_.block_tokens);
  out->set_vocab_size(c.vocab_size);
  out->set_context_tokens(c.max_position_embeddings);
  if (const Tokenizer* t = options_.tokenizer; t != nullptr) {
    out->set_has_tokenizer(true);
    out->set_tokenizer_vocab_size(t->vocab_size());
    if (t->bos_id()) out->set_bos_token_id(*t->bos_id());
    if (t->eos_id()) out->set_eos_token_id(*t->eos_id());
  }
  out->set_store_connected(store_.load(std::memory_order_acquire) != nullptr);
  out->set_draining(draining_.load());
  out->set_max_request_bytes(options_.max_request_bytes);
  const RuntimeStats s = runtime_.Stats();
  v1::NodeStats* st = out->mutable_stats();
  st->set_requests_done(s.requests_done);
  st->set_requests_failed(s.requests_failed);
  st->set_requests_cancelled(s.requests_cancelled);
  SetSources(PromptSources{s.prompt_tokens_local, s.prompt_tokens_store, s.prompt_tokens_computed},
             st->mutable_prompt_tokens());
  st->set_kv_bytes_fetched(s.kv_bytes_fetched);
  st->set_kv_bytes_stored(s.kv_bytes_stored);
  st->set_blocks_rejected(s.blocks_rejected);
  st->set_store_errors(s.store_errors);
  st->set_running(s.running);
  st->set_waiting(s.waiting);
  st->set_pool_pages(s.pool_pages);
  st->set_pool_free_pages(s.pool_free_pages);
  st->set_cached_blocks(s.cached_blocks);
  st->set_last_step_seconds(s.last_step_seconds);
  return grpc::Status::OK;
}

// ---- the server -----------------------------------------------------------------------------

struct GrpcServer::Impl {
  NodeService service;
  size_t threads;
  size_t max_request_bytes;
  tls::ServerFiles tls;
  std::unique_ptr<grpc::Server> server;

  Impl(NodeRuntime& runtime, const GrpcServiceOptions& options)
      : service(runtime, options), threads(std::max<size_t>(1, options.threads)),
        max_request_bytes(options.max_request_bytes), tls(options.tls) {}
};

GrpcServer::GrpcServer(NodeRuntime& runtime, GrpcServiceOptions options)
    : impl_(std::make_unique<Impl>(runtime, options)) {}

GrpcServer::~GrpcServer() { Stop(); }

Result<int> GrpcServer::Start(const std::string& host, int port) {
  if (impl_->server) return FailedPrecondition("gRPC server already started");
  const std::string address =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  KVSTASH_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials, tls::MakeServerCredentials(impl_->tls));
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort(address, credentials, &bound);
  // Larger than our own limit, so that a request between the two is refused by name (INVALID_ARGUMENT).
  const size_t transport_limit = std::min<size_t>(impl_->max_request_bytes * 4, size_t{1} << 30);
  builder.SetMaxReceiveMessageSize(static_cast<int>(transport_limit));
  grpc::ResourceQuota quota("kvstash-node");
  quota.SetMaxThreads(static_cast<int>(impl_->threads) + 2);
  builder.SetResourceQuota(quota);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 1);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 2);
  builder.RegisterService(&impl_->service);
  impl_->server = builder.BuildAndStart();
  if (!impl_->server || bound == 0) {
    impl_->server.reset();
    return Unavailable("cannot listen for gRPC on " + address);
  }
  return bound;
}

void GrpcServer::AttachStore(Client* store) { impl_->service.AttachStore(store); }

void GrpcServer::BeginDrain() { impl_->service.BeginDrain(); }

bool GrpcServer::WaitIdle(std::chrono::milliseconds timeout) { return impl_->service.WaitIdle(timeout); }

void GrpcServer::Stop() {
  if (!impl_->server) return;
  // A handler that has returned may still have its last message and status to send: they get a
  // grace period; an RPC still running after it is cancelled (and sees so within kWake).
  impl_->server->Shutdown(std::chrono::system_clock::now() + kStopGrace);
  impl_->server->Wait();
  impl_->server.reset();
}

}  // namespace kvstash::node
