// ArrayView: the memory behind a Python object the kvstash module reads or writes in place —
// a torch tensor (CPU or CUDA, by data_ptr), anything with __cuda_array_interface__ (CuPy, Numba,
// torch CUDA tensors), or anything with the buffer protocol (numpy arrays, bytearray, memoryview).
//
// Only C-contiguous memory is accepted (a block is one run of bytes); views are not copied.
// REQUIRES: the GIL is held while a view is made; the Python object must outlive the view's use.
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kvstash::python {

struct ArrayView {
  std::byte* data = nullptr;
  size_t nbytes = 0;
  size_t itemsize = 1;
  std::vector<int64_t> shape;
  bool cuda = false;
  bool readonly = false;
};

// Throws ValueError (pybind11::value_error) for non-contiguous or unsupported objects, and for
// read-only memory when `writable` is asked. `what` names the argument in messages.
ArrayView ViewOf(const pybind11::handle& obj, bool writable, const std::string& what);

}  // namespace kvstash::python
