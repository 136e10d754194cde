// A handoff slice as read from the store: ParseSlice refuses it or returns a header whose ranges lie
// within the limits and a payload of exactly the stated size — so applying it (the coverage update
// here, the page writes on a decode node) never leaves the prompt's pages or the model's layers.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "node/handoff_slices.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvstash::node;
  if (size < 4) return 0;
  // The first bytes choose the decode side's view of the request; the rest is the slice.
  SliceLimits limits;
  limits.expected_index = data[0] % 4;
  limits.prompt_pages = 1 + data[1] % 16;
  limits.prompt_tokens = limits.prompt_pages * 16 - data[2] % 16;
  limits.layers = 1 + data[3] % 8;
  limits.layer_bytes_per_page = 8;
  limits.vocab_size = 1000;
  const auto bytes = std::as_bytes(std::span(data + 4, size - 4));
  auto slice = ParseSlice(bytes, limits);
  if (!slice.ok()) return 0;
  const SliceHeader& h = slice->header;
  if (h.index != limits.expected_index || h.prompt_tokens != limits.prompt_tokens) std::abort();
  if (h.kind == SliceKind::kData) {
    if (uint64_t{h.first_page} + h.pages > limits.prompt_pages) std::abort();
    if (uint64_t{h.first_layer} + h.layers > limits.layers) std::abort();
    if (slice->payload.size() != uint64_t{h.pages} * h.layers * limits.layer_bytes_per_page) std::abort();
    SliceCoverage coverage(limits.prompt_pages, limits.layers);
    coverage.Add(h);
    (void)coverage.FirstGap();
  } else if (!slice->payload.empty() || (h.kind == SliceKind::kDone && h.first_token >= limits.vocab_size)) {
    std::abort();
  }
  return 0;
}
