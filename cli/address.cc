#include "cli/address.h"

#include <charconv>
#include <cstdlib>

namespace kvstash::cli {

Status ValidateAddress(std::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return InvalidArgument("address '" + std::string(address) + "' is not HOST:PORT");
  }
  const std::string_view host = address.substr(0, colon);
  if (host.front() == '[' && host.back() != ']') {
    return InvalidArgument("address '" + std::string(address) + "' has an unclosed '['");
  }
  const std::string_view port = address.substr(colon + 1);
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 ||
      value > 65535) {
    return InvalidArgument("address '" + std::string(address) + "' needs a port in 1..65535");
  }
  return Status::Ok();
}

Result<std::string> ResolveAddress(std::string_view flag_value) {
  std::string address;
  std::string source;
  if (!flag_value.empty()) {
    address = flag_value;
    source = "--addr";
  } else if (const char* env = std::getenv(kAddressEnv); env != nullptr && *env != '\0') {
    address = env;
    source = std::string("$") + kAddressEnv;
  } else {
    return std::string(kDefaultAddress);
  }
  const Status valid = ValidateAddress(address);
  if (!valid.ok()) return InvalidArgument(source + ": " + valid.message());
  return address;
}

}  // namespace kvstash::cli
