#include "common/http_serve.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>

namespace kvstash {
namespace {

using Clock = std::chrono::steady_clock;

struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;
  bool handshaken = false;
  bool want_write = false;  // the TLS layer waits for the socket to be writable
  bool fresh = true;        // not yet tried by the reactor since it (re)entered the wait
  bool evict = false;
  std::string buf;          // bytes read and not yet consumed, from `pos`
  size_t pos = 0;
  size_t scanned = 0;       // buf[pos, scanned) holds no end of head
  Clock::time_point waiting_since;
  Clock::time_point deadline;
  size_t served = 0;
  bool priority = false;
};

enum class Io { kData, kWantRead, kWantWrite, kClosed, kError };

Io RawRead(Conn& c, char* dst, size_t n, ssize_t& got) {
  got = 0;
  if (c.ssl != nullptr) {
    ERR_clear_error();
    int r = SSL_read(c.ssl, dst, static_cast<int>(std::min<size_t>(n, 1 << 30)));
    if (r > 0) {
      got = r;
      return Io::kData;
    }
    switch (SSL_get_error(c.ssl, r)) {
      case SSL_ERROR_WANT_READ: return Io::kWantRead;
      case SSL_ERROR_WANT_WRITE: return Io::kWantWrite;
      case SSL_ERROR_ZERO_RETURN: return Io::kClosed;
      default: return Io::kError;
    }
  }
  for (;;) {
    ssize_t r = ::recv(c.fd, dst, n, MSG_DONTWAIT);
    if (r > 0) {
      got = r;
      return Io::kData;
    }
    if (r == 0) return Io::kClosed;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::kWantRead;
    return Io::kError;
  }
}

Io RawWrite(Conn& c, const char* src, size_t n, ssize_t& put) {
  put = 0;
  if (c.ssl != nullptr) {
    ERR_clear_error();
    int r = SSL_write(c.ssl, src, static_cast<int>(std::min<size_t>(n, 1 << 30)));
    if (r > 0) {
      put = r;
      return Io::kData;
    }
    switch (SSL_get_error(c.ssl, r)) {
      case SSL_ERROR_WANT_READ: return Io::kWantRead;
      case SSL_ERROR_WANT_WRITE: return Io::kWantWrite;
      default: return Io::kError;
    }
  }
  for (;;) {
    ssize_t r = ::send(c.fd, src, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r >= 0) {
      put = r;
      return Io::kData;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::kWantWrite;
    return Io::kError;
  }
}

// True when `fd` is ready for `events` (or in error, which the next call reports) before `until`.
bool WaitFor(int fd, short events, Clock::time_point until) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
    if (left < 0) left = 0;
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1 << 30)));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

std::string OpenSslError() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(e, text, sizeof(text));
    if (!out.empty()) out += "; ";
    out += text;
  }
  return out.empty() ? "unknown error" : out;
}

struct CtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};

Result<std::shared_ptr<SSL_CTX>> BuildContext(const HttpTlsFiles& files) {
  ERR_clear_error();
  std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_server_method()), CtxFree{});
  if (!ctx) return InvalidArgument("cannot make a TLS context: " + OpenSslError());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), files.cert_file.c_str()) != 1) {
    return InvalidArgument("cannot load TLS certificate " + files.cert_file + ": " + OpenSslError());
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), files.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return InvalidArgument("cannot load TLS key " + files.key_file + ": " + OpenSslError());
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    return InvalidArgument("TLS key " + files.key_file + " does not match " + files.cert_file);
  }
  if (!files.client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), files.client_ca_file.c_str(), nullptr) != 1) {
      return InvalidArgument("cannot load TLS client CA " + files.client_ca_file + ": " + OpenSslError());
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.client_ca_file.c_str());
    if (names != nullptr) SSL_CTX_set_client_CA_list(ctx.get(), names);
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return ctx;
}

std::string FileStamp(const std::string& path) {
  if (path.empty()) return {};
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "missing";
  return std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) +
         "." + std::to_string(st.st_mtim.tv_nsec);
}

}  // namespace

