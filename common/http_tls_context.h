// HttpServer's TLS context (common/http_serve.h, EnableTls): an OpenSSL server context from the
// certificate, key and optional client CA files (TLS 1.2 or newer; client certificates checked
// when a CA is given), and a stamp of the files that changes when any of them does, so the
// server re-reads them for new connections. Internal to common/http_serve*.cc.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "common/http_options.h"
#include "kvstash/result.h"

namespace kvstash::http_internal {

// INVALID_ARGUMENT naming the file when one is missing or does not load, or the key does not match.
Result<std::shared_ptr<SSL_CTX>> BuildContext(const HttpTlsFiles& files);
// The file's inode, size and modification time ("missing" when it is not there; empty path: "").
std::string FileStamp(const std::string& path);

}  // namespace kvstash::http_internal
