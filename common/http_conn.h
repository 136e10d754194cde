// One HTTP connection's socket and its non-blocking I/O, for HttpServer (common/http_serve.h): the
// connection's state while it waits for a head or is served, reads and writes that never block
// (plain or TLS), and ConnStream, the httplib::Stream a worker serves a request over, whose
// reads and writes are bounded by the server's read, body and write timeouts.
// Internal to common/http_serve*.cc.
#pragma once

#include <httplib.h>
#include <openssl/ssl.h>
#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <string>

#include "common/http_options.h"

namespace kvstash::http_internal {

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

// One non-blocking read (TLS or plain) into dst[0, n); `got` is set for kData.
Io RawRead(Conn& c, char* dst, size_t n, ssize_t& got);
// One non-blocking write of src[0, n); `put` is set for kData.
Io RawWrite(Conn& c, const char* src, size_t n, ssize_t& put);
// True when `fd` is ready for `events` (or in error, which the next call reports) before `until`.
bool WaitFor(int fd, short events, Clock::time_point until);

// A read-buffered, deadline-bounded httplib::Stream over one connection.
class ConnStream : public httplib::Stream {
 public:
  ConnStream(Conn& c, const HttpLimits& limits)
      : c_(c), limits_(limits), body_deadline_(Clock::now() + limits.body_timeout) {}

  bool is_readable() const override;
  bool is_writable() const override;
  ssize_t read(char* ptr, size_t size) override;
  ssize_t write(const char* ptr, size_t size) override;
  void get_remote_ip_and_port(std::string& ip, int& port) const override { Address(true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { Address(false, ip, port); }
  socket_t socket() const override { return c_.fd; }

 private:
  Clock::time_point ReadUntil() const { return std::min(Clock::now() + limits_.read_timeout, body_deadline_); }
  void Address(bool peer, std::string& ip, int& port) const;

  Conn& c_;
  const HttpLimits& limits_;
  const Clock::time_point body_deadline_;
};

}  // namespace kvstash::http_internal
