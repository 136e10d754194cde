#pragma once

namespace kvstash {
inline constexpr const char* kVersion = "0.1.0";
}  // namespace kvstash
