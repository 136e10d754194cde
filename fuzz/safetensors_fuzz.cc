// A safetensors file: Open refuses it with an error, or every tensor it lists lies inside the file,
// has a byte length equal to its shape's elements times its dtype's size, and can be read.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "node/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/kvstash_safetensors_fuzz_" + std::to_string(::getpid());
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  auto file = kvstash::node::SafetensorsFile::Open(path);
  if (file.ok()) {
    uint64_t sum = 0;
    for (const auto& t : (*file)->tensors()) {
      if (t.bytes.size() != t.elements() * kvstash::node::DTypeBytes(t.dtype)) std::abort();
      for (std::byte b : t.bytes) sum += static_cast<uint8_t>(b);  // every byte must be readable
      if ((*file)->Find(t.name) == nullptr) std::abort();
    }
    if (sum == 0xffffffffffffffffULL) std::abort();
  }
  std::remove(path.c_str());
  return 0;
}
