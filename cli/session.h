// What every command does around its RPCs: exit codes, one-line error reports on stderr, key
// parsing, and connecting to the daemon. Called from the main thread only.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "cli/commands.h"
#include "kvstash/block_key.h"
#include "kvstash/client.h"
#include "kvstash/status.h"

namespace kvstash::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the operation failed (daemon said no, missing key, I/O)
inline constexpr int kExitUsage = 2;    // the command line was wrong; nothing was sent

// Prints "kvstash: <command>: <CODE>: <message>" to stderr and returns kExitFailure.
int ReportFailure(std::string_view command, const Status& status);
// Prints "kvstash: <command>: <message>" to stderr and returns kExitUsage.
int ReportUsage(std::string_view command, std::string_view message);

// Parses a key given on the command line (32 hex digits). On error prints a usage error naming
// `what` (e.g. "key", "--parent") and returns nullopt.
std::optional<BlockKey> ParseKeyArg(std::string_view command, std::string_view what,
                                    std::string_view text);

// A connected client, or the exit code to return. Failure to reach the daemon prints
// "kvstash: cannot reach kvstashd at ADDR: ..." (exit 1); a malformed address is a usage error.
struct Session {
  std::unique_ptr<Client> client;
  std::string address;
  int exit_code = kExitOk;  // meaningful only when client is null

  explicit operator bool() const { return client != nullptr; }
};
// Admin commands move block bytes inline over gRPC (DataPath::kInline): one short-lived process,
// no UCX endpoint worth setting up, and no leases left behind. `bench` picks its own path.
Session Connect(std::string_view command, const GlobalOptions& global, DataPath data_path = DataPath::kInline,
                const std::string& ucx_transports = "");

}  // namespace kvstash::cli
