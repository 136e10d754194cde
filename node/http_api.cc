// kvstash-node's HTTP front (contract in node/http_api.h): the routes, a completion answered
// whole or streamed as server-sent events as the runtime chooses tokens, errors in OpenAI's shape,
// draining and the in-flight count. The body is read by node/http_completion_request.h.
#include "node/http_api.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <ctime>
#include <deque>
#include <future>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "common/http_serve.h"
#include "common/http_token_gate.h"
#include "common/mutex.h"
#include "node/http_completion_request.h"

namespace kvstash::node {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

json ErrorJson(const Status& status, int http_status) {
  const char* type = http_status == 400   ? "invalid_request_error"
                     : http_status == 401 ? "authentication_error"
                     : http_status == 403 ? "permission_error"
                     : http_status == 503 ? "service_unavailable"
                                          : "server_error";
  return {{"error", {{"message", status.message()}, {"type", type}, {"param", nullptr}, {"code", nullptr}}}};
}

int HttpStatusFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kInvalidArgument: return 400;
    case StatusCode::kUnavailable: return 503;
    default: return 500;
  }
}

void ReplyError(httplib::Response& res, const Status& status) {
  res.status = HttpStatusFor(status);
  res.set_content(ErrorJson(status, res.status).dump() + "\n", "application/json");
}

json UsageJson(size_t prompt_tokens, const CompletionResult& r) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", r.tokens.size()},
          {"total_tokens", prompt_tokens + r.tokens.size()},
          {"prompt_tokens_details", {{"cached_tokens", r.prompt.local + r.prompt.store}}},
          {"kvstash",
           {{"cached_tokens_local", r.prompt.local},
            {"cached_tokens_store", r.prompt.store},
            {"computed_tokens", r.prompt.computed},
            {"ttft_ms", r.ttft_seconds * 1000.0}}}};
}

std::string SseEvent(const json& payload) { return "data: " + payload.dump() + "\n\n"; }

// Where this process's completion ids start: random, so that two nodes' ids do not collide.
uint64_t RandomId() {
  std::random_device rd;
  return static_cast<uint64_t>(rd()) << 32 | rd();
}

}  // namespace

struct HttpApi::Impl {
  NodeRuntime& runtime;
  NodeMetrics& metrics;
  HttpApiOptions options;
  HttpServer server;
  std::thread thread;
  const std::time_t started = std::time(nullptr);
  std::atomic<bool> draining{false};
  std::atomic<uint64_t> next_id;
  Mutex idle_mu;
  std::condition_variable idle_cv;
  size_t in_flight GUARDED_BY(idle_mu) = 0;

  Impl(NodeRuntime& r, NodeMetrics& m, HttpApiOptions o)
      : runtime(r), metrics(m), options(std::move(o)), next_id(RandomId()) {}

  // Held by a completion until its answer is written (a stream's by its content provider).
  class InFlight {
   public:
    explicit InFlight(Impl& impl) : impl_(impl) {
      MutexLock lock(impl_.idle_mu);
      ++impl_.in_flight;
    }
    ~InFlight() {
      MutexLock lock(impl_.idle_mu);
      if (--impl_.in_flight == 0) impl_.idle_cv.notify_all();
    }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;

   private:
    Impl& impl_;
  };

  // One streamed completion: the runtime's step thread pushes tokens, the provider pops them.
  struct Stream {
    std::shared_ptr<InFlight> in_flight;
    json head;  // id, object, created, model
    size_t prompt_tokens = 0;
    uint32_t max_tokens = 0;
    std::vector<uint32_t> stop_tokens;
    std::optional<IncrementalDecoder> decoder;  // with a tokenizer: each chunk's text
    // Set when the client goes away mid-stream: the runtime ends the sequence at its next step.
    std::shared_ptr<std::atomic<bool>> cancel = std::make_shared<std::atomic<bool>>(false);
    Mutex mu;
    std::condition_variable cv;
    std::deque<uint32_t> pending GUARDED_BY(mu);
    // Touched by the provider only:
    std::future<Result<CompletionResult>> done;
    size_t sent = 0;
    std::optional<uint32_t> last_sent;
  };

  json Head() {
    char id[32];
    std::snprintf(id, sizeof id, "cmpl-%016llx", static_cast<unsigned long long>(next_id.fetch_add(1)));
    return {{"id", id}, {"object", "text_completion"}, {"created", std::time(nullptr)}, {"model", options.model_name}};
  }

  // Observes the time between consecutive tokens and forwards each token to `next` (if set).
  TokenCallback Timed(std::function<void(uint32_t)> next) {
    return [this, next = std::move(next), last = std::optional<Clock::time_point>()](uint32_t token) mutable {
      const auto now = Clock::now();
      if (last) metrics.RecordTokenGap(std::chrono::duration<double>(now - *last).count());
      last = now;
      if (next) next(token);
    };
  }

