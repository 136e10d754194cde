// Bearer tokens (docs/SECURITY.md "Tokens"): the tokens file, which stores only the SHA-256 of each
// token with the tenant and role it names, and the lookup of a presented token in it.
//
// File format, one token a line; '#' starts a comment, blank lines are skipped:
//   <sha256 of the token, 64 hex digits>  <tenant>  <role: read | write | admin>
// A tenant is 1..64 of [A-Za-z0-9._-]. A hash may appear once.
//
// Thread-safety: a TokenTable is immutable once built; share it by const reference or shared_ptr.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>
#include <unordered_map>

#include "kvstash/result.h"

namespace kvstash::auth {

// Ordered: a role may do everything the roles below it may.
enum class Role { kRead = 1, kWrite = 2, kAdmin = 3 };
std::string_view ToString(Role role);
Result<Role> ParseRole(std::string_view text);

// A tenant name: 1..64 of [A-Za-z0-9._-] (so it may label a metric as it is).
bool ValidTenant(std::string_view tenant);

// The gRPC metadata key that names the shared namespace a call works in (absent: the caller's own).
inline constexpr char kSharedNamespaceHeader[] = "kvstash-namespace";
// A shared namespace's name: the same alphabet as a tenant's.
inline bool ValidSharedNamespace(std::string_view name) { return ValidTenant(name); }

// Who a token speaks for, and the shared namespaces (docs/SECURITY.md "Shared namespaces") its
// tenant has joined: blocks written there are readable by every tenant that joined the same name.
struct Principal {
  std::string tenant;
  Role role = Role::kRead;
  std::vector<std::string> shared;
};

// SHA-256 of `text` (OpenSSL libcrypto): the 32-byte digest, and its lower-case hex.
std::array<unsigned char, 32> Sha256(std::string_view text);
std::string Sha256Hex(std::string_view text);

class TokenTable {
 public:
  // Lines are `<sha256 hex> <tenant> <role> [shared=NAME[,NAME...]]`. INVALID_ARGUMENT naming
  // `origin` and the line of the first malformed entry.
  static Result<TokenTable> Parse(std::string_view text, const std::string& origin);
  static Result<TokenTable> Load(const std::string& path);

  // The principal `token` names, or nullopt. Only the token's hash is looked up.
  std::optional<Principal> Find(std::string_view token) const;
  size_t size() const { return by_hash_.size(); }

 private:
  std::unordered_map<std::string, Principal> by_hash_;  // hex SHA-256 -> principal
};

// The token of an "authorization" metadata value "Bearer <token>" (scheme case-insensitive);
// nullopt when the value has another form.
std::optional<std::string_view> BearerToken(std::string_view header);

// The token a client presents, from the first line of `path` (trailing whitespace dropped):
// INVALID_ARGUMENT naming `flag` when the file cannot be read or that line is empty.
Result<std::string> ReadTokenFile(const std::string& path, const std::string& flag);

}  // namespace kvstash::auth