struct HttpServer::Engine {
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

  // A read-buffered, deadline-bounded httplib::Stream over one connection.
  class ConnStream : public httplib::Stream {
   public:
    ConnStream(Conn& c, const HttpLimits& limits)
        : c_(c), limits_(limits), body_deadline_(Clock::now() + limits.body_timeout) {}

    bool is_readable() const override {
      if (c_.pos < c_.buf.size()) return true;
      if (c_.ssl != nullptr && SSL_pending(c_.ssl) > 0) return true;
      return WaitFor(c_.fd, POLLIN, ReadUntil());
    }
    bool is_writable() const override { return WaitFor(c_.fd, POLLOUT, Clock::now() + limits_.write_timeout); }

    ssize_t read(char* ptr, size_t size) override {
      if (c_.pos >= c_.buf.size()) {
        c_.buf.clear();
        c_.pos = 0;
        c_.scanned = 0;
        const auto until = ReadUntil();
        char tmp[16 * 1024];
        for (;;) {
          ssize_t got = 0;
          Io io = RawRead(c_, tmp, sizeof(tmp), got);
          if (io == Io::kData) {
            c_.buf.append(tmp, static_cast<size_t>(got));
            break;
          }
          if (io == Io::kClosed) return 0;
          if (io == Io::kError) return -1;
          if (!WaitFor(c_.fd, io == Io::kWantRead ? POLLIN : POLLOUT, until)) return -1;
        }
      }
      const size_t n = std::min(size, c_.buf.size() - c_.pos);
      std::memcpy(ptr, c_.buf.data() + c_.pos, n);
      c_.pos += n;
      return static_cast<ssize_t>(n);
    }

    ssize_t write(const char* ptr, size_t size) override {
      const auto until = Clock::now() + limits_.write_timeout;
      for (;;) {
        ssize_t put = 0;
        Io io = RawWrite(c_, ptr, size, put);
        if (io == Io::kData) return put;
        if (io == Io::kError || io == Io::kClosed) return -1;
        if (!WaitFor(c_.fd, io == Io::kWantRead ? POLLIN : POLLOUT, until)) return -1;
      }
    }

    void get_remote_ip_and_port(std::string& ip, int& port) const override { Address(true, ip, port); }
    void get_local_ip_and_port(std::string& ip, int& port) const override { Address(false, ip, port); }
    socket_t socket() const override { return c_.fd; }

   private:
    Clock::time_point ReadUntil() const { return std::min(Clock::now() + limits_.read_timeout, body_deadline_); }

    void Address(bool peer, std::string& ip, int& port) const {
      sockaddr_storage addr{};
      socklen_t len = sizeof(addr);
      int r = peer ? ::getpeername(c_.fd, reinterpret_cast<sockaddr*>(&addr), &len)
                   : ::getsockname(c_.fd, reinterpret_cast<sockaddr*>(&addr), &len);
      ip.clear();
      port = 0;
      if (r != 0) return;
      char text[INET6_ADDRSTRLEN] = {};
      if (addr.ss_family == AF_INET) {
        auto* in = reinterpret_cast<sockaddr_in*>(&addr);
        ::inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
        port = ntohs(in->sin_port);
      } else if (addr.ss_family == AF_INET6) {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr);
        ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
        port = ntohs(in6->sin6_port);
      }
      ip = text;
    }

