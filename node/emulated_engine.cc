#include "node/emulated_engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>

#include "scheduler/profile.h"

namespace kvstash::node {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kFirstSeed = 0x6b7673746173686eULL;  // "kvstashn"

// splitmix64's finaliser: a bijective, well-mixed 64-bit hash step.
uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t NextSeed(uint64_t previous, uint32_t token, uint32_t position) {
  return Mix64(previous ^ Mix64((uint64_t{position} << 32) | token));
}

// The word that fills one [layer][kv][head] run. Never the seed itself for layer 0 / K / head 0
// (that run starts with the seed, so ReadSeed can find it): its first word is overwritten below.
uint64_t Word(uint64_t seed, uint32_t layer, uint32_t kv, uint32_t head) {
  return Mix64(seed + ((uint64_t{layer} << 20) | (uint64_t{kv} << 19) | head));
}

}  // namespace

scheduler::ModelSpec SpecFromConfig(const ModelConfig& c, const scheduler::ModelSpec& hardware, uint32_t block_tokens) {
  scheduler::ModelSpec s = hardware;
  const double d = c.hidden_size, inter = c.intermediate_size, gqa = double(c.num_attention_heads) / c.num_key_value_heads;
  s.layers = c.num_hidden_layers;
  s.hidden = c.hidden_size;
  s.gqa = c.num_attention_heads / c.num_key_value_heads;
  s.elem_bytes = static_cast<uint32_t>(DTypeBytes(c.torch_dtype));
  s.attn_coeff = 4;
  s.linear_coeff = 2 * (2 + 2 / gqa + 3 * inter / d);
  const double per_layer = 2 * d * d + 2 * d * d / gqa + 3 * d * inter + 2 * d;
  s.params = c.num_hidden_layers * per_layer + double(c.vocab_size) * d * (c.tie_word_embeddings ? 1 : 2) + d;
  s.block_tokens = block_tokens;
  return s;
}

Result<std::unique_ptr<EmulatedEngine>> EmulatedEngine::Create(const ModelConfig& config, const EmulatedOptions& options,
                                                               uint32_t block_tokens) {
  KVSTASH_RETURN_IF_ERROR(config.Validate());
  if (!std::isfinite(options.time_scale) || options.time_scale < 0) {
    return InvalidArgument("time_scale must be finite and >= 0");
  }
  if (!(options.kv_bytes_scale > 0 && options.kv_bytes_scale <= 1)) return InvalidArgument("kv_bytes_scale must be in (0, 1]");
  const scheduler::ModelSpec spec = SpecFromConfig(config, options.hardware, block_tokens);
  if (!(spec.mfu > 0 && spec.mfu <= 1) || !(spec.mbu > 0 && spec.mbu <= 1) || !(spec.gpu_tflops > 0) ||
      !(spec.hbm_gbytes_s > 0) || spec.gpus == 0) {
    return InvalidArgument("hardware constants must be positive, with 0 < mfu, mbu <= 1");
  }
  scheduler::Profile profile = scheduler::DefaultProfile(spec);
  if (!options.profile.empty()) {
    KVSTASH_ASSIGN_OR_RETURN(profile, scheduler::LoadProfile(options.profile));
  }
  KVSTASH_ASSIGN_OR_RETURN(scheduler::CostModel cost, scheduler::CostModel::Fit(profile, spec, options.decode_max_batch));
  return std::unique_ptr<EmulatedEngine>(new EmulatedEngine(config, cost, options.time_scale, options.kv_bytes_scale));
}

KvGeometry EmulatedEngine::kv_geometry() const {
  const uint32_t element_bytes = static_cast<uint32_t>(DTypeBytes(config_.torch_dtype));
  KvGeometry g{config_.num_hidden_layers, config_.num_key_value_heads, config_.head_dim(), element_bytes};
  if (kv_bytes_scale_ >= 1) return g;
  // Shrink head_dim first (down to the 8 bytes a run needs for its seed), then the KV heads, then
  // the layers, until the bytes per token are the scaled size (or the 16-byte floor).
  const double target = double(g.BytesPerToken()) * kv_bytes_scale_;
  const uint32_t min_head_dim = (8 + element_bytes - 1) / element_bytes;
  auto shrink = [&](uint32_t& dim, uint32_t floor) {
    const double factor = target / double(g.BytesPerToken());
    if (factor < 1) dim = std::max(floor, static_cast<uint32_t>(std::lround(dim * factor)));
  };
  shrink(g.head_dim, min_head_dim);
  shrink(g.kv_heads, 1);
  shrink(g.layers, 1);
  return g;
}

uint64_t EmulatedEngine::ReadSeed(uint32_t position, std::span<const uint32_t> page_table, KvPagePool& pool) const {
  const uint32_t page_tokens = pool.page_tokens();
  const size_t run = size_t{pool.geometry().head_dim} * pool.geometry().element_bytes;
  uint64_t seed;
  std::memcpy(&seed, pool.Plane(page_table[position / page_tokens], 0, 0) + (position % page_tokens) * run, sizeof seed);
  return seed;
}

