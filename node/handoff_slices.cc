#include "node/handoff_slices.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

namespace kvstash::node {
namespace {

constexpr uint32_t kMagic = 0x5348564b;  // "KVHS"
constexpr uint16_t kVersion = 1;

void Put32(std::byte* at, uint32_t v) { std::memcpy(at, &v, 4); }
uint32_t Get32(const std::byte* at) {
  uint32_t v;
  std::memcpy(&v, at, 4);
  return v;
}

Status Bad(uint32_t index, const std::string& what) {
  return DataLoss("handoff slice " + std::to_string(index) + ": " + what);
}

}  // namespace

BlockKey SliceKey(const BlockKey& handoff_key, uint32_t index) {
  std::byte input[BlockKey::kSize + 4];
  std::memcpy(input, handoff_key.bytes().data(), BlockKey::kSize);
  Put32(input + BlockKey::kSize, index);
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical, XXH3_128bits(input, sizeof input));
  std::array<uint8_t, BlockKey::kSize> bytes;
  std::memcpy(bytes.data(), canonical.digest, bytes.size());
  return BlockKey(bytes);
}

void WriteSliceHeader(const SliceHeader& h, std::span<std::byte> slice) {
  std::byte* p = slice.data();
  Put32(p, kMagic);
  Put32(p + 4, uint32_t{kVersion} | (uint32_t{static_cast<uint16_t>(h.kind)} << 16));
  Put32(p + 8, h.index);
  Put32(p + 12, h.first_page);
  Put32(p + 16, h.pages);
  Put32(p + 20, h.first_layer);
  Put32(p + 24, h.layers);
  Put32(p + 28, h.first_token);
  Put32(p + 32, h.prompt_tokens);
  Put32(p + 36, 0);
}

std::vector<std::byte> EncodeSlice(const SliceHeader& h, std::span<const std::byte> payload) {
  std::vector<std::byte> out(kSliceHeaderBytes + payload.size());
  WriteSliceHeader(h, out);
  if (!payload.empty()) std::memcpy(out.data() + kSliceHeaderBytes, payload.data(), payload.size());
  return out;
}

Result<ParsedSlice> ParseSlice(std::span<const std::byte> bytes, const SliceLimits& limits) {
  const uint32_t want = limits.expected_index;
  if (bytes.size() < kSliceHeaderBytes) return Bad(want, "shorter than its header");
  const std::byte* p = bytes.data();
  if (Get32(p) != kMagic) return Bad(want, "not a handoff slice (magic)");
  const uint32_t version_kind = Get32(p + 4);
  if ((version_kind & 0xffff) != kVersion) return Bad(want, "version " + std::to_string(version_kind & 0xffff));
  const uint32_t kind = version_kind >> 16;
  if (kind > static_cast<uint32_t>(SliceKind::kAborted)) return Bad(want, "kind " + std::to_string(kind));
  ParsedSlice s;
  SliceHeader& h = s.header;
  h.kind = static_cast<SliceKind>(kind);
  h.index = Get32(p + 8);
  h.first_page = Get32(p + 12);
  h.pages = Get32(p + 16);
  h.first_layer = Get32(p + 20);
  h.layers = Get32(p + 24);
  h.first_token = Get32(p + 28);
  h.prompt_tokens = Get32(p + 32);
  s.payload = bytes.subspan(kSliceHeaderBytes);
  if (h.index != want) return Bad(want, "carries index " + std::to_string(h.index));
  if (h.prompt_tokens != limits.prompt_tokens) {
    return Bad(want, "is for a prompt of " + std::to_string(h.prompt_tokens) + " tokens, not " +
                         std::to_string(limits.prompt_tokens));
  }
  if (h.kind != SliceKind::kData) {
    if (!s.payload.empty()) return Bad(want, "a marker with a payload");
    if (h.kind == SliceKind::kDone && h.first_token >= limits.vocab_size) {
      return Bad(want, "first token " + std::to_string(h.first_token) + " is outside the vocabulary");
    }
    return s;
  }
  if (h.pages == 0 || h.first_page >= limits.prompt_pages || h.pages > limits.prompt_pages - h.first_page) {
    return Bad(want, "pages [" + std::to_string(h.first_page) + ", +" + std::to_string(h.pages) +
                         ") are not within the prompt's " + std::to_string(limits.prompt_pages));
  }
  if (h.layers == 0 || h.first_layer >= limits.layers || h.layers > limits.layers - h.first_layer) {
    return Bad(want, "layers [" + std::to_string(h.first_layer) + ", +" + std::to_string(h.layers) +
                         ") are not within the model's " + std::to_string(limits.layers));
  }
  if (s.payload.size() != uint64_t{h.pages} * h.layers * limits.layer_bytes_per_page) {
    return Bad(want, "payload of " + std::to_string(s.payload.size()) + " bytes for " + std::to_string(h.pages) +
                         " pages of " + std::to_string(h.layers) + " layers");
  }
  return s;
}

size_t SliceBufferBytes(size_t page_bytes) { return kSliceHeaderBytes + std::max(kSliceTargetBytes, page_bytes); }

uint32_t SlicePages(size_t layer_bytes_per_page, uint32_t layers) {
  const size_t per_page = std::max<size_t>(1, layer_bytes_per_page * layers);
  return static_cast<uint32_t>(std::max<size_t>(1, kSliceTargetBytes / per_page));
}

void SliceCoverage::Add(const SliceHeader& h) {
  for (uint32_t p = h.first_page; p < h.first_page + h.pages; ++p) {
    for (uint32_t l = h.first_layer; l < h.first_layer + h.layers; ++l) covered_[size_t{p} * layers_ + l] = true;
  }
}

std::optional<std::pair<uint32_t, uint32_t>> SliceCoverage::FirstGap() const {
  const auto it = std::find(covered_.begin(), covered_.end(), false);
  if (it == covered_.end()) return std::nullopt;
  const size_t i = static_cast<size_t>(it - covered_.begin());
  return std::pair{static_cast<uint32_t>(i / layers_), static_cast<uint32_t>(i % layers_)};
}

}  // namespace kvstash::node
