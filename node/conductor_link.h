// ConductorLink: a node's session with kvstash-conductor (proto/kvstash/v1/conductor.proto) —
// registration, heartbeats of its real load, its local cache's KV events, and the observed TTFT
// of requests the conductor routed (so the conductor's prediction-error metric and its admission
// have a real instance behind them).
//
// One background thread does all the talking; callers only queue. The conductor may be down when
// the node starts, restart, or forget the node: the link keeps retrying (every heartbeat
// interval), and when a heartbeat answers NOT_FOUND it registers again and re-sends every block
// its cache holds (a re-registered prefill instance starts with an empty index). A node serves
// whether or not the conductor is reachable.
//
// Role kBoth registers two instances, "<id>/prefill" and "<id>/decode" (the conductor's ids are
// unique across roles); KV events go to the prefill instance only.
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

#include "common/enum_names.h"
#include "common/tls.h"
#include "kvstash/block_key.h"
#include "kvstash/result.h"
#include "node/runtime.h"

namespace kvstash::node {

// The node's role at the conductor: which instances it registers. Parsed from its name only at the
// edge (kvstash-node serve --role); Name() for logs.
enum class NodeRole { kPrefill, kDecode, kBoth };
inline constexpr settings::EnumName<NodeRole> kNodeRoleNames[] = {
    {NodeRole::kPrefill, "prefill"}, {NodeRole::kDecode, "decode"}, {NodeRole::kBoth, "both"}};
inline std::string_view Name(NodeRole role) { return settings::EnumToName(std::span(kNodeRoleNames), role); }

struct ConductorLinkOptions {
  std::string address;         // the conductor's gRPC HOST:PORT
  std::string instance_id;     // 1..200 bytes
  NodeRole role = NodeRole::kBoth;
  uint64_t heartbeat_ms = 500;
  uint64_t rpc_timeout_ms = 2'000;
  // Registered with the instance: where the conductor's front door reaches this node's
  // kvstash.v1.Node service, and the namespace its prefix hashes live in.
  std::string node_address, namespace_id;
  tls::ClientFiles tls;  // towards the conductor's gRPC port (docs/SECURITY.md); empty = plaintext
  std::string token;     // bearer token sent with every call; empty = none
};

struct ConductorLinkStats {
  bool registered = false;
  uint64_t registrations = 0, heartbeats = 0, failures = 0;
  uint64_t kv_event_batches = 0, ttft_reports = 0;
};

class ConductorLink {
 public:
  // INVALID_ARGUMENT for an empty address, a bad id, or a heartbeat interval of 0.
  // `load` is called on the link's thread before each heartbeat.
  static Result<std::unique_ptr<ConductorLink>> Start(const ConductorLinkOptions& options,
                                                      std::function<RuntimeLoad()> load);
  ~ConductorLink();  // Stop()

  // Queued; sent on the link's thread (blocks the local cache gained and lost).
  void KvEvents(std::vector<BlockKey> stored, std::vector<BlockKey> evicted);
  // Queued (at most 100,000 pending; older reports are dropped beyond that).
  void ReportTtft(uint64_t request_id, double ttft_seconds);
  ConductorLinkStats Stats() const;
  // Flushes what is queued (one last attempt) and stops the thread. Idempotent.
  void Stop();

 private:
  struct Impl;
  explicit ConductorLink(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The instance ids a node registers under (one per role it serves).
std::vector<std::string> ConductorInstanceIds(const ConductorLinkOptions& options);

}  // namespace kvstash::node
