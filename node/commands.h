// kvstash-node's subcommands. Each Register* adds one to `app`; when it runs it sets *exit_code
// (0 ok, 1 failed). REQUIRES: exit_code outlives app.parse().
#pragma once

#include <CLI/CLI.hpp>

namespace kvstash::node {

// make-model --config C.json --seed S --out DIR: a seeded random checkpoint (random_model.h).
void RegisterMakeModelCommand(CLI::App& app, int* exit_code);

}  // namespace kvstash::node
