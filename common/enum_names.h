// Names of the values of a closed set (an enum): the table a process's settings, its command
// lines and its modules read to turn a name into the enum (ParseEnum, at the edge: a file, a
// flag) and back (EnumToName, for logs, help and reports). Each enum keeps one static table of
// EnumName entries beside its definition, e.g. tiers::kEvictionPolicyNames.
//
// Header-only; thread-safe (pure functions over constant tables).
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "kvstash/result.h"

namespace kvstash::settings {

// One allowed value of an enum and the name files, flags and reports give it.
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

// `value`'s name in `names`; "?" for a value the table lacks.
template <typename E>
std::string_view EnumToName(std::type_identity_t<std::span<const EnumName<E>>> names, E value) {
  for (const EnumName<E>& n : names) {
    if (n.value == value) return n.name;
  }
  return "?";
}

}  // namespace kvstash::settings
