// Settings tables: every setting of a process declared once, as one descriptor in one table, from
// which its file form (settings_toml.h), its command-line flag and help (settings_cli.h), and its
// range check are all generated. The struct that holds the values (DaemonConfig, ...) keeps its
// default member initializers: a default-constructed struct is the set of defaults, and the help
// text and the tests read them from there.
//
// A descriptor is built by one of the factory functions below (String, Bool, Integer, Number,
// Bytes, Enum, List, Custom) from a pointer to the struct member (or, with the ...At variants, an
// accessor `[](auto& c) -> auto& { return c.part.field; }` for a member of a member), then refined
// with its unit, allowed values and condition:
//
//   settings::Integer("server.threads", "--threads", &DaemonConfig::threads, "most gRPC handler threads")
//       .Range(1, 1024),
//
// Strings with a closed set of values are enums inside: Enum() parses the name once, at the edge,
// and refuses any other with the list of allowed names.
//
// Header-only (templates over the config struct); kvstashd, kvstash-conductor and kvstash-node
// use it. Thread-safety: tables are built once and only read afterwards.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include <fmt/format.h>

#include "common/units.h"
#include "kvstash/result.h"

namespace kvstash::settings {

// What a setting holds; decides how a file and a flag spell its value.
enum class Kind { kString, kBool, kInteger, kNumber, kBytes, kEnum, kList, kCustom };

// A value as a configuration file gives it, reduced to the types settings use. monostate: any
// other type (a date, a table, a list that is not all strings).
using FileValue = std::variant<std::monostate, bool, int64_t, double, std::string, std::vector<std::string>>;

// One allowed value of an enum setting and the name files and flags give it.
template <typename E>
struct EnumName {
  E value;
  std::string_view name;
};

// "a, b or c".
template <typename E>
std::string JoinNames(std::span<const EnumName<E>> names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " or " : ", ";
    out += names[i].name;
  }
  return out;
}

// `text` as one of `names`; INVALID_ARGUMENT listing the allowed names otherwise.
template <typename E>
Result<E> ParseEnum(std::span<const EnumName<E>> names, std::string_view text) {
  for (const EnumName<E>& n : names) {
    if (n.name == text) return n.value;
  }
  return InvalidArgument("must be " + JoinNames(names) + ", not '" + std::string(text) + "'");
}

template <typename E>
std::string_view EnumToName(std::type_identity_t<std::span<const EnumName<E>>> names, E value) {
  for (const EnumName<E>& n : names) {
    if (n.value == value) return n.name;
  }
  return "?";
}

// Log levels, as every kvstash process names them (common/logging.h InitLogging takes the name).
enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kOff };
inline constexpr EnumName<LogLevel> kLogLevelNames[] = {
    {LogLevel::kTrace, "trace"}, {LogLevel::kDebug, "debug"}, {LogLevel::kInfo, "info"},
    {LogLevel::kWarn, "warn"},   {LogLevel::kError, "error"}, {LogLevel::kOff, "off"}};
inline std::string_view Name(LogLevel level) { return EnumToName(std::span(kLogLevelNames), level); }

template <typename Config>
struct Setting {
  std::string key;    // "section.name" in the file; empty: no file form
  std::string flag;   // "--name"; empty: no flag
  Kind kind = Kind::kString;
  std::string help;   // what it does, in words
  std::string unit;   // shown after the default in the help: "ms", "s", ...
  std::string range;  // the allowed values in words ("1..1024", "auto, uring or threads"); empty: any
  std::string default_text;  // the help's default where the value does not say it ("the listen host")
  // A flag that takes no value: the value it stands for ("true" for --standalone, "false" for
  // --no-ucx). Empty: the flag takes a value.
  std::string switch_value;
  std::vector<std::string> allowed;  // an enum's names, for the help and tests

