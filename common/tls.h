// TLS for kvstash's gRPC ports (docs/SECURITY.md): credentials built from PEM files with gRPC's
// SSL credentials. A server may watch its files (ServerFiles::reload_interval_s): a changed
// certificate, key or client CA then takes effect for new connections within that interval. A
// client's files are read when its credentials are built (a new Client).
//
// Thread-safety: free functions, no shared state.
#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "kvstash/result.h"

namespace kvstash::tls {

// A server's files. cert_file and key_file both empty = plaintext. client_ca_file set = mutual
// TLS: every client must present a certificate that CA signed, or the handshake fails.
struct ServerFiles {
  std::string cert_file;       // PEM certificate chain of this server
  std::string key_file;        // PEM private key of cert_file
  std::string client_ca_file;  // PEM CA bundle for client certificates; empty = no client certificates
  // > 0: re-read the files when they change, checking every this many seconds (gRPC's file
  // watcher; replace a certificate and its key together, e.g. by renaming both into place).
  // 0: read once.
  unsigned reload_interval_s = 0;
  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
};

// A client's files. All empty = plaintext.
struct ClientFiles {
  std::string ca_file;    // PEM CA bundle the server's certificate must chain to (required for TLS)
  std::string cert_file;  // PEM client certificate (mutual TLS); empty = none
  std::string key_file;   // its private key; set exactly when cert_file is
  // The name the server's certificate must carry; empty = the host of the address dialled.
  std::string server_name;
  bool enabled() const { return !ca_file.empty() || !cert_file.empty() || !key_file.empty(); }
};

// Reads a whole file; NOT_FOUND / PERMISSION_DENIED-like errors as INVALID_ARGUMENT naming `what`.
Result<std::string> ReadPemFile(const std::string& path, const std::string& what);

// Insecure credentials when !files.enabled(); SSL credentials otherwise. INVALID_ARGUMENT when a
// file is missing, unreadable, not PEM, or only one of cert and key is given.
Result<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const ServerFiles& files);
Result<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(const ClientFiles& files);

// True for addresses only this host can reach: 127.0.0.0/8, ::1, localhost (with or without
// brackets). `host` is the host part of HOST:PORT.
bool IsLoopbackHost(const std::string& host);

}  // namespace kvstash::tls
