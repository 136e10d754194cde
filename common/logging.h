// Logging goes through spdlog; this header fixes the process-wide setup so every binary logs the
// same way ("[time] [level] message" to stderr). Call InitLogging once from main().
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

#include "kvstash/status.h"

namespace kvstash {

// level: trace|debug|info|warn|error|off. INVALID_ARGUMENT for anything else (logging unchanged).
Status InitLogging(std::string_view level);

}  // namespace kvstash
