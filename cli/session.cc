#include "cli/session.h"

#include <iostream>

#include "cli/address.h"

namespace kvstash::cli {

int ReportFailure(std::string_view command, const Status& status) {
  std::cerr << "kvstash: " << command << ": " << status.ToString() << std::endl;
  return kExitFailure;
}

int ReportUsage(std::string_view command, std::string_view message) {
  std::cerr << "kvstash: " << command << ": " << message << std::endl;
  return kExitUsage;
}

std::optional<BlockKey> ParseKeyArg(std::string_view command, std::string_view what,
                                    std::string_view text) {
  auto key = BlockKey::FromHex(text);
  if (!key.ok()) {
    ReportUsage(command, "bad " + std::string(what) + " '" + std::string(text) +
                             "': " + key.status().message());
    return std::nullopt;
  }
  return *key;
}

Session Connect(std::string_view command, const GlobalOptions& global, DataPath data_path,
                const std::string& ucx_transports) {
  Session session;
  auto address = ResolveAddress(global.addr);
  if (!address.ok()) {
    session.exit_code = ReportUsage(command, address.status().message());
    return session;
  }
  session.address = *address;
  ClientOptions options;
  options.address = session.address;
  options.timeout_ms = global.timeout_ms;
  options.data_path = data_path;
  options.ucx_transports = ucx_transports;
  auto client = Client::Connect(options);
  if (!client.ok()) {
    // The SDK already words UNAVAILABLE as "cannot reach kvstashd at ADDR: why"; keep one copy.
    const std::string& why = client.status().message();
    if (why.starts_with("cannot reach kvstashd at ")) {
      std::cerr << "kvstash: " << why << std::endl;
    } else {
      std::cerr << "kvstash: cannot reach kvstashd at " << session.address << ": "
                << client.status().ToString() << std::endl;
    }
    session.exit_code = kExitFailure;
    return session;
  }
  session.client = std::move(*client);
  return session;
}

}  // namespace kvstash::cli
