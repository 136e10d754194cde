// HttpServer's connection limits and slow-client handling: a new connection is admitted to the
// reactor (closing the one that has waited longest for its head when at max_connections, refused
// when none waits); the reactor thread reads heads without blocking, hands complete ones to the
// workers' queues (priority paths to their own) and closes those past head_timeout or
// max_head_bytes; a kept-alive connection comes back here between requests.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "common/http_serve_impl.h"

namespace kvstash {

using http_internal::Io;
using http_internal::RawRead;

void HttpServer::Engine::CloseLocked(std::unique_ptr<Conn> c) {
  if (!c) return;
  if (c->ssl != nullptr) {
    if (c->handshaken) SSL_shutdown(c->ssl);  // non-blocking: one close_notify, no wait
    SSL_free(c->ssl);
  }
  ::shutdown(c->fd, SHUT_RDWR);
  ::close(c->fd);
  --open;
}

void HttpServer::Engine::Admit(int fd) {
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

void HttpServer::Engine::Requeue(std::unique_ptr<Conn> c) {
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

bool HttpServer::Engine::HeadComplete(Conn& c) {
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

HttpServer::Engine::Progress HttpServer::Engine::Advance(Conn& c) {
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

void HttpServer::Engine::ReactorLoop() {
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

}  // namespace kvstash
