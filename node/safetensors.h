// The safetensors format (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
// length N, N bytes of JSON {"NAME": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
// "__metadata__": {..}}, then the raw little-endian tensor data; offsets are relative to the data.
// Our own reader (mmap'd, validating) and writer. Only F32, F16 and BF16 tensors are accepted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvstash/result.h"
#include "node/model_config.h"

namespace kvstash::node {

// One tensor of an open file. `bytes` points into the file's mapping: valid while the
// SafetensorsFile lives. Not aligned beyond what the file gives (copy before typed access).
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<uint64_t> shape;
  std::span<const std::byte> bytes;
  uint64_t elements() const;  // product of shape (1 for a scalar)
};

// A safetensors file mapped read-only. Immutable after Open: safe to read from many threads.
class SafetensorsFile {
 public:
  // Maps and validates the whole header; errors (INVALID_ARGUMENT, NOT_FOUND if it cannot be
  // opened) name the file and the tensor: a file shorter than 8 bytes, a header length past the end
  // of the file, a header that is not a JSON object, an unknown dtype, a bad shape or data_offsets,
  // shape product * dtype size != byte length, data_offsets outside the data or overlapping another
  // tensor's, a duplicate name. Tensor bytes are not read.
  static Result<std::unique_ptr<SafetensorsFile>> Open(const std::filesystem::path& file);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  // In the order of their data in the file.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // nullptr when absent.
  const TensorView* Find(std::string_view name) const;
  const std::filesystem::path& path() const { return path_; }

 private:
  SafetensorsFile(std::filesystem::path path, const std::byte* map, size_t size)
      : path_(std::move(path)), map_(map), size_(size) {}
  Status Parse();

  std::filesystem::path path_;
  const std::byte* map_;
  size_t size_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in tensors_
};

// A tensor to write. REQUIRES for WriteSafetensors: bytes.size() == product(shape) * DTypeBytes.
struct TensorData {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<uint64_t> shape;
  std::vector<std::byte> bytes;
};

// Writes `tensors` in the given order with contiguous data_offsets, "__metadata__":
// {"format": "pt"} first, the header padded with spaces to a multiple of 8 bytes. Writes a
// temporary file beside `file` and renames it into place. INVALID_ARGUMENT (naming the tensor) for
// a byte length that disagrees with the shape or a duplicate or reserved name; INTERNAL on an I/O
// failure.
Status WriteSafetensors(const std::filesystem::path& file, const std::vector<TensorData>& tensors);

}  // namespace kvstash::node