  // Sets the member from a file value; INVALID_ARGUMENT "must be ..." (the caller names the key).
  std::function<Status(const FileValue&, Config&)> from_file;
  // Sets the member from a flag's text; INVALID_ARGUMENT with the reason.
  std::function<Status(const std::string&, Config&)> from_text;
  // The member's value as a flag would spell it.
  std::function<std::string(const Config&)> to_text;
  // INVALID_ARGUMENT "must be <range>, not <value>" when the value is outside its range.
  std::function<Status(const Config&)> in_range;
  // Whether the range applies to this config (an SSD setting only when the SSD tier is on); null: always.
  std::function<bool(const Config&)> applies;

  // The name errors use: the file key, or the flag when there is none.
  const std::string& name() const { return key.empty() ? flag : key; }

  Setting&& Unit(std::string u) && {
    unit = std::move(u);
    return std::move(*this);
  }
  Setting&& DefaultText(std::string text) && {
    default_text = std::move(text);
    return std::move(*this);
  }
  Setting&& Switch(std::string value) && {
    switch_value = std::move(value);
    return std::move(*this);
  }
  Setting&& When(std::function<bool(const Config&)> condition) && {
    applies = std::move(condition);
    return std::move(*this);
  }
  // Numeric settings: the closed interval [lo, hi].
  template <typename T>
  Setting&& Range(T lo, T hi) && {
    range = fmt::format("{}..{}", lo, hi);
    SetCheck(fmt::format("{}..{}", lo, hi), [lo, hi, get = number_](const Config& c) {
      const double v = get(c);
      return v >= static_cast<double>(lo) && v <= static_cast<double>(hi);
    });
    return std::move(*this);
  }
  // Any rule on the value: `ok` says whether it holds, `words` the allowed values as the help and
  // the error say them.
  Setting&& Check(std::string words, std::function<bool(const Config&)> ok) && {
    SetCheck(std::move(words), std::move(ok));
    return std::move(*this);
  }

  // Set by the numeric factories: the value as a double, for Range().
  std::function<double(const Config&)> number_;

 private:
  void SetCheck(std::string words, std::function<bool(const Config&)> ok) {
    range = words;
    in_range = [words = std::move(words), ok = std::move(ok), show = to_text](const Config& c) {
      if (ok(c)) return Status::Ok();
      return InvalidArgument("must be " + words + ", not '" + show(c) + "'");
    };
  }
};

namespace detail {

inline Status TypeError(std::string_view want) { return InvalidArgument("must be " + std::string(want)); }

template <typename Config, typename T>
Setting<Config> Make(Kind kind, std::string key, std::string flag, std::string help) {
  Setting<Config> s;
  s.key = std::move(key);
  s.flag = std::move(flag);
  s.kind = kind;
  s.help = std::move(help);
  return s;
}

// An integer of type T from a flag's text: decimal, the whole text.
template <typename T>
Result<T> ParseInteger(std::string_view text) {
  T v{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    return InvalidArgument("not an integer" + std::string(std::is_signed_v<T> ? "" : " >= 0") + ": '" +
                           std::string(text) + "'");
  }
  return v;
}

inline Result<double> ParseNumber(const std::string& text) {
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  return InvalidArgument("not a number: '" + text + "'");
}

inline std::string FormatNumber(double v) { return fmt::format("{}", v); }

// The accessor a member pointer stands for: the member of a config, const or not.
template <typename Config, typename T>
struct Member {
  T Config::*member;
  T& operator()(Config& c) const { return c.*member; }
  const T& operator()(const Config& c) const { return c.*member; }
};

}  // namespace detail

template <typename Config, typename Get>
Setting<Config> StringAt(std::string key, std::string flag, Get get, std::string help) {
  auto s = detail::Make<Config, std::string>(Kind::kString, std::move(key), std::move(flag), std::move(help));
  s.from_file = [get](const FileValue& v, Config& c) {
    if (const auto* text = std::get_if<std::string>(&v)) {
      get(c) = *text;
      return Status::Ok();
    }
    return detail::TypeError("a string");
  };
  s.from_text = [get](const std::string& text, Config& c) {
    get(c) = text;
    return Status::Ok();
  };
  s.to_text = [get](const Config& c) { return get(c); };
  return s;
}

