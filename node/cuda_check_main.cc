// kvstash-node-cuda-check: the cuda engine on one model, for the device checks (tests/device/node_*.sh).
//
//   --out FILE          the logits of --tokens as raw fp32 (the last position's, or every position's
//                       with --all-positions), prefilled in chunks of --chunk tokens, as
//                       `kvstash-node logits` writes the cpu engine's; the reference script compares
//                       them with transformers' LlamaForCausalLM.
//   --prefix-tokens P   then a cached-prefix replay: the KV of the first P tokens is read out of the
//                       pages (ReadPage), written into other pages of a second pool poisoned with NaN,
//                       the rest of the prompt computed from position P and --greedy tokens decoded;
//                       the same for the uncached run. Prints both token lists and whether they agree.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "node/checkpoint.h"
#include "node/cuda_engine.h"
#include "node/kv_pages.h"

namespace kvstash::node {
namespace {

struct Args {
  std::string model, out;
  std::vector<uint32_t> tokens;
  bool all_positions = false;
  uint32_t page_tokens = 16;
  size_t chunk = 0, prefix_tokens = 0, greedy = 16;
  int device = 0;
};

uint32_t Argmax(const float* v, size_t n) {
  return static_cast<uint32_t>(std::max_element(v, v + n) - v);
}

Result<std::unique_ptr<KvPagePool>> MakePool(CudaEngine& engine, uint32_t page_tokens, size_t pages, bool poison) {
  const KvGeometry g = engine.kv_geometry();
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<PageMemory> memory,
                           engine.AllocatePageMemory(pages * page_tokens * g.BytesPerToken()));
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<KvPagePool> pool,
                           KvPagePool::Create(g, page_tokens, pages, std::move(memory)));
  if (poison) {  // 0x7fc0 is a NaN in bf16 and fp16 alike: a page read before it is written shows
    std::vector<uint16_t> nan(pool->page_bytes() / 2, 0x7fc0);
    for (uint32_t p = 0; p < pages; ++p) {
      KVSTASH_RETURN_IF_ERROR(pool->WritePage(p, std::as_bytes(std::span(nan))));
    }
  }
  return pool;
}

// Prefills `prompt` from `from` in chunks, then decodes `greedy` tokens; returns them.
Result<std::vector<uint32_t>> Generate(CudaEngine& engine, KvPagePool& pool, const std::vector<uint32_t>& table,
                                       const std::vector<uint32_t>& prompt, size_t from, size_t chunk, size_t greedy,
                                       std::vector<float>* first_logits) {
  std::vector<float> logits;
  for (size_t at = from; at < prompt.size();) {
    const size_t n = std::min(chunk, prompt.size() - at);
    KVSTASH_RETURN_IF_ERROR(engine.Forward(std::span(prompt).subspan(at, n), static_cast<uint32_t>(at), table, pool,
                                           at + n == prompt.size() ? &logits : nullptr));
    at += n;
  }
  if (first_logits != nullptr) *first_logits = logits;
  std::vector<uint32_t> out;
  const size_t vocab = engine.config().vocab_size;
  for (size_t i = 0; i < greedy; ++i) {
    const uint32_t next = Argmax(logits.data(), vocab);
    out.push_back(next);
    if (i + 1 == greedy) break;
    KVSTASH_RETURN_IF_ERROR(
        engine.Forward(std::span(&out.back(), 1), static_cast<uint32_t>(prompt.size() + i), table, pool, &logits));
  }
  return out;
}

