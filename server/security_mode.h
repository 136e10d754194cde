// What kvstashd says about its gRPC port's security at start (docs/SECURITY.md): one line that
// describes the mode, and the warnings an operator must not miss — a port other than loopback that
// speaks plaintext or takes calls without tokens.
#pragma once

#include <string>
#include <vector>

#include "server/daemon_config.h"

namespace kvstash::server {

// "TLS with client certificates (mutual TLS), bearer tokens from FILE" and the like.
std::string DescribeSecurity(const DaemonConfig& config);

// The warnings for `config` listening on `host` (the host part of config.listen); none on
// loopback, where plaintext without tokens is the development default.
std::vector<std::string> SecurityWarnings(const DaemonConfig& config, const std::string& host);

}  // namespace kvstash::server
