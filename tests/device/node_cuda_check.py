#!/usr/bin/env python3
"""The cuda engine's logits against transformers' LlamaForCausalLM on the same random checkpoints.

For each config: `kvstash-node make-model` writes a seeded bf16 (or fp16) checkpoint;
`kvstash-node-cuda-check` writes the cuda engine's logits for every position of a random prompt
(prefilled in chunks); transformers loads the same directory twice on the GPU — in the checkpoint's
dtype (what a bf16 deployment computes) and in fp32 (the weights upcast exactly, TF32 off: the
reference). Reported: ||x - ref|| / ||ref|| over all logits, max |x - ref| over the largest |ref|,
and the share of positions whose argmax agrees with the reference.

Tolerance: the cuda engine must be at least as close to the fp32 reference as transformers' own
16-bit run is (within 1.5x of its normwise error), and under 2e-2 normwise; NaN never passes.

Usage: node_cuda_check.py BIN_DIR WORK_DIR  (BIN_DIR holds kvstash-node and kvstash-node-cuda-check)
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch
from transformers import LlamaForCausalLM

BIN, WORK = sys.argv[1], sys.argv[2]
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

CONFIGS = [
    ("gqa-bf16-hd64", dict(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                           intermediate_size=1536, vocab_size=1000, torch_dtype="bfloat16", tie_word_embeddings=False)),
    ("mha-bf16-hd128-tied", dict(hidden_size=512, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                                 intermediate_size=1024, vocab_size=777, torch_dtype="bfloat16", tie_word_embeddings=True)),
    ("gqa-fp16-hd32", dict(hidden_size=256, num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=4,
                           intermediate_size=768, vocab_size=500, torch_dtype="float16", tie_word_embeddings=False)),
]
PROMPT = 700
CHUNK = 256


def stats(x, ref):
    rel = float(np.linalg.norm(x - ref) / np.linalg.norm(ref))
    maxabs = float(np.max(np.abs(x - ref)))
    top = float(np.mean(np.argmax(x, -1) == np.argmax(ref, -1)))
    return rel, maxabs, top


def main():
    failures = 0
    rows = []
    for name, cfg in CONFIGS:
        d = os.path.join(WORK, name)
        os.makedirs(d, exist_ok=True)
        full = dict(cfg, max_position_embeddings=4096, rope_theta=10000.0, rms_norm_eps=1e-5)
        cfg_path = os.path.join(WORK, name + ".json")
        json.dump(full, open(cfg_path, "w"))
        subprocess.run([os.path.join(BIN, "kvstash-node"), "make-model", "--config", cfg_path, "--seed", "17", "--out", d],
                       check=True, stdout=subprocess.DEVNULL)
        rng = np.random.default_rng(3)
        tokens = rng.integers(0, cfg["vocab_size"], PROMPT)
        out = os.path.join(WORK, name + ".logits")
        subprocess.run([os.path.join(BIN, "kvstash-node-cuda-check"), "--model", d, "--tokens",
                        ",".join(map(str, tokens)), "--out", out, "--all-positions", "--chunk", str(CHUNK)],
                       check=True, stdout=subprocess.DEVNULL)
        ours = np.fromfile(out, dtype=np.float32).reshape(PROMPT, cfg["vocab_size"]).astype(np.float64)
        ids = torch.tensor(tokens, dtype=torch.long, device="cuda")[None]
        half = torch.bfloat16 if cfg["torch_dtype"] == "bfloat16" else torch.float16
        with torch.no_grad():
            m16 = LlamaForCausalLM.from_pretrained(d, torch_dtype=half).cuda().eval()
            hf16 = m16(ids).logits[0].float().cpu().numpy().astype(np.float64)
            del m16
            m32 = LlamaForCausalLM.from_pretrained(d, torch_dtype=torch.float32, attn_implementation="eager").cuda().eval()
            ref = m32(ids).logits[0].cpu().numpy().astype(np.float64)
            del m32
        torch.cuda.empty_cache()
        o_rel, o_max, o_top = stats(ours, ref)
        h_rel, h_max, h_top = stats(hf16, ref)
        x_rel, x_max, _ = stats(ours, hf16)
        ok = np.all(np.isfinite(ours)) and o_rel <= max(1.5 * h_rel, 1e-3) and o_rel < 2e-2
        failures += 0 if ok else 1
        peak = float(np.max(np.abs(ref)))
        rows.append(f"| {name} | {PROMPT} ({CHUNK}/chunk) | {o_rel:.2e} | {o_max:.3f} ({o_max / peak:.1e}) | {o_top:.4f} | "
                    f"{h_rel:.2e} | {h_max:.3f} ({h_max / peak:.1e}) | {h_top:.4f} | {x_rel:.2e} | {'PASS' if ok else 'FAIL'} |")
    print("| model | positions | cuda vs fp32: rel | max abs (/ max logit) | argmax agree | transformers 16-bit vs fp32: rel "
          "| max abs (/ max logit) | argmax agree | cuda vs transformers 16-bit: rel | |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(r)
    print(f"torch {torch.__version__}, transformers {__import__('transformers').__version__}, {torch.cuda.get_device_name()}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
