// Which daemon the CLI talks to: --addr, else $KVSTASH_ADDR, else 127.0.0.1:7370.
#pragma once

#include <string>
#include <string_view>

#include "kvstash/result.h"

namespace kvstash::cli {

inline constexpr std::string_view kDefaultAddress = "127.0.0.1:7370";
inline constexpr const char* kAddressEnv = "KVSTASH_ADDR";

// Picks the address by precedence (flag, environment, default) and checks it is HOST:PORT with a
// non-empty host and a port in 1..65535 ("[::1]:7370" for IPv6). INVALID_ARGUMENT naming the source
// of a malformed address.
Result<std::string> ResolveAddress(std::string_view flag_value);

// The same check on one candidate address.
Status ValidateAddress(std::string_view address);

}  // namespace kvstash::cli
