#include "common/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace kvstash {

Status InitLogging(std::string_view level) {
  const auto parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    return InvalidArgument("unknown log level '" + std::string(level) + "' (trace|debug|info|warn|error|off)");
  }
  auto logger = spdlog::stderr_color_mt("kvstash");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] %v");
  spdlog::set_level(parsed);
  return Status::Ok();
}

}  // namespace kvstash
