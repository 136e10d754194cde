#include "common/tls_listen.h"

#include <spdlog/spdlog.h>

namespace kvstash::tls {

std::string HostOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

std::string PlaintextWarning(std::string_view what, const std::string& address, bool tls, std::string_view flags) {
  if (tls || IsLoopbackHost(HostOf(address))) return {};
  return "!!! " + std::string(what) + " listens in PLAINTEXT on " + address +
         ", which is not loopback: anyone on the network can read and send its traffic (set " + std::string(flags) +
         "; docs/SECURITY.md) !!!";
}

void LogListenSecurity(std::string_view what, const std::string& address, const ServerFiles& files,
                       std::string_view flags) {
  if (std::string warning = PlaintextWarning(what, address, files.enabled(), flags); !warning.empty()) {
    spdlog::warn("{}", warning);
    return;
  }
  if (files.enabled()) {
    spdlog::info("{} on {} speaks TLS{}", what, address,
                 files.client_ca_file.empty() ? "" : " with client certificates (mutual TLS)");
  }
}

}  // namespace kvstash::tls
