// Block checksums: XXH3-64 over a block's bytes. Clients compute it before PutCommit, the daemon
// verifies it at commit, and readers may verify it after a get.
#pragma once

#include <cstddef>
#include <cstdint>

#include <xxhash.h>

namespace kvstash {

inline uint64_t BlockChecksum(const void* data, size_t size) { return XXH3_64bits(data, size); }

}  // namespace kvstash
