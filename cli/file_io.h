// Whole-file reads and writes for the commands that move block bytes or token files.
// "-" names stdin (reads) or stdout (writes).
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "kvstash/result.h"

namespace kvstash::cli {

// The file's bytes. NOT_FOUND / PERMISSION_DENIED / INTERNAL with the path and the OS reason;
// OUT_OF_RANGE when it holds more than `max_bytes`.
Result<std::vector<std::byte>> ReadWholeFile(const std::string& path, uint64_t max_bytes);

// Creates or truncates the file and writes `data` (devices such as /dev/null work too); for "-"
// writes to stdout. Callers fetch everything first, so a failed fetch never truncates the file.
Status WriteWholeFile(const std::string& path, std::span<const std::byte> data);

}  // namespace kvstash::cli
