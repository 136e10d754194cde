// ByteAccess: how a tier's own code touches block bytes (the copy out of Read, the hash of Commit,
// the bytes handed to an eviction hook, the TierManager's copy into an HBM reservation). DramTier uses the host implementation by default; a tier
// whose arena is device memory (gpu/hbm_tier.h) passes one that goes through the device's copy
// engine, and otherwise reuses DramTier's index, allocator, eviction and leases unchanged.
//
// Thread-safety: implementations are called concurrently from any thread.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kvstash/result.h"

namespace kvstash::tiers {

class ByteAccess {
 public:
  virtual ~ByteAccess() = default;
  // True when the CPU may read and write the tier's memory directly.
  virtual bool host_addressable() const = 0;
  // Copies `size` bytes of tier memory at `src` into `dst` (host memory, or any memory the
  // implementation can address) and returns once the bytes are there.
  virtual Status CopyOut(std::byte* dst, const std::byte* src, uint64_t size) const = 0;
  // Copies `size` bytes of host memory at `src` into tier memory at `dst` and returns once they
  // are there (the TierManager fills HBM reservations from DRAM with it).
  virtual Status CopyIn(std::byte* dst, const std::byte* src, uint64_t size) const = 0;
  // XXH3-64 (common/checksum.h) of `size` bytes of tier memory at `src`.
  virtual Result<uint64_t> Checksum(const std::byte* src, uint64_t size) const = 0;
};

// Host memory: memcpy and XXH3 on the CPU. Never fails. A process-wide immutable object.
const ByteAccess& HostByteAccess();

}  // namespace kvstash::tiers
