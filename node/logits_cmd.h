// `kvstash-node logits`: the cpu engine's logits for one token sequence, written as raw fp32
// (tokens x vocab, or the last token's only) — what the PyTorch reference test compares.
#pragma once

#include <CLI/CLI.hpp>

namespace kvstash::node {

// Adds the subcommand to `app`; its callback runs it and sets `exit_code`.
void AddLogitsCommand(CLI::App& app, int& exit_code);

}  // namespace kvstash::node
