// kvstash's HTTP servers (the daemon's /metrics and /healthz, the node's HTTP API, the conductor's
// front door): cpp-httplib's request parsing and routing behind a connection layer of our own that
// bounds what a slow or idle client can hold (issue 17: 16 connections trickling bytes starved
// /healthz under httplib's thread-per-connection pool).
//
// How a connection is served:
//   * one reactor thread owns every connection that is waiting for a request's head (its request
//     line and headers, and the TLS handshake when TLS is on); it reads them without blocking, and a
//     head that is not complete within `head_timeout` of the wait's start closes the connection. No
//     worker thread is given to a connection before its whole head has arrived, so trickling bytes
//     holds a file descriptor, never a thread.
//   * `worker_threads` workers serve complete heads (body, handler, response); one more worker serves
//     only the `priority_paths` (/healthz), so health answers even while every worker is busy.
//   * at most `max_connections` are open; at the cap, a new connection closes the one that has waited
//     longest for its head, and is refused (closed) when none is waiting.
//   * a body is read with `read_timeout` per read and `body_timeout` in all; a write waits at most
//     `write_timeout` for the peer; a kept-alive connection goes back to the reactor (and its
//     `head_timeout`) between requests, for at most `keep_alive_max_count` requests.
//
// TLS (EnableTls): OpenSSL, TLS 1.2 or newer, optional client certificates checked against a CA;
// the files are re-read for new connections when they change.
//
// Thread-safety: configure (routes, limits, TLS) before ServeInBackground; ServeInBackground and
// StopServing from the thread that owns `server` and `thread`; counters() from any thread.
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/http_options.h"
#include "kvstash/result.h"

namespace kvstash {

class HttpServer : public httplib::Server {
 public:
  using Counters = HttpCounters;

  explicit HttpServer(HttpLimits limits = {});
  ~HttpServer() override;

  // Before ServeInBackground. INVALID_ARGUMENT when a file is missing or does not load.
  Status EnableTls(const HttpTlsFiles& files);
  bool tls() const;
  Counters counters() const;
  const HttpLimits& limits() const;
  // Before ServeInBackground: the number of general workers (at least 1).
  void SetWorkerThreads(size_t n);
  // After a bind: the listen backlog raised to limits().listen_backlog, and httplib's accept loop
  // handing its sockets to this server's reactor (a `new_task_queue` set by a caller is replaced).
  void PrepareToServe();

 private:
  bool process_and_close_socket(socket_t sock) override;  // runs on httplib's accept thread

  struct Engine;
  struct Dispatch;
  std::unique_ptr<Engine> engine_;
};

// Binds HOST:PORT (port 0 picks a free one), runs the accept loop on `thread` and returns the bound
// port once the loop runs (httplib's stop() is a no-op before that, so a StopServing right after
// cannot leave it running). The port is bound without SO_REUSEPORT: one in use is refused. FAILED_PRECONDITION when `thread` already runs; UNAVAILABLE naming
// `what` when the address cannot be bound.
Result<int> ServeInBackground(HttpServer& server, const std::string& host, int port, std::thread& thread,
                              std::string_view what);
// Stops the loop and joins `thread`; nothing when it does not run. Requests in progress finish;
// connections waiting for a head are closed.
void StopServing(HttpServer& server, std::thread& thread);

}  // namespace kvstash
