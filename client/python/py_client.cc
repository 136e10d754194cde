// kvstash.Client (py_client.h): connection options from keyword arguments, and put/get/lookup on
// the caller's arrays in place, releasing the GIL for every wait.
#include "client/python/py_client.h"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "client/kv_codec.h"
#include "client/python/array_view.h"
#include "client/python/device_copy.h"
#include "client/python/py_support.h"
#ifdef KVSTASH_HAVE_CUDA
#include "client/kv_codec_device.h"
#endif
#include "kvstash/client.h"

namespace py = pybind11;

namespace kvstash::python {
namespace {

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
    std::string tls_ca, tls_cert, tls_key, tls_server_name, token, shared_namespace;
  };
  // A cluster found through etcd instead of one address: ClientOptions::etcd_endpoints, cluster and
  // etcd_tls_{ca,cert,key}_file.
  struct Cluster {
    std::vector<std::string> etcd;
    std::string cluster, etcd_ca, etcd_cert, etcd_key;
  };
  PyClient(const std::string& address, const std::string& data_path, bool verify_checksums, uint64_t timeout_ms,
           const std::string& ucx_transports, uint64_t lease_ms, const Security& security, const Cluster& cluster) {
    ClientOptions o;
    o.etcd_endpoints = cluster.etcd;
    if (!cluster.cluster.empty()) o.cluster = cluster.cluster;
    o.etcd_tls_ca_file = cluster.etcd_ca;
    o.etcd_tls_cert_file = cluster.etcd_cert;
    o.etcd_tls_key_file = cluster.etcd_key;
    o.tls_ca_file = security.tls_ca;
    o.tls_cert_file = security.tls_cert;
    o.tls_key_file = security.tls_key;
    o.tls_server_name = security.tls_server_name;
    o.token = security.token;
    o.shared_namespace = security.shared_namespace;
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
      // Which items go through the call below: all of them, or (CUDA arrays first tried directly)
      // the CUDA arrays the client could not read into device memory.
      std::vector<size_t> rest(ks.size());
      for (size_t i = 0; i < ks.size(); ++i) rest[i] = i;
      if (codec == nullptr && cuda_bytes > 0) {
        // Straight into device memory where this client's UCX moves CUDA memory (BufferMemory);
        // an array it cannot serve so comes back FAILED_PRECONDITION, unwritten, and is staged.
        std::vector<GetItem> direct(ks.size());
        for (size_t i = 0; i < ks.size(); ++i) {
          direct[i].key = ks[i];
          direct[i].buffer = {views[i].data, views[i].nbytes};
          if (views[i].cuda) direct[i].memory = BufferMemory::kCudaDevice;
        }
        Raise(client_->Get(direct));
        rest.clear();
        cuda_bytes = 0;
        for (size_t i = 0; i < ks.size(); ++i) {
          found[i] = direct[i].found && direct[i].size == views[i].nbytes;
          if (views[i].cuda && !direct[i].found && direct[i].status.code() == StatusCode::kFailedPrecondition) {
            rest.push_back(i);
            cuda_bytes += views[i].nbytes;
          }
        }
      }
      std::unique_ptr<HostStaging> staging;
      if (cuda_bytes > 0) staging = std::make_unique<HostStaging>(cuda_bytes);
      std::vector<GetItem> items(rest.size());
      std::vector<std::byte*> staged(rest.size(), nullptr);
      size_t off = 0;
      for (size_t j = 0; j < rest.size(); ++j) {
        const size_t i = rest[j];
        items[j].key = ks[i];
        std::byte* dst = views[i].data;
        if (views[i].cuda) {
          staged[j] = dst = staging->data() + off;
          off += views[i].nbytes;
        }
        items[j].buffer = {dst, views[i].nbytes};
      }
      // With a codec (host arrays only here): encoded blocks are fetched and decoded on the CPU; a
      // block not in this codec's format is a miss.
      if (!items.empty()) Raise(codec != nullptr ? codec->GetBlocks(*client_, items) : client_->Get(items));
      for (size_t j = 0; j < rest.size(); ++j) {
        const size_t i = rest[j];
        // A block smaller than the array would leave stale bytes behind: count it as a miss.
        found[i] = items[j].found && items[j].size == views[i].nbytes;
        if (found[i] && staged[j] != nullptr) CopyHostToDevice(views[i].data, staged[j], views[i].nbytes);
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

void BindClient(py::module_& m) {
  py::class_<PyClient>(m, "Client")
      .def(py::init([](const std::string& address, const std::string& data_path, bool verify_checksums,
                       uint64_t timeout_ms, const std::string& ucx_transports, uint64_t lease_ms,
                       const std::string& tls_ca, const std::string& tls_cert, const std::string& tls_key,
                       const std::string& tls_server_name, const std::string& token,
                       const std::string& shared_namespace, const std::vector<std::string>& etcd, const std::string& cluster, const std::string& etcd_ca,
                       const std::string& etcd_cert, const std::string& etcd_key) {
             return std::make_unique<PyClient>(address, data_path, verify_checksums, timeout_ms, ucx_transports,
                                               lease_ms,
                                               PyClient::Security{tls_ca, tls_cert, tls_key, tls_server_name, token,
                                                                  shared_namespace},
                                               PyClient::Cluster{etcd, cluster, etcd_ca, etcd_cert, etcd_key});
           }),
           py::arg("address") = "", py::arg("data_path") = "auto", py::arg("verify_checksums") = true,
           py::arg("timeout_ms") = 30000, py::arg("ucx_transports") = "", py::arg("lease_ms") = 0,
           py::arg("tls_ca") = "", py::arg("tls_cert") = "", py::arg("tls_key") = "", py::arg("tls_server_name") = "",
           py::arg("token") = "", py::arg("shared_namespace") = "", py::arg("etcd") = std::vector<std::string>{}, py::arg("cluster") = "",
           py::arg("etcd_ca") = "", py::arg("etcd_cert") = "", py::arg("etcd_key") = "",
           "Connects to a kvstashd at `address`, or to the cluster `cluster` found through the etcd endpoints "
           "`etcd` (https:// ones need etcd_ca; etcd_cert/etcd_key for etcd --client-cert-auth). tls_ca (a PEM "
           "file) turns TLS on towards the daemons; tls_cert/tls_key for mutual TLS; token is sent as a bearer "
           "token with every call; shared_namespace works in a shared namespace the token's tenant joined "
           "(docs/SECURITY.md).")
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
}

}  // namespace kvstash::python