template <typename Config>
Setting<Config> String(std::string key, std::string flag, std::string Config::*member, std::string help) {
  return StringAt<Config>(std::move(key), std::move(flag), detail::Member<Config, std::string>{member}, std::move(help));
}

template <typename Config, typename Get>
Setting<Config> BoolAt(std::string key, std::string flag, Get get, std::string help) {
  auto s = detail::Make<Config, bool>(Kind::kBool, std::move(key), std::move(flag), std::move(help));
  s.from_file = [get](const FileValue& v, Config& c) {
    if (const auto* b = std::get_if<bool>(&v)) {
      get(c) = *b;
      return Status::Ok();
    }
    return detail::TypeError("true or false");
  };
  s.from_text = [get](const std::string& text, Config& c) {
    if (text == "true" || text == "false") {
      get(c) = text == "true";
      return Status::Ok();
    }
    return InvalidArgument("must be true or false, not '" + text + "'");
  };
  s.to_text = [get](const Config& c) { return std::string(get(c) ? "true" : "false"); };
  return s;
}

template <typename Config>
Setting<Config> Bool(std::string key, std::string flag, bool Config::*member, std::string help) {
  return BoolAt<Config>(std::move(key), std::move(flag), detail::Member<Config, bool>{member}, std::move(help));
}

// A whole number of type T. A file value must fit T (a negative one is refused for an unsigned T).
template <typename Config, typename T, typename Get>
Setting<Config> IntegerAt(std::string key, std::string flag, Get get, std::string help) {
  static_assert(std::is_integral_v<T>);
  static_assert(std::is_same_v<std::invoke_result_t<Get, Config&>, T&>, "the accessor must give a T&");
  auto s = detail::Make<Config, T>(Kind::kInteger, std::move(key), std::move(flag), std::move(help));
  s.from_file = [get](const FileValue& v, Config& c) {
    const auto* i = std::get_if<int64_t>(&v);
    if (i == nullptr) return detail::TypeError(std::is_signed_v<T> ? "an integer" : "a non-negative integer");
    if (!std::in_range<T>(*i)) {
      return detail::TypeError(fmt::format("an integer in {}..{}", std::numeric_limits<T>::min(),
                                           std::numeric_limits<T>::max()));
    }
    get(c) = static_cast<T>(*i);
    return Status::Ok();
  };
  s.from_text = [get](const std::string& text, Config& c) {
    KVSTASH_ASSIGN_OR_RETURN(get(c), detail::ParseInteger<T>(text));
    return Status::Ok();
  };
  s.to_text = [get](const Config& c) { return std::to_string(get(c)); };
  s.number_ = [get](const Config& c) { return static_cast<double>(get(c)); };
  return s;
}

template <typename Config, typename T>
Setting<Config> Integer(std::string key, std::string flag, T Config::*member, std::string help) {
  return IntegerAt<Config, T>(std::move(key), std::move(flag), detail::Member<Config, T>{member}, std::move(help));
}

// A real number (a file may write it as an integer).
template <typename Config, typename Get>
Setting<Config> NumberAt(std::string key, std::string flag, Get get, std::string help) {
  auto s = detail::Make<Config, double>(Kind::kNumber, std::move(key), std::move(flag), std::move(help));
  s.from_file = [get](const FileValue& v, Config& c) {
    if (const auto* d = std::get_if<double>(&v)) get(c) = *d;
    else if (const auto* i = std::get_if<int64_t>(&v)) get(c) = static_cast<double>(*i);
    else return detail::TypeError("a number");
    return Status::Ok();
  };
  s.from_text = [get](const std::string& text, Config& c) {
    KVSTASH_ASSIGN_OR_RETURN(get(c), detail::ParseNumber(text));
    return Status::Ok();
  };
  s.to_text = [get](const Config& c) { return detail::FormatNumber(get(c)); };
  s.number_ = [get](const Config& c) { return get(c); };
  return s;
}

