#include "scheduler/prefix_index.h"

#include <bit>

namespace kvstash::scheduler {

void PrefixIndex::Add(uint32_t instance, BlockId block) {
  holders_[block][instance / 64] |= uint64_t{1} << (instance % 64);
}

void PrefixIndex::Remove(uint32_t instance, BlockId block) {
  auto it = holders_.find(block);
  if (it == holders_.end()) return;
  it->second[instance / 64] &= ~(uint64_t{1} << (instance % 64));
  for (uint64_t w : it->second) {
    if (w != 0) return;
  }
  holders_.erase(it);
}

void PrefixIndex::Clear(uint32_t instance) {
  for (auto it = holders_.begin(); it != holders_.end();) {
    it->second[instance / 64] &= ~(uint64_t{1} << (instance % 64));
    bool empty = true;
    for (uint64_t w : it->second) empty &= w == 0;
    it = empty ? holders_.erase(it) : std::next(it);
  }
}

void PrefixIndex::Matches(std::span<const BlockId> chain, uint32_t instances,
                          std::vector<uint32_t>& out) const {
  out.assign(instances, 0);
  Set alive{};
  for (uint32_t i = 0; i < instances; ++i) alive[i / 64] |= uint64_t{1} << (i % 64);
  auto settle = [&](const Set& leaving, uint32_t len) {
    for (size_t w = 0; w < alive.size(); ++w) {
      for (uint64_t bits = leaving[w]; bits != 0; bits &= bits - 1) {
        out[w * 64 + size_t(std::countr_zero(bits))] = len;
      }
    }
  };
  uint32_t k = 0;
  for (; k < chain.size(); ++k) {
    auto it = holders_.find(chain[k]);
    Set next{}, leaving{};
    bool any = false;
    for (size_t w = 0; w < alive.size(); ++w) {
      next[w] = it == holders_.end() ? 0 : alive[w] & it->second[w];
      leaving[w] = alive[w] & ~next[w];
      any |= next[w] != 0;
    }
    settle(leaving, k);
    alive = next;
    if (!any) return;
  }
  settle(alive, k);
}

}  // namespace kvstash::scheduler