  void Finished(const Result<CompletionResult>& result) {
    metrics.RecordRequest(result.ok() ? Status::Ok() : result.status());
    if (result.ok()) metrics.RecordCompletion(result->ttft_seconds, result->tokens.size());
  }

  void Refuse(httplib::Response& res, const Status& status) {
    metrics.RecordRequest(status);
    ReplyError(res, status);
  }

  void HandleCompletion(const httplib::Request& req, httplib::Response& res);
  void Complete(ParsedCompletion parsed, httplib::Response& res);
  void StartStream(ParsedCompletion parsed, std::shared_ptr<InFlight> in_flight, httplib::Response& res);
  bool StreamStep(Stream& s, httplib::DataSink& sink);
  bool StreamEnd(Stream& s, httplib::DataSink& sink);
  void Routes();
};

void HttpApi::Impl::HandleCompletion(const httplib::Request& req, httplib::Response& res) {
  auto in_flight = std::make_shared<InFlight>(*this);  // before the drain check: WaitIdle sees this one
  if (draining.load()) return Refuse(res, Unavailable("the node is draining: no new requests"));
  Result<ParsedCompletion> parsed = ParseCompletion(req.body, options.tokenizer);
  if (!parsed.ok()) return Refuse(res, parsed.status());
  if (parsed->stream) return StartStream(std::move(*parsed), std::move(in_flight), res);
  Complete(std::move(*parsed), res);
}

void HttpApi::Impl::Complete(ParsedCompletion parsed, httplib::Response& res) {
  const size_t prompt_tokens = parsed.request.prompt.size();
  std::optional<IncrementalDecoder> decoder;
  if (options.tokenizer != nullptr) decoder.emplace(*options.tokenizer, parsed.request.prompt);
  auto submitted = runtime.Submit(std::move(parsed.request), Timed({}));
  if (!submitted.ok()) return Refuse(res, submitted.status());
  const Result<CompletionResult> result = submitted->get();
  Finished(result);
  if (!result.ok()) return ReplyError(res, result.status());
  // The same text a stream would carry, piece by piece.
  if (decoder) {
    for (uint32_t token : result->tokens) decoder->Push(token);
    decoder->Finish();
  }
  json body = Head();
  body["choices"] = json::array({{{"index", 0},
                                  {"text", decoder ? decoder->text() : std::string()},
                                  {"token_ids", result->tokens},
                                  {"logprobs", nullptr},
                                  {"finish_reason", result->finish_reason}}});
  body["usage"] = UsageJson(prompt_tokens, *result);
  res.set_content(body.dump() + "\n", "application/json");
}

void HttpApi::Impl::StartStream(ParsedCompletion parsed, std::shared_ptr<InFlight> in_flight,
                                httplib::Response& res) {
  auto s = std::make_shared<Stream>();
  s->in_flight = std::move(in_flight);
  s->head = Head();
  s->prompt_tokens = parsed.request.prompt.size();
  s->max_tokens = parsed.request.sampling.max_tokens;
  s->stop_tokens = parsed.request.sampling.stop_tokens;
  if (options.tokenizer != nullptr) s->decoder.emplace(*options.tokenizer, parsed.request.prompt);
  // The callback keeps the queue alive while the runtime holds it, even after a client left.
  auto push = [s](uint32_t token) {
    {
      MutexLock lock(s->mu);
      s->pending.push_back(token);
    }
    s->cv.notify_one();
  };
  parsed.request.cancel = s->cancel;
  auto submitted = runtime.Submit(std::move(parsed.request), Timed(push));
  if (!submitted.ok()) return Refuse(res, submitted.status());
  s->done = std::move(*submitted);
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider("text/event-stream",
                                   [this, s](size_t, httplib::DataSink& sink) { return StreamStep(*s, sink); });
}

// Writes the tokens chosen since the last call, or the end of the stream once the sequence is
// done. False (the connection is dropped) when the client went away.
bool HttpApi::Impl::StreamStep(Stream& s, httplib::DataSink& sink) {
  std::deque<uint32_t> tokens;
  {
    MutexLock lock(s.mu);
    // The future is ready right after the last token; a failed sequence has no last token, so
    // the wait also wakes now and then to look at the future.
    while (s.pending.empty()) {
      const bool last_was_final =
          s.sent >= s.max_tokens ||
          (s.last_sent && std::find(s.stop_tokens.begin(), s.stop_tokens.end(), *s.last_sent) != s.stop_tokens.end());
      if (last_was_final || s.done.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
        lock.Unlock();
        return StreamEnd(s, sink);
      }
      lock.WaitFor(s.cv, std::chrono::milliseconds(50));
    }
    tokens.swap(s.pending);
  }
  for (uint32_t token : tokens) {
    json chunk = s.head;
    chunk["choices"] = json::array(
        {{{"index", 0},
          {"text", s.decoder ? s.decoder->Push(token) : std::string()},
          {"token_ids", {token}},
          {"logprobs", nullptr},
          {"finish_reason", nullptr}}});
    const std::string event = SseEvent(chunk);
    if (!sink.write(event.data(), event.size())) {
      s.cancel->store(true, std::memory_order_release);  // nobody reads the rest: stop computing it
      return false;
    }
    ++s.sent;
    s.last_sent = token;
  }
  return true;
}

