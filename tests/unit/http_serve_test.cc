// The HTTP endpoints under slow and idle clients (issue 17: 16 connections trickling bytes made
// /healthz fail 10 of 10 probes): raw sockets play the attacker, /healthz must keep answering.
#include "common/http_serve.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/metrics.h"

#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>

namespace kvstash {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

int ConnectTo(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Everything the server sends until it closes, or what came before `until`.
std::string ReadUntilClosed(int fd, Clock::time_point until, bool* closed) {
  std::string out;
  *closed = false;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<milliseconds>(until - Clock::now()).count();
    if (left <= 0) return out;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) return out;
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      *closed = true;
      return out;
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

struct Probe {
  bool answered = false;
  int status = 0;
  std::string body;
  milliseconds took{0};
};

// One GET on a fresh connection, with a bound on the whole exchange.
Probe Get(int port, const std::string& path, milliseconds bound) {
  Probe probe;
  const auto start = Clock::now();
  int fd = ConnectTo(port);
  if (fd < 0) return probe;
  bool closed = false;
  std::string reply;
  if (SendAll(fd, "GET " + path + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")) {
    reply = ReadUntilClosed(fd, start + bound, &closed);
  }
  ::close(fd);
  probe.took = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  if (!closed || reply.rfind("HTTP/1.1 ", 0) != 0) return probe;
  probe.answered = true;
  probe.status = std::stoi(reply.substr(9, 3));
  auto body_at = reply.find("\r\n\r\n");
  if (body_at != std::string::npos) probe.body = reply.substr(body_at + 4);
  return probe;
}

// Slow clients: each connection sends a request head one byte at a time, a byte every `pace`,
// and reconnects when the server closes it (as an attacker would).
class Tricklers {
 public:
  // `head`: the first bytes each connection sends, at once; the rest come a byte at a time.
  Tricklers(int port, size_t count, milliseconds pace, std::string head = "GET /healthz HTTP/1.1\r\nX-Slow: ")
      : port_(port), pace_(pace), head_(std::move(head)) {
    for (size_t i = 0; i < count; ++i) fds_.push_back(Open());
    connected_ = static_cast<size_t>(std::count_if(fds_.begin(), fds_.end(), [](int fd) { return fd >= 0; }));
    thread_ = std::thread([this] { Run(); });
  }
  ~Tricklers() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    for (int fd : fds_) {
      if (fd >= 0) ::close(fd);
    }
  }
  size_t connected() const { return connected_; }  // at the start
  uint64_t reconnects() const { return reconnects_; }
  uint64_t bytes() const { return bytes_; }
  // True once `bytes` have been sent in all, false when `bound` passed first.
  bool WaitForBytes(uint64_t bytes, milliseconds bound) {
    std::unique_lock<std::mutex> lock(mu_);
    return round_cv_.wait_for(lock, bound, [&] { return bytes_ >= bytes; });
  }

 private:
  int Open() {
    int fd = ConnectTo(port_);
    // The first bytes of a plausible head; the rest never completes it.
    if (fd >= 0 && !SendAll(fd, head_)) {
      ::close(fd);
      fd = -1;
    }
    return fd;
  }
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, pace_, [this] { return stop_; })) {
      for (int& fd : fds_) {
        if (fd >= 0 && ::send(fd, "a", 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1) {
          ++bytes_;
          continue;
        }
        if (fd >= 0) ::close(fd);
        fd = Open();
        ++reconnects_;
      }
      round_cv_.notify_all();
    }
  }

  const int port_;
  const milliseconds pace_;
  const std::string head_;
  std::vector<int> fds_;
  size_t connected_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable round_cv_;  // a round of bytes went out
  bool stop_ = false;
  std::atomic<uint64_t> reconnects_{0};
  std::atomic<uint64_t> bytes_{0};
  std::thread thread_;
};

// More slow connections than any thread pool sized by cores would have on the hosts we run on.
size_t ManyClients() { return std::max<size_t>(64, 2 * std::thread::hardware_concurrency()); }

