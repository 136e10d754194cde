#include "scheduler/front_door.h"

#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <chrono>
#include <ctime>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "common/http_serve.h"
#include "common/mutex.h"
#include "kvstash/v1/node.grpc.pb.h"
#include "node/tokenizer.h"
#include "scheduler/front_door_request.h"

namespace kvstash::scheduler {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxBodyBytes = size_t{64} << 20;

int HttpStatusOf(StatusCode code) {
  switch (code) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
      return 400;
    case StatusCode::kResourceExhausted:
      return 429;
    case StatusCode::kUnavailable:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kNotFound:
      return 503;
    case StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 502;
  }
}

const char* ResultLabel(StatusCode code) {
  switch (HttpStatusOf(code)) {
    case 400:
      return "bad_request";
    case 429:
      return "rejected";
    case 503:
      return "unavailable";
    default:
      return "failed";
  }
}

json ErrorJson(int http_status, const std::string& message) {
  const char* type = http_status == 400   ? "invalid_request_error"
                     : http_status == 429 ? "rate_limit_exceeded"
                     : http_status == 503 ? "service_unavailable"
                                          : "server_error";
  return {{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}}}};
}

Status FromGrpc(const grpc::Status& s, const std::string& who) {
  return Status(static_cast<StatusCode>(s.error_code()), who + ": " + s.error_message());
}

json SourcesJson(const v1::PromptSources& p) {
  return {{"cached_tokens_local", p.local()}, {"cached_tokens_store", p.store()}, {"computed_tokens", p.computed()}};
}

// A routed request: where it goes.
struct Plan {
  uint64_t request_id = 0;
  v1::RouteResponse route;
  std::string prefill_address, decode_address;
  Clock::time_point arrived;
};

// What came back.
struct Outcome {
  std::vector<uint32_t> tokens;
  std::string finish_reason = "length";
  v1::PromptSources prompt;                        // of the node that computed the prompt's KV
  std::optional<v1::PromptSources> decode_prompt;  // the decode node's, when it was another node
  double ttft_seconds = 0;                         // arrival here to the first token
  // P/D: from the Prefill call, when the prefill node chose the first token (its own TTFT) and
  // when the decode node's first token event came (all KV loaded).
  std::optional<double> prefill_seconds, decode_ready_seconds;
  Clock::time_point prefill_started;
};

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

struct FrontDoor::Impl {
  ConductorService& service;
  FrontDoorOptions options;
  HttpServer server;
  std::thread thread;
  std::atomic<uint64_t> next_id;
  Mutex clients_mu;
  std::map<std::string, std::shared_ptr<v1::Node::Stub>> clients GUARDED_BY(clients_mu);  // one per node address
  metrics::Family<metrics::Counter>& requests;
  metrics::Histogram& ttft;

  Impl(ConductorService& s, metrics::Registry* registry, FrontDoorOptions o)
      : service(s),
        options(std::move(o)),
        next_id(std::random_device{}() | (uint64_t{std::random_device{}()} << 32)),
        requests(registry->AddCounter("kvstash_conductor_http_requests_total",
                                      "Completions through the front door, by result", {"result"})),
        ttft(registry
                 ->AddHistogram("kvstash_conductor_http_ttft_seconds",
                                "Arrival at the front door to the first token, answered completions", {},
                                {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60})
                 .WithLabels({})) {}

  // Built by Start from options.node_tls.
  std::shared_ptr<grpc::ChannelCredentials> node_credentials = grpc::InsecureChannelCredentials();

