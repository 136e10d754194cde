// kvstash.Client, the C++ SDK's Client for Python callers (kvstash_module.cc lists the module).
#pragma once

#include <pybind11/pybind11.h>

namespace kvstash::python {

// Adds kvstash.Client to `m`.
void BindClient(pybind11::module_& m);

}  // namespace kvstash::python
