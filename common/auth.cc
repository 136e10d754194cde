#include "common/auth.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

namespace kvstash::auth {

bool ValidTenant(std::string_view tenant) {
  return !tenant.empty() && tenant.size() <= 64 &&
         std::all_of(tenant.begin(), tenant.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
         });
}

namespace {

bool ValidHash(std::string_view hash) {
  return hash.size() == 64 && hash.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

}  // namespace

std::string_view ToString(Role role) {
  switch (role) {
    case Role::kRead: return "read";
    case Role::kWrite: return "write";
    case Role::kAdmin: return "admin";
  }
  return "unknown";
}

Result<Role> ParseRole(std::string_view text) {
  if (text == "read") return Role::kRead;
  if (text == "write") return Role::kWrite;
  if (text == "admin") return Role::kAdmin;
  return InvalidArgument("role must be read, write or admin, not '" + std::string(text) + "'");
}

std::array<unsigned char, 32> Sha256(std::string_view text) {
  std::array<unsigned char, 32> digest{};
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest.data(), &length, EVP_sha256(), nullptr);
  return digest;
}

std::string Sha256Hex(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(64);
  for (unsigned char byte : Sha256(text)) {
    hex.push_back(kHex[byte >> 4]);
    hex.push_back(kHex[byte & 0xF]);
  }
  return hex;
}

Result<TokenTable> TokenTable::Parse(std::string_view text, const std::string& origin) {
  TokenTable table;
  std::istringstream lines{std::string(text)};
  size_t number = 0;
  for (std::string line; std::getline(lines, line);) {
    ++number;
    if (const size_t hash_mark = line.find('#'); hash_mark != std::string::npos) line.resize(hash_mark);
    std::istringstream fields(line);
    std::string hash, tenant, role_text, shared_text, extra;
    if (!(fields >> hash)) continue;  // blank or comment only
    const std::string where = origin + ":" + std::to_string(number) + ": ";
    if (!(fields >> tenant >> role_text) || ((fields >> shared_text) && (fields >> extra))) {
      return InvalidArgument(where + "expected '<sha256 hex> <tenant> <role> [shared=NAME,...]'");
    }
    std::vector<std::string> shared;
    if (!shared_text.empty()) {
      constexpr std::string_view kShared = "shared=";
      if (!shared_text.starts_with(kShared) || shared_text.size() == kShared.size()) {
        return InvalidArgument(where + "the fourth field is 'shared=NAME[,NAME...]', not '" + shared_text + "'");
      }
      std::istringstream names(shared_text.substr(kShared.size()));
      for (std::string name; std::getline(names, name, ',');) {
        if (!ValidSharedNamespace(name)) {
          return InvalidArgument(where + "a shared namespace is 1..64 of A-Z a-z 0-9 . _ -, not '" + name + "'");
        }
        shared.push_back(name);
      }
    }
    if (!ValidHash(hash)) return InvalidArgument(where + "the hash must be 64 lower-case hex digits (sha256sum)");
    if (!ValidTenant(tenant)) return InvalidArgument(where + "a tenant is 1..64 of A-Z a-z 0-9 . _ -");
    Result<Role> role = ParseRole(role_text);
    if (!role.ok()) return InvalidArgument(where + role.status().message());
    if (!table.by_hash_.emplace(hash, Principal{tenant, *role, std::move(shared)}).second) {
      return InvalidArgument(where + "this hash is listed twice");
    }
  }
  return table;
}

Result<TokenTable> TokenTable::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgument("cannot read the tokens file " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return Parse(text.str(), path);
}

std::optional<Principal> TokenTable::Find(std::string_view token) const {
  if (token.empty()) return std::nullopt;
  const auto it = by_hash_.find(Sha256Hex(token));
  if (it == by_hash_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string_view> BearerToken(std::string_view header) {
  constexpr std::string_view kScheme = "bearer ";
  if (header.size() <= kScheme.size()) return std::nullopt;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) != kScheme[i]) return std::nullopt;
  }
  std::string_view token = header.substr(kScheme.size());
  if (token.empty() || token.find(' ') != std::string_view::npos) return std::nullopt;
  return token;
}

Result<std::string> ReadTokenFile(const std::string& path, const std::string& flag) {
  std::ifstream in(path);
  std::string token;
  if (!in || !std::getline(in, token)) return InvalidArgument("cannot read a token from " + flag + " " + path);
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.empty()) return InvalidArgument(flag + " " + path + ": its first line is empty");
  return token;
}

}  // namespace kvstash::auth
