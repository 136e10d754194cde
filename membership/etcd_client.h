// EtcdClient: the few etcd v3 calls kvstash needs, spoken through etcd's JSON gateway (HTTP/1.1
// POST /v3/..., keys and values base64-encoded) with cpp-httplib. We chose the gateway over etcd's
// native gRPC API so that no etcd .proto files have to be vendored or generated; every etcd >= 3.4
// serves it on the client port.
//
// Endpoints are tried in order; a call that cannot reach one endpoint moves on to the next.
//
// Thread-safety: every method except Watch may be called from any thread concurrently. Watch
// blocks its calling thread; CancelWatch (any thread) ends it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/mutex.h"
#include "kvstash/result.h"

namespace httplib {
class Client;
}

namespace kvstash::membership {

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t mod_revision = 0;
  int64_t lease = 0;
};

struct EtcdRange {
  std::vector<EtcdKeyValue> kvs;
  int64_t revision = 0;  // the store revision the answer reflects
};

struct EtcdEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  EtcdKeyValue kv;  // for kDelete only the key (and revision) are set
};

struct EtcdOptions {
  std::vector<std::string> endpoints;  // "http://host:port", "https://host:port" or "host:port"
  uint64_t timeout_ms = 3'000;         // per unary call
  // TLS (https:// endpoints; docs/SECURITY.md): the CA bundle etcd's certificate must chain to
  // (required for https; its host name or IP address is checked), and a client certificate and
  // key for an etcd that demands one (--client-cert-auth). PEM files, read at each connection.
  std::string ca_file{};
  std::string cert_file{};
  std::string key_file{};
};

class EtcdClient {
 public:
  // INVALID_ARGUMENT when no endpoint is given or one is malformed. Does not connect.
  static Result<std::unique_ptr<EtcdClient>> Create(const EtcdOptions& options);
  ~EtcdClient();

  // A new lease of `ttl_s` seconds; returns its id.
  Result<int64_t> LeaseGrant(int64_t ttl_s);
  // Refreshes the lease; returns its remaining TTL in seconds, or NOT_FOUND when the lease
  // expired or was revoked.
  Result<int64_t> LeaseKeepAlive(int64_t lease_id);
  Status LeaseRevoke(int64_t lease_id);

  // Puts key=value, attached to `lease_id` (0 = no lease). With keep_lease the key keeps the lease
  // it already has (etcd's ignore_lease); NOT_FOUND when it does not exist then.
  Status Put(const std::string& key, const std::string& value, int64_t lease_id = 0,
             bool keep_lease = false);
  // Every key starting with `prefix`.
  Result<EtcdRange> RangePrefix(const std::string& prefix);
  Result<std::optional<EtcdKeyValue>> Get(const std::string& key);
  Status Delete(const std::string& key);

  // Watches every key starting with `prefix` from `start_revision` on, calling `on_events` for
  // each batch (on this thread) until the callback returns false, CancelWatch is called, or the
  // stream fails. Returns OK after a cancel or a callback's false, DEADLINE_EXCEEDED after 5 s
  // without any message (watch again from the last revision seen), UNAVAILABLE when the stream
  // broke (the caller re-reads with RangePrefix and watches again), OUT_OF_RANGE when
  // start_revision was compacted away.
  Status Watch(const std::string& prefix, int64_t start_revision,
               const std::function<bool(const std::vector<EtcdEvent>&)>& on_events);
  // Ends a Watch running on another thread (and any later Watch at once). Idempotent.
  void CancelWatch();

 private:
  struct Endpoint {
    std::string host;
    int port = 0;
    bool tls = false;
  };
  // A client of `ep` (plaintext or TLS, with this client's certificate when one is configured).
  std::unique_ptr<httplib::Client> Connect(const Endpoint& ep) const;
  explicit EtcdClient(EtcdOptions options, std::vector<Endpoint> endpoints);
  // POSTs a JSON body to `path` on the first endpoint that answers; the parsed JSON reply.
  Result<std::string> Post(const std::string& path, const std::string& body);

  EtcdOptions options_;
  std::vector<Endpoint> endpoints_;
  std::atomic<size_t> preferred_{0};  // the endpoint that answered last
  std::atomic<bool> cancelled_{false};
  Mutex watch_mu_;
  void* watch_socket_owner_ GUARDED_BY(watch_mu_) = nullptr;  // httplib::Client* of the running watch
};

// The key range end that selects every key with `prefix` (etcd's "prefix + 1" convention).
std::string PrefixRangeEnd(const std::string& prefix);
std::string Base64Encode(std::string_view bytes);
Result<std::string> Base64Decode(std::string_view text);

}  // namespace kvstash::membership
