#include "node/cuda_engine.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "gpu/cuda_util.h"
#include "node/cuda_kernels.h"
#include "node/float16.h"
#include "node/llama_tensors.h"

namespace kvstash::node {
namespace {

using gpu::CudaStatus;

Status BlasStatus(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return Status::Ok();
  std::string msg = std::string(what) + ": " + cublasGetStatusName(s) + ": " + cublasGetStatusString(s);
  if (s == CUBLAS_STATUS_ALLOC_FAILED) return ResourceExhausted(std::move(msg));
  if (s == CUBLAS_STATUS_NOT_INITIALIZED) return Unavailable(std::move(msg));
  return Internal(std::move(msg));
}

std::string ShapeText(std::span<const uint64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

struct CudaEngine::Impl {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cuda::Half half = cuda::Half::kBf16;
  cudaDataType_t cuda_half = CUDA_R_16BF;

  struct Layer {
    void *input_norm = nullptr, *qkv = nullptr, *o = nullptr, *post_norm = nullptr, *gate_up = nullptr,
         *down = nullptr;
  };
  void *embed = nullptr, *final_norm = nullptr, *lm_head = nullptr;  // lm_head == embed when tied
  std::vector<Layer> layers;
  float* inv_freq = nullptr;
  std::vector<void*> owned;  // every cudaMalloc above and below

  // Scratch for up to cap_tokens tokens per step (grown on demand).
  size_t cap_tokens = 0, cap_pages = 0, cap_logits = 0;
  float* x = nullptr;
  void *h = nullptr, *qkv = nullptr, *attn = nullptr, *gate_up = nullptr, *act = nullptr;
  uint32_t *tokens = nullptr, *pages = nullptr;
  float* logits = nullptr;

  ~Impl() {
    if (stream != nullptr) cudaStreamSynchronize(stream);
    for (void* p : owned) cudaFree(p);
    for (void* p : {static_cast<void*>(x), h, qkv, attn, gate_up, act, static_cast<void*>(tokens),
                    static_cast<void*>(pages), static_cast<void*>(logits)}) {
      if (p != nullptr) cudaFree(p);
    }
    if (blas != nullptr) cublasDestroy(blas);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  Result<void*> Upload(const void* host, size_t bytes) {
    void* p = nullptr;
    KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaMalloc(&p, bytes), "cudaMalloc of " + std::to_string(bytes) + " bytes of weights"));
    owned.push_back(p);
    KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice), "uploading weights"));
    return p;
  }

  // The named tensors, checked against their shapes, converted to the engine's 16-bit type and
  // concatenated along the first dimension into one device array.
  Result<void*> Load(const Checkpoint& ckpt, const std::vector<std::pair<std::string, std::vector<uint64_t>>>& parts) {
    const DType want = half == cuda::Half::kBf16 ? DType::kBF16 : DType::kF16;
    std::vector<std::byte> bytes;
    for (const auto& [name, shape] : parts) {
      const TensorView* view = ckpt.Find(name);
      if (view == nullptr) return NotFound("tensor \"" + name + "\" is not in " + ckpt.dir().string());
      if (view->shape != shape) {
        return InvalidArgument("tensor \"" + name + "\" has shape " + ShapeText(view->shape) + ", expected " +
                               ShapeText(shape) + " (" + ckpt.dir().string() + ")");
      }
      const size_t at = bytes.size();
      bytes.resize(at + view->elements() * 2);
      if (view->dtype == want) {
        std::memcpy(bytes.data() + at, view->bytes.data(), view->bytes.size());
        continue;
      }
      const std::vector<float> f32 = UpcastToF32(*view);
      for (size_t i = 0; i < f32.size(); ++i) {
        const uint16_t v = want == DType::kBF16 ? F32ToBf16(f32[i]) : F32ToF16(f32[i]);
        std::memcpy(bytes.data() + at + 2 * i, &v, 2);
      }
    }
    return Upload(bytes.data(), bytes.size());
  }

  Status Reserve(size_t n, size_t table_pages, size_t logit_floats, const ModelConfig& c) {
    if (n > cap_tokens) {
      const size_t cap = std::max<size_t>(n, std::max<size_t>(2 * cap_tokens, 64));
      for (void* p : {static_cast<void*>(x), h, qkv, attn, gate_up, act, static_cast<void*>(tokens)}) {
        if (p != nullptr) cudaFree(p);
      }
      x = nullptr;
      h = qkv = attn = gate_up = act = nullptr;
      tokens = nullptr;
      cap_tokens = 0;
      const size_t hd = c.head_dim(), width = (c.num_attention_heads + 2 * size_t{c.num_key_value_heads}) * hd;
      auto alloc = [&](void** p, size_t bytes) {
        return CudaStatus(cudaMalloc(p, bytes), "cudaMalloc of " + std::to_string(bytes) + " bytes of activations");
      };
      KVSTASH_RETURN_IF_ERROR(alloc(reinterpret_cast<void**>(&x), cap * c.hidden_size * 4));
      KVSTASH_RETURN_IF_ERROR(alloc(&h, cap * c.hidden_size * 2));
      KVSTASH_RETURN_IF_ERROR(alloc(&qkv, cap * width * 2));
      KVSTASH_RETURN_IF_ERROR(alloc(&attn, cap * c.num_attention_heads * hd * 2));
      KVSTASH_RETURN_IF_ERROR(alloc(&gate_up, cap * 2 * size_t{c.intermediate_size} * 2));
      KVSTASH_RETURN_IF_ERROR(alloc(&act, cap * size_t{c.intermediate_size} * 2));
      KVSTASH_RETURN_IF_ERROR(alloc(reinterpret_cast<void**>(&tokens), cap * 4));
      cap_tokens = cap;
    }
    if (table_pages > cap_pages) {
      const size_t cap = std::max<size_t>(table_pages, 2 * cap_pages);
      if (pages != nullptr) cudaFree(pages);
      pages = nullptr;
      cap_pages = 0;
      KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaMalloc(reinterpret_cast<void**>(&pages), cap * 4), "cudaMalloc (page table)"));
      cap_pages = cap;
    }
    if (logit_floats > cap_logits) {
      if (logits != nullptr) cudaFree(logits);
      logits = nullptr;
      cap_logits = 0;
      KVSTASH_RETURN_IF_ERROR(
          CudaStatus(cudaMalloc(reinterpret_cast<void**>(&logits), logit_floats * 4), "cudaMalloc (logits)"));
      cap_logits = logit_floats;
    }
    return Status::Ok();
  }

  // out[t][r] (row stride `rows`) = sum_k w[r][k] * in[t][k] (+ out when accumulate): w is
  // [rows][k] row-major, in is [n][k]; out is fp32 or the 16-bit type.
  Status Gemm(const void* w, const void* in, void* out, bool out_f32, size_t rows, size_t n, size_t k, bool accumulate,
              const char* what) {
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    return BlasStatus(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows), static_cast<int>(n),
                                   static_cast<int>(k), &alpha, w, cuda_half, static_cast<int>(k), in, cuda_half,
                                   static_cast<int>(k), &beta, out, out_f32 ? CUDA_R_32F : cuda_half,
                                   static_cast<int>(rows), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                      what);
  }
};

