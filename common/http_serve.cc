// HttpServer (contract in common/http_serve.h): the engine's threads — the workers that serve
// complete heads (body, handler, response) over a ConnStream, one of them for the priority paths
// only — the TLS context in use, the dispatch that hands httplib's accepted sockets to the
// reactor, and ServeInBackground / StopServing. Connections waiting for a head are in
// http_serve_reactor.cc; the shared state in http_serve_impl.h.
#include "common/http_serve.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>

#include "common/http_serve_impl.h"
#include "common/http_tls_context.h"

namespace kvstash {

using http_internal::BuildContext;
using http_internal::Clock;
using http_internal::FileStamp;

HttpServer::Engine::Engine(HttpServer* s, HttpLimits l) : server(s), limits(std::move(l)) {
  if (limits.worker_threads == 0) {
    const unsigned cores = std::thread::hardware_concurrency();
    limits.worker_threads = std::max(8u, cores > 0 ? cores - 1 : 0u);
  }
  limits.max_connections = std::max<size_t>(limits.max_connections, 1);
  limits.keep_alive_max_count = std::max<size_t>(limits.keep_alive_max_count, 1);
}

std::shared_ptr<SSL_CTX> HttpServer::Engine::CurrentContext() {
  std::lock_guard<std::mutex> lock(tls_mu);
  if (!ctx || tls_files.reload_interval_s == 0) return ctx;
  const auto now = Clock::now();
  if (now - checked < std::chrono::seconds(tls_files.reload_interval_s)) return ctx;
  checked = now;
  std::string now_stamp =
      FileStamp(tls_files.cert_file) + "|" + FileStamp(tls_files.key_file) + "|" + FileStamp(tls_files.client_ca_file);
  if (now_stamp == stamp) return ctx;
  auto fresh_ctx = BuildContext(tls_files);
  if (!fresh_ctx.ok()) {
    spdlog::warn("HTTP TLS files changed but do not load; keeping the previous ones: {}",
                 fresh_ctx.status().message());
    return ctx;
  }
  spdlog::info("HTTP TLS certificate re-read from {}", tls_files.cert_file);
  ctx = *std::move(fresh_ctx);
  stamp = std::move(now_stamp);
  return ctx;
}

void HttpServer::Engine::Wake() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t r = ::write(wake_fd, &one, sizeof(one));
}

void HttpServer::Engine::Start() {
  std::lock_guard<std::mutex> lock(mu);
  stopping = false;
  stopping_flag = false;
  if (wake_fd < 0) wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  reactor = std::thread([this] { ReactorLoop(); });
  for (size_t i = 0; i < limits.worker_threads; ++i) workers.emplace_back([this] { WorkerLoop(false); });
  workers.emplace_back([this] { WorkerLoop(true); });
}

void HttpServer::Engine::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu);
    stopping = true;
    stopping_flag = true;
  }
  Wake();
  cv.notify_all();
  if (reactor.joinable()) reactor.join();
  for (auto& t : workers) t.join();
  workers.clear();
  std::lock_guard<std::mutex> lock(mu);
  for (auto* queue : {&ready, &ready_priority}) {
    for (auto& c : *queue) CloseLocked(std::move(c));
    queue->clear();
  }
  for (auto& c : waiting) CloseLocked(std::move(c));
  waiting.clear();
}

void HttpServer::Engine::WorkerLoop(bool priority_only) {
  for (;;) {
    std::unique_ptr<Conn> c;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return stopping || !ready_priority.empty() || (!priority_only && !ready.empty()); });
      if (stopping) return;
      auto& queue = !ready_priority.empty() ? ready_priority : ready;
      c = std::move(queue.front());
      queue.pop_front();
    }
    bool keep = Serve(*c);
    if (keep) {
      Requeue(std::move(c));
    } else {
      std::lock_guard<std::mutex> lock(mu);
      CloseLocked(std::move(c));
    }
  }
}

bool HttpServer::Engine::Serve(Conn& c) {
  http_internal::ConnStream stream(c, limits);
  const bool close_connection = c.served + 1 >= limits.keep_alive_max_count || stopping_flag;
  bool connection_closed = false;
  bool ok = server->process_request(stream, close_connection, connection_closed, nullptr);
  ++c.served;
  return ok && !connection_closed && !close_connection;
}

