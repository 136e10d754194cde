#include "node/engine.h"

#include <string>

namespace kvstash::node {

Status ValidateStep(const ModelConfig& c, const KvGeometry& want, bool needs_host, std::span<const uint32_t> tokens,
                    uint32_t start, std::span<const uint32_t> page_table, const KvPagePool& pool) {
  const size_t n = tokens.size();
  if (n == 0) return InvalidArgument("a forward step needs at least one token");
  for (size_t i = 0; i < n; ++i) {
    if (tokens[i] >= c.vocab_size) {
      return InvalidArgument("token " + std::to_string(i) + " is id " + std::to_string(tokens[i]) +
                             "; the vocabulary has " + std::to_string(c.vocab_size));
    }
  }
  if (static_cast<uint64_t>(start) + n > c.max_position_embeddings) {
    return InvalidArgument("positions up to " + std::to_string(start + n) + " exceed the context of " +
                           std::to_string(c.max_position_embeddings));
  }
  const KvGeometry& have = pool.geometry();
  if ((needs_host && !pool.host_accessible()) || have.element_bytes != want.element_bytes ||
      have.layers != want.layers || have.kv_heads != want.kv_heads || have.head_dim != want.head_dim) {
    return InvalidArgument(needs_host ? "the pool's pages are not this engine's KV in host memory"
                                      : "the pool's pages are not this engine's KV");
  }
  if (static_cast<uint64_t>(page_table.size()) * pool.page_tokens() < uint64_t{start} + n) {
    return InvalidArgument("the page table covers " + std::to_string(page_table.size() * pool.page_tokens()) +
                           " tokens; the step needs " + std::to_string(start + n));
  }
  for (uint32_t page : page_table) {
    if (page >= pool.pages()) return InvalidArgument("page " + std::to_string(page) + " is not in the pool");
  }
  return Status::Ok();
}

}  // namespace kvstash::node
