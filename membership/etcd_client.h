// EtcdClient: the etcd v3 calls kvstash needs (the KvStore interface, membership/kv_store.h),
// spoken through etcd's JSON gateway (HTTP/1.1 POST /v3/..., keys and values base64-encoded) with
// cpp-httplib. We chose the gateway over etcd's native gRPC API so that no etcd .proto files have
// to be vendored or generated; every etcd >= 3.4 serves it on the client port.
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
#include "membership/kv_store.h"

namespace httplib {
class Client;
}

namespace kvstash::membership {

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

class EtcdClient final : public KvStore {
 public:
  // INVALID_ARGUMENT when no endpoint is given or one is malformed. Does not connect.
  static Result<std::unique_ptr<EtcdClient>> Create(const EtcdOptions& options);
  ~EtcdClient() override;

  // KvStore (membership/kv_store.h). A Watch stream idle for 5 s ends with DEADLINE_EXCEEDED.
  Result<int64_t> LeaseGrant(int64_t ttl_s) override;
  Result<int64_t> LeaseKeepAlive(int64_t lease_id) override;
  Status LeaseRevoke(int64_t lease_id) override;
  Status Put(const std::string& key, const std::string& value, int64_t lease_id = 0,
             bool keep_lease = false) override;
  Result<EtcdRange> RangePrefix(const std::string& prefix) override;
  Result<std::optional<EtcdKeyValue>> Get(const std::string& key) override;
  Status Delete(const std::string& key) override;
  Status Watch(const std::string& prefix, int64_t start_revision, const OnEvents& on_events) override;
  void CancelWatch() override;

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
