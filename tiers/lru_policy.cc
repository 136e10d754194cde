// "lru": a recency list (front = coldest) plus a hash index into it. Insert, access and erase are
// O(1); PickVictim walks from the cold end and skips keys the tier says are not evictable, so it
// is O(k) in the number of keys skipped.
#include <list>
#include <unordered_map>

#include "tiers/eviction_policy.h"
#include "tiers/policy_key_hash.h"

namespace kvstash::tiers {
namespace {

class LruPolicy final : public EvictionPolicy {
 public:
  std::string_view name() const override { return "lru"; }

  void OnInsert(const BlockKey& key, const std::optional<BlockKey>& /*parent*/,
                uint64_t /*size*/) override {
    auto it = index_.find(key);
    if (it != index_.end()) {
      order_.splice(order_.end(), order_, it->second);
      return;
    }
    order_.push_back(key);
    index_.emplace(key, std::prev(order_.end()));
  }

  void OnAccess(const BlockKey& key) override {
    auto it = index_.find(key);
    if (it == index_.end()) return;
    order_.splice(order_.end(), order_, it->second);
  }

  void OnErase(const BlockKey& key) override {
    auto it = index_.find(key);
    if (it == index_.end()) return;
    order_.erase(it->second);
    index_.erase(it);
  }

  std::optional<BlockKey> PickVictim(
      const std::function<bool(const BlockKey&)>& evictable) override {
    for (const BlockKey& key : order_) {
      if (evictable(key)) return key;
    }
    return std::nullopt;
  }

  size_t size() const override { return index_.size(); }

 private:
  std::list<BlockKey> order_;
  std::unordered_map<BlockKey, std::list<BlockKey>::iterator, PolicyKeyHash, PolicyKeyEq> index_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> MakeLruPolicy() { return std::make_unique<LruPolicy>(); }

}  // namespace kvstash::tiers
