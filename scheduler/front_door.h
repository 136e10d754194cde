// FrontDoor: kvstash-conductor's OpenAI-compatible `POST /v1/completions` for the whole cluster
// (issue 15). Each request is routed with the conductor's own policy and admission (Route, called
// in-process) to a prefill and a decode instance, which are kvstash-node processes that registered
// their kvstash.v1.Node address (`--conductor` on the node):
//
//   * prefill and decode on the same node: that node's Generate, relayed token by token;
//   * on two nodes: the prefill node's Prefill (its KV computed or reused, its full blocks confirmed
//     in the store, the first token chosen), then the decode node's Generate of the same request,
//     which takes those blocks from the store and computes only the partial last block. Its first
//     token must equal the prefill node's (same prompt, same seeded sampling) or the request fails:
//     the client never gets tokens from KV that disagrees.
//
// The prompt is an array of token ids (the conductor has no tokenizer); the other fields are the
// node's (`max_tokens`, `temperature`, `top_p`, `seed`, `stop_token_ids`, `stream`). Answers have
// the node API's shape plus `usage.kvstash` naming the instances, the policy and the predicted and
// observed TTFT. Admission rejections are HTTP 429 with the reason; a cluster with no instance able
// to take the request is 503; a node that fails mid-request ends it with an error (502 before the
// first byte, an error event in a stream).
//
// Metrics: kvstash_conductor_http_requests_total{result}, kvstash_conductor_http_ttft_seconds.
//
// Thread-safety: Start/Stop from one thread; requests run on the server's pool.
#pragma once

#include <memory>
#include <string>

#include "common/authorizer.h"
#include "common/tls.h"
#include "common/http_options.h"
#include "common/metrics.h"
#include "kvstash/result.h"
#include "scheduler/conductor_service.h"

namespace kvstash::node {
class Tokenizer;
}

namespace kvstash::scheduler {

struct FrontDoorOptions {
  size_t threads = 64;               // requests served at once
  uint64_t node_timeout_ms = 600'000;  // deadline of one node call (a whole generation)
  uint32_t store_wait_ms = 5'000;    // Prefill waits this long for its blocks to be in the store
  // P/D handoff: layer-wise (the decode node loads each layer group's KV while the prefill runs)
  // or after the prefill (full blocks and the tail through the store once it is done).
  bool layerwise_handoff = true;
  // Text prompts: encoded with this (not owned; outlives the front door), and every answer carries
  // the text of its tokens. Null: prompts must be token ids.
  const node::Tokenizer* tokenizer = nullptr;
  std::string model_name = "kvstash";
  // TLS towards the nodes' kvstash.v1.Node ports (docs/SECURITY.md); all empty = plaintext.
  tls::ClientFiles node_tls;
  std::string node_token;  // bearer token presented to the nodes; empty = none
  // Bearer tokens asked of the front door's callers (not owned; null = none): /v1/completions
  // needs `write`, other paths `read`; /healthz stays open. Refusals: 401/403 in OpenAI's shape.
  auth::Authorizer* authorizer = nullptr;
  // Set (cert and key) = the front door speaks HTTPS only, with client certificates when
  // client_ca_file is set; files re-read when they change (common/http_serve.h).
  HttpTlsFiles tls;
};

class FrontDoor {
 public:
  // `service` and `registry` must outlive the front door.
  FrontDoor(ConductorService& service, metrics::Registry* registry, FrontDoorOptions options);
  ~FrontDoor();  // Stop()

  // Binds HOST:PORT (0 picks one) and serves. Returns the port.
  Result<int> Start(const std::string& host, int port);
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstash::scheduler
