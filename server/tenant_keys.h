// TenantKeys: the namespace of one tenant's keys (docs/SECURITY.md "Tenant isolation"). With
// tokens on, a tenant principal's key K is stored as
//   first 16 bytes of SHA-256("kvstash-tenant-key" 0x00 tenant 0x00 K)
// so two tenants' identical keys are different blocks: neither can read, look up, stat, remove or
// learn through dedup ("exists") of the other's. Keys in answers are mapped back to the keys the
// caller sent; a parent the request did not name is left out of the answer (the daemon cannot
// invert the hash). Admin principals work in the daemon's raw key space.
//
// One TenantKeys serves one request on one thread.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>

#include "kvstash/v1/store.pb.h"

namespace kvstash::server {

// The stored key of `tenant`'s 16-byte key `key`.
std::string TenantStoredKey(std::string_view tenant, std::string_view key);

class TenantKeys {
 public:
  explicit TenantKeys(std::string tenant) : tenant_(std::move(tenant)) {}

  // Replaces a client key by its stored key and remembers the pair. Keys that are not 16 bytes, or
  // all zero, are left as they are, so that validation refuses them exactly as without tenants.
  void ToStored(std::string& key);
  // Maps info.key and info.parent back to the caller's keys (a parent it cannot map is cleared).
  void ToClient(v1::BlockInfo& info) const;

 private:
  const std::string tenant_;
  std::unordered_map<std::string, std::string> client_of_;  // stored key -> the caller's key
};

}  // namespace kvstash::server
