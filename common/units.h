// Byte sizes as people write them: "64MiB", "1GiB", "4096", "1.5GB".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kvstash/result.h"

namespace kvstash {

// Accepts an optional decimal fraction and a unit B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB.
// KB/MB/... are powers of 1000; K/KiB/M/MiB/... are powers of 1024. INVALID_ARGUMENT on anything else.
Result<uint64_t> ParseByteSize(std::string_view text);

// 1536 -> "1.5 KiB".
std::string FormatBytes(uint64_t bytes);

}  // namespace kvstash
