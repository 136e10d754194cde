// What a gRPC or HTTP port says about its own security at start (docs/SECURITY.md), shared by
// kvstashd, kvstash-conductor and kvstash-node: a port that speaks plaintext on an address other
// than loopback is logged loudly, once, at warn level.
//
// Thread-safety: free functions, no shared state.
#pragma once

#include <string>
#include <string_view>

#include "common/tls.h"

namespace kvstash::tls {

// The warning for `what` ("kvstash-node gRPC") listening in plaintext on `address` (HOST:PORT);
// empty when `address`'s host is loopback or `tls` is on.
std::string PlaintextWarning(std::string_view what, const std::string& address, bool tls, std::string_view flags);

// Logs PlaintextWarning (when not empty) or an info line naming the mode.
void LogListenSecurity(std::string_view what, const std::string& address, const ServerFiles& files,
                       std::string_view flags = "--tls-cert/--tls-key");

// The host part of HOST:PORT ("[::1]:80" gives "[::1]").
std::string HostOf(const std::string& address);

}  // namespace kvstash::tls