// httplib's accept loop hands each accepted socket to a TaskQueue; ours admits it to the reactor at
// once (on the accept thread) and runs the engine's threads for the life of the loop.
struct HttpServer::Dispatch : httplib::TaskQueue {
  explicit Dispatch(Engine& engine) : engine_(engine) { engine_.Start(); }
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override { engine_.Shutdown(); }

 private:
  Engine& engine_;
};

HttpServer::HttpServer(HttpLimits limits) : engine_(std::make_unique<Engine>(this, std::move(limits))) {
  new_task_queue = [this] { return new Dispatch(*engine_); };
  const auto& l = engine_->limits;
  set_keep_alive_max_count(l.keep_alive_max_count);
  set_keep_alive_timeout(std::max<time_t>(1, std::chrono::duration_cast<std::chrono::seconds>(l.head_timeout).count()));
  set_read_timeout(std::chrono::duration_cast<std::chrono::seconds>(l.read_timeout).count(),
                   std::chrono::duration_cast<std::chrono::microseconds>(l.read_timeout).count() % 1000000);
  set_write_timeout(std::chrono::duration_cast<std::chrono::seconds>(l.write_timeout).count(),
                    std::chrono::duration_cast<std::chrono::microseconds>(l.write_timeout).count() % 1000000);
}

HttpServer::~HttpServer() = default;

bool HttpServer::process_and_close_socket(socket_t sock) {
  engine_->Admit(sock);
  return true;
}

Status HttpServer::EnableTls(const HttpTlsFiles& files) {
  if (!files.enabled()) return Status::Ok();
  if (files.cert_file.empty() || files.key_file.empty()) {
    return InvalidArgument("HTTPS needs both a certificate and its key");
  }
  KVSTASH_ASSIGN_OR_RETURN(auto context, BuildContext(files));
  // OpenSSL writes with write(2): a peer that went away must not kill the process with SIGPIPE.
  struct sigaction current {};
  if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) ::signal(SIGPIPE, SIG_IGN);
  std::lock_guard<std::mutex> lock(engine_->tls_mu);
  engine_->tls_files = files;
  engine_->ctx = std::move(context);
  engine_->stamp = FileStamp(files.cert_file) + "|" + FileStamp(files.key_file) + "|" + FileStamp(files.client_ca_file);
  engine_->checked = Clock::now();
  return Status::Ok();
}

bool HttpServer::tls() const {
  std::lock_guard<std::mutex> lock(engine_->tls_mu);
  return engine_->ctx != nullptr;
}

HttpServer::Counters HttpServer::counters() const {
  std::lock_guard<std::mutex> lock(engine_->mu);
  return engine_->counters;
}

const HttpLimits& HttpServer::limits() const { return engine_->limits; }

void HttpServer::SetWorkerThreads(size_t n) { engine_->limits.worker_threads = std::max<size_t>(1, n); }

void HttpServer::PrepareToServe() {
  new_task_queue = [this] { return new Dispatch(*engine_); };
  socket_t sock = svr_sock_;
  if (sock != INVALID_SOCKET) ::listen(sock, engine_->limits.listen_backlog);  // Linux: updates the backlog
}

Result<int> ServeInBackground(HttpServer& server, const std::string& host, int port, std::thread& thread,
                              std::string_view what) {
  if (thread.joinable()) return FailedPrecondition(std::string(what) + " server already started");
  // httplib sets SO_REUSEPORT, which lets a second process bind the same port and take half its
  // connections: keep only SO_REUSEADDR, so a port in use is refused.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<void*>(&yes), sizeof(yes));
  });
  int bound = -1;
  if (port == 0) {
    bound = server.bind_to_any_port(host);
  } else if (server.bind_to_port(host, port)) {
    bound = port;
  }
  if (bound <= 0) return Unavailable("cannot listen for " + std::string(what) + " on " + host + ":" + std::to_string(port));
  server.PrepareToServe();
  thread = std::thread([&server] { server.listen_after_bind(); });
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!server.is_running() && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
  return bound;
}

void StopServing(HttpServer& server, std::thread& thread) {
  if (!thread.joinable()) return;
  server.stop();
  thread.join();
}

}  // namespace kvstash
