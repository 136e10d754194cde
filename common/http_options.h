// The settings of kvstash's HTTP servers (common/http_serve.h), in a header without cpp-httplib so
// that configuration structs can carry them.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

namespace kvstash {

// What one client may hold of an HTTP server (issue 17: slow clients starved /healthz).
struct HttpLimits {
  size_t worker_threads = 0;     // general workers (0 = httplib's count, max(8, cores - 1)); one more serves only priority_paths
  size_t max_connections = 256;  // open at once
  std::chrono::milliseconds head_timeout{5000};  // TLS handshake + request line + headers (and a keep-alive wait)
  std::chrono::milliseconds read_timeout{5000};  // one read of a body
  std::chrono::milliseconds body_timeout{60000}; // a whole body
  std::chrono::milliseconds write_timeout{5000}; // one write of a response
  size_t max_head_bytes = 16 * 1024;
  size_t keep_alive_max_count = 100;
  int listen_backlog = 1024;  // httplib listens with 5: a burst of connects then waits for SYN retries
  std::vector<std::string> priority_paths = {"/healthz"};
};

// What an HTTP server did with its connections (HttpServer::counters()), since it was made.
struct HttpCounters {
  uint64_t accepted = 0;
  uint64_t head_timeouts = 0;  // closed: head (or TLS handshake) not complete in time
  uint64_t evicted = 0;        // closed at the connection cap for a newer connection
  uint64_t refused = 0;        // closed at the cap with nothing to evict
  uint64_t bad_heads = 0;      // closed: head over max_head_bytes, or a failed TLS handshake
  uint64_t requests = 0;       // heads handed to a worker
};

// HTTPS: cert_file and key_file both set = the port speaks only TLS.
struct HttpTlsFiles {
  std::string cert_file;       // PEM chain
  std::string key_file;        // PEM key of cert_file
  std::string client_ca_file;  // set = clients must present a certificate this CA signed
  unsigned reload_interval_s = 60;  // files checked for changes at most this often (0 = read once)
  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
};

}  // namespace kvstash
