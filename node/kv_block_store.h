// KvBlockStore: moves a sequence's KV between the node's page pool and kvstash, one store block
// (block_tokens / page_tokens consecutive pages, their bytes concatenated) at a time.
//
// The store is a cache, never a source of truth: a block that misses, fails its checksum, has
// the wrong size, or cannot be reached ends the fetched prefix, and the caller computes from
// there. Nothing a fetch does can make the engine use wrong bytes.
//
// Thread-safety: as the Client (thread-safe); the pages are the caller's.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kvstash/client.h"
#include "node/kv_pages.h"

namespace kvstash::node {

struct FetchResult {
  size_t blocks = 0;       // blocks of the chain now in the pages, from the first
  size_t looked_up = 0;    // blocks the store's Lookup reported present
  size_t rejected = 0;     // present but not used: missing by the time of the read, corrupt, wrong size
  bool store_down = false;  // the store could not be asked (the prefix is computed instead)
};

class KvBlockStore {
 public:
  // REQUIRES: block_tokens is a multiple of the pool's page_tokens.
  KvBlockStore(Client& client, const KvPagePool& pool, uint32_t block_tokens);

  uint32_t block_tokens() const { return block_tokens_; }
  size_t pages_per_block() const { return pages_per_block_; }
  size_t block_bytes() const { return pages_per_block_ * page_bytes_; }

  // Fetches the longest prefix of `chain` that the store holds into the pages of `page_table`
  // (block i into pages [i * pages_per_block, (i + 1) * pages_per_block)), at most
  // `max_blocks` of them. The lookup leases the blocks for `lease_ms`; the leases are given back.
  FetchResult FetchPrefix(std::span<const BlockKey> chain, size_t max_blocks, std::span<const uint32_t> page_table,
                          KvPagePool& pool, uint64_t lease_ms = 0);

  // The partial last block of a prompt (a P/D handoff's tail): `pages` pages' bytes under `key`,
  // read from / written to the pages of `page_table` (exactly those pages). Fetch returns false
  // (pages untouched or to be recomputed) when the object is missing, has another size or the
  // store cannot be reached.
  Status StoreTail(const BlockKey& key, std::optional<BlockKey> parent, std::span<const uint32_t> page_table,
                   KvPagePool& pool);
  bool FetchTail(const BlockKey& key, std::span<const uint32_t> page_table, KvPagePool& pool);
  void RemoveTail(const BlockKey& key);

  // Stores blocks [from, to) of `chain` from the pages (each linked to its parent in the chain).
  Result<PutResult> Store(std::span<const BlockKey> chain, size_t from, size_t to,
                          std::span<const uint32_t> page_table, KvPagePool& pool, const PutOptions& options = {});

 private:
  Client& client_;
  uint32_t block_tokens_;
  size_t pages_per_block_;
  size_t page_bytes_;
};

}  // namespace kvstash::node
