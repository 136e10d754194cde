#include "server/security_mode.h"

#include <spdlog/spdlog.h>

#include "common/tls.h"

namespace kvstash::server {

std::string DescribeSecurity(const DaemonConfig& config) {
  std::string text = config.tls_cert.empty() ? "plaintext" : "TLS";
  if (!config.tls_cert.empty() && !config.tls_client_ca.empty()) text += " with client certificates (mutual TLS)";
  text += config.tokens_file.empty() ? ", no tokens" : ", bearer tokens from " + config.tokens_file;
  return text;
}

std::vector<std::string> SecurityWarnings(const DaemonConfig& config, const std::string& host) {
  std::vector<std::string> warnings;
  if (tls::IsLoopbackHost(host)) return warnings;
  if (config.tls_cert.empty()) {
    warnings.push_back("!!! gRPC listens in PLAINTEXT on " + config.listen +
                       ", which is not loopback: anyone on the network can read the traffic" +
                       (config.tokens_file.empty() ? "" : ", tokens included") +
                       " (set --tls-cert/--tls-key; docs/SECURITY.md) !!!");
  }
  if (config.tokens_file.empty()) {
    warnings.push_back("!!! gRPC on " + config.listen +
                       " takes calls WITHOUT tokens: anyone who reaches it can read, write and remove every block "
                       "(set --tokens-file; docs/SECURITY.md) !!!");
  }
  return warnings;
}

}  // namespace kvstash::server
