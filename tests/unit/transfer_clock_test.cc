// The engine measures its batch timeout on TransferEngineOptions::clock: against a peer that has
// gone silent, a clock that jumps a second at every look times the batch out after a few idle
// rounds instead of the 30 s of real time the same timeout would take. Real UCX over tcp.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "common/clock.h"
#include "transfer/transfer_engine.h"
#include "transfer/ucx_worker.h"

namespace kvstash::transfer {
namespace {

// Stands still until Jump(step_ms); from then on every reading is step_ms later than the one
// before.
class JumpingClock final : public Clock {
 public:
  uint64_t NowMs() const override {
    const uint64_t step = step_ms_.load();
    if (step > 0) jumps_.fetch_add(1);
    return now_ms_.fetch_add(step) + step;
  }
  void Jump(uint64_t step_ms) { step_ms_.store(step_ms); }
  uint64_t jumps() const { return jumps_.load(); }

 private:
  std::atomic<uint64_t> step_ms_{0};
  mutable std::atomic<uint64_t> now_ms_{1'000'000};
  mutable std::atomic<uint64_t> jumps_{0};
};

TEST(TransferClockTest, ASilentDaemonTimesTheBatchOutOnTheEnginesClock) {
  UcxOptions ucx;
  ucx.transports = "tcp";
  ucx.messages = true;
  auto context = UcxContext::Create(ucx);
  ASSERT_TRUE(context.ok()) << context.status().ToString();
  auto daemon = UcxWorker::Create(*context);  // stands in for a daemon's lane; never answers
  ASSERT_TRUE(daemon.ok()) << daemon.status().ToString();
  JumpingClock clock;
  TransferEngineOptions options;
  options.ucx.transports = "tcp";
  options.workers = 1;
  options.timeout_ms = 30'000;
  options.clock = &clock;
  auto engine = TransferEngine::Create(options);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  RemoteTarget target{"unused", "unused", 0, 0, Protocol::kTwoSided, (*daemon)->address()};

  // Connect while the peer progresses (the endpoint's handshake needs it, timed on the same clock,
  // which stands still for now), with a tiny put.
  std::atomic<bool> stop{false};
  std::thread helper([&] {
    while (!stop.load()) {
      if ((*daemon)->Progress() == 0) std::this_thread::yield();
    }
  });
  uint64_t hello = 42;
  TransferOp first{OpKind::kPut, &hello, sizeof(hello), 1, {}};
  first.tag = 1;
  const Status connected = (*engine)->Run(target, std::span(&first, 1));
  stop.store(true);
  helper.join();
  ASSERT_TRUE(connected.ok()) << connected.ToString();
  ASSERT_TRUE(first.status.ok()) << first.status.ToString();

  // Now silent: a get's bytes and an eager put's answer never come.
  std::vector<std::byte> in(4096), out(4096, std::byte{7});
  std::array<TransferOp, 2> ops;
  ops[0] = {OpKind::kGet, in.data(), in.size(), 0x1000, {}};
  ops[1] = {OpKind::kEagerPut, out.data(), out.size(), 0, {}};
  ops[1].key = BlockKey::FromParts(1, 2);
  clock.Jump(1'000);
  const auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE((*engine)->Run(target, ops).ok());
  const auto took = std::chrono::steady_clock::now() - started;

  EXPECT_EQ(ops[0].status.code(), StatusCode::kDeadlineExceeded) << ops[0].status.ToString();
  // Its request may still sit in UCX's queue (the peer does not progress): either half timed out.
  EXPECT_NE(ops[0].status.message().find("two-sided get"), std::string::npos) << ops[0].status.ToString();
  EXPECT_NE(ops[0].status.message().find("timed out"), std::string::npos) << ops[0].status.ToString();
  EXPECT_EQ(ops[1].status.code(), StatusCode::kDeadlineExceeded) << ops[1].status.ToString();
  EXPECT_EQ(ops[1].status.message(), "eager put: the daemon did not answer in time");
  // The deadline was read on the injected clock: 30 jumps of 1 s end it, not 30 s of waiting.
  EXPECT_GE(clock.jumps(), 31u);
  EXPECT_LT(took, std::chrono::seconds(20));
  engine->reset();
}

}  // namespace
}  // namespace kvstash::transfer