TEST(HttpServeTest, HealthzAnswersWhileManyClientsTrickleHeaders) {
  metrics::Registry registry;
  metrics::MetricsHttpServer server(&registry);
  auto port = server.Start("127.0.0.1", 0);
  ASSERT_TRUE(port.ok()) << port.status().ToString();

  const size_t clients = ManyClients();
  Tricklers slow(*port, clients, milliseconds(100));
  ASSERT_EQ(slow.connected(), clients);
  // Every probe goes out while the slow clients are trickling: after each has sent a byte or two more.
  auto trickled = [&slow](uint64_t bytes) { return slow.WaitForBytes(bytes, std::chrono::seconds(10)); };
  int answered = 0;
  milliseconds slowest{0};
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(trickled(slow.bytes() + clients)) << "the slow clients stopped sending";
    Probe probe = Get(*port, "/healthz", milliseconds(2000));
    if (probe.answered && probe.status == 200 && probe.body == "ok\n") ++answered;
    slowest = std::max(slowest, probe.took);
  }
  EXPECT_EQ(answered, 10) << "slowest probe " << slowest.count() << " ms";
  RecordProperty("slowest_probe_ms", static_cast<int>(slowest.count()));
  // /metrics too: a normal request gets a worker while the slow ones hold none.
  Probe metrics = Get(*port, "/metrics", milliseconds(2000));
  EXPECT_TRUE(metrics.answered);
  EXPECT_EQ(metrics.status, 200);
  // None of them got an answer or was cut off early: their heads are still arriving (head_timeout 5 s).
  EXPECT_EQ(slow.reconnects(), 0u);
}

TEST(HttpServeTest, AHeadThatDoesNotArriveInTimeIsClosed) {
  HttpLimits limits;
  limits.head_timeout = milliseconds(1000);
  HttpServer server(limits);
  server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  std::thread thread;
  auto port = ServeInBackground(server, "127.0.0.1", 0, thread, "test");
  ASSERT_TRUE(port.ok()) << port.status().ToString();

  int fd = ConnectTo(*port);
  ASSERT_GE(fd, 0);
  const auto start = Clock::now();
  ASSERT_TRUE(SendAll(fd, "GET /healthz HTTP/1.1\r\nX-Slow: "));
  // Keep trickling (each byte well inside any per-read timeout) until the server closes.
  bool closed = false;
  while (!closed && Clock::now() - start < std::chrono::seconds(6)) {
    std::string got = ReadUntilClosed(fd, Clock::now() + milliseconds(100), &closed);
    EXPECT_TRUE(got.empty()) << got;
    if (!closed && ::send(fd, "a", 1, MSG_NOSIGNAL) != 1) closed = true;
  }
  const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  ::close(fd);
  EXPECT_TRUE(closed) << "a trickled head held its connection for " << took.count() << " ms";
  EXPECT_GE(took.count(), 900);
  EXPECT_LE(took.count(), 4000);
  EXPECT_GE(server.counters().head_timeouts, 1u);
  // The server still answers a whole head at once.
  Probe probe = Get(*port, "/healthz", milliseconds(2000));
  EXPECT_TRUE(probe.answered);
  StopServing(server, thread);
}

