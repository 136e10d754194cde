// kvstash-sim: trace-driven simulations. Exit codes: 0 ok, 1 run failed, 2 usage error.
#include <CLI/CLI.hpp>

#include "scheduler/sim_commands.h"

int main(int argc, char** argv) {
  CLI::App app{"kvstash-sim: replay request traces over a simulated kvstash cluster",
               "kvstash-sim"};
  app.require_subcommand(1);
  int exit_code = 0;
  kvstash::scheduler::RegisterReplayCommand(app, &exit_code);
  kvstash::scheduler::RegisterCacheCommand(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return exit_code;
}
