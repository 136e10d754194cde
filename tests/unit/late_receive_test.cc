// A hostile peer against the daemon's two-sided put receive (docs/SECURITY.md, "late writes"):
// UCX cannot cancel a receive it has already matched, so a peer that starts a large tagged send,
// lets the daemon match it and then stops sending can land its remaining bytes whenever it
// resumes. The region must stay out of the allocator until UCX completes that receive, or the late
// bytes overwrite another client's committed block. A raw UCX worker over tcp plays the peer
// against a TransferServer and a DramTier over its memory, wired as kvstashd wires them
// (DramTierOptions::region_in_use -> TransferServer::MayStillWrite). Real UCX, no mocks.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "common/checksum.h"
#include "tiers/dram_tier.h"
#include "transfer/transfer_server.h"
#include "transfer/ucx_worker.h"

namespace kvstash::transfer {
namespace {

using Steady = std::chrono::steady_clock;

constexpr size_t kBlock = 32ULL << 20;  // far beyond what the loopback socket buffers hold
constexpr size_t kArena = 2 * kBlock;
constexpr uint64_t kTag = 0x1a7e'b17e5ULL;

std::vector<std::byte> Filled(size_t n, uint8_t seed) {
  std::vector<std::byte> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<std::byte>((i * 131 + seed) % 251 + 1);  // never zero
  return out;
}

bool AnyNonZero(const std::byte* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != std::byte{0}) return true;
  }
  return false;
}