TEST(HttpServeTest, AtTheConnectionCapTheOldestWaitingConnectionMakesRoom) {
  HttpLimits limits;
  limits.max_connections = 8;
  HttpServer server(limits);
  server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  std::thread thread;
  auto port = ServeInBackground(server, "127.0.0.1", 0, thread, "test");
  ASSERT_TRUE(port.ok()) << port.status().ToString();

  // 20 idle connections, in order; each past the 8th closes the oldest still waiting.
  std::vector<int> idle;
  for (int i = 0; i < 20; ++i) {
    idle.push_back(ConnectTo(*port));
    ASSERT_GE(idle.back(), 0);
  }
  Probe probe = Get(*port, "/healthz", milliseconds(2000));
  EXPECT_TRUE(probe.answered);
  EXPECT_EQ(probe.status, 200);
  // The probe made room by closing one more: the first 13 were closed by the server.
  for (int i = 0; i < 13; ++i) {
    bool closed = false;
    ReadUntilClosed(idle[i], Clock::now() + milliseconds(2000), &closed);
    EXPECT_TRUE(closed) << "idle connection " << i << " still open";
  }
  // The newest are still open (the server is not closing everything).
  bool closed = false;
  ReadUntilClosed(idle[19], Clock::now() + milliseconds(200), &closed);
  EXPECT_FALSE(closed);
  const auto counters = server.counters();
  EXPECT_EQ(counters.evicted, 13u);
  EXPECT_EQ(counters.refused, 0u);
  for (int fd : idle) ::close(fd);
  StopServing(server, thread);
}

TEST(HttpServeTest, HealthzHasItsOwnWorkerWhenEveryWorkerIsBusy) {
  HttpLimits limits;
  limits.worker_threads = 2;
  limits.read_timeout = milliseconds(8000);
  HttpServer server(limits);
  server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  server.Get("/other", [](const httplib::Request&, httplib::Response& res) { res.set_content("other\n", "text/plain"); });
  server.Post("/upload", [](const httplib::Request& req, httplib::Response& res) {
    res.set_content(std::to_string(req.body.size()), "text/plain");
  });
  std::thread thread;
  auto port = ServeInBackground(server, "127.0.0.1", 0, thread, "test");
  ASSERT_TRUE(port.ok()) << port.status().ToString();

  // Two uploads whose bodies stall after a byte: each holds a general worker in its body read.
  std::vector<int> stalled;
  for (int i = 0; i < 2; ++i) {
    stalled.push_back(ConnectTo(*port));
    ASSERT_TRUE(SendAll(stalled.back(), "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nx"));
  }
  const auto give_up = Clock::now() + std::chrono::seconds(5);
  while (server.counters().requests < 2 && Clock::now() < give_up) std::this_thread::yield();
  ASSERT_EQ(server.counters().requests, 2u);

  // Workers busy: another path waits for one ...
  Probe other = Get(*port, "/other", milliseconds(1000));
  EXPECT_FALSE(other.answered) << "a general worker was free; the test proves nothing";
  // ... /healthz does not.
  Probe health = Get(*port, "/healthz", milliseconds(2000));
  EXPECT_TRUE(health.answered);
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");
  for (int fd : stalled) ::close(fd);
  StopServing(server, thread);
}

