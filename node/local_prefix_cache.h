// LocalPrefixCache: the node's first-level prefix cache — full blocks of finished requests, kept
// in their pages until the pool needs the pages (least recently used first). A block in use by a
// running sequence is pinned (reference counted) and never evicted; its pages are read-only
// (a sequence only writes the pages after its prefix).
//
// Thread-safety: NOT thread-safe; the runtime's step thread owns it.
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

#include "kvstash/block_key.h"
#include "node/kv_pages.h"

namespace kvstash::node {

class LocalPrefixCache {
 public:
  explicit LocalPrefixCache(KvPagePool& pool) : pool_(pool) {}

  // The longest run of `chain`'s first blocks (at most `max_blocks`) held here, pinned; their
  // pages, in order, are appended to `pages`. Returns the number of blocks.
  size_t AcquirePrefix(std::span<const BlockKey> chain, size_t max_blocks, std::vector<uint32_t>& pages);
  // Unpins blocks that AcquirePrefix returned.
  void Release(std::span<const BlockKey> keys);
  // Takes a finished sequence's pages of block `key` (ownership passes to the cache). When the
  // key is already held, returns false and the caller keeps (and frees) the pages.
  bool Insert(const BlockKey& key, std::span<const uint32_t> pages);
  // Evicts unpinned blocks, least recently used first, until the pool has `pages` free pages or
  // nothing more can go. Returns whether the pool now has them.
  bool MakeRoom(size_t pages);

  size_t blocks() const { return blocks_.size(); }

  // Blocks inserted and evicted since the last call (in order), when recording is on — what the
  // conductor's prefix index of this node needs (KV events).
  void set_record_events(bool on) { record_events_ = on; }
  std::pair<std::vector<BlockKey>, std::vector<BlockKey>> TakeEvents();

 private:
  struct Block {
    std::vector<uint32_t> pages;
    uint32_t pins = 0;
    std::list<BlockKey>::iterator lru;  // valid while unpinned
  };
  KvPagePool& pool_;
  std::unordered_map<BlockKey, Block, BlockKeyHash> blocks_;
  std::list<BlockKey> lru_;  // unpinned blocks, least recently used first
  bool record_events_ = false;
  std::vector<BlockKey> inserted_, evicted_;
};

}  // namespace kvstash::node
