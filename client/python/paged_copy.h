// kvstash.gather / kvstash.scatter: paged KV cache <-> contiguous block buffers from Python, over
// gpu/kv_copy_host.h (CPU tensors) or gpu/kv_copy_device.h (CUDA tensors, when built with CUDA).
//
//   gather(caches, pages, blocks, layout="vllm-per-layer", layers=None)
//   scatter(caches, pages, blocks, layout="vllm-per-layer", layers=None)
//
// caches: a list of per-layer tensors [2, pages, page_tokens, heads, head_dim] (vllm-per-layer) or
// one tensor [layers, 2, pages, ...] (layer-major) or [pages, layers, 2, ...] (page-major). blocks:
// one tensor whose first dimension is len(pages) or a list of len(pages) arrays, each block being
// [layers, 2, page_tokens, heads, head_dim] bytes. layers: (first, last) to copy a layer range.
// CUDA copies run on the legacy default stream and are complete when the call returns.
#pragma once

#include <pybind11/pybind11.h>

namespace kvstash::python {

void BindPagedCopy(pybind11::module_& m);

}  // namespace kvstash::python
