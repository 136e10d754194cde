#include "tests/support/daemon_process.h"

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

extern char** environ;

namespace kvstash::testing {

DaemonProcess::DaemonProcess(const std::string& binary, const std::vector<std::string>& extra_args) {
  std::vector<std::string> args = {binary};
  // A member of an etcd cluster is not standalone.
  if (std::find(extra_args.begin(), extra_args.end(), "--etcd") == extra_args.end()) args.push_back("--standalone");
  // Defaults for what the caller did not set itself.
  for (const auto& [flag, value] : {std::pair<std::string, std::string>{"--listen", "127.0.0.1:0"},
                                    {"--metrics-listen", "127.0.0.1:0"},
                                    {"--log-level", "warn"}}) {
    if (std::find(extra_args.begin(), extra_args.end(), flag) == extra_args.end()) {
      args.push_back(flag);
      args.push_back(value);
    }
  }
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) {
    error_ = "pipe failed";
    return;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[1]);
  const int rc = posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  stdout_fd_ = pipe_fds[0];
  if (rc != 0) {
    pid_ = -1;
    error_ = std::string("posix_spawn: ") + std::strerror(rc);
    return;
  }

  // Read the ready line: "kvstashd ready grpc=HOST:PORT metrics=HOST:PORT\n".
  std::string line;
  while (line.find('\n') == std::string::npos) {
    pollfd pfd{stdout_fd_, POLLIN, 0};
    if (poll(&pfd, 1, 60'000) <= 0) {
      error_ = "kvstashd printed no ready line within 60 s";
      return;
    }
    char buf[256];
    const ssize_t n = read(stdout_fd_, buf, sizeof(buf));
    if (n <= 0) {
      error_ = "kvstashd exited before it was ready (output: " + line + ")";
      return;
    }
    line.append(buf, static_cast<size_t>(n));
  }
  const size_t g = line.find("grpc="), m = line.find(" metrics=");
  if (line.rfind("kvstashd ready ", 0) != 0 || g == std::string::npos || m == std::string::npos) {
    error_ = "unexpected ready line: " + line;
    return;
  }
  grpc_address_ = line.substr(g + 5, m - g - 5);
  metrics_address_ = line.substr(m + 9, line.find('\n') - m - 9);
}

DaemonProcess::~DaemonProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

int DaemonProcess::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace kvstash::testing
