// FrontDoor's runs on the nodes (contract in scheduler/front_door.h): a request routed by the
// conductor's own policy (Route, in-process), then the same node's Generate relayed token by token,
// or P/D on two nodes — the prefill node's Prefill then the decode node's Generate, whose first
// token must match, or with a layer-wise handoff both at once — and, when a node could not be
// reached before anything was streamed, one more run on instances routed without it.
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <limits>

#include "scheduler/front_door_impl.h"

namespace kvstash::scheduler {

using front_door_internal::Clock;
using front_door_internal::Outcome;
using front_door_internal::Plan;

namespace {

Status FromGrpc(const grpc::Status& s, const std::string& who) {
  return Status(static_cast<StatusCode>(s.error_code()), who + ": " + s.error_message());
}

// The decode node's token stream of a layer-wise handoff, read on its own thread while the
// front door waits for the prefill node.
struct DecodeRelay {
  Mutex mu;
  std::condition_variable cv;
  std::deque<uint32_t> tokens GUARDED_BY(mu);
  std::optional<Clock::time_point> first_at GUARDED_BY(mu);
  bool finished GUARDED_BY(mu) = false;
  grpc::Status status GUARDED_BY(mu);  // once finished
  std::string finish_reason GUARDED_BY(mu) = "length";
  std::optional<v1::PromptSources> prompt GUARDED_BY(mu);
};

}  // namespace

std::shared_ptr<v1::Node::Stub> FrontDoor::Impl::NodeClient(const std::string& address) {
  MutexLock lock(clients_mu);
  auto& client = clients[address];
  if (!client) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetMaxSendMessageSize(64 << 20);
    client = v1::Node::NewStub(grpc::CreateCustomChannel(address, node_credentials, args));
  }
  return client;
}

std::unique_ptr<grpc::ClientContext> FrontDoor::Impl::Context() const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(options.node_timeout_ms));
  if (!options.node_token.empty()) ctx->AddMetadata("authorization", "Bearer " + options.node_token);
  return ctx;
}

Result<Plan> FrontDoor::Impl::Route(const Completion& c, const std::set<std::string>& excluded) {
  const std::string namespace_id = service.RegisteredNamespace();
  if (namespace_id.empty()) return Unavailable("no node has registered with the conductor (kvstash-node --conductor)");
  Plan plan;
  plan.arrived = Clock::now();
  plan.request_id = next_id.fetch_add(1);
  v1::RouteRequest req;
  req.set_request_id(plan.request_id);
  req.set_model(namespace_id);
  req.set_output_tokens(c.max_tokens);
  for (uint32_t t : c.prompt) req.add_token_ids(t);
  const grpc::Status routed = service.RouteExcluding(req, excluded, &plan.route);
  if (!routed.ok()) return FromGrpc(routed, "route");
  for (auto [id, address] : {std::pair{&plan.route.prefill_instance(), &plan.prefill_address},
                             std::pair{&plan.route.decode_instance(), &plan.decode_address}}) {
    KVSTASH_ASSIGN_OR_RETURN(auto endpoint, service.InstanceEndpoint(*id));
    if (endpoint.first.empty()) return Unavailable("instance " + *id + " registered without a node address");
    *address = endpoint.first;
  }
  return plan;
}

Status FrontDoor::Impl::Generate(const Completion& c, const Plan& plan, const std::string& address, bool report_ttft,
                                 std::optional<uint32_t> expected_first,
                                 const std::function<bool(uint32_t)>& on_token, Outcome& out,
                                 const std::string& tail_key) {
  v1::GenerateRequest g;
  for (uint32_t t : c.prompt) g.add_prompt_token_ids(t);
  *g.mutable_sampling() = c.sampling;
  if (report_ttft) g.set_request_id(plan.request_id);
  if (!tail_key.empty() && expected_first) {
    g.mutable_handoff()->set_tail_key(tail_key);
    g.mutable_handoff()->set_first_token(*expected_first);
  }
  auto ctx = Context();
  std::unique_ptr<grpc::ClientReader<v1::GenerateEvent>> reader = NodeClient(address)->Generate(ctx.get(), g);
  v1::GenerateEvent event;
  bool cancelled = false, first = true;
  Status mismatch = Status::Ok();
  while (reader->Read(&event)) {
    if (event.has_token() && !cancelled && mismatch.ok()) {
      const uint32_t token = event.token().id();
      if (first && expected_first) {
        first = false;
        out.decode_ready_seconds = std::chrono::duration<double>(Clock::now() - out.prefill_started).count();
        if (token != *expected_first) {
          mismatch = DataLoss("the decode node's first token (" + std::to_string(token) +
                              ") differs from the prefill node's (" + std::to_string(*expected_first) +
                              "): the request is ended rather than continued from KV that disagrees");
          ctx->TryCancel();
        }
        continue;
      }
      if (first) out.ttft_seconds = std::chrono::duration<double>(Clock::now() - plan.arrived).count();
      first = false;
      out.tokens.push_back(token);
      if (!on_token(token)) {
        cancelled = true;
        ctx->TryCancel();  // the client went away: the node ends the sequence at its next step
      }
    } else if (event.has_finished()) {
      out.finish_reason = event.finished().finish_reason() == v1::FINISH_REASON_STOP ? "stop" : "length";
      if (expected_first) {
        out.decode_prompt = event.finished().usage().prompt();
      } else {
        out.prompt = event.finished().usage().prompt();
      }
    }
  }
  const grpc::Status finished = reader->Finish();
  if (!mismatch.ok()) return mismatch;
  if (cancelled) return Status(StatusCode::kCancelled, "the client went away");
  if (!finished.ok()) return FromGrpc(finished, "node " + address);
  return Status::Ok();
}

