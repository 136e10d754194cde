// Subcommands of kvstash-sim. Each lives in its own file and registers itself on the root app; its
// callback runs the command and stores the process exit code (0 ok, 1 failed) in *exit_code.
// sim_main.cc holds one registration line per subcommand.
#pragma once

#include <CLI/CLI.hpp>

namespace kvstash::scheduler {

void RegisterReplayCommand(CLI::App& app, int* exit_code);
void RegisterCacheCommand(CLI::App& app, int* exit_code);

}  // namespace kvstash::scheduler
