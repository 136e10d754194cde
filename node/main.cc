// kvstash-node: the inference-node runtime. Exit codes: 0 ok, 1 command failed, 2 usage error.
#include <CLI/CLI.hpp>

#include "node/commands.h"
#include "node/logits_cmd.h"
#include "node/serve_cmd.h"

int main(int argc, char** argv) {
  CLI::App app{"kvstash-node: the inference-node runtime of kvstash", "kvstash-node"};
  app.require_subcommand(1);
  // One TOML file of flags, a section per subcommand, keys named as the long flags without their
  // dashes (`[serve]` / `http-listen = "127.0.0.1:8000"`); flags on the command line win. An unknown
  // key is an error rather than silently ignored. deploy/kvstash-node.toml shows every serve key.
  app.set_config("--config", "", "TOML file of flags ([serve] section; see deploy/kvstash-node.toml)");
  app.allow_config_extras(CLI::config_extras_mode::error);
  int exit_code = 0;
  kvstash::node::RegisterMakeModelCommand(app, &exit_code);
  kvstash::node::AddLogitsCommand(app, exit_code);
  kvstash::node::AddServeCommand(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return exit_code;
}
