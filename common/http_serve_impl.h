// HttpServer's internals, shared by its implementation files (contract in common/http_serve.h):
//   http_serve.cc          the engine's threads (start, shutdown, the workers that serve complete
//                          heads), the TLS context in use, HttpServer's calls, ServeInBackground
//   http_serve_reactor.cc  connection limits and slow clients: admission at the connection cap,
//                          the reactor that reads heads without blocking and closes those past
//                          head_timeout, keep-alive connections back to the wait
//   http_conn.cc           one connection's non-blocking I/O and the stream a request is served over
//   http_tls_context.cc    the TLS context built from files, and their change stamp
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/http_conn.h"
#include "common/http_serve.h"

namespace kvstash {

struct HttpServer::Engine {
  using Clock = http_internal::Clock;
  using Conn = http_internal::Conn;

  HttpServer* server;
  HttpLimits limits;

  // TLS: the context new connections get; replaced when the files change.
  HttpTlsFiles tls_files;
  std::mutex tls_mu;
  std::shared_ptr<SSL_CTX> ctx;
  std::string stamp;
  Clock::time_point checked;

  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::unique_ptr<Conn>> waiting;  // for a head; owned by the reactor
  std::deque<std::unique_ptr<Conn>> ready, ready_priority;
  size_t open = 0;
  bool stopping = false;
  std::atomic<bool> stopping_flag{false};
  Counters counters;
  int wake_fd = -1;
  std::thread reactor;
  std::vector<std::thread> workers;

  explicit Engine(HttpServer* s, HttpLimits l);

  // Threads and workers (http_serve.cc).
  std::shared_ptr<SSL_CTX> CurrentContext();
  void Wake();
  void Start();
  void Shutdown();
  void WorkerLoop(bool priority_only);
  bool Serve(Conn& c);

  // Connections waiting for a head (http_serve_reactor.cc). *Locked: with `mu` held.
  void CloseLocked(std::unique_ptr<Conn> c);
  void Admit(int fd);
  // Back to the wait for the next request's head (keep-alive).
  void Requeue(std::unique_ptr<Conn> c);
  enum class Progress { kWait, kReady, kClose };
  bool HeadComplete(Conn& c);
  Progress Advance(Conn& c);
  void ReactorLoop();
};

}  // namespace kvstash
