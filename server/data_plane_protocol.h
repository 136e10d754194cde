// DataPlaneProtocol: how block bytes move over UCX between clients and this daemon
// (docs/DATA_PLANE.md), as the daemon is configured (ucx.protocol, --ucx-protocol) and as the Store
// service offers it. kAuto lets each client pick per daemon (one-sided where memory maps or RMA
// is native, two-sided over tcp); kOneSided serves no two-sided transfers; kTwoSided asks clients
// on auto to use it everywhere. Its name is parsed only at the edge (the settings table) and
// written with Name() into DataPlaneInfo replies (the wire keeps the name).
//
// Header-only; thread-safe (constants and pure functions).
#pragma once

#include <span>
#include <string_view>

#include "common/enum_names.h"

namespace kvstash::server {

enum class DataPlaneProtocol { kAuto, kOneSided, kTwoSided };
inline constexpr settings::EnumName<DataPlaneProtocol> kDataPlaneProtocolNames[] = {
    {DataPlaneProtocol::kAuto, "auto"}, {DataPlaneProtocol::kOneSided, "one-sided"},
    {DataPlaneProtocol::kTwoSided, "two-sided"}};

inline std::string_view Name(DataPlaneProtocol value) {
  return settings::EnumToName(std::span(kDataPlaneProtocolNames), value);
}

}  // namespace kvstash::server
