// kvstashd: the kvstash storage daemon. See README.md ("Run a daemon by hand") and
// deploy/kvstashd.toml. Prints exactly one line on stdout once serving:
//   kvstashd ready grpc=HOST:PORT metrics=HOST:PORT
// so that scripts and tests can wait for it without sleeping. Stops gracefully on SIGTERM/SIGINT;
// SIGHUP re-reads the tokens file (--tokens-file).
#include <signal.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cerrno>
#include <cstdio>
#include <string>
#include <thread>

#include "common/logging.h"
#include "server/daemon.h"
#include "server/daemon_config.h"
#include "server/version.h"

int main(int argc, char** argv) {
  using namespace kvstash;
  // Block the stop signals in every thread (threads inherit the mask); this thread waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);  // re-read the tokens file (docs/SECURITY.md)
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Result<server::DaemonConfig> config = server::ParseCommandLine(argc, argv);
  if (!config.ok()) {
    if (config.status().message() == "exit:0") return 0;
    std::fprintf(stderr, "kvstashd: %s\n", config.status().message().c_str());
    return 2;
  }
  if (Status s = InitLogging(settings::Name(config->log_level)); !s.ok()) {
    std::fprintf(stderr, "kvstashd: %s\n", s.message().c_str());
    return 2;
  }
  spdlog::info("kvstashd {} starting ({})", kVersion, config->standalone ? "standalone" : "cluster " + config->cluster);
  Result<std::unique_ptr<server::Daemon>> daemon = server::Daemon::Start(*config);
  if (!daemon.ok()) {
    spdlog::error("cannot start: {}", daemon.status().ToString());
    return 1;
  }
  spdlog::info("serving gRPC on {} and /metrics on {}", (*daemon)->grpc_address(), (*daemon)->metrics_address());
  std::printf("kvstashd ready grpc=%s metrics=%s\n", (*daemon)->grpc_address().c_str(),
              (*daemon)->metrics_address().c_str());
  std::fflush(stdout);

  int signal_number = 0;
  for (;;) {
    siginfo_t info{};
    signal_number = sigwaitinfo(&stop_signals, &info);
    if (signal_number < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (signal_number != SIGHUP) break;
    // An admin action: logged with who sent it (a signal's sender is a local process: its pid and uid).
    const std::string sender = "pid " + std::to_string(info.si_pid) + " uid " + std::to_string(info.si_uid);
    if (Status reloaded = (*daemon)->ReloadTokens(); !reloaded.ok()) {
      spdlog::error("SIGHUP from {}: not reloaded, the previous tokens or quotas stay in force: {}", sender,
                    reloaded.ToString());
    } else {
      spdlog::info("SIGHUP from {}: tokens file (and quotas file, if any) reloaded", sender);
    }
  }
  spdlog::info("received {}, stopping", signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
  const auto t0 = std::chrono::steady_clock::now();
  (*daemon)->Shutdown();
  const auto t1 = std::chrono::steady_clock::now();
  daemon->reset();  // unmaps the arena and closes the tiers: most of a stop's time for a large arena
  const auto t2 = std::chrono::steady_clock::now();
  using Seconds = std::chrono::duration<double>;
  spdlog::info("stopped cleanly in {:.2f} s (services {:.2f} s, releasing memory and tiers {:.2f} s)",
               Seconds(t2 - t0).count(), Seconds(t1 - t0).count(), Seconds(t2 - t1).count());
  return 0;
}
