#include "transfer/two_sided_batch.h"

#include <algorithm>
#include <chrono>

namespace kvstash::transfer {

TwoSidedBatch::TwoSidedBatch(UcxWorker& worker, ucp_ep_h ep, AnswerBook& answers, std::span<TransferOp*> ops,
                             const MemhLookup& find_memh)
    : worker_(worker), ep_(ep), answers_(answers), find_memh_(find_memh) {
  ops_.reserve(ops.size());
  for (TransferOp* op : ops) ops_.push_back(TwoSidedOp::For(*op));
}

void TwoSidedBatch::Post() {
  for (size_t i = 0; i < ops_.size(); ++i) {
    const TransferOp& op = ops_[i]->op();
    ops_[i]->Post(PostContext{worker_, ep_, answers_, find_memh_(op.local, op.length)});
    open_.push_back(i);
  }
}

void TwoSidedBatch::Idle(unsigned events) {
  idle_rounds_ = events == 0 ? idle_rounds_ + 1 : 0;
  if (idle_rounds_ <= 64) return;
  // Waiting only for bytes to arrive (gets), an event always comes; a send blocked on a full
  // socket may raise none when the socket drains, so then wake often. (Having slept, this thread
  // runs as soon as its event comes.)
  const bool receiving_only =
      std::all_of(open_.begin(), open_.end(), [&](size_t i) { return ops_[i]->OnlyReceiving(); });
  (void)worker_.WaitForEvent(receiving_only ? std::chrono::microseconds(1000) : std::chrono::microseconds(50));
}

void TwoSidedBatch::Complete(const Deadline& deadline, const Deadline& grace, const std::string& peer_address) {
  const bool finished = ProgressUntil(
      deadline, [&] { return worker_.Progress(); },
      [&] {
        std::erase_if(open_, [&](size_t i) { return ops_[i]->Complete(); });
        return open_.empty();
      },
      [&](unsigned events) { Idle(events); });
  bool transport_error = !finished;
  for (const auto& op : ops_) transport_error |= op->BrokeTransport();
  // Receives that will not be satisfied (refused, failed, timed out) are cancelled before the
  // caller gets its buffers back. One UCX had already matched cannot be cancelled: its bytes keep
  // landing whenever this worker progresses, for as long as the daemon sends them (over its own
  // connection: closing ours below does not stop them). Let it finish within the grace period;
  // if it does not, the caller must not progress this worker again (ReceivesStillLanding).
  for (const auto& op : ops_) op->CancelReceive(worker_.handle());
  for (const auto& op : ops_) op->SettleReceive();
  auto landing = [&] {
    return std::any_of(ops_.begin(), ops_.end(), [](const auto& op) { return op->ReceiveInFlight(); });
  };
  if (landing()) {
    (void)ProgressUntil(
        grace, [&] { return worker_.Progress(); },
        [&] {
          for (const auto& op : ops_) op->SettleReceive();
          return !landing();
        },
        [&](unsigned events) { Idle(events); });
    still_landing_ = landing();
  }
  for (const auto& op : ops_) op->ForgetAnswer(answers_);
  if (transport_error) {
    // The peer is gone or broken: close its endpoint forcefully (which also ends the daemon's
    // sends to us) and reconnect on the next call.
    worker_.MarkFailed(peer_address);
    worker_.DropPeer(peer_address);
  }
}

void TwoSidedBatch::Outcome() {
  for (const auto& op : ops_) op->Finish();
}

}  // namespace kvstash::transfer
