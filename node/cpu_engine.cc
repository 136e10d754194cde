#include "node/cpu_engine.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace kvstash::node {
namespace {

// Eight partial sums in a fixed order: vectorisable, and the same bits on every run.
float Dot(const float* a, const float* b, size_t n) {
  float lanes[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (size_t l = 0; l < 8; ++l) lanes[l] += a[i + l] * b[i + l];
  }
  float sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

float Silu(float x) { return x / (1.0f + std::exp(-x)); }

std::string LayerName(uint32_t layer, const char* rest) {
  return "model.layers." + std::to_string(layer) + "." + rest;
}

}  // namespace

Result<std::unique_ptr<CpuEngine>> CpuEngine::Load(const Checkpoint& checkpoint, const CpuEngineOptions& options) {
  const ModelConfig& c = checkpoint.config();
  KVSTASH_RETURN_IF_ERROR(c.Validate());
  std::unique_ptr<CpuEngine> engine(new CpuEngine(c, std::max<size_t>(options.threads, 1)));
  const uint64_t hidden = c.hidden_size, hd = c.head_dim(), heads = c.num_attention_heads,
                 kv = c.num_key_value_heads, inter = c.intermediate_size, vocab = c.vocab_size;
  auto load = [&](const std::string& name, std::initializer_list<uint64_t> shape, std::vector<float>& into) -> Status {
    const std::vector<uint64_t> dims(shape);
    KVSTASH_ASSIGN_OR_RETURN(into, checkpoint.LoadF32(name, dims));
    return Status::Ok();
  };
  KVSTASH_RETURN_IF_ERROR(load("model.embed_tokens.weight", {vocab, hidden}, engine->embed_));
  KVSTASH_RETURN_IF_ERROR(load("model.norm.weight", {hidden}, engine->final_norm_));
  if (!c.tie_word_embeddings) KVSTASH_RETURN_IF_ERROR(load("lm_head.weight", {vocab, hidden}, engine->lm_head_));
  engine->layers_.resize(c.num_hidden_layers);
  for (uint32_t l = 0; l < c.num_hidden_layers; ++l) {
    Layer& w = engine->layers_[l];
    KVSTASH_RETURN_IF_ERROR(load(LayerName(l, "input_layernorm.weight"), {hidden}, w.input_norm));
    KVSTASH_RETURN_IF_ERROR(load(LayerName(l, "self_attn.q_proj.weight"), {heads * hd, hidden}, w.q));
    KVSTASH_RETURN_IF_ERROR(load(LayerName(l, "self_attn.k_proj.weight"), {kv * hd, hidden}, w.k));
    KVSTASH_RETURN_IF_ERROR(load(LayerName(l, "self_attn.v_proj.weight"), {kv * hd, hidden}, w.v));
    KVSTASH_RETURN_IF_ERROR(load(LayerName(l, "self_attn.o_proj.weight"), {hidden, heads * hd}, w.o));
    KVSTASH_RETURN_IF_ERROR(load(LayerName(l, "post_attention_layernorm.weight"), {hidden}, w.post_norm));
    KVSTASH_RETURN_IF_ERROR(load(LayerName(l, "mlp.gate_proj.weight"), {inter, hidden}, w.gate));
    KVSTASH_RETURN_IF_ERROR(load(LayerName(l, "mlp.up_proj.weight"), {inter, hidden}, w.up));
    KVSTASH_RETURN_IF_ERROR(load(LayerName(l, "mlp.down_proj.weight"), {hidden, inter}, w.down));
  }
  // As Hugging Face computes them: theta ** (2i / d) in fp32, then 1 / that.
  for (uint64_t i = 0; i < hd / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(hd);
    engine->inv_freq_.push_back(1.0f / std::pow(static_cast<float>(c.rope_theta), exponent));
  }
  return engine;
}

void CpuEngine::MatMul(const float* in, size_t n, const std::vector<float>& w, size_t rows, size_t cols, float* out) {
  pool_.ParallelFor(rows, [&](size_t begin, size_t end) {
    for (size_t r = begin; r < end; ++r) {
      const float* row = w.data() + r * cols;
      for (size_t t = 0; t < n; ++t) out[t * rows + r] = Dot(row, in + t * cols, cols);
    }
  });
}

void CpuEngine::RmsNorm(const float* in, size_t n, const std::vector<float>& weight, float* out) const {
  const size_t hidden = config_.hidden_size;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  for (size_t t = 0; t < n; ++t) {
    const float* x = in + t * hidden;
    const float mean_square = Dot(x, x, hidden) / static_cast<float>(hidden);
    const float scale = 1.0f / std::sqrt(mean_square + eps);
    for (size_t i = 0; i < hidden; ++i) out[t * hidden + i] = weight[i] * (x[i] * scale);
  }
}

void CpuEngine::Rope(float* x, size_t n, uint32_t start, uint32_t heads) const {
  const size_t hd = config_.head_dim(), half = hd / 2;
  for (size_t t = 0; t < n; ++t) {
    const float pos = static_cast<float>(start + t);
    for (size_t i = 0; i < half; ++i) {
      const float angle = pos * inv_freq_[i];
      const float c = std::cos(angle), s = std::sin(angle);
      for (uint32_t h = 0; h < heads; ++h) {
        float* v = x + (t * heads + h) * hd;
        const float a = v[i], b = v[i + half];
        v[i] = a * c - b * s;
        v[i + half] = b * c + a * s;
      }
    }
  }
}

void CpuEngine::Attention(const float* q, size_t n, uint32_t start, std::span<const uint32_t> page_table,
                          const KvPagePool& pool, uint32_t layer, float* out) {
  const uint32_t heads = config_.num_attention_heads, kv_heads = config_.num_key_value_heads;
  const size_t hd = config_.head_dim(), page_tokens = pool.page_tokens();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  pool_.ParallelFor(n * heads, [&](size_t begin, size_t end) {
    std::vector<float> scores;
    for (size_t job = begin; job < end; ++job) {
      const size_t t = job / heads, h = job % heads, g = h / (heads / kv_heads);
      const float* qv = q + (t * heads + h) * hd;
      const size_t visible = start + t + 1;
      scores.resize(visible);
      float max_score = -INFINITY;
      for (size_t p = 0; p < visible; ++p) {
        const float* k = pool.K(page_table[p / page_tokens], layer) + (g * page_tokens + p % page_tokens) * hd;
        scores[p] = Dot(qv, k, hd) * scale;
        max_score = std::max(max_score, scores[p]);
      }
      float sum = 0.0f;
      for (size_t p = 0; p < visible; ++p) {
        scores[p] = std::exp(scores[p] - max_score);
        sum += scores[p];
      }
      float* o = out + (t * heads + h) * hd;
      std::fill(o, o + hd, 0.0f);
      for (size_t p = 0; p < visible; ++p) {
        const float weight = scores[p] / sum;
        const float* v = pool.V(page_table[p / page_tokens], layer) + (g * page_tokens + p % page_tokens) * hd;
        for (size_t i = 0; i < hd; ++i) o[i] += weight * v[i];
      }
    }
  });
}

Status CpuEngine::Forward(std::span<const uint32_t> tokens, uint32_t start, std::span<const uint32_t> page_table,
                          KvPagePool& pool, std::vector<float>* logits, bool last_only) {
  const ModelConfig& c = config_;
  const size_t n = tokens.size();
  KVSTASH_RETURN_IF_ERROR(ValidateStep(c, kv_geometry(), /*needs_host=*/true, tokens, start, page_table, pool));
  const size_t hidden = c.hidden_size, hd = c.head_dim(), heads = c.num_attention_heads,
               kv = c.num_key_value_heads, inter = c.intermediate_size, page_tokens = pool.page_tokens();
  std::vector<float> x(n * hidden), h(n * hidden), q(n * heads * hd), k(n * kv * hd), v(n * kv * hd),
      attn(n * heads * hd), proj(n * hidden), gate(n * inter), up(n * inter);
  for (size_t t = 0; t < n; ++t) {
    std::copy_n(embed_.data() + static_cast<size_t>(tokens[t]) * hidden, hidden, x.data() + t * hidden);
  }
  for (uint32_t l = 0; l < c.num_hidden_layers; ++l) {
    const Layer& w = layers_[l];
    RmsNorm(x.data(), n, w.input_norm, h.data());
    MatMul(h.data(), n, w.q, heads * hd, hidden, q.data());
    MatMul(h.data(), n, w.k, kv * hd, hidden, k.data());
    MatMul(h.data(), n, w.v, kv * hd, hidden, v.data());
    Rope(q.data(), n, start, static_cast<uint32_t>(heads));
    Rope(k.data(), n, start, static_cast<uint32_t>(kv));
    for (size_t t = 0; t < n; ++t) {
      const size_t pos = start + t;
      const uint32_t page = page_table[pos / page_tokens];
      for (size_t g = 0; g < kv; ++g) {
        const size_t at = (g * page_tokens + pos % page_tokens) * hd;
        std::copy_n(k.data() + (t * kv + g) * hd, hd, pool.K(page, l) + at);
        std::copy_n(v.data() + (t * kv + g) * hd, hd, pool.V(page, l) + at);
      }
    }
    ReportLayers(l + 1, c.num_hidden_layers);
    Attention(q.data(), n, start, page_table, pool, l, attn.data());
    MatMul(attn.data(), n, w.o, hidden, heads * hd, proj.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += proj[i];
    RmsNorm(x.data(), n, w.post_norm, h.data());
    MatMul(h.data(), n, w.gate, inter, hidden, gate.data());
    MatMul(h.data(), n, w.up, inter, hidden, up.data());
    for (size_t i = 0; i < gate.size(); ++i) gate[i] = Silu(gate[i]) * up[i];
    MatMul(gate.data(), n, w.down, hidden, inter, proj.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += proj[i];
  }
  if (logits == nullptr) return Status::Ok();
  const size_t first = last_only ? n - 1 : 0, rows = n - first;
  RmsNorm(x.data() + first * hidden, rows, final_norm_, h.data());
  logits->assign(rows * c.vocab_size, 0.0f);
  MatMul(h.data(), rows, lm_head_.empty() ? embed_ : lm_head_, c.vocab_size, hidden, logits->data());
  return Status::Ok();
}

}  // namespace kvstash::node
