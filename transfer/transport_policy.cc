#include "transfer/transport_policy.h"

#include <algorithm>
#include <array>
#include <vector>

namespace kvstash::transfer {
namespace {

// UCX 1.13's same-host shared-memory transports, in UCX's order ("sm" alias, ucp_context.c).
constexpr std::array<std::string_view, 5> kSameHost = {"posix", "sysv", "xpmem", "knem", "cma"};
// Those with active messages, which UCX needs for the connection handshake.
constexpr std::array<std::string_view, 3> kCanConnect = {"posix", "sysv", "xpmem"};

std::vector<std::string_view> SplitList(std::string_view list) {
  std::vector<std::string_view> out;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    std::string_view token = list.substr(0, comma);
    if (const size_t colon = token.find(':'); colon != std::string_view::npos) token = token.substr(0, colon);
    if (!token.empty()) out.push_back(token);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return out;
}

bool NamesAllSharedMemory(std::string_view token) { return token == "sm" || token == "shm"; }

// Whether `tl` (a kSameHost member) is named by `tokens`, directly or through an alias.
bool Names(const std::vector<std::string_view>& tokens, std::string_view tl) {
  return std::any_of(tokens.begin(), tokens.end(), [&](std::string_view t) {
    return t == tl || NamesAllSharedMemory(t) || (t == "mm" && (tl == "posix" || tl == "sysv" || tl == "xpmem"));
  });
}

}  // namespace

std::string OneSidedTransports(std::string_view configured) {
  const bool negated = !configured.empty() && configured.front() == '^';
  const std::vector<std::string_view> tokens = SplitList(negated ? configured.substr(1) : configured);
  const bool everything = !negated && (tokens.empty() || std::find(tokens.begin(), tokens.end(), "all") != tokens.end());
  std::vector<std::string_view> allowed;
  for (std::string_view tl : kSameHost) {
    const bool named = Names(tokens, tl);
    if (everything || (negated ? !named : named)) allowed.push_back(tl);
  }
  const bool can_connect = std::any_of(allowed.begin(), allowed.end(), [](std::string_view tl) {
    return std::find(kCanConnect.begin(), kCanConnect.end(), tl) != kCanConnect.end();
  });
  if (!can_connect) return "self";
  // UCX's alias, which names no transport this host lacks (so UCX warns of none).
  if (allowed.size() == kSameHost.size()) return "sm";
  std::string out;
  for (std::string_view tl : allowed) {
    if (!out.empty()) out += ',';
    out += tl;
  }
  return out;
}

}  // namespace kvstash::transfer