Status Run(const Args& a) {
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint, Checkpoint::Open(a.model));
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<CudaEngine> engine, CudaEngine::Load(*checkpoint, {a.device, {}}));
  if (a.tokens.empty()) return InvalidArgument("--tokens names no token");
  const size_t total = a.tokens.size() + a.greedy;
  const size_t pages = (total + a.page_tokens - 1) / a.page_tokens;
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<KvPagePool> pool, MakePool(*engine, a.page_tokens, pages, true));
  std::vector<uint32_t> table(pages);
  std::iota(table.begin(), table.end(), 0u);
  const size_t chunk = a.chunk == 0 ? a.tokens.size() : a.chunk;
  std::vector<float> all, step;
  for (size_t start = 0; start < a.tokens.size(); start += chunk) {
    const size_t n = std::min(chunk, a.tokens.size() - start);
    const bool want = a.all_positions || start + n == a.tokens.size();
    KVSTASH_RETURN_IF_ERROR(engine->Forward(std::span(a.tokens).subspan(start, n), static_cast<uint32_t>(start), table,
                                            *pool, want ? &step : nullptr, !a.all_positions));
    if (want) all.insert(all.end(), step.begin(), step.end());
  }
  if (!a.out.empty()) {
    std::ofstream out(a.out, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(all.data()), static_cast<std::streamsize>(all.size() * sizeof(float)));
    if (!out) return Unavailable("cannot write " + a.out);
    std::printf("wrote %zu logits (%zu positions x %u) to %s\n", all.size(), all.size() / engine->config().vocab_size,
                engine->config().vocab_size, a.out.c_str());
  }
  if (a.prefix_tokens == 0) return Status::Ok();
  if (a.prefix_tokens % a.page_tokens != 0 || a.prefix_tokens >= a.tokens.size()) {
    return InvalidArgument("--prefix-tokens must be a multiple of --page-tokens below the prompt's length");
  }
  // Uncached: a fresh poisoned pool, the whole prompt computed.
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<KvPagePool> whole, MakePool(*engine, a.page_tokens, pages, true));
  std::vector<float> uncached_logits, cached_logits;
  KVSTASH_ASSIGN_OR_RETURN(std::vector<uint32_t> uncached,
                           Generate(*engine, *whole, table, a.tokens, 0, chunk, a.greedy, &uncached_logits));
  // Cached: the prefix's pages copied as bytes into shuffled pages of another poisoned pool.
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<KvPagePool> other, MakePool(*engine, a.page_tokens, pages, true));
  std::vector<uint32_t> shuffled = table;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(11));
  std::vector<std::byte> bytes(whole->page_bytes());
  for (size_t p = 0; p < a.prefix_tokens / a.page_tokens; ++p) {
    KVSTASH_RETURN_IF_ERROR(whole->ReadPage(table[p], bytes));
    KVSTASH_RETURN_IF_ERROR(other->WritePage(shuffled[p], bytes));
  }
  KVSTASH_ASSIGN_OR_RETURN(std::vector<uint32_t> cached, Generate(*engine, *other, shuffled, a.tokens, a.prefix_tokens,
                                                                  chunk, a.greedy, &cached_logits));
  double max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < uncached_logits.size(); ++i) {
    max_diff = std::max<double>(max_diff, std::abs(uncached_logits[i] - cached_logits[i]));
    max_abs = std::max<double>(max_abs, std::abs(uncached_logits[i]));
  }
  auto list = [](const std::vector<uint32_t>& v) {
    std::string s;
    for (uint32_t t : v) s += (s.empty() ? "" : ",") + std::to_string(t);
    return s;
  };
  std::printf("uncached greedy: %s\ncached   greedy: %s\n", list(uncached).c_str(), list(cached).c_str());
  std::printf("cached-prefix check: prompt %zu tokens, prefix %zu from pages, first logits max |diff| %.3g (max |logit| "
              "%.3g), greedy tokens %s\n",
              a.tokens.size(), a.prefix_tokens, max_diff, max_abs, uncached == cached ? "EQUAL" : "DIFFER");
  return uncached == cached ? Status::Ok() : Internal("greedy tokens differ between cached and uncached runs");
}

}  // namespace
}  // namespace kvstash::node

int main(int argc, char** argv) {
  kvstash::node::Args a;
  CLI::App app{"kvstash-node-cuda-check: the cuda engine's logits and a cached-prefix replay"};
  app.add_option("--model", a.model, "model directory (config.json + *.safetensors)")->required();
  app.add_option("--tokens", a.tokens, "token ids, comma-separated")->required()->delimiter(',');
  app.add_option("--out", a.out, "file for the logits (raw fp32)");
  app.add_flag("--all-positions", a.all_positions, "every position's logits, not only the last");
  app.add_option("--page-tokens", a.page_tokens, "tokens per KV page")->check(CLI::Range(1, 4096));
  app.add_option("--chunk", a.chunk, "prefill chunk in tokens (0 = all at once)");
  app.add_option("--prefix-tokens", a.prefix_tokens, "cached-prefix replay: tokens taken from pages");
  app.add_option("--greedy", a.greedy, "greedy tokens decoded in the replay")->check(CLI::Range(1, 4096));
  app.add_option("--device", a.device, "CUDA device");
  CLI11_PARSE(app, argc, argv);
  const kvstash::Status st = kvstash::node::Run(a);
  if (!st.ok()) {
    std::cerr << "kvstash-node-cuda-check: " << st.ToString() << "\n";
    return 1;
  }
  return 0;
}
