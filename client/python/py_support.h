// Helpers the `kvstash` module's bindings share: kvstash.Error, and keys and token ids from
// Python objects (bad ones raise ValueError).
#pragma once

#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "kvstash/block_key.h"
#include "kvstash/result.h"

namespace kvstash::python {

namespace py = pybind11;


struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline void Raise(const Status& st) {
  if (!st.ok()) throw Error(st.ToString());
}
template <typename T>
T Unwrap(Result<T> r) {
  Raise(r.status());
  return std::move(r).value();
}

inline BlockKey KeyOf(const py::handle& obj, const char* what) {
  if (!py::isinstance<py::bytes>(obj)) throw py::value_error(std::string(what) + ": a key is 16 bytes (bytes)");
  auto key = BlockKey::FromBytes(std::string_view(obj.cast<py::bytes>()));
  if (!key.ok()) throw py::value_error(std::string(what) + ": " + key.status().message());
  return *key;
}

inline std::vector<BlockKey> KeysOf(const py::sequence& keys) {
  std::vector<BlockKey> out;
  out.reserve(keys.size());
  for (auto k : keys) out.push_back(KeyOf(k, "keys"));
  return out;
}

inline py::bytes KeyBytes(const BlockKey& key) { return py::bytes(std::string(key.AsBytes())); }

inline std::vector<uint32_t> TokensOf(const py::handle& tokens) {
  std::vector<uint32_t> out;
  py::object seq = py::hasattr(tokens, "tolist") ? tokens.attr("tolist")() : py::reinterpret_borrow<py::object>(tokens);
  for (auto t : seq) {
    const long long v = t.cast<long long>();
    if (v < 0 || v > 0xFFFFFFFFLL) throw py::value_error("token ids must fit in uint32");
    out.push_back(static_cast<uint32_t>(v));
  }
  return out;
}

}  // namespace kvstash::python
