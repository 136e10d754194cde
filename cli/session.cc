#include "cli/session.h"

#include <cstdlib>
#include <iostream>
#include <sstream>

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

std::vector<std::string> EtcdEndpoints(const GlobalOptions& global) {
  std::string list = global.etcd;
  if (list.empty()) {
    if (const char* env = std::getenv("KVSTASH_ETCD")) list = env;
  }
  std::vector<std::string> out;
  std::stringstream in(list);
  for (std::string e; std::getline(in, e, ',');) {
    if (!e.empty()) out.push_back(e);
  }
  return out;
}

Session Connect(std::string_view command, const GlobalOptions& global, DataPath data_path,
                const std::string& ucx_transports) {
  Session session;
  if (std::vector<std::string> etcd = EtcdEndpoints(global); !etcd.empty()) {
    ClientOptions options;
    options.etcd_endpoints = etcd;
    options.cluster = global.cluster;
    options.timeout_ms = global.timeout_ms;
    options.data_path = data_path;
    options.ucx_transports = ucx_transports;
    session.address = "cluster " + global.cluster;
    auto client = Client::Connect(options);
    if (!client.ok()) {
      std::cerr << "kvstash: " << command << ": cannot read cluster " << global.cluster << " from etcd: "
                << client.status().ToString() << std::endl;
      session.exit_code = kExitFailure;
      return session;
    }
    session.client = std::move(*client);
    return session;
  }
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
