// What an inference engine knows about a block's future that the store cannot see: whether the
// context it belongs to is likely to be requested again (an agent's tool call that will come back
// with the result, a conversation still open) or not (a finished, one-off request). Advice only
// moves a block within the eviction order of the policies that use it (docs/EVICTION.md); it never
// pins, evicts or changes bytes, and a block already reused is ranked by its reuse, not by advice.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace kvstash {

enum class ReuseAdvice : uint8_t {
  kLikely = 1,    // keep like a block that has been reused
  kUnlikely = 2,  // evict before blocks that carry no advice
};

constexpr std::string_view ReuseAdviceName(ReuseAdvice advice) {
  return advice == ReuseAdvice::kLikely ? "likely" : "unlikely";
}

// "likely" / "unlikely"; nullopt for anything else.
constexpr std::optional<ReuseAdvice> ParseReuseAdvice(std::string_view name) {
  if (name == "likely") return ReuseAdvice::kLikely;
  if (name == "unlikely") return ReuseAdvice::kUnlikely;
  return std::nullopt;
}

}  // namespace kvstash
