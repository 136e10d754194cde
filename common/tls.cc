#include "common/tls.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <fstream>
#include <sstream>

namespace kvstash::tls {
namespace {

Status CheckPem(const std::string& text, const std::string& path, const std::string& what) {
  if (text.find("-----BEGIN ") == std::string::npos) {
    return InvalidArgument(what + " " + path + " is not a PEM file");
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> ReadPemFile(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgument("cannot read " + what + " " + path);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in.good() && !in.eof()) return InvalidArgument("cannot read " + what + " " + path);
  KVSTASH_RETURN_IF_ERROR(CheckPem(text.str(), path, what));
  return text.str();
}

Result<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const ServerFiles& files) {
  if (!files.enabled()) return grpc::InsecureServerCredentials();
  if (files.cert_file.empty() || files.key_file.empty()) {
    return InvalidArgument("TLS needs both a certificate and its key (--tls-cert and --tls-key)");
  }
  // Read (and checked) now even when watched: a file that is missing or not PEM fails the start.
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  KVSTASH_ASSIGN_OR_RETURN(pair.cert_chain, ReadPemFile(files.cert_file, "TLS certificate"));
  KVSTASH_ASSIGN_OR_RETURN(pair.private_key, ReadPemFile(files.key_file, "TLS key"));
  if (files.reload_interval_s > 0) {
    if (!files.client_ca_file.empty()) KVSTASH_RETURN_IF_ERROR(ReadPemFile(files.client_ca_file, "TLS client CA").status());
    auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        files.key_file, files.cert_file, files.client_ca_file, files.reload_interval_s);
    grpc::experimental::TlsServerCredentialsOptions options(provider);
    options.watch_identity_key_cert_pairs();
    if (files.client_ca_file.empty()) {
      options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    } else {
      options.watch_root_certs();
      options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    }
    return grpc::experimental::TlsServerCredentials(options);
  }
  grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (!files.client_ca_file.empty()) {
    KVSTASH_ASSIGN_OR_RETURN(options.pem_root_certs, ReadPemFile(files.client_ca_file, "TLS client CA"));
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  options.pem_key_cert_pairs.push_back(std::move(pair));
  return grpc::SslServerCredentials(options);
}

Result<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(const ClientFiles& files) {
  if (!files.enabled()) return grpc::InsecureChannelCredentials();
  if (files.ca_file.empty()) return InvalidArgument("TLS needs the CA that signed the server's certificate");
  if (files.cert_file.empty() != files.key_file.empty()) {
    return InvalidArgument("a TLS client certificate needs its key, and a key its certificate");
  }
  grpc::SslCredentialsOptions options;
  KVSTASH_ASSIGN_OR_RETURN(options.pem_root_certs, ReadPemFile(files.ca_file, "TLS CA"));
  if (!files.cert_file.empty()) {
    KVSTASH_ASSIGN_OR_RETURN(options.pem_cert_chain, ReadPemFile(files.cert_file, "TLS client certificate"));
    KVSTASH_ASSIGN_OR_RETURN(options.pem_private_key, ReadPemFile(files.key_file, "TLS client key"));
  }
  return grpc::SslCredentials(options);
}

bool IsLoopbackHost(const std::string& given) {
  std::string host = given;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost" || host == "::1") return true;
  // 127.0.0.0/8, written as a dotted quad.
  return host.rfind("127.", 0) == 0 && host.find_first_not_of("0123456789.") == std::string::npos;
}

}  // namespace kvstash::tls
