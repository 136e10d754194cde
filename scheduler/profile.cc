#include "scheduler/profile.h"

#include <cmath>
#include <fstream>
#include <sstream>

namespace kvstash::scheduler {
namespace {

Status LineError(const std::string& origin, size_t line, const std::string& what) {
  return InvalidArgument(origin + ":" + std::to_string(line) + ": " + what);
}

}  // namespace

Result<Profile> ParseProfile(const std::string& text, const std::string& origin) {
  Profile profile;
  std::istringstream in(text);
  std::string line;
  size_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream fields(line);
    std::string kind;
    if (!(fields >> kind)) continue;
    double a = 0, b = 0, seconds = 0;
    if (!(fields >> a >> b >> seconds)) {
      return LineError(origin, lineno, "expected '" + kind + " <x> <y> <seconds>'");
    }
    std::string extra;
    if (fields >> extra)
      return LineError(origin, lineno, "unexpected trailing field '" + extra + "'");
    if (!std::isfinite(seconds) || seconds <= 0 || seconds > 1e6) {
      return LineError(origin, lineno, "seconds must be in (0, 1e6]");
    }
    if (kind == "prefill") {
      if (!(a > 0 && a <= 1e7 && b >= 0 && b < a)) {
        return LineError(origin, lineno, "prefill needs 0 <= cached < input <= 1e7");
      }
      profile.prefill.push_back({a, b, seconds});
    } else if (kind == "decode") {
      if (!(a >= 1 && a <= 1e5 && b >= a && b <= 1e10)) {
        return LineError(origin, lineno,
                         "decode needs 1 <= batch <= 1e5 and batch <= context <= 1e10");
      }
      profile.decode.push_back({a, b, seconds});
    } else {
      return LineError(origin, lineno, "unknown entry '" + kind + "' (expected prefill or decode)");
    }
  }
  return profile;
}

Result<Profile> LoadProfile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot open profile " + path);
  std::stringstream buf;
  buf << in.rdbuf();
  return ParseProfile(buf.str(), path);
}

std::string FormatProfile(const Profile& profile) {
  std::ostringstream out;
  out.precision(9);
  out << "# kvstash scheduler profile: prefill <n> <cached> <seconds> | decode <batch> <context> "
         "<seconds>\n";
  for (const auto& p : profile.prefill)
    out << "prefill " << p.n << ' ' << p.p << ' ' << p.seconds << '\n';
  for (const auto& d : profile.decode)
    out << "decode " << d.batch << ' ' << d.context << ' ' << d.seconds << '\n';
  return out.str();
}

Profile DefaultProfile(const ModelSpec& spec) {
  Profile profile;
  for (double n : {512.0, 2048.0, 8192.0, 16384.0, 32768.0, 65536.0, 131072.0}) {
    for (double frac : {0.0, 0.25, 0.5, 0.9}) {
      const double p = std::floor(n * frac);
      profile.prefill.push_back({n, p, spec.PrefillSeconds(n, p)});
    }
  }
  for (double batch : {1.0, 8.0, 32.0, 128.0}) {
    for (double per_seq : {1024.0, 8192.0, 32768.0}) {
      const double ctx = batch * per_seq;
      profile.decode.push_back({batch, ctx, spec.DecodeStepSeconds(batch, ctx)});
    }
  }
  return profile;
}

}  // namespace kvstash::scheduler
