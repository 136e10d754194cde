// kvstash-node's OpenAI-compatible HTTP front (cpp-httplib):
//
//   POST /v1/completions  {"prompt": [token ids] or "text", "max_tokens", "temperature", "top_p",
//                          "seed", "stop_token_ids" (kvstash's: EOS ids), "ignore_eos" (vLLM's),
//                          "stream", "model" (ignored)}
//   With a tokenizer, its EOS ends a completion unless "ignore_eos" is true.
//   GET  /v1/models       the one model this node serves
//   GET  /healthz         "ok" (503 "draining" once BeginDrain ran)
//
// A text prompt needs the model's tokenizer (HttpApiOptions::tokenizer; BOS first, as Llama); without
// one it is a 400 that says so. A completion answers OpenAI's shape: choices[0].text (the generated
// ids decoded, empty without a tokenizer), choices[0].token_ids and finish_reason "length" |
// "stop"; usage carries
// prompt_tokens, completion_tokens, total_tokens, prompt_tokens_details.cached_tokens (local +
// store) and kvstash's split {cached_tokens_local, cached_tokens_store, computed_tokens, ttft_ms}.
// With "stream": true the answer is text/event-stream: one `data: {chunk}` per token as the
// runtime chooses it (its "text" holds whole UTF-8 characters only: node/tokenizer.h's
// IncrementalDecoder), a last chunk with finish_reason, usage and any text still held back, then
// `data: [DONE]`.
//
// Errors: {"error": {"message", "type", "param": null, "code": null}} with HTTP 400 for a body
// that is not valid JSON, a field of the wrong type, a missing prompt, a text prompt the node
// cannot encode (no tokenizer, not UTF-8), or anything
// NodeRuntime::Submit refuses as INVALID_ARGUMENT (nothing is queued or changed); 503 while
// draining; 500 for a request that failed inside the runtime.
//
// Temperature defaults to 1 and top_p to 1 as in OpenAI's API; seed defaults to 0, so a request
// without one is still reproducible.
//
// Thread-safety: Start, BeginDrain, WaitIdle and Stop from one owning thread; requests are served
// on the server's own worker threads (each in-flight completion holds one).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "common/authorizer.h"
#include "common/http_options.h"
#include "kvstash/result.h"
#include "node/node_metrics.h"
#include "node/runtime.h"
#include "node/tokenizer.h"

namespace kvstash::node {

struct HttpApiOptions {
  std::string model_name;       // "model" in answers and /v1/models
  const Tokenizer* tokenizer = nullptr;  // not owned; null: prompts are token ids only
  size_t threads = 64;          // worker threads: completions served at once
  size_t max_body_bytes = 16 << 20;
  // Bearer tokens (not owned; null = none asked): /v1/completions needs `write`, /v1/models and
  // any other path `read`; /healthz stays open. A refusal is 401 or 403 in the error shape below.
  auth::Authorizer* authorizer = nullptr;
  // Set (cert and key) = HTTPS only, with client certificates when client_ca_file is set; files
  // re-read when they change (common/http_serve.h).
  HttpTlsFiles tls;
};

class HttpApi {
 public:
  // `runtime` and `metrics` are not owned and must outlive this.
  HttpApi(NodeRuntime& runtime, NodeMetrics& metrics, HttpApiOptions options);
  ~HttpApi();  // Stop()
  HttpApi(const HttpApi&) = delete;
  HttpApi& operator=(const HttpApi&) = delete;

  // Binds host:port (port 0 picks a free one) and serves on a thread of its own; the bound port.
  // UNAVAILABLE when the address cannot be bound.
  Result<int> Start(const std::string& host, int port);
  // From now on new completions are answered 503; those in flight go on to their end.
  void BeginDrain();
  // Waits until no completion is in flight (every answer, streamed ones included, fully written)
  // or `timeout` passes. True when idle.
  bool WaitIdle(std::chrono::milliseconds timeout);
  // Closes the listener and every connection, and joins the server's threads. A stream still
  // being written is cut: BeginDrain, drain the runtime and WaitIdle first.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstash::node
