#include "common/rendezvous.h"

#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace kvstash {

RendezvousRing::RendezvousRing(std::vector<RendezvousMember> members)
    : members_(std::move(members)) {
  seeds_.reserve(members_.size());
  for (const auto& m : members_) seeds_.push_back(XXH3_64bits(m.id.data(), m.id.size()));
}

double RendezvousRing::Score(const BlockKey& key, size_t i) const {
  const double weight = members_[i].weight;
  if (!(weight > 0)) return -1.0;
  const std::string_view bytes = key.AsBytes();
  const uint64_t h = XXH3_64bits_withSeed(bytes.data(), bytes.size(), seeds_[i]);
  // 53 random bits -> u strictly inside (0, 1), so ln(u) < 0 and the score is positive and finite.
  const double u = (static_cast<double>(h >> 11) + 0.5) * 0x1.0p-53;
  return -weight / std::log(u);
}

size_t RendezvousRing::Owner(const BlockKey& key) const {
  size_t best = 0;
  double best_score = -2.0;
  for (size_t i = 0; i < members_.size(); ++i) {
    const double s = Score(key, i);
    if (s > best_score) {
      best_score = s;
      best = i;
    }
  }
  return best;
}

std::vector<size_t> RendezvousRing::Order(const BlockKey& key, size_t n) const {
  std::vector<std::pair<double, size_t>> scored;
  scored.reserve(members_.size());
  for (size_t i = 0; i < members_.size(); ++i) {
    const double s = Score(key, i);
    if (s > 0) scored.emplace_back(s, i);
  }
  n = std::min(n, scored.size());
  std::partial_sort(scored.begin(), scored.begin() + static_cast<std::ptrdiff_t>(n), scored.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<size_t> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(scored[i].second);
  return out;
}

}  // namespace kvstash
