// FrontDoor's internals, shared by its implementation files (contract in scheduler/front_door.h):
//   front_door.cc      the HTTP side: the server and its routes, a completion request parsed and
//                      answered (whole or streamed as server-sent events), errors as HTTP statuses
//   front_door_run.cc  a routed request run on the nodes: Route, Generate relayed from a node,
//                      the P/D halves (Prefill, then the decode node's Generate; or layer-wise),
//                      and the one retry on other instances when a node could not be reached
#pragma once

#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/http_serve.h"
#include "common/mutex.h"
#include "kvstash/v1/node.grpc.pb.h"
#include "scheduler/front_door.h"
#include "scheduler/front_door_request.h"

namespace kvstash::scheduler {
namespace front_door_internal {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

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

}  // namespace front_door_internal

struct FrontDoor::Impl {
  using json = front_door_internal::json;
  using Clock = front_door_internal::Clock;
  using Plan = front_door_internal::Plan;
  using Outcome = front_door_internal::Outcome;

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

  // Node calls (front_door_run.cc).
  std::shared_ptr<v1::Node::Stub> NodeClient(const std::string& address);
  std::unique_ptr<grpc::ClientContext> Context() const;

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
  // The HTTP side (front_door.cc).
  json Usage(const Completion& c, const Plan& plan, const Outcome& out) const;
  void HandleCompletion(const httplib::Request& req, httplib::Response& res);
  void Answer(httplib::Response& res, const Status& status);
};

}  // namespace kvstash::scheduler
