// FrontDoor's HTTP side (contract in scheduler/front_door.h): `POST /v1/completions` parsed
// (scheduler/front_door_request.h), text prompts encoded, the request routed and run
// (front_door_run.cc), and answered whole or streamed as server-sent events, with `usage.kvstash`;
// errors as HTTP statuses in the OpenAI shape, and the metrics of each answer.
#include "scheduler/front_door.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>

#include "common/http_token_gate.h"
#include "node/tokenizer.h"
#include "scheduler/front_door_impl.h"

namespace kvstash::scheduler {

using front_door_internal::json;
using front_door_internal::Outcome;
using front_door_internal::Plan;

namespace {

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
                     : http_status == 401 ? "authentication_error"
                     : http_status == 403 ? "permission_error"
                     : http_status == 429 ? "rate_limit_exceeded"
                     : http_status == 503 ? "service_unavailable"
                                          : "server_error";
  return {{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}}}};
}

json SourcesJson(const v1::PromptSources& p) {
  return {{"cached_tokens_local", p.local()}, {"cached_tokens_store", p.store()}, {"computed_tokens", p.computed()}};
}

}  // namespace

void FrontDoor::Impl::Answer(httplib::Response& res, const Status& status) {
  const int code = HttpStatusOf(status.code());
  requests.WithLabels({ResultLabel(status.code())}).Inc();
  res.status = code;
  res.set_content(ErrorJson(code, status.message()).dump() + "\n", "application/json");
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
  if (impl_->options.authorizer != nullptr) {
    auth::RequireTokens(
        impl_->server, *impl_->options.authorizer,
        auth::CompletionApiRole,
        [](httplib::Response& res, int http_status, const std::string& message) {
          res.set_content(ErrorJson(http_status, message).dump() + "\n", "application/json");
        });
  }
}

FrontDoor::~FrontDoor() { Stop(); }

Result<int> FrontDoor::Start(const std::string& host, int port) {
  KVSTASH_ASSIGN_OR_RETURN(impl_->node_credentials, tls::MakeChannelCredentials(impl_->options.node_tls));
  if (impl_->options.tls.enabled() && !impl_->server.tls()) {
    KVSTASH_RETURN_IF_ERROR(impl_->server.EnableTls(impl_->options.tls));
  }
  return ServeInBackground(impl_->server, host, port, impl_->thread,
                           impl_->server.tls() ? "the front door's HTTPS" : "the front door's HTTP");
}

void FrontDoor::Stop() { StopServing(impl_->server, impl_->thread); }

}  // namespace kvstash::scheduler
