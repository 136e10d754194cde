#include "transfer/batch_plan.h"

#include <algorithm>

namespace kvstash::transfer {
namespace {

bool Splittable(const TransferOp& op, Protocol protocol) {
  return !(protocol == Protocol::kTwoSided && op.kind != OpKind::kGet);
}

}  // namespace

Status CheckBatch(const RemoteTarget& target, std::span<const TransferOp> ops) {
  const bool two_sided = target.protocol == Protocol::kTwoSided;
  // Two-sided transfers need only the push worker (tenants of a daemon with tokens get no rkey).
  if (two_sided ? target.push_worker_address.empty() : (target.worker_address.empty() || target.packed_rkey.empty())) {
    return InvalidArgument(two_sided ? "the daemon offered no two-sided UCX worker"
                                     : "the daemon offered no one-sided UCX data plane (no worker address or rkey)");
  }
  for (const TransferOp& op : ops) {
    if (op.local == nullptr || op.length == 0) return InvalidArgument("a transfer needs a non-empty local buffer");
    if (op.kind == OpKind::kEagerPut || op.kind == OpKind::kEagerGet) {
      if (!two_sided) return InvalidArgument("eager puts and gets need the two-sided protocol");
      continue;  // no remote address: the daemon picks it
    }
    // Addresses come from the network: never reach outside the range the rkey covers.
    if (target.length > 0 && (op.remote_addr < target.base || op.length > target.length ||
                              op.remote_addr - target.base > target.length - op.length)) {
      return InvalidArgument("remote range [" + std::to_string(op.remote_addr) + ", +" + std::to_string(op.length) +
                             ") lies outside the daemon's registered memory");
    }
  }
  return Status::Ok();
}

std::vector<LaneGroup> PlanLanes(const RemoteTarget& target, std::span<const TransferOp> ops, size_t slots,
                                 size_t first) {
  const std::vector<std::string>& lanes = target.push_lane_addresses;
  if (target.protocol != Protocol::kTwoSided || lanes.size() <= 1 || slots <= 1 || ops.size() <= 1 ||
      std::any_of(ops.begin(), ops.end(), [](const TransferOp& op) { return op.kind == OpKind::kPut || op.device_local; })) {
    return {};
  }
  const size_t n = std::min({slots, lanes.size(), ops.size()});
  const auto own = std::find(lanes.begin(), lanes.end(), target.push_worker_address);
  const size_t start = own == lanes.end() ? 0 : static_cast<size_t>(own - lanes.begin());
  std::vector<LaneGroup> groups(n);
  for (size_t g = 0; g < n; ++g) {
    groups[g].slot = (first + g) % slots;
    groups[g].lane = lanes[(start + groups[g].slot) % lanes.size()];
  }
  for (size_t i = 0; i < ops.size(); ++i) groups[i % n].ops.push_back(i);
  return groups;
}

std::optional<SplitPlan> PlanSplit(std::span<const TransferOp> ops, Protocol protocol, size_t split_bytes,
                                   size_t slots) {
  if (split_bytes == 0 || slots <= 1) return std::nullopt;
  if (std::any_of(ops.begin(), ops.end(), [](const TransferOp& op) { return op.device_local; })) return std::nullopt;
  size_t largest = 0;
  for (const TransferOp& op : ops) {
    if (Splittable(op, protocol)) largest = std::max(largest, op.length);
  }
  if (largest <= split_bytes) return std::nullopt;
  // Cut large ops into pieces of about split_bytes and deal the pieces over the workers.
  SplitPlan plan;
  for (size_t i = 0; i < ops.size(); ++i) {
    const TransferOp& op = ops[i];
    const size_t n = Splittable(op, protocol) ? std::max<size_t>(1, (op.length + split_bytes - 1) / split_bytes) : 1;
    const size_t step = (op.length + n - 1) / n;
    for (size_t off = 0; off < op.length; off += step) {
      TransferOp piece = op;
      piece.local = static_cast<std::byte*>(op.local) + off;
      piece.length = std::min(step, op.length - off);
      piece.remote_addr = op.remote_addr + off;
      plan.pieces.push_back(piece);
      plan.owner.push_back(i);
    }
  }
  plan.per_worker.resize(std::min(slots, plan.pieces.size()));
  for (size_t p = 0; p < plan.pieces.size(); ++p) plan.per_worker[p % plan.per_worker.size()].push_back(p);
  return plan;
}

void MergePieces(const SplitPlan& plan, std::span<TransferOp> ops) {
  for (TransferOp& op : ops) op.status = Status::Ok();
  for (size_t p = 0; p < plan.pieces.size(); ++p) {
    TransferOp& op = ops[plan.owner[p]];
    if (!plan.pieces[p].status.ok() && op.status.ok()) op.status = plan.pieces[p].status;
  }
}

}  // namespace kvstash::transfer
