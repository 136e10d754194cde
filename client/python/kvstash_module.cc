// The `kvstash` Python module: the C++ SDK (client/include/kvstash/client.h) for Python callers.
//
//   kvstash.PrefixHasher(namespace, block_tokens)  .chain(tokens) -> [16-byte keys], .next(parent, block)
//   kvstash.Client(address, data_path="auto", ...)  .lookup / .put / .get / .remove / .stats / .health
//   kvstash.gather / kvstash.scatter                paged KV <-> contiguous block buffers (CPU or CUDA)
//   kvstash.gpu_data_path()                         ("direct" | "staged", reason)
//   kvstash.BlockCodec(namespace, layers, tokens, heads, head_dim)
//                                                   the namespace's codec (client/kv_codec.h); pass it
//                                                   to put/get (codec=...) to store blocks encoded
//
// put/get read and write the caller's arrays in place: torch tensors (CPU or CUDA), numpy arrays,
// CUDA arrays (__cuda_array_interface__) and any C-contiguous buffer. A get writes CUDA arrays
// directly (UCX into device memory, from the daemon's GPU memory where it serves HBM directly) when
// this client's UCX moves CUDA memory (a build of deploy/build-ucx-cuda.sh); otherwise, and for
// puts, CUDA memory travels through pinned host staging (device_copy.h). With a
// codec, CUDA arrays are encoded and decoded on the GPU (client/kv_codec_device.h): only the encoded
// bytes cross PCIe.
//
// Errors raise kvstash.Error (a RuntimeError) with the Status text; bad arguments raise ValueError.
// Every network or device wait releases the GIL; a Client may be used from several Python threads.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "client/python/array_view.h"
#include "client/python/py_client.h"
#include "client/python/py_support.h"
#include "client/python/device_copy.h"
#include "client/kv_codec.h"
#ifdef KVSTASH_HAVE_CUDA
#include "client/kv_codec_device.h"
#endif
#include "client/python/paged_copy.h"
#include "gpu/gpu_data_path.h"
#include "kvstash/client.h"
#include "kvstash/prefix_hasher.h"

namespace py = pybind11;

PYBIND11_MODULE(kvstash, m) {
  using namespace kvstash;
  using namespace kvstash::python;
  m.doc() = "kvstash: a distributed KVCache store for LLM serving (client SDK)";
  py::register_exception<Error>(m, "Error", PyExc_RuntimeError);
  m.attr("built_with_cuda") = BuiltWithCuda();

  py::class_<PrefixHasher>(m, "PrefixHasher")
      .def(py::init([](const std::string& ns, uint32_t block_tokens) {
             if (block_tokens == 0) throw py::value_error("block_tokens must be positive");
             return PrefixHasher(ns, block_tokens);
           }),
           py::arg("namespace"), py::arg("block_tokens") = PrefixHasher::kDefaultBlockTokens)
      .def(
          "chain",
          [](const PrefixHasher& h, const py::handle& tokens) {
            const auto t = TokensOf(tokens);
            py::list out;
            for (const BlockKey& k : h.Chain(t)) out.append(KeyBytes(k));
            return out;
          },
          py::arg("tokens"), "Keys (16-byte bytes) of every full block of `tokens`, in order.")
      .def(
          "next",
          [](const PrefixHasher& h, const py::object& parent, const py::handle& block) {
            const auto t = TokensOf(block);
            if (t.size() != h.block_tokens()) throw py::value_error("next: a block is exactly block_tokens tokens");
            std::optional<BlockKey> p;
            if (!parent.is_none()) p = KeyOf(parent, "parent");
            return KeyBytes(h.Next(p ? &*p : nullptr, t));
          },
          py::arg("parent"), py::arg("block"))
      .def_property_readonly("block_tokens", &PrefixHasher::block_tokens)
      .def_property_readonly("seed", &PrefixHasher::seed);

  py::class_<KvCodec>(m, "BlockCodec")
      .def(py::init([](const std::string& ns, uint32_t layers, uint32_t tokens, uint32_t heads, uint32_t head_dim) {
             Result<KvCodec> c = KvCodec::ForNamespace(ns, layers, tokens, heads, head_dim);
             if (!c.ok()) throw py::value_error(c.status().message());
             return std::move(*c);
           }),
           py::arg("namespace"), py::arg("layers"), py::arg("tokens"), py::arg("heads"), py::arg("head_dim"),
           "The codec the namespace names ('<model>|<layout>|<dtype>[:<codec>]|<rank>') for raw blocks "
           "[layers, 2, tokens, heads, head_dim] of its dtype. No codec: blocks pass through.")
      .def_property_readonly("enabled", &KvCodec::enabled)
      .def_property_readonly("name", [](const KvCodec& c) { return std::string(gpu::ToString(c.codec())); })
      .def_property_readonly("raw_bytes", &KvCodec::raw_bytes)
      .def_property_readonly("encoded_bytes", &KvCodec::stored_bytes)
      .def(
          "encode",
          [](const KvCodec& c, const py::handle& raw, const py::handle& out) {
            if (!c.enabled()) throw py::value_error("encode: this namespace has no codec");
            ArrayView r = ViewOf(raw, false, "encode: raw");
            ArrayView o = ViewOf(out, true, "encode: out");
            if (r.cuda || o.cuda) throw py::value_error("encode: host arrays only (the CPU reference)");
            if (r.nbytes != c.raw_bytes() || o.nbytes != c.stored_bytes()) {
              throw py::value_error("encode: raw must be raw_bytes and out encoded_bytes long");
            }
            py::gil_scoped_release nogil;
            c.Encode({r.data, r.nbytes}, {o.data, o.nbytes});
          },
          py::arg("raw"), py::arg("out"), "CPU encode of one raw block into `out` (encoded_bytes).")
      .def(
          "decode",
          [](const KvCodec& c, const py::handle& encoded, const py::handle& out) {
            if (!c.enabled()) throw py::value_error("decode: this namespace has no codec");
            ArrayView e = ViewOf(encoded, false, "decode: encoded");
            ArrayView o = ViewOf(out, true, "decode: out");
            if (e.cuda || o.cuda) throw py::value_error("decode: host arrays only (the CPU reference)");
            if (o.nbytes != c.raw_bytes()) throw py::value_error("decode: out must be raw_bytes long");
            Status st;
            {
              py::gil_scoped_release nogil;
              st = c.Decode({e.data, e.nbytes}, {o.data, o.nbytes});
            }
            return st.ok();
          },
          py::arg("encoded"), py::arg("out"),
          "CPU decode of one encoded block into `out`; False (out untouched) when it is not this codec's.");

  kvstash::python::BindClient(m);

  m.def(
      "gpu_data_path",
      [](const std::string& transports) {
        const gpu::GpuDataPathReport r = gpu::ProbeGpuDataPath(transports);
        return py::make_tuple(std::string(gpu::ToString(r.path)), r.reason);
      },
      py::arg("ucx_transports") = "", "('direct' | 'staged', reason): how GPU bytes reach the store here.");
  BindPagedCopy(m);
}
