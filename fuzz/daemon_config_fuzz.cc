// kvstashd's TOML reader (server/daemon_config.h ApplyTomlString), fed any bytes as an operator's
// or a config-management tool's file could hold them. It never crashes; a document it refuses
// leaves the config as it was; one it accepts leaves every setting inside its range (the table's
// checks, server/daemon_settings.cc), each value reading back as itself from its flag form, and
// Validate (which adds the rules between settings, that flags may still satisfy) returns.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "server/daemon_config.h"

namespace {

std::vector<std::string> Snapshot(const kvstash::server::DaemonConfig& config) {
  std::vector<std::string> values;
  for (const auto& s : kvstash::server::DaemonSettings()) values.push_back(s.to_text(config));
  return values;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvstash;
  using namespace kvstash::server;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  DaemonConfig config;
  const std::vector<std::string> before = Snapshot(config);
  const Status read = ApplyTomlString(text, "fuzz.toml", config);
  if (!read.ok()) {
    if (read.code() != StatusCode::kInvalidArgument || Snapshot(config) != before) std::abort();
    return 0;
  }
  if (!settings::CheckRanges(DaemonSettings(), config).ok()) std::abort();
  for (const auto& s : DaemonSettings()) {
    DaemonConfig again;
    if (!s.from_text(s.to_text(config), again).ok() || s.to_text(again) != s.to_text(config)) std::abort();
  }
  (void)config.Validate();
  (void)config.TierOptions();
  return 0;
}
