// PrefixHasher: turns a token sequence into the chain of block keys of docs/ARCHITECTURE.md §1.
//
//   seed    = XXH3_64bits(namespace_id)
//   key[0]  = XXH3_128bits_withSeed(tokens[0 .. B), seed)
//   key[i]  = XXH3_128bits_withSeed(key[i-1] ‖ tokens[i*B .. (i+1)*B), seed)     for i > 0
//
// where tokens are serialised as little-endian uint32 and key[i-1] as its 16 canonical
// (big-endian) bytes. Equal keys therefore mean equal prefixes in the same namespace. A trailing
// partial block (fewer than B tokens) never gets a key.
//
// Thread-safety: immutable after construction; safe for concurrent use.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvstash/block_key.h"

namespace kvstash {

// The namespace that seeds a chain: model id + KV layout + dtype + parallel rank. Two models never
// share keys because their namespaces differ.
struct Namespace {
  std::string model;
  std::string layout = "default";
  std::string dtype = "fp16";
  uint32_t rank = 0;

  // "model|layout|dtype|rank": the string that is hashed into the seed.
  std::string Id() const;
};

class PrefixHasher {
 public:
  static constexpr uint32_t kDefaultBlockTokens = 512;

  // REQUIRES: block_tokens > 0.
  explicit PrefixHasher(std::string_view namespace_id, uint32_t block_tokens = kDefaultBlockTokens);
  explicit PrefixHasher(const Namespace& ns, uint32_t block_tokens = kDefaultBlockTokens)
      : PrefixHasher(ns.Id(), block_tokens) {}

  // Keys of every full block of `tokens`, in order (tokens.size() / block_tokens of them).
  std::vector<BlockKey> Chain(std::span<const uint32_t> tokens) const;

  // Key of one block given its parent (nullptr for the first block). REQUIRES: block.size() ==
  // block_tokens. Lets callers extend a chain incrementally as decoding produces tokens.
  BlockKey Next(const BlockKey* parent, std::span<const uint32_t> block) const;

  uint32_t block_tokens() const { return block_tokens_; }
  uint64_t seed() const { return seed_; }

 private:
  uint64_t seed_;
  uint32_t block_tokens_;
};

}  // namespace kvstash