    Conn& c_;
    const HttpLimits& limits_;
    const Clock::time_point body_deadline_;
  };

  explicit Engine(HttpServer* s, HttpLimits l) : server(s), limits(std::move(l)) {
    if (limits.worker_threads == 0) {
      const unsigned cores = std::thread::hardware_concurrency();
      limits.worker_threads = std::max(8u, cores > 0 ? cores - 1 : 0u);
    }
    limits.max_connections = std::max<size_t>(limits.max_connections, 1);
    limits.keep_alive_max_count = std::max<size_t>(limits.keep_alive_max_count, 1);
  }

  std::shared_ptr<SSL_CTX> CurrentContext() {
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

  void Wake() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t r = ::write(wake_fd, &one, sizeof(one));
  }

  void Start() {
    std::lock_guard<std::mutex> lock(mu);
    stopping = false;
    stopping_flag = false;
    if (wake_fd < 0) wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    reactor = std::thread([this] { ReactorLoop(); });
    for (size_t i = 0; i < limits.worker_threads; ++i) workers.emplace_back([this] { WorkerLoop(false); });
    workers.emplace_back([this] { WorkerLoop(true); });
  }

  void Shutdown() {
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

  void CloseLocked(std::unique_ptr<Conn> c) {
    if (!c) return;
    if (c->ssl != nullptr) {
      if (c->handshaken) SSL_shutdown(c->ssl);  // non-blocking: one close_notify, no wait
      SSL_free(c->ssl);
    }
    ::shutdown(c->fd, SHUT_RDWR);
    ::close(c->fd);
    --open;
  }

  void Admit(int fd) {
    int flags = ::fcntl(fd, F_GETFL, 0);
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    int yes = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
    std::shared_ptr<SSL_CTX> context = CurrentContext();
    std::lock_guard<std::mutex> lock(mu);
    if (stopping) {
      ::close(fd);
      return;
    }
    if (open >= limits.max_connections) {
      Conn* oldest = nullptr;
      for (auto& c : waiting) {
        if (!c->evict && (oldest == nullptr || c->waiting_since < oldest->waiting_since)) oldest = c.get();
      }
      if (oldest == nullptr) {
        ++counters.refused;
        ::close(fd);
        return;
      }
      oldest->evict = true;
      ++counters.evicted;
    }
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    if (context) {
      c->ssl = SSL_new(context.get());
      if (c->ssl == nullptr || SSL_set_fd(c->ssl, fd) != 1) {
        if (c->ssl != nullptr) SSL_free(c->ssl);
        ::close(fd);
        ++counters.bad_heads;
        return;
      }
      SSL_set_accept_state(c->ssl);
    }
    c->waiting_since = Clock::now();
    c->deadline = c->waiting_since + limits.head_timeout;
    ++open;
    ++counters.accepted;
    waiting.push_back(std::move(c));
    Wake();
  }

  // Back to the wait for the next request's head (keep-alive).
  void Requeue(std::unique_ptr<Conn> c) {
    std::lock_guard<std::mutex> lock(mu);
    if (stopping) {
      CloseLocked(std::move(c));
      return;
    }
    c->fresh = true;
    c->priority = false;
    c->buf.erase(0, c->pos);  // what is left is the next request's (pipelined) bytes
    c->pos = 0;
    c->scanned = 0;
    c->waiting_since = Clock::now();
    c->deadline = c->waiting_since + limits.head_timeout;
    waiting.push_back(std::move(c));
    Wake();
  }

  enum class Progress { kWait, kReady, kClose };

  bool HeadComplete(Conn& c) {
    const size_t from = std::max(c.pos, c.scanned >= 3 ? c.scanned - 3 : 0);
    std::string_view view(c.buf.data() + from, c.buf.size() - from);
    size_t end = view.find("\r\n\r\n");
    size_t end_lf = view.find("\n\n");
    c.scanned = c.buf.size();
    if (end == std::string_view::npos && end_lf == std::string_view::npos) return false;
    // The request line: METHOD SP TARGET SP VERSION; TARGET's path decides its queue.
    std::string_view head(c.buf.data() + c.pos, c.buf.size() - c.pos);
    size_t line_end = head.find_first_of("\r\n");
    std::string_view line = head.substr(0, line_end);
    size_t sp1 = line.find(' ');
    c.priority = false;
    if (sp1 != std::string_view::npos) {
      std::string_view target = line.substr(sp1 + 1);
      target = target.substr(0, target.find(' '));
      std::string_view path = target.substr(0, target.find('?'));
      for (const auto& p : limits.priority_paths) {
        if (path == p) c.priority = true;
      }
    }
    return true;
  }

  Progress Advance(Conn& c) {
    if (c.ssl != nullptr && !c.handshaken) {
      ERR_clear_error();
      int r = SSL_do_handshake(c.ssl);
      if (r == 1) {
        c.handshaken = true;
        c.want_write = false;
      } else {
        int e = SSL_get_error(c.ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
          c.want_write = e == SSL_ERROR_WANT_WRITE;
          return Progress::kWait;
        }
        ++counters.bad_heads;
        return Progress::kClose;
      }
    }
    char tmp[4096];
    for (;;) {
      if (HeadComplete(c)) return Progress::kReady;
      if (c.buf.size() - c.pos > limits.max_head_bytes) {
        ++counters.bad_heads;
        return Progress::kClose;
      }
      ssize_t got = 0;
      Io io = RawRead(c, tmp, sizeof(tmp), got);
      if (io == Io::kData) {
        c.buf.append(tmp, static_cast<size_t>(got));
        continue;
      }
      if (io == Io::kWantRead || io == Io::kWantWrite) {
        c.want_write = io == Io::kWantWrite;
        return Progress::kWait;
      }
      return Progress::kClose;
    }
  }

  void ReactorLoop() {
    std::vector<pollfd> fds;
    std::vector<Conn*> polled;
    for (;;) {
      int timeout_ms = 1000;
      {
        std::unique_lock<std::mutex> lock(mu);
        if (stopping) break;
        const auto now = Clock::now();
        bool handed = false;
        for (auto& c : waiting) {
          if (c->evict) {
            CloseLocked(std::move(c));
            continue;
          }
          if (c->fresh) {
            c->fresh = false;
            Progress p = Advance(*c);
            if (p == Progress::kClose) {
              CloseLocked(std::move(c));
              continue;
            }
            if (p == Progress::kReady) {
              ++counters.requests;
              (c->priority ? ready_priority : ready).push_back(std::move(c));
              handed = true;
              continue;
            }
          }
          if (now >= c->deadline) {
            ++counters.head_timeouts;
            CloseLocked(std::move(c));
          }
        }
        waiting.erase(std::remove(waiting.begin(), waiting.end(), nullptr), waiting.end());
        if (handed) cv.notify_all();
        fds.clear();
        polled.clear();
        fds.push_back({wake_fd, POLLIN, 0});
        polled.push_back(nullptr);
        for (auto& c : waiting) {
          fds.push_back({c->fd, static_cast<short>(c->want_write ? POLLOUT : POLLIN), 0});
          polled.push_back(c.get());
          auto left = std::chrono::duration_cast<std::chrono::milliseconds>(c->deadline - now).count() + 1;
          timeout_ms = static_cast<int>(std::clamp<long long>(left, 0, timeout_ms));
        }
      }
      int n = ::poll(fds.data(), fds.size(), timeout_ms);
      if (n < 0 && errno != EINTR) {
        spdlog::error("HTTP reactor: poll failed: {}", std::strerror(errno));
        break;
      }
      if (n <= 0) continue;
      if (fds[0].revents != 0) {
        uint64_t drained;
        while (::read(wake_fd, &drained, sizeof(drained)) > 0) {
        }
      }
      // Mark the ready ones fresh: the next pass (under the lock, just above) advances them.
      std::lock_guard<std::mutex> lock(mu);
      for (size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents != 0) polled[i]->fresh = true;
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    for (auto& c : waiting) CloseLocked(std::move(c));
    waiting.clear();
  }

  void WorkerLoop(bool priority_only) {
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

  bool Serve(Conn& c) {
    ConnStream stream(c, limits);
    const bool close_connection = c.served + 1 >= limits.keep_alive_max_count || stopping_flag;
    bool connection_closed = false;
    bool ok = server->process_request(stream, close_connection, connection_closed, nullptr);
    ++c.served;
    return ok && !connection_closed && !close_connection;
  }
};

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