template <typename Config>
Setting<Config> Number(std::string key, std::string flag, double Config::*member, std::string help) {
  return NumberAt<Config>(std::move(key), std::move(flag), detail::Member<Config, double>{member}, std::move(help));
}

// A size in bytes: a byte count, or a string with a unit ("64MiB", common/units.h).
template <typename Config, typename Get>
Setting<Config> BytesAt(std::string key, std::string flag, Get get, std::string help) {
  auto s = detail::Make<Config, uint64_t>(Kind::kBytes, std::move(key), std::move(flag), std::move(help));
  s.from_file = [get](const FileValue& v, Config& c) -> Status {
    if (const auto* i = std::get_if<int64_t>(&v); i != nullptr && *i >= 0) {
      get(c) = static_cast<uint64_t>(*i);
      return Status::Ok();
    }
    if (const auto* text = std::get_if<std::string>(&v)) {
      KVSTASH_ASSIGN_OR_RETURN(get(c), ParseByteSize(*text));
      return Status::Ok();
    }
    return detail::TypeError("a size such as \"1GiB\" or a byte count");
  };
  s.from_text = [get](const std::string& text, Config& c) {
    KVSTASH_ASSIGN_OR_RETURN(get(c), ParseByteSize(text));
    return Status::Ok();
  };
  s.to_text = [get](const Config& c) {
    const uint64_t v = get(c);
    // Whole KiB/MiB/GiB/TiB read back exactly; anything else as a byte count.
    for (auto [shift, unit] : {std::pair{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}}) {
      if (v != 0 && v % (1ULL << shift) == 0) return std::to_string(v >> shift) + unit;
    }
    return std::to_string(v);
  };
  s.number_ = [get](const Config& c) { return static_cast<double>(get(c)); };
  return s;
}

template <typename Config>
Setting<Config> Bytes(std::string key, std::string flag, uint64_t Config::*member, std::string help) {
  return BytesAt<Config>(std::move(key), std::move(flag), detail::Member<Config, uint64_t>{member}, std::move(help));
}

// One of a closed set of names, held as the enum E. `names` must outlive the table (a static array).
template <typename Config, typename E, typename Get>
Setting<Config> EnumAt(std::string key, std::string flag, Get get, std::type_identity_t<std::span<const EnumName<E>>> names,
                       std::string help) {
  auto s = detail::Make<Config, E>(Kind::kEnum, std::move(key), std::move(flag), std::move(help));
  s.from_text = [get, names](const std::string& text, Config& c) {
    KVSTASH_ASSIGN_OR_RETURN(get(c), ParseEnum(names, text));
    return Status::Ok();
  };
  s.from_file = [parse = s.from_text, names](const FileValue& v, Config& c) {
    if (const auto* text = std::get_if<std::string>(&v)) return parse(*text, c);
    return detail::TypeError("one of " + JoinNames(names));
  };
  s.to_text = [get, names](const Config& c) { return std::string(EnumToName(names, get(c))); };
  s.range = JoinNames(names);
  for (const EnumName<E>& n : names) s.allowed.emplace_back(n.name);
  return s;
}

template <typename Config, typename E>
Setting<Config> Enum(std::string key, std::string flag, E Config::*member,
                     std::type_identity_t<std::span<const EnumName<E>>> names, std::string help) {
  return EnumAt<Config, E>(std::move(key), std::move(flag), detail::Member<Config, E>{member}, names, std::move(help));
}

