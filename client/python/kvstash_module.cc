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
// CUDA arrays (__cuda_array_interface__) and any C-contiguous buffer. CUDA memory travels through
// pinned host staging (device_copy.h) because the store's UCX cannot read device memory here. With a
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

namespace kvstash::python {
namespace {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void Raise(const Status& st) {
  if (!st.ok()) throw Error(st.ToString());
}
template <typename T>
T Unwrap(Result<T> r) {
  Raise(r.status());
  return std::move(r).value();
}

BlockKey KeyOf(const py::handle& obj, const char* what) {
  if (!py::isinstance<py::bytes>(obj)) throw py::value_error(std::string(what) + ": a key is 16 bytes (bytes)");
  auto key = BlockKey::FromBytes(std::string_view(obj.cast<py::bytes>()));
  if (!key.ok()) throw py::value_error(std::string(what) + ": " + key.status().message());
  return *key;
}

std::vector<BlockKey> KeysOf(const py::sequence& keys) {
  std::vector<BlockKey> out;
  out.reserve(keys.size());
  for (auto k : keys) out.push_back(KeyOf(k, "keys"));
  return out;
}

py::bytes KeyBytes(const BlockKey& key) { return py::bytes(std::string(key.AsBytes())); }

std::vector<uint32_t> TokensOf(const py::handle& tokens) {
  std::vector<uint32_t> out;
  py::object seq = py::hasattr(tokens, "tolist") ? tokens.attr("tolist")() : py::reinterpret_borrow<py::object>(tokens);
  for (auto t : seq) {
    const long long v = t.cast<long long>();
    if (v < 0 || v > 0xFFFFFFFFLL) throw py::value_error("token ids must fit in uint32");
    out.push_back(static_cast<uint32_t>(v));
  }
  return out;
}

DataPath ParseDataPath(const std::string& s) {
  if (s == "auto") return DataPath::kAuto;
  if (s == "ucx") return DataPath::kUcx;
  if (s == "inline") return DataPath::kInline;
  throw py::value_error("data_path must be 'auto', 'ucx' or 'inline', not '" + s + "'");
}

#ifdef KVSTASH_HAVE_CUDA
constexpr bool kDeviceCodec = true;
#else
constexpr bool kDeviceCodec = false;  // CUDA arrays are refused (device_copy.h)
#endif

class PyClient {
 public:
  // tls and token: ClientOptions::tls_ca_file, tls_cert_file, tls_key_file, tls_server_name and token
  // (docs/SECURITY.md).
  struct Security {
    std::string tls_ca, tls_cert, tls_key, tls_server_name, token;
  };
  PyClient(const std::string& address, const std::string& data_path, bool verify_checksums, uint64_t timeout_ms,
           const std::string& ucx_transports, uint64_t lease_ms, const Security& security) {
    ClientOptions o;
    o.tls_ca_file = security.tls_ca;
    o.tls_cert_file = security.tls_cert;
    o.tls_key_file = security.tls_key;
    o.tls_server_name = security.tls_server_name;
    o.token = security.token;
    o.address = address;
    o.data_path = ParseDataPath(data_path);
    o.verify_checksums = verify_checksums;
    o.timeout_ms = timeout_ms;
    o.ucx_transports = ucx_transports;
    o.lease_ms = lease_ms;
    py::gil_scoped_release nogil;
    client_ = Unwrap(Client::Connect(o));
  }

  size_t Lookup(const py::sequence& keys) {
    const auto chain = KeysOf(keys);
    py::gil_scoped_release nogil;
    return Unwrap(client_->Lookup(chain)).hit_blocks;
  }

