#include "cli/session.h"

#include <cstdlib>
#include <fstream>
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

// The bearer token: the first line of --token-file, else $KVSTASH_TOKEN, else none.
Result<std::string> ReadToken(const GlobalOptions& global) {
  if (global.token_file.empty()) {
    const char* env = std::getenv("KVSTASH_TOKEN");
    return std::string(env != nullptr ? env : "");
  }
  std::ifstream in(global.token_file);
  std::string token;
  if (!in || !std::getline(in, token)) return InvalidArgument("cannot read --token-file " + global.token_file);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.empty()) return InvalidArgument("--token-file " + global.token_file + " has an empty first line");
  return token;
}

// ClientOptions with the global security settings filled in.
Result<ClientOptions> SecureOptions(const GlobalOptions& global) {
  ClientOptions options;
  options.tls_ca_file = global.tls_ca;
  options.tls_cert_file = global.tls_cert;
  options.tls_key_file = global.tls_key;
  options.tls_server_name = global.tls_server_name;
  KVSTASH_ASSIGN_OR_RETURN(options.token, ReadToken(global));
  return options;
}

Session Connect(std::string_view command, const GlobalOptions& global, DataPath data_path,
                const std::string& ucx_transports) {
  Session session;
  Result<ClientOptions> secure = SecureOptions(global);
  if (!secure.ok()) {
    session.exit_code = ReportUsage(command, secure.status().message());
    return session;
  }
  if (std::vector<std::string> etcd = EtcdEndpoints(global); !etcd.empty()) {
    ClientOptions options = *secure;
    options.etcd_endpoints = etcd;
    options.etcd_tls_ca_file = global.etcd_ca;
    options.etcd_tls_cert_file = global.etcd_cert;
    options.etcd_tls_key_file = global.etcd_key;
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
  ClientOptions options = *secure;
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
