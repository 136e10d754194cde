// Settings tables: every setting of a process declared once, as one descriptor in one table, from
// which its file form (settings_toml.h), its command-line flag and help (settings_cli.h), and its
// range check are all generated. The struct that holds the values (DaemonConfig, ...) keeps its
// default member initializers: a default-constructed struct is the set of defaults, and the help
// text and the tests read them from there.
//
// A descriptor is built by one of the factory functions (String, Bool, Integer, Number,
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
//
// The pieces, one job each (include this header; it includes them all but the generators):
//   common/enum_names.h        EnumName tables: a closed set's names, parsed and printed
//   common/log_level.h         LogLevel, shared by every process
//   common/setting.h           Setting<Config>, the descriptor, and CheckRange(s)
//   common/setting_factories.h String, Bool, Integer, Number, Bytes, Enum, List, Custom
//   common/settings_toml.h     the file form (ApplyTomlText, ApplyTomlPath)
//   common/settings_cli.h      the flags and their help lines (AddFlags, ApplyFlags, HelpLine)
#pragma once

#include "common/enum_names.h"
#include "common/log_level.h"
#include "common/setting.h"
#include "common/setting_factories.h"