  py::dict Put(const py::sequence& keys, const py::sequence& arrays, const py::object& parent, bool chain, bool pin,
               const KvCodec* codec, bool eager, const py::object& advice) {
    PutOptions put_options{.pin = pin, .eager = eager};
    if (!advice.is_none()) {
      const std::string name = py::cast<std::string>(advice);
      put_options.advice = ParseReuseAdvice(name);
      if (!put_options.advice) throw py::value_error("put: advice must be 'likely', 'unlikely' or None, not '" + name + "'");
    }
    if (keys.size() != arrays.size()) throw py::value_error("put: one array per key");
    const auto ks = KeysOf(keys);
    std::vector<ArrayView> views;
    size_t cuda_bytes = 0;
    for (size_t i = 0; i < arrays.size(); ++i) {
      views.push_back(ViewOf(arrays[i], /*writable=*/false, "put: array " + std::to_string(i)));
      if (views.back().nbytes == 0) throw py::value_error("put: array " + std::to_string(i) + " is empty");
      if (views.back().cuda) cuda_bytes += views.back().nbytes;
    }
    std::optional<BlockKey> first_parent;
    if (!parent.is_none()) first_parent = KeyOf(parent, "parent");
    PutResult result;
    // With a codec, CUDA arrays are encoded on the GPU (host arrays of the same call on the CPU).
    const bool device_codec = kDeviceCodec && codec != nullptr && codec->enabled() && cuda_bytes > 0;
#ifdef KVSTASH_HAVE_CUDA
    if (device_codec) {
      py::gil_scoped_release nogil;
      std::vector<PutItem> items(ks.size());
      std::unique_ptr<bool[]> on_device(new bool[ks.size()]);
      for (size_t i = 0; i < ks.size(); ++i) {
        items[i].key = ks[i];
        if (chain) items[i].parent = i == 0 ? first_parent : std::optional<BlockKey>(ks[i - 1]);
        items[i].data = {views[i].data, views[i].nbytes};
        on_device[i] = views[i].cuda;
      }
      // Legacy default stream: ordered after torch's default-stream work that produced the blocks.
      result = Unwrap(PutBlocksFromDevice(*codec, *client_, items, std::span<const bool>(on_device.get(), ks.size()),
                                          put_options, nullptr));
    }
#endif
    if (!device_codec) {
      py::gil_scoped_release nogil;
      std::unique_ptr<HostStaging> staging;
      if (cuda_bytes > 0) staging = std::make_unique<HostStaging>(cuda_bytes);
      std::vector<PutItem> items(ks.size());
      size_t off = 0;
      for (size_t i = 0; i < ks.size(); ++i) {
        items[i].key = ks[i];
        if (chain) items[i].parent = i == 0 ? first_parent : std::optional<BlockKey>(ks[i - 1]);
        const std::byte* src = views[i].data;
        if (views[i].cuda) {
          CopyDeviceToHost(staging->data() + off, src, views[i].nbytes);
          src = staging->data() + off;
          off += views[i].nbytes;
        }
        items[i].data = {src, views[i].nbytes};
      }
      if (staging) SynchronizeDevice();
      // With a codec (host arrays only here) the raw blocks are encoded on the CPU.
      result = Unwrap(codec != nullptr ? codec->PutBlocks(*client_, items, put_options)
                                       : client_->Put(items, put_options));
    }
    py::dict d;
    d["stored"] = result.stored;
    d["existed"] = result.existed;
    d["failed"] = result.failed;
    return d;
  }

  std::vector<bool> Get(const py::sequence& keys, const py::sequence& arrays, const KvCodec* codec) {
    if (keys.size() != arrays.size()) throw py::value_error("get: one array per key");
    const auto ks = KeysOf(keys);
    std::vector<ArrayView> views;
    size_t cuda_bytes = 0;
    for (size_t i = 0; i < arrays.size(); ++i) {
      views.push_back(ViewOf(arrays[i], /*writable=*/true, "get: array " + std::to_string(i)));
      if (views.back().cuda) cuda_bytes += views.back().nbytes;
    }
    std::vector<bool> found(ks.size(), false);
    // With a codec, CUDA arrays are decoded on the GPU (host arrays of the same call on the CPU).
    const bool device_codec = kDeviceCodec && codec != nullptr && codec->enabled() && cuda_bytes > 0;
#ifdef KVSTASH_HAVE_CUDA
    if (device_codec) {
      py::gil_scoped_release nogil;
      std::vector<GetItem> items(ks.size());
      std::unique_ptr<bool[]> on_device(new bool[ks.size()]);
      for (size_t i = 0; i < ks.size(); ++i) {
        items[i].key = ks[i];
        items[i].buffer = {views[i].data, views[i].nbytes};
        on_device[i] = views[i].cuda;
      }
      Raise(GetBlocksToDevice(*codec, *client_, items, std::span<const bool>(on_device.get(), ks.size()), nullptr));
      // A block smaller than the array would leave stale bytes behind: count it as a miss.
      for (size_t i = 0; i < ks.size(); ++i) found[i] = items[i].found && items[i].size == views[i].nbytes;
    }
#endif
    if (!device_codec) {
      py::gil_scoped_release nogil;
      std::unique_ptr<HostStaging> staging;
      if (cuda_bytes > 0) staging = std::make_unique<HostStaging>(cuda_bytes);
      std::vector<GetItem> items(ks.size());
      std::vector<std::byte*> staged(ks.size(), nullptr);
      size_t off = 0;
      for (size_t i = 0; i < ks.size(); ++i) {
        items[i].key = ks[i];
        std::byte* dst = views[i].data;
        if (views[i].cuda) {
          staged[i] = dst = staging->data() + off;
          off += views[i].nbytes;
        }
        items[i].buffer = {dst, views[i].nbytes};
      }
      // With a codec (host arrays only here): encoded blocks are fetched and decoded on the CPU; a
      // block not in this codec's format is a miss.
      Raise(codec != nullptr ? codec->GetBlocks(*client_, items) : client_->Get(items));
      for (size_t i = 0; i < ks.size(); ++i) {
        // A block smaller than the array would leave stale bytes behind: count it as a miss.
        found[i] = items[i].found && items[i].size == views[i].nbytes;
        if (found[i] && staged[i] != nullptr) CopyHostToDevice(views[i].data, staged[i], views[i].nbytes);
      }
      if (staging) SynchronizeDevice();
    }
    return found;
  }

