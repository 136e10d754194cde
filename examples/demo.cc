// kvstash-demo: the quickstart's workload, written only against the public SDK.
//
// It plays a small serving day: prompts made of one of a few shared "system prompts" plus a
// user-specific tail are hashed into chains and stored; then returning prompts, new prompts that
// share a system prompt, and entirely new prompts are looked up, and every hit is fetched and
// checked byte for byte. Exits non-zero if any fetched byte is wrong.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>

#include "kvstash/client.h"
#include "kvstash/prefix_hasher.h"

namespace {

using kvstash::BlockKey;

// Stand-in KV bytes: a function of the key, so any mix-up is caught on fetch.
std::vector<std::byte> KvBytesFor(const BlockKey& key, size_t size) {
  std::vector<std::byte> out(size);
  uint64_t x = key.High() ^ (key.Low() << 1);
  for (size_t i = 0; i < size; i += 8) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    std::memcpy(out.data() + i, &x, std::min<size_t>(8, size - i));
  }
  return out;
}

struct Tally {
  size_t prompts = 0, blocks = 0, hit_blocks = 0, fetched = 0, verified = 0, wrong = 0;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvstash-demo — puts, looks up and fetches a few hundred prefix chains"};
  std::string addr = "127.0.0.1:7370";
  size_t chains = 300;
  size_t block_bytes = 32 * 1024;
  uint32_t block_tokens = 512;
  app.add_option("--addr", addr, "kvstashd address HOST:PORT");
  app.add_option("--chains", chains, "prompts to store")->check(CLI::Range(1, 100000));
  app.add_option("--block-bytes", block_bytes, "bytes of KV per block")->check(CLI::Range(1, 64 << 20));
  app.add_option("--block-tokens", block_tokens, "tokens per block")->check(CLI::Range(1, 65536));
  CLI11_PARSE(app, argc, argv);

  kvstash::ClientOptions options;
  options.address = addr;
  auto connected = kvstash::Client::Connect(options);
  if (!connected.ok()) {
    std::fprintf(stderr, "kvstash-demo: %s\n", connected.status().ToString().c_str());
    return 1;
  }
  kvstash::Client& client = **connected;
  const kvstash::PrefixHasher hasher(kvstash::Namespace{"demo-llama-8b", "vllm", "fp16", 0}, block_tokens);

  std::mt19937_64 rng(7);
  constexpr size_t kSystemPrompts = 8;
  std::vector<std::vector<uint32_t>> system_prompts(kSystemPrompts);
  for (auto& sp : system_prompts) {
    sp.resize(block_tokens * (2 + rng() % 3));  // 2..4 blocks shared by every prompt that uses it
    for (auto& t : sp) t = static_cast<uint32_t>(rng() % 128000);
  }
  auto make_prompt = [&](bool with_system_prompt) {
    std::vector<uint32_t> tokens;
    if (with_system_prompt) tokens = system_prompts[rng() % kSystemPrompts];
    const size_t tail = block_tokens * (1 + rng() % 8) + rng() % block_tokens;  // ends mid-block
    for (size_t i = 0; i < tail; ++i) tokens.push_back(static_cast<uint32_t>(rng() % 128000));
    return tokens;
  };

  const auto start = std::chrono::steady_clock::now();
  // 1. Store the prompts' KV.
  std::vector<std::vector<uint32_t>> stored_prompts;
  size_t stored = 0, existed = 0, failed = 0;
  uint64_t bytes_put = 0;
  for (size_t c = 0; c < chains; ++c) {
    stored_prompts.push_back(make_prompt(c % 5 != 0));
    const auto chain = hasher.Chain(stored_prompts.back());
    std::vector<std::vector<std::byte>> blocks;
    std::vector<std::span<const std::byte>> spans;
    for (const auto& key : chain) blocks.push_back(KvBytesFor(key, block_bytes));
    for (const auto& b : blocks) spans.emplace_back(b);
    auto put = client.PutChain(chain, spans);
    if (!put.ok()) {
      std::fprintf(stderr, "kvstash-demo: put: %s\n", put.status().ToString().c_str());
      return 1;
    }
    stored += put->stored;
    existed += put->existed;
    failed += put->failed;
    bytes_put += put->stored * block_bytes;
  }

