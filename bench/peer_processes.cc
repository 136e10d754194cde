#include "bench/peer_processes.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <thread>
#include <vector>

namespace kvstash::bench {

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::optional<std::string> RunCapture(const std::string& command) {
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  if (pclose(pipe) != 0) return std::nullopt;
  return out;
}

namespace {

// A server process started with /bin/sh -c; killed when this goes out of scope.
class Server {
 public:
  explicit Server(const std::string& command) {
    pid_ = fork();
    if (pid_ == 0) {
      execl("/bin/sh", "sh", "-c", ("exec " + command + " >/dev/null 2>&1").c_str(), nullptr);
      _exit(127);
    }
  }
  ~Server() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool alive() const { return pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == 0; }

 private:
  pid_t pid_ = -1;
};

// Waits (bounded) until `probe` succeeds; servers need a moment to bind.
bool WaitFor(const std::string& probe) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < give_up) {
    if (RunCapture(probe + " >/dev/null 2>&1")) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

}  // namespace

std::optional<StreamResult> RunIperf3(int streams, double seconds) {
  const int port = FreePort();
  Server server("iperf3 -s -1 -B 127.0.0.1 -p " + std::to_string(port));
  std::optional<std::string> out;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!out && std::chrono::steady_clock::now() < give_up) {
    out = RunCapture("iperf3 -J -c 127.0.0.1 -p " + std::to_string(port) + " -P " + std::to_string(streams) +
                     " -t " + std::to_string(std::max(1, static_cast<int>(seconds))) + " 2>/dev/null");
    // iperf3 -J exits 0 even when it could not connect (the server not listening yet): its JSON
    // then carries "error", and the attempt is retried.
    if (out && out->find("\"error\"") != std::string::npos) out.reset();
    if (!out) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!out) return std::nullopt;
  const auto doc = nlohmann::json::parse(*out, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("end") || !doc["end"].is_object()) return std::nullopt;
  const auto& received = doc["end"].contains("sum_received") ? doc["end"]["sum_received"] : nlohmann::json();
  if (!received.is_object() || !received.contains("bits_per_second")) return std::nullopt;
  const double bits = received["bits_per_second"].get<double>();
  if (bits <= 0) return std::nullopt;
  return StreamResult{bits / 8 / 1e9};
}

std::optional<RedisResult> RunRedis(const std::string& op, uint64_t value_bytes, int clients, uint64_t requests) {
  const int port = FreePort();
  Server server("redis-server --bind 127.0.0.1 --port " + std::to_string(port) +
                " --save '' --appendonly no --protected-mode no --proto-max-bulk-len 1gb");
  const std::string p = std::to_string(port);
  if (!WaitFor("redis-cli -p " + p + " ping")) return std::nullopt;
  // GET needs the key present: redis-benchmark's GET reads key:__rand_int__ with -r off, i.e. "key:__rand_int__".
  const std::string common = "redis-benchmark -p " + p + " -d " + std::to_string(value_bytes) + " -c " +
                             std::to_string(clients) + " --csv --precision 3";
  if (op == "get" && !RunCapture(common + " -t set -n " + std::to_string(clients))) return std::nullopt;
  auto out = RunCapture(common + " -t " + op + " -n " + std::to_string(requests));
  if (!out) return std::nullopt;
  // CSV: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  std::istringstream lines(*out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("\"test\"", 0) == 0 || line.empty()) continue;
    std::vector<std::string> fields;
    std::string field;
    std::istringstream cells(line);
    while (std::getline(cells, field, ',')) {
      if (field.size() >= 2 && field.front() == '"') field = field.substr(1, field.size() - 2);
      fields.push_back(field);
    }
    if (fields.size() < 7) continue;
    return RedisResult{std::stod(fields[1]), std::stod(fields[4]) * 1000, std::stod(fields[6]) * 1000};
  }
  return std::nullopt;
}

}  // namespace kvstash::bench
