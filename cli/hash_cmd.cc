// `kvstash hash`: the chain of block keys of a token file, computed locally with PrefixHasher
// exactly as the SDK does (no daemon involved).
#include <charconv>
#include <cstring>
#include <iostream>

#include "cli/commands.h"
#include "cli/file_io.h"
#include "cli/output.h"
#include "cli/session.h"
#include "kvstash/prefix_hasher.h"

namespace kvstash::cli {
namespace {

constexpr uint64_t kMaxTokenFileBytes = 4ULL << 30;

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Whitespace-separated decimal token ids, each in 0 .. 2^32-1.
Result<std::vector<uint32_t>> ParseTextTokens(std::span<const std::byte> bytes) {
  const char* p = reinterpret_cast<const char*>(bytes.data());
  const char* const end = p + bytes.size();
  std::vector<uint32_t> tokens;
  while (p < end) {
    if (IsSpace(*p)) {
      ++p;
      continue;
    }
    const char* word_end = p;
    while (word_end < end && !IsSpace(*word_end)) ++word_end;
    uint32_t value = 0;
    const auto [stop, ec] = std::from_chars(p, word_end, value);
    if (ec != std::errc() || stop != word_end) {
      return InvalidArgument("token " + std::to_string(tokens.size()) + " ('" +
                             std::string(p, std::min<size_t>(word_end - p, 32)) +
                             "') is not a decimal token id in 0..4294967295");
    }
    tokens.push_back(value);
    p = word_end;
  }
  return tokens;
}

// Raw little-endian uint32 tokens.
Result<std::vector<uint32_t>> ParseU32Tokens(std::span<const std::byte> bytes) {
  if (bytes.size() % 4 != 0) {
    return InvalidArgument("a u32 token file holds a multiple of 4 bytes; this one holds " +
                           std::to_string(bytes.size()));
  }
  std::vector<uint32_t> tokens(bytes.size() / 4);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto* b = reinterpret_cast<const uint8_t*>(bytes.data()) + 4 * i;
    tokens[i] = static_cast<uint32_t>(b[0]) | static_cast<uint32_t>(b[1]) << 8 |
                static_cast<uint32_t>(b[2]) << 16 | static_cast<uint32_t>(b[3]) << 24;
  }
  return tokens;
}

}  // namespace

int RunHash(const GlobalOptions& global, const HashCommand& cmd) {
  constexpr std::string_view kCommand = "hash";
  const uint32_t block_tokens =
      cmd.block_tokens == 0 ? PrefixHasher::kDefaultBlockTokens : cmd.block_tokens;
  auto bytes = ReadWholeFile(cmd.file, kMaxTokenFileBytes);
  if (!bytes.ok()) return ReportFailure(kCommand, bytes.status());
  auto tokens = cmd.format == "u32" ? ParseU32Tokens(*bytes) : ParseTextTokens(*bytes);
  if (!tokens.ok()) {
    return ReportFailure(kCommand, Status(tokens.status().code(),
                                          (cmd.file == "-" ? std::string("stdin") : cmd.file) +
                                              ": " + tokens.status().message()));
  }

  const PrefixHasher hasher(cmd.namespace_id, block_tokens);
  const std::vector<BlockKey> chain = hasher.Chain(*tokens);
  const size_t partial = tokens->size() % block_tokens;

  if (global.json) {
    nlohmann::json keys = nlohmann::json::array();
    for (const BlockKey& key : chain) keys.push_back(key.ToHex());
    PrintJson({{"namespace", cmd.namespace_id},
               {"block_tokens", block_tokens},
               {"tokens", tokens->size()},
               {"blocks", chain.size()},
               {"partial_tokens", partial},
               {"keys", keys}});
    return kExitOk;
  }
  for (size_t i = 0; i < chain.size(); ++i) std::cout << i << ' ' << chain[i].ToHex() << '\n';
  std::cout << std::flush;
  // The note goes to stderr so stdout stays exactly one "INDEX KEY" line per block.
  if (partial != 0) {
    std::cerr << "kvstash: hash: the last " << partial << " of " << tokens->size()
              << " tokens form a partial block (" << block_tokens
              << " tokens per block) and get no key" << std::endl;
  }
  return kExitOk;
}

}  // namespace kvstash::cli
