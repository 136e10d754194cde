// The factories that build a setting's descriptor (common/setting.h) from a pointer to its config
// member, or with the ...At variants from an accessor `[](auto& c) -> auto& { return c.part.field; }`
// for a member of a member: String, Bool, Integer, Number, Bytes, Enum, List, Custom. Each sets how
// a file value and a flag's text are read into the member, how the value is written back, and (for
// numbers) how Range() reads it. common/settings.h shows one in use.
//
// Header-only (templates over the config struct).
#pragma once

#include <charconv>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <fmt/format.h>

#include "common/enum_names.h"
#include "common/setting.h"
#include "common/units.h"
#include "kvstash/result.h"

namespace kvstash::settings {

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
      // The flag form separates items with commas: an item with one, or an empty one, could not be
      // written back as a flag (found by fuzz/daemon_config_fuzz: the two forms disagreed).
      for (const std::string& item : *items) {
        if (item.empty() || item.find(',') != std::string::npos) {
          return InvalidArgument("a list item must be non-empty and without ',', not '" + item + "'");
        }
      }
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

}  // namespace kvstash::settings
