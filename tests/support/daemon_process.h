// DaemonProcess: a real kvstashd child process for integration tests. Starts it on run-time
// ports (127.0.0.1:0) and waits for its ready line on stdout — no sleeps, no fixed ports.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace kvstash::testing {

class DaemonProcess {
 public:
  // Starts `binary --standalone --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --log-level warn
  // <extra_args>` (a default is left out when extra_args sets that flag itself; --standalone when it has --etcd) and blocks until it prints its ready line (or exits, or 60 s pass: then ok() is false).
  DaemonProcess(const std::string& binary, const std::vector<std::string>& extra_args);
  ~DaemonProcess();  // SIGKILLs the process if it is still running

  bool ok() const { return pid_ > 0 && !grpc_address_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& grpc_address() const { return grpc_address_; }
  const std::string& metrics_address() const { return metrics_address_; }
  pid_t pid() const { return pid_; }

  // Sends SIGTERM and waits; returns the exit status (or -1 when killed by a signal).
  int Stop();

 private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string grpc_address_;
  std::string metrics_address_;
  std::string error_;
};

}  // namespace kvstash::testing