TEST(HttpServeTest, KeptAliveAndPipelinedRequestsAreAnswered) {
  HttpServer server;
  std::atomic<int> hits{0};
  server.Get("/healthz", [&hits](const httplib::Request&, httplib::Response& res) {
    ++hits;
    res.set_content("ok\n", "text/plain");
  });
  std::thread thread;
  auto port = ServeInBackground(server, "127.0.0.1", 0, thread, "test");
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  int fd = ConnectTo(*port);
  ASSERT_GE(fd, 0);
  // One request, its answer, then two pipelined in one write (the second closes).
  ASSERT_TRUE(SendAll(fd, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"));
  bool closed = false;
  std::string first;
  const auto until = Clock::now() + std::chrono::seconds(3);
  while (first.find("ok\n") == std::string::npos && !closed && Clock::now() < until) {
    first += ReadUntilClosed(fd, Clock::now() + milliseconds(100), &closed);
  }
  EXPECT_FALSE(closed);
  EXPECT_NE(first.find("HTTP/1.1 200"), std::string::npos);
  ASSERT_TRUE(SendAll(fd, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
  std::string rest = ReadUntilClosed(fd, Clock::now() + std::chrono::seconds(3), &closed);
  ::close(fd);
  EXPECT_TRUE(closed);
  size_t answers = 0;
  for (size_t at = rest.find("HTTP/1.1 200"); at != std::string::npos; at = rest.find("HTTP/1.1 200", at + 1)) ++answers;
  EXPECT_EQ(answers, 2u) << rest;
  EXPECT_EQ(hits, 3);
  StopServing(server, thread);
}

// The node's API and the front door size their pool: that must not bypass the reactor.
TEST(HttpServeTest, AThreadPoolSetByTheCallerIsReplacedAndWorkersAreSized) {
  HttpServer server;
  server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  server.SetWorkerThreads(3);
  server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  std::thread thread;
  auto port = ServeInBackground(server, "127.0.0.1", 0, thread, "test");
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  EXPECT_EQ(server.limits().worker_threads, 3u);
  Tricklers slow(*port, 8, milliseconds(100));
  Probe probe = Get(*port, "/healthz", milliseconds(2000));
  EXPECT_TRUE(probe.answered);
  EXPECT_EQ(probe.status, 200);
  StopServing(server, thread);
}

// A body trickled slower than body_timeout allows loses its worker: the worker is free again for
// the next request within about that time.
TEST(HttpServeTest, ATrickledBodyIsCutAtTheBodyTimeout) {
  HttpLimits limits;
  limits.worker_threads = 1;
  limits.body_timeout = milliseconds(1000);
  HttpServer server(limits);
  server.Post("/upload", [](const httplib::Request& req, httplib::Response& res) {
    res.set_content(std::to_string(req.body.size()), "text/plain");
  });
  server.Get("/other", [](const httplib::Request&, httplib::Response& res) { res.set_content("other\n", "text/plain"); });
  std::thread thread;
  auto port = ServeInBackground(server, "127.0.0.1", 0, thread, "test");
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  // The head at once, then a byte of body every 100 ms: each read is quick, the whole is not.
  Tricklers upload(*port, 1, milliseconds(100), "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
  const auto give_up = Clock::now() + std::chrono::seconds(5);
  while (server.counters().requests < 1 && Clock::now() < give_up) std::this_thread::yield();
  ASSERT_EQ(server.counters().requests, 1u);
  const auto start = Clock::now();
  // The only general worker is held by the upload until its body deadline; then /other is served.
  Probe other = Get(*port, "/other", milliseconds(4000));
  EXPECT_TRUE(other.answered);
  EXPECT_EQ(other.status, 200);
  EXPECT_GE(other.took.count(), 500) << "the upload did not hold the worker; the test proves nothing";
  EXPECT_LE(std::chrono::duration_cast<milliseconds>(Clock::now() - start).count(), 3500);
  StopServing(server, thread);
}

// ---- HTTPS ---------------------------------------------------------------------------------

class HttpsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    signal(SIGPIPE, SIG_IGN);  // a refused TLS client writes to a closed socket
    char tmpl[] = "/tmp/kvstash-https-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const std::string cmd = "bash " KVSTASH_SOURCE_DIR "/deploy/make-test-certs.sh " + dir_.string() + " >/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }
  static std::string Path(const std::string& name) { return (dir_ / name).string(); }
  // GET over HTTPS trusting `ca`; the status, or 0 when the handshake failed.
  static int HttpsGet(int port, const std::string& ca, const std::string& path = "/healthz") {
    httplib::SSLClient client("127.0.0.1", port);
    client.set_ca_cert_path(ca.c_str());
    client.enable_server_certificate_verification(true);
    client.set_connection_timeout(5);
    client.set_read_timeout(5);
    auto res = client.Get(path.c_str());
    return res ? res->status : 0;
  }
  static inline std::filesystem::path dir_;
};

// Slow clients on an HTTPS port hold no worker either: a handshake that never completes is closed
// after head_timeout, and /healthz keeps answering over TLS meanwhile.
TEST_F(HttpsTest, HandshakesThatNeverFinishNeitherStarveHealthzNorStayOpen) {
  HttpLimits limits;
  limits.head_timeout = milliseconds(1000);
  HttpServer server(limits);
  ASSERT_TRUE(server.EnableTls({Path("server.pem"), Path("server.key"), "", 0}).ok());
  server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  std::thread thread;
  auto port = ServeInBackground(server, "127.0.0.1", 0, thread, "test");
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  // A TLS handshake record announced as 512 bytes long, then trickled: no handshake ever completes.
  Tricklers slow(*port, ManyClients(), milliseconds(100), std::string("\x16\x03\x01\x02\x00", 5));
  ASSERT_EQ(slow.connected(), ManyClients());
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(slow.WaitForBytes(slow.bytes() + ManyClients(), std::chrono::seconds(10)));
    EXPECT_EQ(HttpsGet(*port, Path("ca.pem")), 200);
  }
  EXPECT_EQ(HttpsGet(*port, Path("other-ca.pem")), 0) << "a client of another CA must refuse the server";
  // Each slow connection is cut at its head timeout, and reconnects.
  ASSERT_TRUE(slow.WaitForBytes(slow.bytes() + 25 * ManyClients(), std::chrono::seconds(20)));
  EXPECT_GE(slow.reconnects(), ManyClients());
  EXPECT_GE(server.counters().head_timeouts, ManyClients());
  StopServing(server, thread);
}

// Replaced certificate files serve new connections without a restart (as kvstashd's gRPC port).
TEST_F(HttpsTest, AReplacedCertificateIsPickedUp) {
  auto install = [&](const std::string& from) {
    for (const char* ext : {".key", ".pem"}) {
      std::filesystem::copy_file(Path(from + ext), Path(std::string("live.tmp") + ext),
                                 std::filesystem::copy_options::overwrite_existing);
      std::filesystem::rename(Path(std::string("live.tmp") + ext), Path(std::string("live") + ext));
    }
  };
  install("server");
  HttpServer server;
  ASSERT_TRUE(server.EnableTls({Path("live.pem"), Path("live.key"), "", 1}).ok());
  server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  std::thread thread;
  auto port = ServeInBackground(server, "127.0.0.1", 0, thread, "test");
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  EXPECT_EQ(HttpsGet(*port, Path("ca.pem")), 200);
  EXPECT_EQ(HttpsGet(*port, Path("other-ca.pem")), 0);
  install("other-server");
  const auto give_up = Clock::now() + std::chrono::seconds(20);
  int status = 0;
  while ((status = HttpsGet(*port, Path("other-ca.pem"))) != 200 && Clock::now() < give_up) {
    // Each try is a full handshake: bounded by the deadline, no sleep needed.
  }
  EXPECT_EQ(status, 200) << "the replaced certificate was not picked up";
  EXPECT_EQ(HttpsGet(*port, Path("ca.pem")), 0);
  StopServing(server, thread);
}

// Mutual TLS: no client certificate or one of another CA fails the handshake.
TEST_F(HttpsTest, ClientCertificatesAreRequiredWithAClientCa) {
  HttpServer server;
  ASSERT_TRUE(server.EnableTls({Path("server.pem"), Path("server.key"), Path("ca.pem"), 0}).ok());
  server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  std::thread thread;
  auto port = ServeInBackground(server, "127.0.0.1", 0, thread, "test");
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  EXPECT_EQ(HttpsGet(*port, Path("ca.pem")), 0);
  auto with_cert = [&](const std::string& name) {
    httplib::SSLClient client("127.0.0.1", *port, Path(name + ".pem"), Path(name + ".key"));
    client.set_ca_cert_path(Path("ca.pem").c_str());
    client.enable_server_certificate_verification(true);
    client.set_read_timeout(5);
    auto res = client.Get("/healthz");
    return res ? res->status : 0;
  };
  EXPECT_EQ(with_cert("other-client"), 0);
  EXPECT_EQ(with_cert("client"), 200);
  EXPECT_FALSE(HttpServer().EnableTls({Path("absent.pem"), Path("server.key"), "", 0}).ok());
  EXPECT_FALSE(HttpServer().EnableTls({Path("server.pem"), Path("other-server.key"), "", 0}).ok());
  StopServing(server, thread);
}

}  // namespace
}  // namespace kvstash