CudaEngine::CudaEngine(const ModelConfig& config, const CudaEngineOptions& options)
    : config_(config), options_(options), impl_(std::make_unique<Impl>()) {}

CudaEngine::~CudaEngine() {
  if (impl_) cudaSetDevice(impl_->device);
}

Result<std::unique_ptr<CudaEngine>> CudaEngine::Load(const Checkpoint& checkpoint, const CudaEngineOptions& options) {
  const ModelConfig& c = checkpoint.config();
  KVSTASH_RETURN_IF_ERROR(c.Validate());
  if (!cuda::AttentionHeadDimSupported(c.head_dim())) {
    return InvalidArgument("the cuda engine's attention handles head_dim 16, 32, 64, 128 or 256; this model's is " +
                           std::to_string(c.head_dim()));
  }
  const gpu::DeviceSummary devices = gpu::ProbeDevices();
  if (devices.count == 0) return Unavailable("the cuda engine needs a CUDA device: " + devices.reason);
  if (options.device < 0 || options.device >= devices.count) {
    return InvalidArgument("CUDA device " + std::to_string(options.device) + " does not exist (" +
                           std::to_string(devices.count) + " found)");
  }
  std::unique_ptr<CudaEngine> engine(new CudaEngine(c, options));
  Impl& m = *engine->impl_;
  m.device = options.device;
  if (c.torch_dtype == DType::kF16) {
    m.half = cuda::Half::kFp16;
    m.cuda_half = CUDA_R_16F;
  }
  KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(m.device), "cudaSetDevice"));
  KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking), "cudaStreamCreate"));
  KVSTASH_RETURN_IF_ERROR(BlasStatus(cublasCreate(&m.blas), "cublasCreate"));
  KVSTASH_RETURN_IF_ERROR(BlasStatus(cublasSetStream(m.blas, m.stream), "cublasSetStream"));

  const uint64_t hidden = c.hidden_size, hd = c.head_dim(), heads = c.num_attention_heads,
                 kv = c.num_key_value_heads, inter = c.intermediate_size, vocab = c.vocab_size;
  using Parts = std::vector<std::pair<std::string, std::vector<uint64_t>>>;
  KVSTASH_ASSIGN_OR_RETURN(m.embed, m.Load(checkpoint, Parts{{"model.embed_tokens.weight", {vocab, hidden}}}));
  KVSTASH_ASSIGN_OR_RETURN(m.final_norm, m.Load(checkpoint, Parts{{"model.norm.weight", {hidden}}}));
  if (c.tie_word_embeddings) {
    m.lm_head = m.embed;
  } else {
    KVSTASH_ASSIGN_OR_RETURN(m.lm_head, m.Load(checkpoint, Parts{{"lm_head.weight", {vocab, hidden}}}));
  }
  m.layers.resize(c.num_hidden_layers);
  for (uint32_t l = 0; l < c.num_hidden_layers; ++l) {
    Impl::Layer& w = m.layers[l];
    auto name = [l](const char* rest) { return LayerTensorName(l, rest); };
    KVSTASH_ASSIGN_OR_RETURN(w.input_norm, m.Load(checkpoint, Parts{{name("input_layernorm.weight"), {hidden}}}));
    KVSTASH_ASSIGN_OR_RETURN(w.qkv, m.Load(checkpoint, Parts{{name("self_attn.q_proj.weight"), {heads * hd, hidden}},
                                                            {name("self_attn.k_proj.weight"), {kv * hd, hidden}},
                                                            {name("self_attn.v_proj.weight"), {kv * hd, hidden}}}));
    KVSTASH_ASSIGN_OR_RETURN(w.o, m.Load(checkpoint, Parts{{name("self_attn.o_proj.weight"), {hidden, heads * hd}}}));
    KVSTASH_ASSIGN_OR_RETURN(w.post_norm,
                             m.Load(checkpoint, Parts{{name("post_attention_layernorm.weight"), {hidden}}}));
    KVSTASH_ASSIGN_OR_RETURN(w.gate_up, m.Load(checkpoint, Parts{{name("mlp.gate_proj.weight"), {inter, hidden}},
                                                                {name("mlp.up_proj.weight"), {inter, hidden}}}));
    KVSTASH_ASSIGN_OR_RETURN(w.down, m.Load(checkpoint, Parts{{name("mlp.down_proj.weight"), {hidden, inter}}}));
  }
  // As Hugging Face computes them (and CpuEngine): theta ** (2i / d) in fp32, then 1 / that.
  std::vector<float> inv_freq;
  for (uint64_t i = 0; i < hd / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(hd);
    inv_freq.push_back(1.0f / std::pow(static_cast<float>(c.rope_theta), exponent));
  }
  KVSTASH_ASSIGN_OR_RETURN(void* freq, m.Upload(inv_freq.data(), inv_freq.size() * sizeof(float)));
  m.inv_freq = static_cast<float*>(freq);
  return engine;
}