  std::shared_ptr<v1::Node::Stub> NodeClient(const std::string& address) {
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
  std::unique_ptr<grpc::ClientContext> Context() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(options.node_timeout_ms));
    return ctx;
  }

  Result<Plan> Route(const Completion& c, const std::set<std::string>& excluded = {});
  // Run, and when a node could not be reached before anything was streamed, once more on
  // instances routed without it (`plan` becomes the new plan).
  // `streaming`: on_token sends each token to the client (so after the first one there is no retry);
  // otherwise nothing reaches the client before the whole answer.
  Result<Outcome> RunWithRetry(const Completion& c, Plan& plan, bool streaming,
                               const std::function<bool(uint32_t)>& on_token);
  // `failed` names the instance whose node failed, when one did.
  Result<Outcome> Run(const Completion& c, const Plan& plan, const std::function<bool(uint32_t)>& on_token,
                      std::string* failed = nullptr);
  // Relays `address`'s Generate; with `expected_first`, its first token must be that one and is
  // not passed on (the prefill node's, already sent).
  Status Generate(const Completion& c, const Plan& plan, const std::string& address, bool report_ttft,
                  std::optional<uint32_t> expected_first, const std::function<bool(uint32_t)>& on_token,
                  Outcome& out, const std::string& tail_key = "");
  // The prefill half of P/D: the prefill node's Prefill (with the handoff key), its first token
  // passed on, `out` filled; false when the request is finished (nothing to decode).
  Result<bool> RunPrefill(const Completion& c, const Plan& plan, const std::string& tail_key, bool layerwise,
                          const std::function<bool(uint32_t)>& on_token, Outcome& out, std::string* failed);
  // P/D with a layer-wise handoff: the decode node's Generate starts with the Prefill, so it
  // loads the KV while the prefill computes it.
  Result<Outcome> RunLayerwise(const Completion& c, const Plan& plan, const std::function<bool(uint32_t)>& on_token,
                               const std::string& tail_key, std::string* failed);
  json Head(uint64_t request_id) const {
    return {{"id", "cmpl-" + std::to_string(request_id)},
            {"object", "text_completion"},
            {"created", std::time(nullptr)},
            {"model", options.model_name}};
  }
  json Usage(const Completion& c, const Plan& plan, const Outcome& out) const;
  void HandleCompletion(const httplib::Request& req, httplib::Response& res);
  void Answer(httplib::Response& res, const Status& status) {
    const int code = HttpStatusOf(status.code());
    requests.WithLabels({ResultLabel(status.code())}).Inc();
    res.status = code;
    res.set_content(ErrorJson(code, status.message()).dump() + "\n", "application/json");
  }
};

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

json FrontDoor::Impl::Usage(const Completion& c, const Plan& plan, const Outcome& out) const {
  json kv = SourcesJson(out.prompt);
  kv["request_id"] = plan.request_id;
  kv["policy"] = plan.route.policy();
  kv["prefill_instance"] = plan.route.prefill_instance();
  kv["decode_instance"] = plan.route.decode_instance();
  kv["predicted_ttft_ms"] = plan.route.predicted_ttft_seconds() * 1000;
  kv["ttft_ms"] = out.ttft_seconds * 1000;
  if (out.decode_prompt) kv["decode"] = SourcesJson(*out.decode_prompt);
  if (c.prompt_text) kv["prompt_token_ids"] = c.prompt;
  if (out.prefill_seconds) kv["prefill_ms"] = *out.prefill_seconds * 1000;
  if (out.decode_ready_seconds) {
    kv["handoff"] = options.layerwise_handoff ? "layerwise" : "after-prefill";
    kv["decode_ready_ms"] = *out.decode_ready_seconds * 1000;
  }
  const uint64_t cached = out.prompt.local() + out.prompt.store();
  return {{"prompt_tokens", c.prompt.size()},
          {"completion_tokens", out.tokens.size()},
          {"total_tokens", c.prompt.size() + out.tokens.size()},
          {"prompt_tokens_details", {{"cached_tokens", cached}}},
          {"kvstash", kv}};
}

