#include "node/kv_block_store.h"

#include <algorithm>
#include <cstring>

namespace kvstash::node {

KvBlockStore::KvBlockStore(Client& client, const KvPagePool& pool, uint32_t block_tokens)
    : client_(client),
      block_tokens_(block_tokens),
      pages_per_block_(block_tokens / pool.page_tokens()),
      page_bytes_(pool.page_bytes()) {}

FetchResult KvBlockStore::FetchPrefix(std::span<const BlockKey> chain, size_t max_blocks,
                                      std::span<const uint32_t> page_table, KvPagePool& pool, uint64_t lease_ms) {
  FetchResult result;
  const size_t wanted = std::min({chain.size(), max_blocks, page_table.size() / pages_per_block_});
  if (wanted == 0) return result;
  Result<LookupResult> found = client_.Lookup(chain.first(wanted), lease_ms);
  if (!found.ok()) {
    result.store_down = true;
    return result;
  }
  result.looked_up = found->hit_blocks;
  if (found->hit_blocks == 0) return result;
  std::vector<std::byte> staging(found->hit_blocks * block_bytes());
  std::vector<GetItem> items(found->hit_blocks);
  for (size_t i = 0; i < items.size(); ++i) {
    items[i].key = chain[i];
    items[i].buffer = std::span(staging).subspan(i * block_bytes(), block_bytes());
    if (lease_ms > 0 && i < found->blocks.size()) items[i].located = &found->blocks[i];
  }
  const Status got = client_.Get(items);
  if (lease_ms > 0) (void)client_.ReleaseLeases(found->blocks);
  if (!got.ok()) {
    result.store_down = true;
    return result;
  }
  for (size_t i = 0; i < items.size(); ++i) {
    // Get verified the checksum; the size is the one check left that the store cannot make for us.
    if (!items[i].found || items[i].size != block_bytes()) {
      result.rejected = items.size() - i;
      break;
    }
    bool written = true;
    for (size_t p = 0; p < pages_per_block_ && written; ++p) {
      written = pool.WritePage(page_table[i * pages_per_block_ + p],
                               std::span(staging).subspan(i * block_bytes() + p * page_bytes_, page_bytes_))
                    .ok();
    }
    if (!written) {  // the pages may hold part of it: this block and the rest are computed
      result.rejected = items.size() - i;
      break;
    }
    ++result.blocks;
  }
  return result;
}

Result<PutResult> KvBlockStore::Store(std::span<const BlockKey> chain, size_t from, size_t to,
                                      std::span<const uint32_t> page_table, KvPagePool& pool,
                                      const PutOptions& options) {
  if (from >= to) return PutResult{};
  if (to > chain.size() || to * pages_per_block_ > page_table.size()) {
    return InvalidArgument("blocks up to " + std::to_string(to) + " are not all in the page table");
  }
  std::vector<std::vector<std::byte>> blocks(to - from);
  std::vector<PutItem> items;
  for (size_t i = from; i < to; ++i) {
    std::vector<std::byte>& bytes = blocks[i - from];
    bytes.resize(block_bytes());
    for (size_t p = 0; p < pages_per_block_; ++p) {
      KVSTASH_RETURN_IF_ERROR(
          pool.ReadPage(page_table[i * pages_per_block_ + p], std::span(bytes).subspan(p * page_bytes_, page_bytes_)));
    }
    PutItem item;
    item.key = chain[i];
    if (i > 0) item.parent = chain[i - 1];
    item.data = bytes;
    items.push_back(item);
  }
  return client_.Put(items, options);
}

Status KvBlockStore::StoreTail(const BlockKey& key, std::optional<BlockKey> parent,
                               std::span<const uint32_t> page_table, KvPagePool& pool) {
  std::vector<std::byte> bytes(page_table.size() * page_bytes_);
  for (size_t p = 0; p < page_table.size(); ++p) {
    KVSTASH_RETURN_IF_ERROR(pool.ReadPage(page_table[p], std::span(bytes).subspan(p * page_bytes_, page_bytes_)));
  }
  PutItem item;
  item.key = key;
  item.parent = parent;
  item.data = bytes;
  KVSTASH_ASSIGN_OR_RETURN(PutResult put, client_.Put(std::span(&item, 1)));
  if (put.stored + put.existed == 0) return ResourceExhausted("the store did not take the handoff tail");
  return Status::Ok();
}

bool KvBlockStore::FetchTail(const BlockKey& key, std::span<const uint32_t> page_table, KvPagePool& pool) {
  std::vector<std::byte> bytes(page_table.size() * page_bytes_);
  GetItem item;
  item.key = key;
  item.buffer = bytes;
  if (!client_.Get(std::span(&item, 1)).ok() || !item.found || item.size != bytes.size()) return false;
  for (size_t p = 0; p < page_table.size(); ++p) {
    if (!pool.WritePage(page_table[p], std::span(bytes).subspan(p * page_bytes_, page_bytes_)).ok()) return false;
  }
  return true;
}

void KvBlockStore::RemoveTail(const BlockKey& key) { (void)client_.Remove(std::span(&key, 1)); }

}  // namespace kvstash::node
