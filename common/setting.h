// Setting<Config>: the descriptor of one setting of a process (its file key, flag, help, unit,
// range, and how its value is read, written and checked), and the range checks over a table of
// them. Descriptors are built by the factories of common/setting_factories.h; common/settings.h
// says how the pieces fit together.
//
// Header-only (templates over the config struct). Thread-safety: a descriptor is built once and
// only read afterwards.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include <fmt/format.h>

#include "kvstash/result.h"

namespace kvstash::settings {

// What a setting holds; decides how a file and a flag spell its value.
enum class Kind { kString, kBool, kInteger, kNumber, kBytes, kEnum, kList, kCustom };

// A value as a configuration file gives it, reduced to the types settings use. monostate: any
// other type (a date, a table, a list that is not all strings).
using FileValue = std::variant<std::monostate, bool, int64_t, double, std::string, std::vector<std::string>>;

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

}  // namespace kvstash::settings
