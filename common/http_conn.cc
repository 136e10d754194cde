// One HTTP connection's non-blocking reads and writes (plain or TLS) and the deadline-bounded
// stream a worker serves a request over (contract in common/http_conn.h).
#include "common/http_conn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace kvstash::http_internal {

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

bool ConnStream::is_readable() const {
  if (c_.pos < c_.buf.size()) return true;
  if (c_.ssl != nullptr && SSL_pending(c_.ssl) > 0) return true;
  return WaitFor(c_.fd, POLLIN, ReadUntil());
}

bool ConnStream::is_writable() const { return WaitFor(c_.fd, POLLOUT, Clock::now() + limits_.write_timeout); }

ssize_t ConnStream::read(char* ptr, size_t size) {
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

ssize_t ConnStream::write(const char* ptr, size_t size) {
  const auto until = Clock::now() + limits_.write_timeout;
  for (;;) {
    ssize_t put = 0;
    Io io = RawWrite(c_, ptr, size, put);
    if (io == Io::kData) return put;
    if (io == Io::kError || io == Io::kClosed) return -1;
    if (!WaitFor(c_.fd, io == Io::kWantRead ? POLLIN : POLLOUT, until)) return -1;
  }
}

void ConnStream::Address(bool peer, std::string& ip, int& port) const {
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

}  // namespace kvstash::http_internal
