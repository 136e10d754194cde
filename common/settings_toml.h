// Reading a settings table (common/settings.h) from a TOML document: `[section]` tables of `key =
// value`, the sections and keys being those of the table's file forms ("server.threads" is
// `[server]` / `threads = 64`). Unknown tables and keys are errors (a typo must not be silently
// ignored); a value outside its setting's range is refused where it is written.
//
// Header-only; the including target links tomlplusplus. Debian's toml++ is built with exceptions:
// parse errors are turned into a Status here, at the edge.
#pragma once

#include <toml++/toml.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <string_view>

#include "common/settings.h"

namespace kvstash::settings {
namespace detail {

// A TOML node as a FileValue: its scalar, a list of strings, or monostate for anything else.
inline FileValue ToFileValue(const toml::node& node) {
  if (const auto* b = node.as_boolean()) return b->get();
  if (const auto* i = node.as_integer()) return i->get();
  if (const auto* d = node.as_floating_point()) return d->get();
  if (const auto* s = node.as_string()) return s->get();
  if (const auto* list = node.as_array()) {
    std::vector<std::string> items;
    for (const toml::node& item : *list) {
      const auto* s = item.as_string();
      if (s == nullptr) return std::monostate{};
      items.push_back(s->get());
    }
    return items;
  }
  return std::monostate{};
}

// "origin: 'key' must be ..." for type errors, "origin: 'key': reason" for others.
inline Status KeyError(const std::string& origin, const std::string& key, const Status& st) {
  const std::string& why = st.message();
  return InvalidArgument(origin + ": '" + key + "'" + (why.rfind("must be", 0) == 0 ? " " : ": ") + why);
}

template <typename Config>
std::vector<std::string> Sections(std::span<const Setting<Config>> table) {
  std::vector<std::string> sections;
  for (const Setting<Config>& s : table) {
    const size_t dot = s.key.find('.');
    if (dot == std::string::npos) continue;
    const std::string section = s.key.substr(0, dot);
    if (std::find(sections.begin(), sections.end(), section) == sections.end()) sections.push_back(section);
  }
  return sections;
}

template <typename Config>
const Setting<Config>* FindKey(std::span<const Setting<Config>> table, std::string_view key) {
  for (const Setting<Config>& s : table) {
    if (s.key == key) return &s;
  }
  return nullptr;
}

template <typename Config>
Status ApplyTomlTable(const toml::table& root, const std::string& origin, std::span<const Setting<Config>> table,
                      Config& config) {
  Config updated = config;  // a bad document changes nothing
  const std::vector<std::string> sections = Sections(table);
  std::vector<const Setting<Config>*> given;
  for (const auto& [section_key, section_node] : root) {
    const std::string section(section_key.str());
    const toml::table* entries = section_node.as_table();
    if (entries == nullptr) {
      std::string names;
      for (size_t i = 0; i < sections.size(); ++i) {
        names += (i == 0 ? "" : i + 1 == sections.size() ? " or " : ", ") + ("[" + sections[i] + "]");
      }
      return InvalidArgument(origin + ": '" + section + "' must be a table (" + names + ")");
    }
    if (std::find(sections.begin(), sections.end(), section) == sections.end()) {
      return InvalidArgument(origin + ": unknown table [" + section + "]");
    }
    for (const auto& [k, node] : *entries) {
      const std::string key = section + "." + std::string(k.str());
      const Setting<Config>* s = FindKey(table, key);
      if (s == nullptr) return InvalidArgument(origin + ": unknown setting '" + key + "'");
      if (Status st = s->from_file(ToFileValue(node), updated); !st.ok()) return KeyError(origin, key, st);
      given.push_back(s);
    }
  }
  for (const Setting<Config>* s : given) {
    if (Status st = CheckRange(*s, updated); !st.ok()) return InvalidArgument(origin + ": " + st.message());
  }
  config = std::move(updated);
  return Status::Ok();
}

}  // namespace detail

// Applies the TOML document `text` on top of `config` (nothing changes on error). INVALID_ARGUMENT
// naming `origin`, the line or key, and the reason.
template <typename Config>
Status ApplyTomlText(std::string_view text, const std::string& origin, std::span<const Setting<Config>> table,
                     Config& config) {
  try {
    const toml::table root = toml::parse(text, origin);
    return detail::ApplyTomlTable(root, origin, table, config);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << origin << ":" << e.source().begin.line << ": " << e.description();
    return InvalidArgument(msg.str());
  }
}

// The same for the file at `path` (its path names it in errors).
template <typename Config>
Status ApplyTomlPath(const std::string& path, std::span<const Setting<Config>> table, Config& config) {
  try {
    const toml::table root = toml::parse_file(path);
    return detail::ApplyTomlTable(root, path, table, config);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    if (e.source().begin.line == 0) msg << path << ": " << e.description();
    else msg << path << ":" << e.source().begin.line << ": " << e.description();
    return InvalidArgument(msg.str());
  }
}

}  // namespace kvstash::settings