  // 2. Look up and fetch three kinds of prompts.
  auto serve = [&](const std::vector<uint32_t>& prompt, Tally& tally) -> bool {
    const auto chain = hasher.Chain(prompt);
    ++tally.prompts;
    tally.blocks += chain.size();
    auto lookup = client.Lookup(chain);
    if (!lookup.ok()) {
      std::fprintf(stderr, "kvstash-demo: lookup: %s\n", lookup.status().ToString().c_str());
      return false;
    }
    tally.hit_blocks += lookup->hit_blocks;
    std::vector<std::byte> buffer(lookup->hit_blocks * block_bytes);
    std::vector<kvstash::GetItem> items(lookup->hit_blocks);
    for (size_t i = 0; i < items.size(); ++i) {
      items[i].key = chain[i];
      items[i].buffer = std::span(buffer).subspan(i * block_bytes, block_bytes);
    }
    if (kvstash::Status st = client.Get(items); !st.ok()) {
      std::fprintf(stderr, "kvstash-demo: get: %s\n", st.ToString().c_str());
      return false;
    }
    for (const auto& item : items) {
      if (!item.found) continue;  // evicted between lookup and get: a miss, not an error
      ++tally.fetched;
      const auto expected = KvBytesFor(item.key, block_bytes);
      if (item.size == block_bytes && std::memcmp(item.buffer.data(), expected.data(), block_bytes) == 0) {
        ++tally.verified;
      } else {
        ++tally.wrong;
      }
    }
    return true;
  };
  Tally returning, shared, novel;
  for (const auto& prompt : stored_prompts) {
    if (!serve(prompt, returning)) return 1;
  }
  for (size_t i = 0; i < chains / 3; ++i) {
    if (!serve(make_prompt(true), shared)) return 1;
  }
  for (size_t i = 0; i < chains / 6; ++i) {
    if (!serve(make_prompt(false), novel)) return 1;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::printf("kvstash demo against %s (block = %u tokens, %zu bytes)\n", addr.c_str(), block_tokens, block_bytes);
  std::printf("  put   %zu prompts: %zu blocks stored, %zu deduplicated (shared system prompts), %zu refused; "
              "%.1f MiB sent\n",
              chains, stored, existed, failed, static_cast<double>(bytes_put) / (1 << 20));
  std::printf("  %-34s %8s %8s %8s %9s %9s\n", "lookup + get", "prompts", "blocks", "hits", "hit ratio", "verified");
  auto row = [&](const char* name, const Tally& t) {
    std::printf("  %-34s %8zu %8zu %8zu %8.1f%% %9zu\n", name, t.prompts, t.blocks, t.hit_blocks,
                t.blocks ? 100.0 * static_cast<double>(t.hit_blocks) / static_cast<double>(t.blocks) : 0.0,
                t.verified);
  };
  Tally total;
  for (const Tally* t : {&returning, &shared, &novel}) {
    total.prompts += t->prompts;
    total.blocks += t->blocks;
    total.hit_blocks += t->hit_blocks;
    total.fetched += t->fetched;
    total.verified += t->verified;
    total.wrong += t->wrong;
  }
  row("returning prompts", returning);
  row("new prompts, shared system prompt", shared);
  row("new prompts, nothing shared", novel);
  row("all", total);
  std::printf("  misses: %zu blocks; fetched %zu hit blocks, %zu byte-exact, %zu wrong; %.2f s\n",
              total.blocks - total.hit_blocks, total.fetched, total.verified, total.wrong, seconds);
  return total.wrong == 0 ? 0 : 1;
}
