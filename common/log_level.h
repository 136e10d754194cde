// Log levels, as every kvstash process names them in its settings (server.log_level,
// --log-level); common/logging.h InitLogging takes the name.
#pragma once

#include <span>
#include <string_view>

#include "common/enum_names.h"

namespace kvstash::settings {

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kOff };
inline constexpr EnumName<LogLevel> kLogLevelNames[] = {
    {LogLevel::kTrace, "trace"}, {LogLevel::kDebug, "debug"}, {LogLevel::kInfo, "info"},
    {LogLevel::kWarn, "warn"},   {LogLevel::kError, "error"}, {LogLevel::kOff, "off"}};
inline std::string_view Name(LogLevel level) { return EnumToName(std::span(kLogLevelNames), level); }

}  // namespace kvstash::settings
