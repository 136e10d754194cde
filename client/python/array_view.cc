#include "client/python/array_view.h"

namespace py = pybind11;

namespace kvstash::python {

namespace {

bool CContiguous(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides, size_t itemsize) {
  int64_t expected = static_cast<int64_t>(itemsize);
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

ArrayView FromTorch(const py::handle& t, bool writable, const std::string& what) {
  if (!t.attr("is_contiguous")().cast<bool>()) throw py::value_error(what + ": tensor is not contiguous");
  ArrayView v;
  v.data = reinterpret_cast<std::byte*>(t.attr("data_ptr")().cast<uintptr_t>());
  v.itemsize = t.attr("element_size")().cast<size_t>();
  v.nbytes = t.attr("numel")().cast<size_t>() * v.itemsize;
  for (auto d : t.attr("shape")) v.shape.push_back(d.cast<int64_t>());
  v.cuda = t.attr("is_cuda").cast<bool>();
  if (writable && t.attr("requires_grad").cast<bool>()) {
    throw py::value_error(what + ": tensor requires grad; write into a tensor that does not (use torch.no_grad())");
  }
  return v;
}

ArrayView FromCudaInterface(const py::handle& obj, bool writable, const std::string& what) {
  py::dict cai = obj.attr("__cuda_array_interface__");
  ArrayView v;
  auto data = cai["data"].cast<py::tuple>();
  v.data = reinterpret_cast<std::byte*>(data[0].cast<uintptr_t>());
  v.readonly = data[1].cast<bool>();
  const std::string typestr = cai["typestr"].cast<std::string>();
  v.itemsize = std::stoul(typestr.substr(2));
  size_t n = 1;
  for (auto d : cai["shape"]) {
    v.shape.push_back(d.cast<int64_t>());
    n *= static_cast<size_t>(v.shape.back());
  }
  v.nbytes = n * v.itemsize;
  if (cai.contains("strides") && !cai["strides"].is_none()) {
    std::vector<int64_t> strides;
    for (auto s : cai["strides"]) strides.push_back(s.cast<int64_t>());
    if (!CContiguous(v.shape, strides, v.itemsize)) throw py::value_error(what + ": CUDA array is not C-contiguous");
  }
  v.cuda = true;
  if (writable && v.readonly) throw py::value_error(what + ": CUDA array is read-only");
  return v;
}

ArrayView FromBuffer(const py::handle& obj, bool writable, const std::string& what) {
  py::buffer buf = py::reinterpret_borrow<py::buffer>(obj);
  py::buffer_info info = buf.request(writable);
  ArrayView v;
  v.data = static_cast<std::byte*>(info.ptr);
  v.itemsize = static_cast<size_t>(info.itemsize);
  v.nbytes = static_cast<size_t>(info.size) * v.itemsize;
  v.shape.assign(info.shape.begin(), info.shape.end());
  std::vector<int64_t> strides(info.strides.begin(), info.strides.end());
  if (!CContiguous(v.shape, strides, v.itemsize)) throw py::value_error(what + ": array is not C-contiguous");
  v.readonly = info.readonly;
  return v;
}

}  // namespace

ArrayView ViewOf(const py::handle& obj, bool writable, const std::string& what) {
  if (py::hasattr(obj, "data_ptr") && py::hasattr(obj, "is_cuda") && py::hasattr(obj, "element_size")) {
    return FromTorch(obj, writable, what);
  }
  if (py::hasattr(obj, "__cuda_array_interface__")) return FromCudaInterface(obj, writable, what);
  if (PyObject_CheckBuffer(obj.ptr())) {
    try {
      return FromBuffer(obj, writable, what);
    } catch (const py::error_already_set& e) {
      throw py::value_error(what + ": " + (writable ? "not a writable buffer: " : "not a buffer: ") + e.what());
    }
  }
  throw py::value_error(what + ": expected a torch tensor, a numpy array, a CUDA array or a buffer, got " +
                        std::string(py::str(obj.get_type())));
}

}  // namespace kvstash::python
