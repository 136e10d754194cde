// PageMemory: where a KvPagePool's bytes live. Host memory for the cpu and emulated engines; the
// cuda engine supplies HBM. The pool and the runtime move bytes in and out only through CopyIn /
// CopyOut, so they never dereference device memory.
//
// Thread-safety: CopyIn/CopyOut on distinct ranges may run concurrently.
#pragma once

#include <cstddef>
#include <memory>
#include <span>

#include "kvstash/result.h"

namespace kvstash::node {

class PageMemory {
 public:
  virtual ~PageMemory() = default;
  // Base address of size() bytes; a device address when !host_accessible().
  virtual std::byte* data() = 0;
  virtual size_t size() const = 0;
  virtual bool host_accessible() const = 0;
  // Copies host bytes to [offset, offset + src.size()) / from there to host bytes. REQUIRES: in range.
  virtual Status CopyIn(size_t offset, std::span<const std::byte> src) = 0;
  virtual Status CopyOut(size_t offset, std::span<std::byte> dst) const = 0;
};

// Anonymous private mapping, zero-filled and committed only as pages are touched (so a pool sized
// for a large model costs nothing until it is used). RESOURCE_EXHAUSTED when the mapping fails.
Result<std::unique_ptr<PageMemory>> AllocateHostPageMemory(size_t bytes);

}  // namespace kvstash::node
