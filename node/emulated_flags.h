// The emulated engine's command-line flags: the hardware of one instance, a measured profile, the
// time scale. Shared by `kvstash-node serve` and kvstash-bench-node.
#pragma once

#include <CLI/CLI.hpp>

#include "node/emulated_engine.h"

namespace kvstash::node {

void AddEmulatedFlags(CLI::App* cmd, EmulatedOptions& options);

}  // namespace kvstash::node