Result<Outcome> FrontDoor::Impl::RunWithRetry(const Completion& c, Plan& plan, bool streaming,
                                              const std::function<bool(uint32_t)>& on_token) {
  size_t sent = 0;
  auto counting = [&](uint32_t token) {
    sent += streaming ? 1 : 0;
    return on_token(token);
  };
  std::string failed;
  Result<Outcome> out = Run(c, plan, counting, &failed);
  if (out.ok() || sent > 0 || failed.empty() || out.status().code() != StatusCode::kUnavailable) return out;
  spdlog::warn("front door: {} (instance {}); routing request {} again without it", out.status().message(), failed,
               plan.request_id);
  Result<Plan> again = Route(c, {failed});
  if (!again.ok()) return again.status();
  again->arrived = plan.arrived;  // the client's wait counts from its arrival
  plan = std::move(*again);
  return Run(c, plan, counting);
}

Result<Outcome> FrontDoor::Impl::Run(const Completion& c, const Plan& plan,
                                     const std::function<bool(uint32_t)>& on_token, std::string* failed) {
  Outcome out;
  auto blame = [&](const std::string& instance, Status st) {
    if (failed != nullptr) *failed = instance;
    return st;
  };
  if (plan.prefill_address == plan.decode_address) {
    const Status st = Generate(c, plan, plan.prefill_address, true, std::nullopt, on_token, out);
    if (!st.ok()) return blame(plan.route.prefill_instance(), st);
    return out;
  }
  // The partial last block goes through the store under a key only this request knows.
  std::string tail_key(16, '\0');
  {
    std::random_device os_random;  // the kernel's generator: nobody can predict another request's key
    for (size_t i = 0; i < tail_key.size(); i += 4) {
      const uint32_t r = os_random();
      std::memcpy(tail_key.data() + i, &r, 4);
    }
  }
  if (options.layerwise_handoff) return RunLayerwise(c, plan, on_token, tail_key, failed);
  out.prefill_started = Clock::now();
  KVSTASH_ASSIGN_OR_RETURN(const bool decode, RunPrefill(c, plan, tail_key, false, on_token, out, failed));
  if (!decode) return out;
  const Status decoded = Generate(c, plan, plan.decode_address, false, out.tokens.front(), on_token, out, tail_key);
  if (!decoded.ok()) return blame(plan.route.decode_instance(), decoded);
  return out;
}

Result<bool> FrontDoor::Impl::RunPrefill(const Completion& c, const Plan& plan, const std::string& tail_key,
                                         bool layerwise, const std::function<bool(uint32_t)>& on_token, Outcome& out,
                                         std::string* failed) {
  v1::PrefillRequest p;
  p.mutable_handoff()->set_tail_key(tail_key);
  p.mutable_handoff()->set_layerwise(layerwise);
  for (uint32_t t : c.prompt) p.add_prompt_token_ids(t);
  *p.mutable_sampling() = c.sampling;
  // Layer-wise, the decode node does not look the prefix blocks up: it has the slices.
  p.set_store_wait_ms(layerwise ? 0 : options.store_wait_ms);
  p.set_request_id(plan.request_id);
  v1::PrefillResult prefilled;
  auto ctx = Context();
  const grpc::Status st = NodeClient(plan.prefill_address)->Prefill(ctx.get(), p, &prefilled);
  if (!st.ok()) {
    if (failed != nullptr) *failed = plan.route.prefill_instance();
    return FromGrpc(st, "prefill node " + plan.prefill_address);
  }
  out.ttft_seconds = std::chrono::duration<double>(Clock::now() - plan.arrived).count();
  out.prefill_seconds = prefilled.ttft_seconds();
  out.prompt = prefilled.prompt();
  const uint32_t first = prefilled.first_token().id();
  out.tokens.push_back(first);
  if (!on_token(first)) return Status(StatusCode::kCancelled, "the client went away");
  if (prefilled.finished()) {
    const auto& stops = c.sampling.stop_token_ids();
    out.finish_reason = std::find(stops.begin(), stops.end(), first) != stops.end() ? "stop" : "length";
    return false;
  }
  return true;
}

