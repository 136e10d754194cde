#include "kvstash/prefix_hasher.h"

#include <xxhash.h>

#include <cassert>
#include <cstring>

namespace kvstash {
namespace {

void AppendTokensLittleEndian(std::span<const uint32_t> tokens, std::vector<uint8_t>& out) {
  const size_t base = out.size();
  out.resize(base + tokens.size() * 4);
  uint8_t* p = out.data() + base;
  for (uint32_t t : tokens) {
    p[0] = static_cast<uint8_t>(t);
    p[1] = static_cast<uint8_t>(t >> 8);
    p[2] = static_cast<uint8_t>(t >> 16);
    p[3] = static_cast<uint8_t>(t >> 24);
    p += 4;
  }
}

BlockKey HashBlock(const BlockKey* parent, std::span<const uint32_t> block, uint64_t seed,
                   std::vector<uint8_t>& scratch) {
  scratch.clear();
  if (parent != nullptr) scratch.insert(scratch.end(), parent->bytes().begin(), parent->bytes().end());
  AppendTokensLittleEndian(block, scratch);
  const XXH128_hash_t h = XXH3_128bits_withSeed(scratch.data(), scratch.size(), seed);
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical, h);
  std::array<uint8_t, BlockKey::kSize> raw;
  std::memcpy(raw.data(), canonical.digest, raw.size());
  return BlockKey(raw);
}

}  // namespace

std::string Namespace::Id() const {
  return model + "|" + layout + "|" + dtype + "|" + std::to_string(rank);
}

PrefixHasher::PrefixHasher(std::string_view namespace_id, uint32_t block_tokens)
    : seed_(XXH3_64bits(namespace_id.data(), namespace_id.size())), block_tokens_(block_tokens) {
  assert(block_tokens_ > 0);
  if (block_tokens_ == 0) block_tokens_ = kDefaultBlockTokens;
}

std::vector<BlockKey> PrefixHasher::Chain(std::span<const uint32_t> tokens) const {
  const size_t blocks = tokens.size() / block_tokens_;
  std::vector<BlockKey> chain;
  chain.reserve(blocks);
  std::vector<uint8_t> scratch;
  scratch.reserve(BlockKey::kSize + block_tokens_ * 4);
  for (size_t i = 0; i < blocks; ++i) {
    const BlockKey* parent = i == 0 ? nullptr : &chain.back();
    chain.push_back(HashBlock(parent, tokens.subspan(i * block_tokens_, block_tokens_), seed_, scratch));
  }
  return chain;
}

BlockKey PrefixHasher::Next(const BlockKey* parent, std::span<const uint32_t> block) const {
  assert(block.size() == block_tokens_);
  std::vector<uint8_t> scratch;
  return HashBlock(parent, block, seed_, scratch);
}

}  // namespace kvstash
