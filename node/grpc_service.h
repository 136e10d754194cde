// kvstash-node's gRPC service, kvstash.v1.Node (proto/kvstash/v1/node.proto): Generate (token
// streaming), Prefill (KV computed or reused, first token, blocks confirmed in the store) and Info.
//
// Requests are checked by node/grpc_requests before anything is queued (INVALID_ARGUMENT naming the
// field, nothing changed); with tokens (GrpcServiceOptions::authorizer) a call without the role it
// needs is UNAUTHENTICATED or PERMISSION_DENIED before anything is read; a draining server
// answers UNAVAILABLE; a client that cancels or goes
// away cancels its request in the runtime (CompletionRequest::cancel), so its pages are freed at
// the next step. Each RPC in flight holds one of the server's threads (`threads` of them).
//
// Thread-safety: Start, BeginDrain, WaitIdle and Stop from one owning thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "common/authorizer.h"
#include "common/tls.h"
#include "kvstash/client.h"
#include "kvstash/result.h"
#include "node/node_metrics.h"
#include "node/runtime.h"
#include "node/tokenizer.h"

namespace kvstash::node {

struct GrpcServiceOptions {
  std::string model_name;               // InfoResult.model_name
  std::string engine;                   // cpu | emulated | cuda
  std::string namespace_id;             // the runtime's: Prefill hashes the prompt's blocks with it
  uint32_t page_tokens = 16, block_tokens = 512;
  const Tokenizer* tokenizer = nullptr;  // not owned; null: token-id prompts only
  Client* store = nullptr;               // not owned; null: Prefill confirms no blocks (see AttachStore)
  NodeMetrics* metrics = nullptr;        // not owned; null: nothing recorded
  size_t threads = 64;                   // RPCs served at once
  size_t max_request_bytes = 1 << 20;    // larger requests: INVALID_ARGUMENT (gRPC itself takes 4x)
  tls::ServerFiles tls;                  // the port's TLS (docs/SECURITY.md); empty = plaintext
  // Bearer tokens (not owned; null = none asked): Generate and Prefill need `write`, Info `read`.
  auth::Authorizer* authorizer = nullptr;
};

class GrpcServer {
 public:
  // `runtime` and everything the options point to must outlive this.
  GrpcServer(NodeRuntime& runtime, GrpcServiceOptions options);
  ~GrpcServer();  // Stop()
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  // Listens on host:port (port 0 picks one); the bound port. UNAVAILABLE when it cannot bind.
  Result<int> Start(const std::string& host, int port);
  // The store Prefill confirms blocks in, for a node whose store came up after it started (as
  // NodeRuntime::AttachStore). Not owned; outlives this. Any thread.
  void AttachStore(Client* store);
  // New RPCs get UNAVAILABLE from now on; those in flight go on to their end.
  void BeginDrain();
  // Waits until no RPC is in flight or `timeout` passes; true when idle.
  bool WaitIdle(std::chrono::milliseconds timeout);
  // Shuts the server down: answers already given are flushed (up to 5 s), RPCs still running are
  // then cancelled. BeginDrain and WaitIdle first.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstash::node