  std::vector<bool> Remove(const py::sequence& keys) {
    const auto ks = KeysOf(keys);
    py::gil_scoped_release nogil;
    std::vector<bool> removed;
    for (RemoveOutcome o : Unwrap(client_->Remove(ks))) removed.push_back(o == RemoveOutcome::kRemoved);
    return removed;
  }

  py::dict Stats() {
    StoreStats s;
    {
      py::gil_scoped_release nogil;
      s = Unwrap(client_->Stats());
    }
    py::dict d;
    d["version"] = s.version;
    d["member_id"] = s.member_id;
    d["data_plane"] = s.data_plane;
    d["get_hits"] = s.get_hits;
    d["get_misses"] = s.get_misses;
    d["puts_stored"] = s.puts_stored;
    d["puts_deduplicated"] = s.puts_deduplicated;
    d["lookup_hit_blocks"] = s.lookup_hit_blocks;
    d["lookup_miss_blocks"] = s.lookup_miss_blocks;
    py::list tiers;
    for (const auto& t : s.tiers) {
      py::dict td;
      td["tier"] = std::string(ToString(t.tier));
      td["capacity_bytes"] = t.capacity_bytes;
      td["used_bytes"] = t.used_bytes;
      td["blocks"] = t.blocks;
      tiers.append(td);
    }
    d["tiers"] = tiers;
    return d;
  }

  bool Health() {
    py::gil_scoped_release nogil;
    return Unwrap(client_->Health()).serving;
  }

  std::string data_path() const { return client_->data_path(); }

 private:
  std::unique_ptr<Client> client_;
};

}  // namespace
}  // namespace kvstash::python

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

  py::class_<PyClient>(m, "Client")
      .def(py::init([](const std::string& address, const std::string& data_path, bool verify_checksums,
                       uint64_t timeout_ms, const std::string& ucx_transports, uint64_t lease_ms,
                       const std::string& tls_ca, const std::string& tls_cert, const std::string& tls_key,
                       const std::string& tls_server_name, const std::string& token) {
             return std::make_unique<PyClient>(address, data_path, verify_checksums, timeout_ms, ucx_transports,
                                               lease_ms,
                                               PyClient::Security{tls_ca, tls_cert, tls_key, tls_server_name, token});
           }),
           py::arg("address"), py::arg("data_path") = "auto", py::arg("verify_checksums") = true,
           py::arg("timeout_ms") = 30000, py::arg("ucx_transports") = "", py::arg("lease_ms") = 0,
           py::arg("tls_ca") = "", py::arg("tls_cert") = "", py::arg("tls_key") = "", py::arg("tls_server_name") = "",
           py::arg("token") = "",
           "Connects to a kvstashd. tls_ca (a PEM file) turns TLS on; tls_cert/tls_key for mutual TLS; token is "
           "sent as a bearer token with every call (docs/SECURITY.md).")
      .def("lookup", &PyClient::Lookup, py::arg("keys"), "Length of the longest stored prefix of the chain.")
      .def("put", &PyClient::Put, py::arg("keys"), py::arg("arrays"), py::arg("parent") = py::none(),
           py::arg("chain") = true, py::arg("pin") = false, py::arg("codec") = nullptr, py::arg("eager") = false,
           py::arg("advice") = py::none(),
           "Stores one array per key; with chain=True key i's parent is key i-1 (key 0's is `parent`). "
           "With a codec (kvstash.BlockCodec) each array is a raw block, stored encoded. With eager=True "
           "each block's bytes go with its request, no reservation round (two-sided UCX; for keys just "
           "looked up: an existing key's bytes still cross the network). advice='likely' or 'unlikely' "
           "tells the daemon's eviction policy whether the blocks will be requested again. "
           "Returns {'stored', 'existed', 'failed'}.")
      .def("get", &PyClient::Get, py::arg("keys"), py::arg("arrays"), py::arg("codec") = nullptr,
           "Writes each found block into its array in place; returns found flags. With a codec the stored "
           "blocks are decoded into the arrays; one that does not decode is a miss.")
      .def("remove", &PyClient::Remove, py::arg("keys"))
      .def("stats", &PyClient::Stats)
      .def("health", &PyClient::Health)
      .def_property_readonly("data_path", &PyClient::data_path);

  m.def(
      "gpu_data_path",
      [](const std::string& transports) {
        const gpu::GpuDataPathReport r = gpu::ProbeGpuDataPath(transports);
        return py::make_tuple(std::string(gpu::ToString(r.path)), r.reason);
      },
      py::arg("ucx_transports") = "", "('direct' | 'staged', reason): how GPU bytes reach the store here.");
  BindPagedCopy(m);
}
