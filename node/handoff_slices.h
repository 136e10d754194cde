// Layer-wise P/D handoff slices: how a prefill node's KV for one request travels to the decode node
// through the store while the prefill is still computing.
//
// A request's handoff is a numbered sequence of store objects under keys derived from its
// request-scoped handoff key (SliceKey): slice 0, 1, 2, ... Each data slice carries the bytes of a
// run of the sequence's pages for a range of layers ([layer][K|V] is contiguous in a page, so a
// layer range is one byte range per page). The prefill node puts a slice as soon as those layers
// of those tokens are computed; the last slice is a marker: `done` (with the first token the
// prefill chose) or `aborted`. Slices are applied in index order, so a page that two slices cover
// (a chunk boundary inside a page) ends with the later one's bytes, as on the prefill node.
//
// Every slice is checked before its bytes reach a page (ParseSlice): magic, version, its index,
// page and layer ranges within the request's pages and the model's layers, a payload of exactly
// pages × layers × 2 × plane bytes, a first token within the vocabulary. The store's checksum
// covers the bytes in flight; the decode node also checks that every (page, layer) of the prompt
// was covered before it decodes (SliceCoverage).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvstash/block_key.h"
#include "kvstash/result.h"

namespace kvstash::node {

// A data slice's payload is at most this many bytes (or one page's layer range, when that alone is
// larger), so the decode node can read any slice into a buffer of SliceBufferBytes.
inline constexpr size_t kSliceTargetBytes = size_t{4} << 20;

enum class SliceKind : uint16_t { kData = 0, kDone = 1, kAborted = 2 };

struct SliceHeader {
  SliceKind kind = SliceKind::kData;
  uint32_t index = 0;          // position in the request's slice sequence, from 0
  uint32_t first_page = 0;     // data: index into the sequence's page table
  uint32_t pages = 0;          // data: consecutive pages
  uint32_t first_layer = 0;    // data: layers [first_layer, first_layer + layers)
  uint32_t layers = 0;
  uint32_t first_token = 0;    // done: the prefill's first token
  uint32_t prompt_tokens = 0;  // every slice: the prompt length the prefill node saw
};

inline constexpr size_t kSliceHeaderBytes = 40;

// The store key of slice `index` of the handoff keyed by `handoff_key` (XXH3-128 of both: unrelated
// to any prefix block's key, and unknown to anyone who does not know the handoff key).
BlockKey SliceKey(const BlockKey& handoff_key, uint32_t index);

// Header then payload.
std::vector<std::byte> EncodeSlice(const SliceHeader& header, std::span<const std::byte> payload);
// Writes the header into the first kSliceHeaderBytes of `slice` (whose payload is already in place
// after them). REQUIRES: slice.size() >= kSliceHeaderBytes.
void WriteSliceHeader(const SliceHeader& header, std::span<std::byte> slice);

// What the decode side knows about the request, to check a slice against.
struct SliceLimits {
  uint32_t expected_index = 0;
  uint32_t prompt_tokens = 0;
  uint32_t prompt_pages = 0;  // pages of the prompt in the decode node's page table
  uint32_t layers = 0;
  size_t layer_bytes_per_page = 0;  // 2 × plane bytes
  uint32_t vocab_size = 0;
};

struct ParsedSlice {
  SliceHeader header;
  std::span<const std::byte> payload;
};

// DATA_LOSS naming the field for a slice that does not fit `limits`.
Result<ParsedSlice> ParseSlice(std::span<const std::byte> bytes, const SliceLimits& limits);

// The largest slice object the decode side may be sent for pages of `page_bytes`.
size_t SliceBufferBytes(size_t page_bytes);

// How many pages a data slice of `layers` layers may carry (at least 1).
uint32_t SlicePages(size_t layer_bytes_per_page, uint32_t layers);

// Which (page, layer) pairs of a prompt the applied slices have covered.
class SliceCoverage {
 public:
  SliceCoverage(uint32_t pages, uint32_t layers) : layers_(layers), covered_(size_t{pages} * layers, false) {}
  void Add(const SliceHeader& data);
  // The first (page, layer) not covered, if any.
  std::optional<std::pair<uint32_t, uint32_t>> FirstGap() const;

 private:
  uint32_t layers_;
  std::vector<bool> covered_;
};

}  // namespace kvstash::node
