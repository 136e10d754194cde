// The data path's puts (contract in client/connection.h): one batch as PutBegin, the bytes over
// UCX (one-sided or into the daemon's posted receives) or inline, then PutCommit with checksums;
// or as eager puts (request and bytes in one two-sided message pair per block). A failed round
// gives its reservations back.
#include <optional>
#include <unordered_set>

#include "client/connection.h"
#include "common/checksum.h"

namespace kvstash::client_internal {

void Connection::AbortReservations(const std::vector<std::string>& handles) {
  if (handles.empty()) return;
  v1::PutAbortRequest abort;
  for (const std::string& handle : handles) abort.add_reservations(handle);
  v1::PutAbortResponse aborted;
  auto ctx = Context();
  (void)stub_->PutAbort(ctx.get(), abort, &aborted);
}

Status Connection::PutRound(std::span<const PutItem> items, const PutOptions& put_options,
                              std::vector<PutOutcome>& outcomes) {
  v1::PutBeginRequest begin;
  begin.set_timeout_ms(options_.reservation_timeout_ms);
  const bool two_sided = engine_ && protocol_ == transfer::Protocol::kTwoSided;
  begin.set_two_sided(two_sided);
  if (two_sided) {
    MutexLock lock(target_mu_);
    begin.set_push_lane(target_lane_);
  }
  for (const PutItem& item : items) {
    v1::PutBeginItem* p = begin.add_items();
    p->set_key(std::string(item.key.AsBytes()));
    p->set_size(item.data.size());
    if (item.parent) p->set_parent(std::string(item.parent->AsBytes()));
  }
  v1::PutBeginResponse begun;
  {
    auto ctx = Context();
    KVSTASH_RETURN_IF_ERROR(Call(stub_->PutBegin(ctx.get(), begin, &begun), "put_begin"));
  }
  if (begun.results_size() != static_cast<int>(items.size())) return Internal("daemon answered a malformed put_begin");

  v1::PutCommitRequest commit;
  commit.set_pin(put_options.pin);
  if (put_options.advice) {
    commit.set_advice(*put_options.advice == ReuseAdvice::kLikely ? v1::REUSE_ADVICE_LIKELY
                                                                   : v1::REUSE_ADVICE_UNLIKELY);
  }
  std::vector<std::string> reserved;
  std::vector<transfer::TransferOp> writes;
  for (size_t i = 0; i < items.size(); ++i) {
    const auto& r = begun.results(static_cast<int>(i));
    switch (r.outcome()) {
      case v1::PutBeginResult::RESERVED: {
        v1::PutCommitItem* c = commit.add_items();
        c->set_reservation(r.reservation());
        c->set_checksum(BlockChecksum(items[i].data.data(), items[i].data.size()));
        reserved.push_back(r.reservation());
        if (engine_) {
          if (r.remote_addr() == 0 || (two_sided && r.push_tag() == 0)) {
            AbortReservations(reserved);
            return Internal("daemon reserved space without an address (or tag) for the UCX path");
          }
          // UCX only reads the source of a put; the const_cast does not license a write.
          writes.push_back({transfer::OpKind::kPut, const_cast<std::byte*>(items[i].data.data()),
                            items[i].data.size(), r.remote_addr(), {}});
          writes.back().tag = r.push_tag();
        } else {
          c->set_data(items[i].data.data(), items[i].data.size());
        }
        outcomes.push_back(PutOutcome::kStored);
        break;
      }
      case v1::PutBeginResult::EXISTS: outcomes.push_back(PutOutcome::kExists); break;
      case v1::PutBeginResult::BUSY: outcomes.push_back(PutOutcome::kBusy); break;
      case v1::PutBeginResult::NO_SPACE: outcomes.push_back(PutOutcome::kNoSpace); break;
      default: AbortReservations(reserved); return Internal("daemon answered an unknown put_begin outcome");
    }
  }
  if (commit.items_size() == 0) return Status::Ok();
  if (!writes.empty()) {
    Result<transfer::RemoteTarget> to = TargetFor(begun.instance_id());
    Status st = to.ok() ? engine_->Run(*to, writes) : to.status();
    for (const auto& w : writes) {
      if (st.ok() && !w.status.ok()) st = w.status;
    }
    if (!st.ok()) {
      AbortReservations(reserved);
      return Status(st.code(), "writing blocks to kvstashd at " + options_.address + ": " + st.message());
    }
  }
  v1::PutCommitResponse done;
  auto ctx = Context();
  const Status st = Call(stub_->PutCommit(ctx.get(), commit, &done), "put_commit");
  if (!st.ok()) AbortReservations(reserved);
  return st;
}

Status Connection::PutRoundEager(std::span<const PutItem> items, const PutOptions& put_options,
                                 std::vector<PutOutcome>& outcomes) {
  std::unordered_set<BlockKey, BlockKeyHash> seen;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!seen.insert(items[i].key).second) {
      return InvalidArgument("item " + std::to_string(i) + " repeats key " + items[i].key.ToHex());
    }
  }
  transfer::RemoteTarget to;
  {
    MutexLock lock(target_mu_);
    to = target_;
  }
  std::vector<transfer::TransferOp> ops(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    transfer::TransferOp& op = ops[i];
    op.kind = transfer::OpKind::kEagerPut;
    // UCX only reads the source of a put; the const_cast does not license a write.
    op.local = const_cast<std::byte*>(items[i].data.data());
    op.length = items[i].data.size();
    op.key = items[i].key;
    op.parent = items[i].parent;
    op.pin = put_options.pin;  // the engine hashes each block just before sending it
    op.advice = put_options.advice;
  }
  KVSTASH_RETURN_IF_ERROR(engine_->Run(to, ops));
  std::vector<std::optional<PutOutcome>> answered(items.size());
  std::vector<PutItem> retry;
  for (size_t i = 0; i < items.size(); ++i) {
    const Status& st = ops[i].status;
    switch (st.code()) {
      case StatusCode::kOk: answered[i] = PutOutcome::kStored; break;
      case StatusCode::kAlreadyExists: answered[i] = PutOutcome::kExists; break;
      case StatusCode::kAborted: answered[i] = PutOutcome::kBusy; break;
      case StatusCode::kResourceExhausted: answered[i] = PutOutcome::kNoSpace; break;
      case StatusCode::kUnavailable:
      case StatusCode::kDeadlineExceeded: retry.push_back(items[i]); break;  // the transport, not the put
      default:
        return Status(st.code(), "eager put of block " + items[i].key.ToHex() + " to kvstashd at " + options_.address +
                                     ": " + st.message());
    }
  }
  std::vector<PutOutcome> retried;
  if (!retry.empty()) KVSTASH_RETURN_IF_ERROR(PutRound(retry, put_options, retried));
  size_t next_retried = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    outcomes.push_back(answered[i] ? *answered[i] : retried[next_retried++]);
  }
  return Status::Ok();
}

}  // namespace kvstash::client_internal
