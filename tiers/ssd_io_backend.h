// SsdIoBackend: which IoEngine (tiers/io_engine.h) the SSD tier runs its segment I/O on. Options
// hold the enum; its name is parsed only at the edges (the daemon's ssd.io_backend setting, a
// bench's flag) and printed with Name().
//
// Header-only; thread-safe (constants and pure functions).
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "common/enum_names.h"
#include "kvstash/result.h"

namespace kvstash::tiers {

enum class SsdIoBackend {
  kAuto,     // io_uring, or the thread pool (with a warning saying why) when io_uring cannot be set up
  kUring,    // io_uring or nothing: SsdTier::Open fails with UNAVAILABLE without it
  kThreads,  // the pread/pwrite thread pool
};
inline constexpr settings::EnumName<SsdIoBackend> kSsdIoBackendNames[] = {
    {SsdIoBackend::kAuto, "auto"}, {SsdIoBackend::kUring, "uring"}, {SsdIoBackend::kThreads, "threads"}};

inline std::string_view Name(SsdIoBackend value) { return settings::EnumToName(std::span(kSsdIoBackendNames), value); }

// "auto", "uring" or "threads" -> the backend; INVALID_ARGUMENT "io_backend must be auto, uring or
// threads, not '<name>'" otherwise.
inline Result<SsdIoBackend> ParseSsdIoBackend(std::string_view name) {
  Result<SsdIoBackend> backend = settings::ParseEnum<SsdIoBackend>(kSsdIoBackendNames, name);
  if (!backend.ok()) return InvalidArgument("io_backend " + backend.status().message());
  return backend;
}

}  // namespace kvstash::tiers