void EmulatedEngine::FillToken(uint64_t seed, uint32_t position, std::span<const uint32_t> page_table,
                               KvPagePool& pool) const {
  const KvGeometry g = pool.geometry();
  const uint32_t page_tokens = pool.page_tokens();
  const size_t run = size_t{g.head_dim} * g.element_bytes;  // bytes of one head's K (or V) of one token
  const uint32_t page = page_table[position / page_tokens], slot = position % page_tokens;
  for (uint32_t layer = 0; layer < g.layers; ++layer) {
    for (uint32_t kv = 0; kv < 2; ++kv) {
      std::byte* plane = pool.Plane(page, layer, kv);
      for (uint32_t head = 0; head < g.kv_heads; ++head) {
        std::byte* at = plane + (size_t{head} * page_tokens + slot) * run;
        const uint64_t word = Word(seed, layer, kv, head);
        size_t i = 0;
        for (; i + sizeof word <= run; i += sizeof word) std::memcpy(at + i, &word, sizeof word);
        std::memcpy(at + i, &word, run - i);
      }
    }
  }
  std::memcpy(pool.Plane(page, 0, 0) + slot * run, &seed, std::min(sizeof seed, run));
}

Status EmulatedEngine::Forward(std::span<const uint32_t> tokens, uint32_t start, std::span<const uint32_t> page_table,
                               KvPagePool& pool, std::vector<float>* logits, bool last_only) {
  if (!step_began_) step_began_ = Clock::now();
  const size_t n = tokens.size();
  KVSTASH_RETURN_IF_ERROR(ValidateStep(config_, kv_geometry(), /*needs_host=*/true, tokens, start, page_table, pool));
  uint64_t seed = start == 0 ? kFirstSeed : ReadSeed(start - 1, page_table, pool);
  if (logits != nullptr) logits->assign((last_only ? 1 : n) * size_t{config_.vocab_size}, 0.0f);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t position = start + static_cast<uint32_t>(i);
    seed = NextSeed(seed, tokens[i], position);
    FillToken(seed, position, page_table, pool);
    if (logits != nullptr && (!last_only || i + 1 == n)) {
      const size_t row = last_only ? 0 : i;
      (*logits)[row * config_.vocab_size + seed % config_.vocab_size] = 1.0f;
    }
  }
  return Status::Ok();
}

double EmulatedEngine::PredictSeconds(const StepShape& step) const {
  double seconds = 0;
  for (const StepShape::Chunk& c : step.prefill) seconds += cost_.PrefillSeconds(c.start + c.tokens, c.start);
  if (step.decode_sequences > 0) seconds += cost_.DecodeStepSeconds(step.decode_sequences, step.decode_context_tokens);
  return seconds;
}

void EmulatedEngine::FinishStep(const StepShape& step) {
  const Clock::time_point began = step_began_.value_or(Clock::now());
  step_began_.reset();
  const double seconds = PredictSeconds(step) * time_scale_;
  const auto due = began + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  // Layer-wise progress at each layer's share of the modelled step (layers take equal time).
  const uint32_t layers = config_.num_hidden_layers;
  for (uint32_t l = 1; l <= layers; ++l) {
    if (!ReportsLayer(l, layers)) continue;
    std::this_thread::sleep_until(began + std::chrono::duration_cast<Clock::duration>(
                                              std::chrono::duration<double>(seconds * l / layers)));
    ReportLayers(l, layers);
  }
  const Clock::time_point now = Clock::now();
  if (now < due) {
    std::this_thread::sleep_until(due);
  } else if (time_scale_ > 0) {
    overrun_us_.fetch_add(static_cast<uint64_t>(std::chrono::duration<double, std::micro>(now - due).count()),
                          std::memory_order_relaxed);
  }
}

std::vector<std::byte> EmulatedEngine::ExpectedBlock(std::span<const uint32_t> tokens, size_t block,
                                                     uint32_t block_tokens, uint32_t page_tokens) const {
  std::vector<std::byte> out;
  const size_t end = (block + 1) * size_t{block_tokens};
  if (page_tokens == 0 || block_tokens % page_tokens != 0 || tokens.size() < end) return out;
  const size_t pages = block_tokens / page_tokens;
  // A scratch pool holding just this block's pages; the seed chain runs over the whole prefix.
  Result<std::unique_ptr<PageMemory>> memory = AllocateHostPageMemory(pages * page_tokens * kv_geometry().BytesPerToken());
  if (!memory.ok()) return out;
  Result<std::unique_ptr<KvPagePool>> scratch = KvPagePool::Create(kv_geometry(), page_tokens, pages, std::move(*memory));
  if (!scratch.ok()) return out;
  KvPagePool& scratch_pool = **scratch;
  std::vector<uint32_t> table(pages);
  for (size_t p = 0; p < pages; ++p) table[p] = static_cast<uint32_t>(p);
  uint64_t seed = kFirstSeed;
  for (size_t i = 0; i < end; ++i) {
    seed = NextSeed(seed, tokens[i], static_cast<uint32_t>(i));
    if (i >= end - block_tokens) {
      // Positions of this block map onto the scratch pages 0..pages-1.
      FillToken(seed, static_cast<uint32_t>(i - (end - block_tokens)), table, scratch_pool);
    }
  }
  out.resize(pages * scratch_pool.page_bytes());
  for (size_t p = 0; p < pages; ++p) {
    (void)scratch_pool.ReadPage(static_cast<uint32_t>(p), std::span(out).subspan(p * scratch_pool.page_bytes(),
                                                                              scratch_pool.page_bytes()));
  }
  return out;
}

}  // namespace kvstash::node
