"""kvstash-node's cpu engine against a PyTorch reference written here (issue 14).

For each config (GQA and not, untied and tied embeddings, an F32 and a BF16 checkpoint) the test
makes a seeded random checkpoint with `kvstash-node make-model`, asks `kvstash-node logits` for the
logits of every position of a prompt, and computes the same model here in PyTorch from the same
files: the safetensors are parsed by hand (8-byte header length, JSON header, raw tensors), BF16
upcast to fp32 exactly as the engine does (the 16 bits become the top of an fp32), and the forward
pass is Hugging Face's Llama in fp32 (RMSNorm, rotate-half rotary embeddings, grouped-query
attention with a causal mask, SwiGLU). The two must agree within 1e-5 relative, measured against
the largest logit of the row (a logit near zero has no meaningful relative error of its own).

Usage: test_cpu_engine_reference.py KVSTASH_NODE. Exits 77 (skipped) when torch is missing.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

SKIP = 77
try:
    import numpy as np
    import torch
except ImportError as e:
    print(f"SKIP: torch or numpy is not importable ({e})")
    sys.exit(SKIP)

NODE = sys.argv[1]
RTOL = 1e-5

CONFIGS = {
    "gqa_f32": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    intermediate_size=128, vocab_size=97, max_position_embeddings=256, rope_theta=10000.0,
                    rms_norm_eps=1e-5, tie_word_embeddings=False, torch_dtype="float32"),
    "mha_f32": dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=3, num_key_value_heads=3,
                    intermediate_size=96, vocab_size=131, max_position_embeddings=128, rope_theta=500000.0,
                    rms_norm_eps=1e-6, tie_word_embeddings=False, torch_dtype="float32"),
    "gqa_bf16_tied": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
                          intermediate_size=160, vocab_size=89, max_position_embeddings=256, rope_theta=10000.0,
                          rms_norm_eps=1e-5, tie_word_embeddings=True, torch_dtype="bfloat16"),
}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    data = raw[8 + header_len:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        chunk = np.frombuffer(data[begin:end], dtype={"F32": np.float32, "F16": np.float16, "BF16": np.uint16}[info["dtype"]])
        if info["dtype"] == "BF16":
            chunk = (chunk.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = torch.from_numpy(chunk.astype(np.float32).reshape(info["shape"]).copy())
    return tensors


def reference_logits(model_dir, tokens):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    w = {}
    for name in os.listdir(model_dir):
        if name.endswith(".safetensors"):
            w.update(read_safetensors(os.path.join(model_dir, name)))
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads", heads)
    hd = hidden // heads
    eps = cfg["rms_norm_eps"]
    n = len(tokens)

    def rms_norm(x, weight):
        variance = x.pow(2).mean(-1, keepdim=True)
        return weight * (x * torch.rsqrt(variance + eps))

    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    freqs = torch.arange(n, dtype=torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()

    def rotate_half(x):
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return torch.cat((-x2, x1), dim=-1)

    x = w["model.embed_tokens.weight"][torch.tensor(tokens)]
    mask = torch.full((n, n), float("-inf")).triu(1)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rms_norm(x, w[p + "input_layernorm.weight"])
        q = (h @ w[p + "self_attn.q_proj.weight"].T).view(n, heads, hd).transpose(0, 1)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).view(n, kv_heads, hd).transpose(0, 1)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).view(n, kv_heads, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(heads // kv_heads, dim=0)
        v = v.repeat_interleave(heads // kv_heads, dim=0)
        scores = (q @ k.transpose(1, 2)) / (hd ** 0.5) + mask
        attn = torch.softmax(scores, dim=-1, dtype=torch.float32) @ v
        x = x + attn.transpose(0, 1).reshape(n, hidden) @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"])
        gate = h @ w[p + "mlp.gate_proj.weight"].T
        up = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"])
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return (x @ head.T).numpy()


def main():
    torch.set_num_threads(1)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for label, cfg in CONFIGS.items():
            cfg_path = os.path.join(tmp, label + ".json")
            json.dump(cfg, open(cfg_path, "w"))
            model_dir = os.path.join(tmp, label)
            subprocess.run([NODE, "make-model", "--config", cfg_path, "--seed", "7", "--out", model_dir],
                           check=True, stdout=subprocess.DEVNULL)
            rng = np.random.default_rng(11)
            tokens = [int(t) for t in rng.integers(0, cfg["vocab_size"], size=37)]
            out = os.path.join(tmp, label + ".f32")
            subprocess.run([NODE, "logits", "--model", model_dir, "--tokens", ",".join(map(str, tokens)),
                            "--all-positions", "--out", out, "--threads", "2"], check=True, stdout=subprocess.DEVNULL)
            ours = np.fromfile(out, dtype=np.float32).reshape(len(tokens), cfg["vocab_size"])
            ref = reference_logits(model_dir, tokens)
            scale = np.abs(ref).max(axis=1, keepdims=True)
            err = (np.abs(ours - ref) / scale).max()
            spread = float(np.abs(ref).max())
            ok = err <= RTOL and spread > 1e-2
            print(f"{label}: max error {err:.2e} of the row's largest logit (limit {RTOL:g}); "
                  f"largest logit {spread:.3f}; greedy tokens equal: {bool((ours.argmax(1) == ref.argmax(1)).all())}"
                  f" -> {'ok' if ok else 'FAIL'}")
            failures += 0 if ok else 1
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
