// Registrar: a daemon's presence in the cluster. Takes an etcd lease, publishes the daemon's
// MemberRecord under it at /kvstash/<cluster>/members/<id>, and keeps the lease alive from a
// background thread (every TTL/3). When the lease is lost anyway (etcd unreachable for longer than
// the TTL), the record is published again under a new lease once etcd answers. Stop revokes the
// lease so that the member disappears at once; a crashed daemon disappears when its TTL runs out.
//
// Thread-safety: Start and Stop are called by the owner; the keep-alive thread is internal.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "membership/etcd_client.h"
#include "membership/member_record.h"

namespace kvstash::membership {

struct RegistrarOptions {
  EtcdOptions etcd;
  std::string cluster = "default";
  int64_t lease_ttl_s = 10;  // 1..3600; a crashed member is dropped within this
  MemberRecord record;
};

class Registrar {
 public:
  // UNAVAILABLE when etcd cannot be reached; ALREADY_EXISTS when a live member holds the same id.
  static Result<std::unique_ptr<Registrar>> Start(const RegistrarOptions& options);
  ~Registrar();  // Stop()

  // Stops the keep-alive and revokes the lease (best effort). Idempotent.
  void Stop();

  int64_t lease_id() const;
  const std::string& key() const { return key_; }

 private:
  explicit Registrar(RegistrarOptions options, std::unique_ptr<EtcdClient> etcd);
  Status Register();  // grant + put; sets lease_id_
  void KeepAliveLoop();

  RegistrarOptions options_;
  std::unique_ptr<EtcdClient> etcd_;
  const std::string key_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  int64_t lease_id_ = 0;   // guarded by mu_
  std::thread thread_;
};

}  // namespace kvstash::membership