// A list of strings: a file's list, or a flag's comma-separated items (empty items dropped).
template <typename Config, typename Get>
Setting<Config> ListAt(std::string key, std::string flag, Get get, std::string help) {
  auto s = detail::Make<Config, std::vector<std::string>>(Kind::kList, std::move(key), std::move(flag), std::move(help));
  s.from_file = [get](const FileValue& v, Config& c) {
    if (const auto* items = std::get_if<std::vector<std::string>>(&v)) {
      get(c) = *items;
      return Status::Ok();
    }
    return detail::TypeError("a list of strings");
  };
  s.from_text = [get](const std::string& text, Config& c) {
    std::vector<std::string> items;
    size_t begin = 0;
    while (begin <= text.size()) {
      const size_t end = std::min(text.find(',', begin), text.size());
      if (end > begin) items.push_back(text.substr(begin, end - begin));
      begin = end + 1;
    }
    get(c) = std::move(items);
    return Status::Ok();
  };
  s.to_text = [get](const Config& c) {
    std::string out;
    for (const std::string& item : get(c)) out += (out.empty() ? "" : ",") + item;
    return out;
  };
  return s;
}

template <typename Config>
Setting<Config> List(std::string key, std::string flag, std::vector<std::string> Config::*member, std::string help) {
  return ListAt<Config>(std::move(key), std::move(flag), detail::Member<Config, std::vector<std::string>>{member}, std::move(help));
}

// A value with its own spelling: `parse` reads a flag's text (and a file's string), `file` a file's
// other types (null: strings only), `show` writes it back as `parse` reads it.
template <typename Config, typename T>
Setting<Config> Custom(std::string key, std::string flag, T Config::*member, std::string help,
                       std::function<Result<T>(const std::string&)> parse, std::function<std::string(const T&)> show,
                       std::function<Result<T>(const FileValue&)> file = nullptr) {
  auto s = detail::Make<Config, T>(Kind::kCustom, std::move(key), std::move(flag), std::move(help));
  const detail::Member<Config, T> get{member};
  s.from_text = [get, parse](const std::string& text, Config& c) {
    KVSTASH_ASSIGN_OR_RETURN(get(c), parse(text));
    return Status::Ok();
  };
  s.from_file = [get, parse, file](const FileValue& v, Config& c) -> Status {
    if (const auto* text = std::get_if<std::string>(&v)) {
      KVSTASH_ASSIGN_OR_RETURN(get(c), parse(*text));
      return Status::Ok();
    }
    if (file) {
      KVSTASH_ASSIGN_OR_RETURN(get(c), file(v));
      return Status::Ok();
    }
    return detail::TypeError("a string");
  };
  s.to_text = [get, show](const Config& c) { return show(get(c)); };
  return s;
}

// Checks `s`'s range on `config` (when it applies): INVALID_ARGUMENT "<key> must be ..., not ...
// (--flag)".
template <typename Config>
Status CheckRange(const Setting<Config>& s, const Config& config) {
  if (!s.in_range || (s.applies && !s.applies(config))) return Status::Ok();
  Status st = s.in_range(config);
  if (st.ok()) return st;
  std::string msg = s.name() + " " + st.message();
  if (!s.key.empty() && !s.flag.empty()) msg += " (" + s.flag + ")";
  return InvalidArgument(std::move(msg));
}

// Every setting's range, in table order: the first failure.
template <typename Config>
Status CheckRanges(std::span<const Setting<Config>> table, const Config& config) {
  for (const Setting<Config>& s : table) KVSTASH_RETURN_IF_ERROR(CheckRange(s, config));
  return Status::Ok();
}

// The help line of a flag: its help, allowed values, default with unit, and file key.
//   "most gRPC handler threads; 1..1024 [64] (server.threads)"
template <typename Config>
std::string HelpLine(const Setting<Config>& s, const Config& defaults) {
  std::string line = s.help;
  if (!s.range.empty()) line += "; " + s.range;
  if (s.switch_value.empty()) {
    std::string value = s.default_text.empty() ? s.to_text(defaults) : s.default_text;
    if (value.empty()) value = "none";
    line += " [" + value + (s.unit.empty() || !s.default_text.empty() ? "" : " " + s.unit) + "]";
  }
  if (!s.key.empty()) {
    line += " (" + s.key + (s.switch_value.empty() ? "" : " = " + s.switch_value + "; default " + s.to_text(defaults)) +
            ")";
  }
  return line;
}

}  // namespace kvstash::settings
