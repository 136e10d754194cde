#include "client/python/paged_copy.h"

#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "client/python/array_view.h"
#include "client/python/device_copy.h"
#include "gpu/kv_copy_host.h"
#include "gpu/kv_layout.h"
#ifdef KVSTASH_HAVE_CUDA
#include "gpu/kv_copy_device.h"
#endif

namespace py = pybind11;

namespace kvstash::python {
namespace {

uint32_t Dim(const ArrayView& v, size_t i) { return static_cast<uint32_t>(v.shape[i]); }

struct PagedArgs {
  gpu::KvLayout layout;
  std::vector<std::byte*> blocks;
  bool cuda = false;
};

PagedArgs Prepare(const py::object& caches, const std::vector<int32_t>& pages, const py::object& blocks,
                  const std::string& layout_name) {
  auto kind = gpu::ParseKvLayoutKind(layout_name);
  if (!kind.ok()) throw py::value_error(kind.status().message());
  std::vector<ArrayView> cache_views;
  if (py::isinstance<py::list>(caches) || py::isinstance<py::tuple>(caches)) {
    size_t i = 0;
    for (auto c : caches) cache_views.push_back(ViewOf(c, true, "caches[" + std::to_string(i++) + "]"));
  } else {
    cache_views.push_back(ViewOf(caches, true, "caches"));
  }
  if (cache_views.empty()) throw py::value_error("caches is empty");
  const ArrayView& c0 = cache_views[0];
  gpu::KvCacheShape shape;
  shape.dtype_bytes = static_cast<uint32_t>(c0.itemsize);
  if (*kind == gpu::KvLayoutKind::kVllmPerLayer) {
    if (c0.shape.size() != 5 || c0.shape[0] != 2) {
      throw py::value_error("vllm-per-layer caches are [2, pages, page_tokens, heads, head_dim] per layer");
    }
    for (const auto& v : cache_views) {
      if (v.shape != c0.shape || v.itemsize != c0.itemsize || v.cuda != c0.cuda) {
        throw py::value_error("every layer's cache must have the same shape, dtype and device");
      }
    }
    shape.num_layers = static_cast<uint32_t>(cache_views.size());
    shape.num_pages = Dim(c0, 1);
    shape.page_tokens = Dim(c0, 2);
    shape.num_kv_heads = Dim(c0, 3);
    shape.head_dim = Dim(c0, 4);
  } else {
    if (cache_views.size() != 1 || c0.shape.size() != 6) {
      throw py::value_error(layout_name + " caches are one 6-dimensional tensor");
    }
    const bool layer_major = *kind == gpu::KvLayoutKind::kLayerMajor;
    if (c0.shape[layer_major ? 1 : 2] != 2) throw py::value_error(layout_name + ": the K/V dimension must be 2");
    shape.num_layers = Dim(c0, layer_major ? 0 : 1);
    shape.num_pages = Dim(c0, layer_major ? 2 : 0);
    shape.page_tokens = Dim(c0, 3);
    shape.num_kv_heads = Dim(c0, 4);
    shape.head_dim = Dim(c0, 5);
  }
  std::vector<void*> bases;
  for (const auto& v : cache_views) bases.push_back(v.data);
  auto layout = gpu::KvLayout::Make(*kind, shape, bases);
  if (!layout.ok()) throw py::value_error(layout.status().message());

  PagedArgs args{*layout, {}, c0.cuda};
  const uint64_t block_bytes = layout->block_bytes();
  if (py::isinstance<py::list>(blocks) || py::isinstance<py::tuple>(blocks)) {
    size_t i = 0;
    for (auto b : blocks) {
      ArrayView v = ViewOf(b, true, "blocks[" + std::to_string(i++) + "]");
      if (v.nbytes != block_bytes) {
        throw py::value_error("each block holds " + std::to_string(block_bytes) + " bytes, not " +
                              std::to_string(v.nbytes));
      }
      if (v.cuda != args.cuda) throw py::value_error("blocks and caches must be on the same device");
      args.blocks.push_back(v.data);
    }
  } else {
    ArrayView v = ViewOf(blocks, true, "blocks");
    if (v.nbytes != block_bytes * pages.size()) {
      throw py::value_error("blocks holds " + std::to_string(v.nbytes) + " bytes; " + std::to_string(pages.size()) +
                            " blocks of " + std::to_string(block_bytes) + " need " +
                            std::to_string(block_bytes * pages.size()));
    }
    if (v.cuda != args.cuda) throw py::value_error("blocks and caches must be on the same device");
    for (size_t i = 0; i < pages.size(); ++i) args.blocks.push_back(v.data + i * block_bytes);
  }
  return args;
}

gpu::LayerRange RangeOf(const py::object& layers) {
  if (layers.is_none()) return {};
  auto t = layers.cast<std::pair<uint32_t, uint32_t>>();
  return {t.first, t.second};
}

void Copy(bool gather, const py::object& caches, const std::vector<int32_t>& pages, const py::object& blocks,
          const std::string& layout, const py::object& layers) {
  PagedArgs a = Prepare(caches, pages, blocks, layout);
  const gpu::LayerRange range = RangeOf(layers);
  py::gil_scoped_release nogil;
  Status st;
  if (a.cuda) {
#ifdef KVSTASH_HAVE_CUDA
    if (gather) {
      st = gpu::DeviceGather(a.layout, pages, a.blocks, range, nullptr);
    } else {
      const std::vector<const std::byte*> in(a.blocks.begin(), a.blocks.end());
      st = gpu::DeviceScatter(a.layout, pages, in, range, nullptr);
    }
    if (st.ok()) SynchronizeDevice();
#else
    SynchronizeDevice();  // throws: built without CUDA
#endif
  } else if (gather) {
    st = gpu::HostGather(a.layout, pages, a.blocks, range);
  } else {
    const std::vector<const std::byte*> in(a.blocks.begin(), a.blocks.end());
    st = gpu::HostScatter(a.layout, pages, in, range);
  }
  if (st.code() == StatusCode::kInvalidArgument) {
    py::gil_scoped_acquire gil;
    throw py::value_error(st.message());
  }
  if (!st.ok()) throw std::runtime_error(st.ToString());
}

}  // namespace

void BindPagedCopy(py::module_& m) {
  m.def(
      "gather",
      [](const py::object& caches, const std::vector<int32_t>& pages, const py::object& blocks,
         const std::string& layout, const py::object& layers) { Copy(true, caches, pages, blocks, layout, layers); },
      py::arg("caches"), py::arg("pages"), py::arg("blocks"), py::arg("layout") = "vllm-per-layer",
      py::arg("layers") = py::none(), "Copies pages of a paged KV cache into contiguous block buffers.");
  m.def(
      "scatter",
      [](const py::object& caches, const std::vector<int32_t>& pages, const py::object& blocks,
         const std::string& layout, const py::object& layers) { Copy(false, caches, pages, blocks, layout, layers); },
      py::arg("caches"), py::arg("pages"), py::arg("blocks"), py::arg("layout") = "vllm-per-layer",
      py::arg("layers") = py::none(), "Copies contiguous block buffers into pages of a paged KV cache.");
}

}  // namespace kvstash::python
