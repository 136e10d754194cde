#include "node/logits_cmd.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "node/checkpoint.h"
#include "node/cpu_engine.h"
#include "node/kv_pages.h"

namespace kvstash::node {
namespace {

struct LogitsArgs {
  std::string model, out;
  std::vector<uint32_t> tokens;
  bool all_positions = false;
  size_t threads = 1;
  uint32_t page_tokens = 16;
  size_t chunk = 0;  // prefill chunk in tokens; 0 = the whole prompt at once
};

Status RunLogits(const LogitsArgs& a) {
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint, Checkpoint::Open(a.model));
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<CpuEngine> engine, CpuEngine::Load(*checkpoint, {a.threads}));
  if (a.tokens.empty()) return InvalidArgument("--tokens names no token");
  const size_t pages = (a.tokens.size() + a.page_tokens - 1) / a.page_tokens;
  KvPagePool pool(engine->config(), a.page_tokens, pages);
  std::vector<uint32_t> table;
  for (size_t i = 0; i < pages; ++i) table.push_back(*pool.Allocate());
  const size_t chunk = a.chunk == 0 ? a.tokens.size() : a.chunk;
  std::vector<float> all, step;
  for (size_t start = 0; start < a.tokens.size(); start += chunk) {
    const size_t n = std::min(chunk, a.tokens.size() - start);
    const bool last_chunk = start + n == a.tokens.size();
    const bool want = a.all_positions || last_chunk;
    KVSTASH_RETURN_IF_ERROR(engine->Forward(std::span(a.tokens).subspan(start, n), static_cast<uint32_t>(start), table,
                                            pool, want ? &step : nullptr, !a.all_positions));
    if (want) all.insert(all.end(), step.begin(), step.end());
  }
  std::ofstream out(a.out, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(all.data()), static_cast<std::streamsize>(all.size() * sizeof(float)));
  if (!out) return Unavailable("cannot write " + a.out);
  std::printf("wrote %zu logits (%zu positions x %u) to %s\n", all.size(), all.size() / engine->config().vocab_size,
              engine->config().vocab_size, a.out.c_str());
  return Status::Ok();
}

}  // namespace

void AddLogitsCommand(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<LogitsArgs>();
  CLI::App* cmd = app.add_subcommand("logits", "the cpu engine's logits for a token sequence, as raw fp32");
  cmd->add_option("--model", args->model, "model directory (config.json + *.safetensors)")->required();
  cmd->add_option("--tokens", args->tokens, "token ids, comma-separated")->required()->delimiter(',');
  cmd->add_option("--out", args->out, "file to write")->required();
  cmd->add_flag("--all-positions", args->all_positions, "every position's logits, not only the last");
  cmd->add_option("--threads", args->threads, "engine threads")->check(CLI::Range(1, 256));
  cmd->add_option("--page-tokens", args->page_tokens, "tokens per KV page")->check(CLI::Range(1, 4096));
  cmd->add_option("--chunk", args->chunk, "prefill chunk in tokens (0 = all at once)");
  cmd->callback([args, &exit_code] {
    const Status st = RunLogits(*args);
    if (!st.ok()) {
      std::cerr << "kvstash-node logits: " << st.ToString() << "\n";
      exit_code = 1;
    }
  });
}

}  // namespace kvstash::node