bool HttpApi::Impl::StreamEnd(Stream& s, httplib::DataSink& sink) {
  const Result<CompletionResult> result = s.done.get();
  Finished(result);
  std::string out;
  if (result.ok()) {
    json chunk = s.head;
    // Tokens the callback had not delivered (none in practice) go with the last chunk.
    std::vector<uint32_t> rest;
    if (result->tokens.size() > s.sent) rest.assign(result->tokens.begin() + s.sent, result->tokens.end());
    // Their text and whatever the decoder still held back (an unfinished character at the end).
    std::string text;
    if (s.decoder) {
      for (uint32_t token : rest) text += s.decoder->Push(token);
      text += s.decoder->Finish();
    }
    chunk["choices"] = json::array({{{"index", 0},
                                     {"text", text},
                                     {"token_ids", rest},
                                     {"logprobs", nullptr},
                                     {"finish_reason", result->finish_reason}}});
    chunk["usage"] = UsageJson(s.prompt_tokens, *result);
    out = SseEvent(chunk);
  } else {
    out = SseEvent(ErrorJson(result.status(), HttpStatusFor(result.status())));
  }
  out += "data: [DONE]\n\n";
  if (!sink.write(out.data(), out.size())) return false;
  sink.done();
  return true;
}

void HttpApi::Impl::Routes() {
  using httplib::Request, httplib::Response;
  server.Post("/v1/completions",
              [this](const Request& req, Response& res) { HandleCompletion(req, res); });
  server.Get("/v1/models", [this](const Request&, Response& res) {
    const json model = {{"id", options.model_name},
                        {"object", "model"},
                        {"created", started},
                        {"owned_by", "kvstash"},
                        {"max_model_len", runtime.config().max_position_embeddings}};
    res.set_content(json{{"object", "list"}, {"data", json::array({model})}}.dump() + "\n", "application/json");
  });
  server.Get("/healthz", [this](const Request&, Response& res) {
    if (draining.load()) res.status = 503;
    res.set_content(draining.load() ? "draining\n" : "ok\n", "text/plain");
  });
  // Errors the router makes (404, 405, 413) get a JSON body like ours.
  server.set_error_handler(httplib::Server::HandlerWithResponse([](const Request& req, Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string why = res.status == 404   ? "no such endpoint: " + req.method + " " + req.path
                            : res.status == 413 ? std::string("the body is too large")
                                                : "HTTP " + std::to_string(res.status);
    const Status status(StatusCode::kInvalidArgument, why);
    res.set_content(ErrorJson(status, 400).dump() + "\n", "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
}

HttpApi::HttpApi(NodeRuntime& runtime, NodeMetrics& metrics, HttpApiOptions options)
    : impl_(std::make_unique<Impl>(runtime, metrics, std::move(options))) {
  const size_t threads = std::max<size_t>(1, impl_->options.threads);
  impl_->server.SetWorkerThreads(threads);
  impl_->server.set_payload_max_length(impl_->options.max_body_bytes);
  impl_->Routes();
  if (impl_->options.authorizer != nullptr) {
    auth::RequireTokens(
        impl_->server, *impl_->options.authorizer,
        auth::CompletionApiRole,
        [](httplib::Response& res, int http_status, const std::string& message) {
          res.set_content(ErrorJson(Status(StatusCode::kUnauthenticated, message), http_status).dump() + "\n",
                          "application/json");
        });
  }
}

HttpApi::~HttpApi() { Stop(); }

Result<int> HttpApi::Start(const std::string& host, int port) {
  if (impl_->options.tls.enabled() && !impl_->server.tls()) {
    KVSTASH_RETURN_IF_ERROR(impl_->server.EnableTls(impl_->options.tls));
  }
  return ServeInBackground(impl_->server, host, port, impl_->thread, impl_->server.tls() ? "HTTPS" : "HTTP");
}

void HttpApi::BeginDrain() { impl_->draining.store(true); }

bool HttpApi::WaitIdle(std::chrono::milliseconds timeout) {
  MutexLock lock(impl_->idle_mu);
  return lock.WaitFor(impl_->idle_cv, timeout, [&] { impl_->idle_mu.AssertHeld(); return impl_->in_flight == 0; });
}

void HttpApi::Stop() { StopServing(impl_->server, impl_->thread); }

}  // namespace kvstash::node