Result<Outcome> FrontDoor::Impl::RunLayerwise(const Completion& c, const Plan& plan,
                                              const std::function<bool(uint32_t)>& on_token,
                                              const std::string& tail_key, std::string* failed) {
  Outcome out;
  auto blame = [&](const std::string& instance, Status st) {
    if (failed != nullptr) *failed = instance;
    return st;
  };
  v1::GenerateRequest g;
  for (uint32_t t : c.prompt) g.add_prompt_token_ids(t);
  *g.mutable_sampling() = c.sampling;
  g.mutable_handoff()->set_tail_key(tail_key);
  g.mutable_handoff()->set_layerwise(true);
  auto relay = std::make_shared<DecodeRelay>();
  std::shared_ptr<grpc::ClientContext> decode_ctx = Context();
  out.prefill_started = Clock::now();
  std::thread reader([relay, decode_ctx, g, decode_node = NodeClient(plan.decode_address)] {
    std::unique_ptr<grpc::ClientReader<v1::GenerateEvent>> stream = decode_node->Generate(decode_ctx.get(), g);
    v1::GenerateEvent event;
    while (stream->Read(&event)) {
      MutexLock lock(relay->mu);
      if (event.has_token()) {
        if (!relay->first_at) relay->first_at = Clock::now();
        relay->tokens.push_back(event.token().id());
      } else if (event.has_finished()) {
        relay->finish_reason = event.finished().finish_reason() == v1::FINISH_REASON_STOP ? "stop" : "length";
        relay->prompt = event.finished().usage().prompt();
      }
      relay->cv.notify_all();
    }
    const grpc::Status finished = stream->Finish();
    MutexLock lock(relay->mu);
    relay->status = finished;
    relay->finished = true;
    relay->cv.notify_all();
  });
  // Whatever happens below, the decode stream is ended and its thread joined.
  struct Joiner {
    std::thread& t;
    grpc::ClientContext& ctx;
    bool cancel = true;
    ~Joiner() {
      if (cancel) ctx.TryCancel();
      t.join();
    }
  } joiner{reader, *decode_ctx};

  KVSTASH_ASSIGN_OR_RETURN(const bool decode, RunPrefill(c, plan, tail_key, true, on_token, out, failed));
  if (!decode) return out;
  const uint32_t first = out.tokens.front();
  bool expecting_first = true;
  while (true) {
    MutexLock lock(relay->mu);
    lock.Wait(relay->cv, [&] { relay->mu.AssertHeld(); return !relay->tokens.empty() || relay->finished; });
    if (relay->tokens.empty()) break;  // finished
    const uint32_t token = relay->tokens.front();
    relay->tokens.pop_front();
    if (expecting_first) {
      expecting_first = false;
      out.decode_ready_seconds = std::chrono::duration<double>(*relay->first_at - out.prefill_started).count();
      if (token != first) {
        return blame(plan.route.decode_instance(),
                     DataLoss("the decode node's first token (" + std::to_string(token) +
                              ") differs from the prefill node's (" + std::to_string(first) +
                              "): the request is ended rather than continued from KV that disagrees"));
      }
      continue;
    }
    lock.Unlock();
    out.tokens.push_back(token);
    if (!on_token(token)) return Status(StatusCode::kCancelled, "the client went away");
  }
  MutexLock lock(relay->mu);
  joiner.cancel = false;
  if (!relay->status.ok()) {
    return blame(plan.route.decode_instance(), FromGrpc(relay->status, "decode node " + plan.decode_address));
  }
  out.finish_reason = relay->finish_reason;
  out.decode_prompt = relay->prompt;
  return out;
}

}  // namespace kvstash::scheduler
