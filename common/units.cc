#include "common/units.h"

#include <cctype>
#include <cmath>
#include <cstdio>

namespace kvstash {

Result<uint64_t> ParseByteSize(std::string_view text) {
  auto fail = [&] { return InvalidArgument("not a byte size: '" + std::string(text) + "' (try 64MiB)"); };
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) return fail();
  const std::string number(text.substr(0, i));
  char* end = nullptr;
  const double value = std::strtod(number.c_str(), &end);
  if (end != number.c_str() + number.size() || !std::isfinite(value) || value < 0) return fail();
  std::string unit;
  for (char c : text.substr(i)) {
    if (c == ' ') continue;
    unit.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  double multiplier = 0;
  if (unit.empty() || unit == "b") multiplier = 1;
  else if (unit == "k" || unit == "kib") multiplier = 1024.0;
  else if (unit == "kb") multiplier = 1e3;
  else if (unit == "m" || unit == "mib") multiplier = 1024.0 * 1024;
  else if (unit == "mb") multiplier = 1e6;
  else if (unit == "g" || unit == "gib") multiplier = 1024.0 * 1024 * 1024;
  else if (unit == "gb") multiplier = 1e9;
  else if (unit == "t" || unit == "tib") multiplier = 1024.0 * 1024 * 1024 * 1024;
  else if (unit == "tb") multiplier = 1e12;
  else return fail();
  const double bytes = value * multiplier;
  if (bytes > 1.8e19) return fail();
  return static_cast<uint64_t>(std::llround(bytes));
}

std::string FormatBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  if (u == 0) std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(bytes));
  else std::snprintf(buf, sizeof(buf), "%.1f %s", v, kUnits[u]);
  return buf;
}

}  // namespace kvstash