KvGeometry CudaEngine::kv_geometry() const {
  return {config_.num_hidden_layers, config_.num_key_value_heads, config_.head_dim(), 2};
}

std::string_view CudaEngine::kv_dtype_name() const { return impl_->half == cuda::Half::kBf16 ? "bf16" : "fp16"; }

Result<std::unique_ptr<PageMemory>> CudaEngine::AllocatePageMemory(size_t bytes) {
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<CudaPageMemory> memory,
                           CudaPageMemory::Allocate(bytes, impl_->device, impl_->stream, options_.staging));
  return std::unique_ptr<PageMemory>(std::move(memory));
}

Status CudaEngine::Forward(std::span<const uint32_t> tokens, uint32_t start, std::span<const uint32_t> page_table,
                           KvPagePool& pool, std::vector<float>* logits, bool last_only) {
  const ModelConfig& c = config_;
  const size_t n = tokens.size();
  KVSTASH_RETURN_IF_ERROR(ValidateStep(c, kv_geometry(), /*needs_host=*/false, tokens, start, page_table, pool));
  bool on_device = false;
  if (!pool.host_accessible() && pool.pages() > 0) {
    cudaPointerAttributes attr{};
    on_device = cudaPointerGetAttributes(&attr, pool.Plane(0, 0, 0)) == cudaSuccess &&
                attr.type == cudaMemoryTypeDevice && attr.device == impl_->device;
    cudaGetLastError();
  }
  if (!on_device) return InvalidArgument("the pool's pages are not in this engine's GPU memory");

  Impl& m = *impl_;
  const size_t hidden = c.hidden_size, hd = c.head_dim(), heads = c.num_attention_heads,
               kv = c.num_key_value_heads, inter = c.intermediate_size, vocab = c.vocab_size;
  const size_t width = (heads + 2 * kv) * hd;
  const size_t table_pages = (start + n + pool.page_tokens() - 1) / pool.page_tokens();
  const size_t first = last_only ? n - 1 : 0, rows = n - first;
  KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(m.device), "cudaSetDevice"));
  KVSTASH_RETURN_IF_ERROR(m.Reserve(n, table_pages, logits != nullptr ? rows * vocab : 0, c));
  cudaStream_t st = m.stream;
  KVSTASH_RETURN_IF_ERROR(CudaStatus(
      cudaMemcpyAsync(m.tokens, tokens.data(), n * 4, cudaMemcpyHostToDevice, st), "uploading tokens"));
  KVSTASH_RETURN_IF_ERROR(CudaStatus(
      cudaMemcpyAsync(m.pages, page_table.data(), table_pages * 4, cudaMemcpyHostToDevice, st), "uploading pages"));

  auto launched = [](cudaError_t e, const char* what) { return CudaStatus(e, what); };
  cuda::AttentionShape shape{static_cast<uint32_t>(n), start, static_cast<uint32_t>(heads), static_cast<uint32_t>(kv),
                             static_cast<uint32_t>(hd)};
  cuda::PagedKv paged{pool.Plane(0, 0, 0), pool.page_bytes(), pool.plane_bytes(), m.pages, pool.page_tokens(), 0};
  const float eps = static_cast<float>(c.rms_norm_eps);
  KVSTASH_RETURN_IF_ERROR(launched(cuda::EmbedTokens(m.half, m.embed, m.tokens, static_cast<uint32_t>(n),
                                                     static_cast<uint32_t>(hidden), m.x, st),
                                   "embedding"));
  for (uint32_t l = 0; l < c.num_hidden_layers; ++l) {
    const Impl::Layer& w = m.layers[l];
    paged.layer = l;
    KVSTASH_RETURN_IF_ERROR(launched(
        cuda::RmsNorm(m.half, m.x, w.input_norm, static_cast<uint32_t>(n), static_cast<uint32_t>(hidden), eps, m.h, st),
        "input norm"));
    KVSTASH_RETURN_IF_ERROR(m.Gemm(w.qkv, m.h, m.qkv, false, width, n, hidden, false, "qkv projection"));
    KVSTASH_RETURN_IF_ERROR(launched(cuda::RopeAndStoreKv(m.half, m.qkv, m.inv_freq, shape, paged, st), "rotary"));
    KVSTASH_RETURN_IF_ERROR(launched(cuda::PagedAttention(m.half, m.qkv, shape, paged, m.attn, st), "attention"));
    KVSTASH_RETURN_IF_ERROR(m.Gemm(w.o, m.attn, m.x, true, hidden, n, heads * hd, true, "o projection"));
    KVSTASH_RETURN_IF_ERROR(launched(
        cuda::RmsNorm(m.half, m.x, w.post_norm, static_cast<uint32_t>(n), static_cast<uint32_t>(hidden), eps, m.h, st),
        "post-attention norm"));
    KVSTASH_RETURN_IF_ERROR(m.Gemm(w.gate_up, m.h, m.gate_up, false, 2 * inter, n, hidden, false, "gate/up projection"));
    KVSTASH_RETURN_IF_ERROR(
        launched(cuda::SwiGlu(m.half, m.gate_up, static_cast<uint32_t>(n), static_cast<uint32_t>(inter), m.act, st),
                 "SwiGLU"));
    KVSTASH_RETURN_IF_ERROR(m.Gemm(w.down, m.act, m.x, true, hidden, n, inter, true, "down projection"));
    if (ReportsLayer(l + 1, c.num_hidden_layers)) {  // the layers' KV must have landed before it is read
      KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(st), "layer-wise progress"));
      ReportLayers(l + 1, c.num_hidden_layers);
    }
  }
  if (logits != nullptr) {
    KVSTASH_RETURN_IF_ERROR(launched(cuda::RmsNorm(m.half, m.x + first * hidden, m.final_norm,
                                                   static_cast<uint32_t>(rows), static_cast<uint32_t>(hidden), eps,
                                                   m.h, st),
                                     "final norm"));
    KVSTASH_RETURN_IF_ERROR(m.Gemm(m.lm_head, m.h, m.logits, true, vocab, rows, hidden, false, "lm head"));
    logits->resize(rows * vocab);
    KVSTASH_RETURN_IF_ERROR(CudaStatus(
        cudaMemcpyAsync(logits->data(), m.logits, rows * vocab * 4, cudaMemcpyDeviceToHost, st), "downloading logits"));
  }
  return CudaStatus(cudaStreamSynchronize(st), "forward step");
}

}  // namespace kvstash::node