void FrontDoor::Impl::HandleCompletion(const httplib::Request& req, httplib::Response& res) {
  Result<Completion> parsed = ParseCompletion(req.body);
  if (!parsed.ok()) return Answer(res, parsed.status());
  const node::Tokenizer* tokenizer = options.tokenizer;
  if (parsed->prompt_text) {
    if (tokenizer == nullptr) {
      return Answer(res, InvalidArgument("prompt: text needs a tokenizer (kvstash-conductor --tokenizer); send token ids"));
    }
    Result<std::vector<uint32_t>> ids = tokenizer->Encode(*parsed->prompt_text);
    if (!ids.ok()) return Answer(res, InvalidArgument("prompt: " + ids.status().message()));
    parsed->prompt = std::move(*ids);
  }
  Result<Plan> plan = Route(*parsed);
  if (!plan.ok()) return Answer(res, plan.status());
  if (!parsed->stream) {
    Result<Outcome> out = RunWithRetry(*parsed, *plan, false, [](uint32_t) { return true; });
    if (!out.ok()) return Answer(res, out.status());
    json body = Head(plan->request_id);
    std::string text;
    if (tokenizer != nullptr) {  // as the stream's pieces would concatenate
      node::IncrementalDecoder decoder(*tokenizer, parsed->prompt);
      for (uint32_t t : out->tokens) decoder.Push(t);
      decoder.Finish();
      text = decoder.text();
    }
    body["choices"] = json::array(
        {{{"index", 0}, {"text", text}, {"token_ids", out->tokens}, {"finish_reason", out->finish_reason}}});
    body["usage"] = Usage(*parsed, *plan, *out);
    requests.WithLabels({"ok"}).Inc();
    ttft.Observe(out->ttft_seconds);
    res.set_content(body.dump() + "\n", "application/json");
    return;
  }
  auto request = std::make_shared<Completion>(std::move(*parsed));
  auto routed = std::make_shared<Plan>(std::move(*plan));
  res.set_chunked_content_provider("text/event-stream", [this, request, routed](size_t, httplib::DataSink& sink) {
    auto send = [&](const json& event) {
      const std::string line = "data: " + event.dump() + "\n\n";
      return sink.write(line.data(), line.size());
    };
    const json head = Head(routed->request_id);
    // Text pieces never split a UTF-8 character (node/tokenizer.h IncrementalDecoder).
    std::optional<node::IncrementalDecoder> decoder;
    if (options.tokenizer != nullptr) decoder.emplace(*options.tokenizer, request->prompt);
    Result<Outcome> out = RunWithRetry(*request, *routed, true, [&](uint32_t token) {
      json chunk = head;
      const std::string piece = decoder ? decoder->Push(token) : "";
      chunk["choices"] =
          json::array({{{"index", 0}, {"text", piece}, {"token_ids", {token}}, {"finish_reason", nullptr}}});
      return send(chunk);
    });
    if (out.ok()) {
      json last = head;
      const std::string rest = decoder ? decoder->Finish() : "";
      last["choices"] = json::array(
          {{{"index", 0}, {"text", rest}, {"token_ids", json::array()}, {"finish_reason", out->finish_reason}}});
      last["usage"] = Usage(*request, *routed, *out);
      requests.WithLabels({"ok"}).Inc();
      ttft.Observe(out->ttft_seconds);
      send(last);
    } else if (out.status().code() == StatusCode::kCancelled) {
      requests.WithLabels({"cancelled"}).Inc();
      return false;
    } else {
      requests.WithLabels({ResultLabel(out.status().code())}).Inc();
      send(ErrorJson(HttpStatusOf(out.status().code()), out.status().message()));
    }
    static constexpr char kDone[] = "data: [DONE]\n\n";
    sink.write(kDone, sizeof kDone - 1);
    sink.done();
    return true;
  });
}

FrontDoor::FrontDoor(ConductorService& service, metrics::Registry* registry, FrontDoorOptions options)
    : impl_(std::make_unique<Impl>(service, registry, std::move(options))) {
  const size_t threads = std::max<size_t>(1, impl_->options.threads);
  impl_->server.SetWorkerThreads(threads);
  impl_->server.set_payload_max_length(kMaxBodyBytes);
  Impl* impl = impl_.get();
  impl_->server.Post("/v1/completions",
                     [impl](const httplib::Request& req, httplib::Response& res) { impl->HandleCompletion(req, res); });
  impl_->server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  impl_->server.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        const std::string why = res.status == 404 ? "no such endpoint: " + req.method + " " + req.path
                                                  : "HTTP " + std::to_string(res.status);
        res.set_content(ErrorJson(res.status, why).dump() + "\n", "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }));
}

FrontDoor::~FrontDoor() { Stop(); }

Result<int> FrontDoor::Start(const std::string& host, int port) {
  KVSTASH_ASSIGN_OR_RETURN(impl_->node_credentials, tls::MakeChannelCredentials(impl_->options.node_tls));
  return ServeInBackground(impl_->server, host, port, impl_->thread, "the front door's HTTP");
}

void FrontDoor::Stop() { StopServing(impl_->server, impl_->thread); }

}  // namespace kvstash::scheduler
