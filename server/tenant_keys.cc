#include "server/tenant_keys.h"

#include <algorithm>

#include "common/auth.h"

namespace kvstash::server {

std::string TenantStoredKey(std::string_view tenant, std::string_view key) {
  std::string input = "kvstash-tenant-key";
  input.push_back('\0');
  input.append(tenant);
  input.push_back('\0');
  input.append(key);
  const auto digest = auth::Sha256(input);
  return std::string(reinterpret_cast<const char*>(digest.data()), 16);
}

void TenantKeys::ToStored(std::string& key) {
  if (key.size() != 16 || std::all_of(key.begin(), key.end(), [](char c) { return c == 0; })) return;
  std::string stored = TenantStoredKey(tenant_, key);
  client_of_.emplace(stored, key);
  key = std::move(stored);
}

void TenantKeys::ToClient(v1::BlockInfo& info) const {
  if (auto it = client_of_.find(info.key()); it != client_of_.end()) info.set_key(it->second);
  if (!info.parent().empty()) {
    if (auto it = client_of_.find(info.parent()); it != client_of_.end()) info.set_parent(it->second);
    else info.clear_parent();
  }
}

}  // namespace kvstash::server
