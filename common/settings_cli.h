// Command-line flags generated from a settings table (common/settings.h): one CLI11 option per
// setting that has a flag, its help line built from the descriptor (help, allowed values, default
// with unit, file key). Parsing only records the texts given; ApplyFlags then sets them over a
// config (defaults, or a file's values), in table order, so flags win over the file.
//
// Header-only; the including target links CLI11.
#pragma once

#include <CLI/CLI.hpp>

#include <map>
#include <string>

#include "common/settings.h"

namespace kvstash::settings {

// The flags given on one command line: flag ("--threads") -> its text ("4"; a switch's value).
struct GivenFlags {
  std::map<std::string, std::string> values;
  bool has(const std::string& flag) const { return values.count(flag) > 0; }
};

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

// Adds every setting of `table` that has a flag to `app`, recording what is given in `given`
// (which must outlive parsing). `defaults` supplies the help's defaults. Returns the options by
// flag, for rules CLI11 enforces (required, excludes).
template <typename Config>
std::map<std::string, CLI::Option*> AddFlags(CLI::App& app, std::span<const Setting<Config>> table,
                                             const Config& defaults, GivenFlags& given) {
  std::map<std::string, CLI::Option*> options;
  for (const Setting<Config>& s : table) {
    if (s.flag.empty()) continue;
    const std::string help = HelpLine(s, defaults);
    const std::string flag = s.flag;
    CLI::Option* option = nullptr;
    if (!s.switch_value.empty()) {
      option = app.add_flag_callback(
          flag, [&given, flag, value = s.switch_value] { given.values[flag] = value; }, help);
    } else if (s.kind == Kind::kList) {
      // Repeated or a file's list ("etcd = [...]"): the items joined as a comma-separated text.
      option = app.add_option_function<std::vector<std::string>>(
          flag,
          [&given, flag](const std::vector<std::string>& items) {
            std::string text;
            for (const std::string& item : items) text += (text.empty() ? "" : ",") + item;
            given.values[flag] = text;
          },
          help);
    } else {
      option = app.add_option_function<std::string>(
          flag, [&given, flag](const std::string& text) { given.values[flag] = text; }, help);
    }
    switch (s.kind) {
      case Kind::kInteger: option->type_name("INT"); break;
      case Kind::kNumber: option->type_name("NUM"); break;
      case Kind::kBytes: option->type_name("SIZE"); break;
      case Kind::kList: option->type_name("LIST"); break;
      default: break;
    }
    if (s.kind == Kind::kEnum) {
      std::string names;
      for (const std::string& name : s.allowed) names += (names.empty() ? "" : "|") + name;
      option->type_name("{" + names + "}");
    }
    options[flag] = option;
  }
  return options;
}

// Sets every flag given over `config`, in table order, and checks its range. INVALID_ARGUMENT
// "--flag: reason".
template <typename Config>
Status ApplyFlags(std::span<const Setting<Config>> table, const GivenFlags& given, Config& config) {
  for (const Setting<Config>& s : table) {
    const auto it = s.flag.empty() ? given.values.end() : given.values.find(s.flag);
    if (it == given.values.end()) continue;
    if (Status st = s.from_text(it->second, config); !st.ok()) return InvalidArgument(s.flag + ": " + st.message());
    KVSTASH_RETURN_IF_ERROR(CheckRange(s, config));
  }
  return Status::Ok();
}

}  // namespace kvstash::settings
