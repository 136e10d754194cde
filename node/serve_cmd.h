// `kvstash-node serve`: loads a model on an engine, connects to a kvstash store (optional: a store
// that cannot be reached at start is logged and the node computes every prompt itself), runs a
// NodeRuntime, and serves the OpenAI-compatible HTTP API (http_api.h) and /metrics
// (node_metrics.h). Prints exactly one line on stdout once serving:
//   kvstash-node ready http=HOST:PORT metrics=HOST:PORT
// with the bound ports (port 0 picks one). SIGTERM or SIGINT: new requests get 503, those in flight
// finish and the background puts complete, then it exits 0.
#pragma once

#include <CLI/CLI.hpp>

namespace kvstash::node {

// Adds the subcommand to `app`; its callback runs the node until it is stopped and sets
// `exit_code` (0 after a clean stop, 1 when it could not start).
void AddServeCommand(CLI::App& app, int& exit_code);

}  // namespace kvstash::node
