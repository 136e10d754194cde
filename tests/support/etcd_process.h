// EtcdProcess: a real single-member etcd for integration tests: 127.0.0.1 on ports chosen at run
// time, a fresh temporary data directory (removed again), and a readiness check through its
// /health endpoint (bounded; no fixed sleeps).
#pragma once

#include <sys/types.h>

#include <string>

namespace kvstash::testing {

class EtcdProcess {
 public:
  // Starts `binary` (default: etcd on PATH) and waits up to 30 s for it to be healthy.
  explicit EtcdProcess(const std::string& binary = "etcd");
  ~EtcdProcess();  // SIGKILLs it and removes the data directory

  bool ok() const { return pid_ > 0 && error_.empty(); }
  const std::string& error() const { return error_; }
  // "http://127.0.0.1:PORT"
  const std::string& endpoint() const { return endpoint_; }

  // True when `binary` can be run here (for GTEST_SKIP with a clear message).
  static bool Available(const std::string& binary = "etcd");

  // An outage: SIGKILLs etcd, keeping its ports and data. Restart brings it back on the same
  // ports, with its data or (fresh) without it, and waits up to 30 s for it to be healthy; false
  // (and error()) when it is not.
  void Stop();
  bool Restart(bool fresh = false);

 private:
  // Starts etcd on the chosen ports and data directory and waits for /health; sets error_.
  void Spawn();

  std::string binary_;
  int client_port_ = 0;
  int peer_port_ = 0;
  pid_t pid_ = -1;
  std::string data_dir_;
  std::string endpoint_;
  std::string error_;
};

// A TCP port on 127.0.0.1 that was free a moment ago (for programs that cannot bind port 0 and
// report it).
int PickFreePort();

}  // namespace kvstash::testing
