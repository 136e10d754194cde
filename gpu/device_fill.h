// Fills device memory with pseudo-random, never-zero 64-bit words (splitmix64 of seed and index):
// test and benchmark data that cannot hide unwritten outputs or wrong indexing.
//
// Asynchronous on `stream`. Thread-safety: free function, safe from any thread.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kvstash/status.h"

namespace kvstash::gpu {

// Fills the first bytes / 8 * 8 bytes of `p` (device memory). INTERNAL when the launch fails.
Status FillRandom(std::byte* p, size_t bytes, uint64_t seed, cudaStream_t stream);

}  // namespace kvstash::gpu