TEST(LateReceiveTest, MatchedReceiveKeepsItsRegionUntilUcxCompletesIt) {
  UcxOptions ucx;
  ucx.transports = "tcp";
  auto server = TransferServer::StartAllocated(ucx, kArena, /*lanes=*/1);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  TransferServer& transfer = **server;
  std::memset(transfer.memory(), 0, kArena);

  tiers::DramTierOptions options;
  options.capacity_bytes = kArena;
  options.high_watermark = 1.0;
  options.low_watermark = 1.0;
  options.max_block_bytes = kBlock;
  options.eviction_policy = tiers::EvictionPolicyKind::kLru;
  options.external_arena = transfer.memory();
  options.region_in_use = [&transfer](uint64_t offset, uint64_t bytes) {
    return transfer.MayStillWrite(transfer.memory() + offset, bytes);
  };
  auto made = tiers::DramTier::Create(options);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  tiers::DramTier& tier = **made;

  // The hostile peer: a raw worker of its own, connected to the daemon's push lane.
  UcxOptions peer_options;
  peer_options.transports = "tcp";
  peer_options.messages = true;
  auto peer_context = UcxContext::Create(peer_options);
  ASSERT_TRUE(peer_context.ok()) << peer_context.status().ToString();
  auto peer = UcxWorker::Create(*peer_context);
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();
  auto ep = (*peer)->Endpoint(transfer.push_worker_address());
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();

  // Its put: a reservation and the receive posted into it (PutBegin).
  auto hostile = tier.Reserve(BlockKey::FromParts(1, 1), kBlock, std::nullopt, 60'000);
  ASSERT_TRUE(hostile.ok()) << hostile.status().ToString();
  std::byte* const region = hostile->data;
  ASSERT_TRUE(transfer.ExpectReceive(kTag, region, kBlock, std::chrono::seconds(60)).ok());

  // It sends the block, progressing only until the daemon has matched the receive and the first
  // bytes are in, then stalls (stops progressing its worker) with most of the block unsent.
  const std::vector<std::byte> late = Filled(kBlock, 7);
  ucp_request_param_t param{};
  ucs_status_ptr_t send = ucp_tag_send_nbx(*ep, late.data(), late.size(), kTag, &param);
  ASSERT_FALSE(UCS_PTR_IS_ERR(send)) << ucs_status_string(UCS_PTR_STATUS(send));
  ASSERT_NE(send, nullptr) << "the whole block went at once: the test needs a send that can stall";
  const auto deadline = Steady::now() + std::chrono::seconds(30);
  while (!AnyNonZero(region, 4096) && Steady::now() < deadline) {
    if ((*peer)->Progress() == 0) std::this_thread::yield();
  }
  ASSERT_TRUE(AnyNonZero(region, 4096)) << "the daemon never matched the receive";
  ASSERT_EQ(ucp_request_check_status(send), UCS_INPROGRESS) << "the block was sent whole before the stall";

  // PutAbort: the receive is withdrawn (UCX cannot cancel it: it is matched) and the reservation
  // aborted. The region may still be written, so it must not be handed out.
  transfer.CancelReceive(kTag);
  ASSERT_TRUE(tier.Abort(hostile->id).ok());
  EXPECT_TRUE(transfer.MayStillWrite(region, kBlock));
  EXPECT_TRUE(transfer.MayStillWrite(region + kBlock - 1, 1));
  EXPECT_FALSE(transfer.MayStillWrite(region + kBlock, 1));
  EXPECT_EQ(tier.Counters().regions_held_for_late_writes, 1u);

  // Another client's block is allocated and committed meanwhile: never in the held region.
  const BlockKey victim_key = BlockKey::FromParts(2, 2);
  const std::vector<std::byte> victim = Filled(kBlock, 99);
  auto reserved = tier.Reserve(victim_key, kBlock, std::nullopt, 60'000);
  ASSERT_TRUE(reserved.ok()) << reserved.status().ToString();
  EXPECT_NE(reserved->data, region) << "the region of a receive that may still land was reused";
  std::memcpy(reserved->data, victim.data(), kBlock);
  ASSERT_TRUE(tier.Commit(reserved->id, BlockChecksum(victim.data(), kBlock), false).ok());

  // The peer resumes: the rest of its bytes land, where it was allowed to write only.
  while (ucp_request_check_status(send) == UCS_INPROGRESS && Steady::now() < deadline + std::chrono::seconds(30)) {
    (*peer)->Progress();
  }
  ASSERT_EQ(ucp_request_check_status(send), UCS_OK);
  ucp_request_free(send);
  // The daemon's lane completes the receive on its own thread; keep the peer's side answering.
  while (transfer.MayStillWrite(region, kBlock) && Steady::now() < deadline + std::chrono::seconds(60)) {
    if ((*peer)->Progress() == 0) std::this_thread::yield();
  }
  EXPECT_FALSE(transfer.MayStillWrite(region, kBlock)) << "UCX never completed the withdrawn receive";

  // The committed block is intact: every byte, and its checksum.
  std::vector<std::byte> read(kBlock);
  auto meta = tier.Read(victim_key, read);
  ASSERT_TRUE(meta.ok()) << meta.status().ToString();
  EXPECT_TRUE(read == victim) << "late bytes of the aborted put overwrote a committed block";
  EXPECT_EQ(BlockChecksum(read.data(), kBlock), meta->checksum);

  // Now the region is free again: the next reservation of that size reuses it.
  ASSERT_TRUE(tier.Remove(victim_key).ok());
  auto reused = tier.Reserve(BlockKey::FromParts(3, 3), kBlock, std::nullopt, 60'000);
  ASSERT_TRUE(reused.ok()) << reused.status().ToString();
  EXPECT_EQ(tier.Counters().regions_held_for_late_writes, 0u);
  EXPECT_EQ(tier.Usage().used_bytes, kBlock);
  ASSERT_TRUE(tier.Abort(reused->id).ok());
  auto again = tier.Reserve(BlockKey::FromParts(4, 4), kBlock, std::nullopt, 60'000);
  ASSERT_TRUE(again.ok());
  auto both = tier.Reserve(BlockKey::FromParts(5, 5), kBlock, std::nullopt, 60'000);
  ASSERT_TRUE(both.ok()) << "the held region never went back to the allocator: " << both.status().ToString();
  EXPECT_TRUE(again->data == region || both->data == region);
}

}  // namespace
}  // namespace kvstash::transfer
