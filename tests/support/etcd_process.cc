#include "tests/support/etcd_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <vector>

extern char** environ;

namespace kvstash::testing {

int PickFreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

bool EtcdProcess::Available(const std::string& binary) {
  const std::string cmd = binary + " --version >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

EtcdProcess::EtcdProcess(const std::string& binary) : binary_(binary) {
  char tmpl[] = "/tmp/kvstash-etcd-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    error_ = "mkdtemp failed";
    return;
  }
  data_dir_ = tmpl;
  client_port_ = PickFreePort();
  peer_port_ = PickFreePort();
  if (client_port_ == 0 || peer_port_ == 0 || client_port_ == peer_port_) {
    error_ = "no free port";
    return;
  }
  endpoint_ = "http://127.0.0.1:" + std::to_string(client_port_);
  Spawn();
}

void EtcdProcess::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

bool EtcdProcess::Restart(bool fresh) {
  Stop();
  if (fresh) {
    std::error_code ec;
    std::filesystem::remove_all(data_dir_ + "/data", ec);
  }
  error_.clear();
  Spawn();
  return ok();
}

void EtcdProcess::Spawn() {
  const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
  std::vector<std::string> args = {binary_,
                                   "--name",
                                   "kvstash-test",
                                   "--data-dir",
                                   data_dir_ + "/data",
                                   "--listen-client-urls",
                                   endpoint_,
                                   "--advertise-client-urls",
                                   endpoint_,
                                   "--listen-peer-urls",
                                   peer,
                                   "--initial-advertise-peer-urls",
                                   peer,
                                   "--initial-cluster",
                                   "kvstash-test=" + peer,
                                   "--log-outputs",
                                   data_dir_ + "/etcd.log",
                                   "--logger",
                                   "zap"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  const int rc = posix_spawnp(&pid_, binary_.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    pid_ = -1;
    error_ = "cannot start " + binary_;
    return;
  }
  // Readiness: /health answers {"health":"true"} once the member has a leader.
  httplib::Client cli("127.0.0.1", client_port_);
  cli.set_connection_timeout(0, 200'000);
  cli.set_read_timeout(1, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    auto res = cli.Get("/health");
    if (res && res->status == 200 && res->body.find("true") != std::string::npos) return;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      error_ = "etcd exited at start (see its log in " + data_dir_ + ")";
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polling a readiness probe
  }
  error_ = "etcd was not healthy within 30 s";
}

EtcdProcess::~EtcdProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (!data_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(data_dir_, ec);
  }
}

}  // namespace kvstash::testing
