// The data plane attacked as a hostile peer would (issue 13): a raw UCX worker using the address
// and rkey that DataPlane hands every caller, and raw gRPC built from proto/, against real
// kvstashd processes on run-time ports. Each test performs one attack and asserts that it changed
// nothing, crashed nothing and revealed nothing; each fails against the daemon before the fix.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/checksum.h"
#include "kvstash/client.h"
#include "kvstash/v1/store.grpc.pb.h"
#include "tests/support/block_bytes.h"
#include "tests/support/daemon_process.h"
#include "transfer/push_protocol.h"
#include "transfer/transfer_engine.h"
#include "transfer/ucx_worker.h"

namespace kvstash {
namespace {

using testing::BytesFor;
using testing::DaemonProcess;
using Steady = std::chrono::steady_clock;

std::unique_ptr<DaemonProcess> StartDaemon(std::vector<std::string> args) {
  auto daemon = std::make_unique<DaemonProcess>(KVSTASHD_PATH, args);
  EXPECT_TRUE(daemon->ok()) << daemon->error();
  return daemon;
}

// A channel with a connection of its own (gRPC otherwise shares one between channels of a process
// to the same address): another client, as far as the daemon can tell.
std::unique_ptr<v1::Store::Stub> RawStub(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return v1::Store::NewStub(grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
}

v1::DataPlaneResponse DataPlaneOf(v1::Store::Stub& rpc) {
  v1::DataPlaneResponse dp;
  grpc::ClientContext ctx;
  EXPECT_TRUE(rpc.DataPlane(&ctx, v1::DataPlaneRequest(), &dp).ok());
  return dp;
}

bool Serving(v1::Store::Stub& rpc) {
  v1::HealthResponse health;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return rpc.Health(&ctx, v1::HealthRequest(), &health).ok() && health.serving();
}

void InlinePut(v1::Store::Stub& rpc, const BlockKey& key, const std::vector<std::byte>& bytes) {
  v1::PutRequest put;
  auto* item = put.add_items();
  item->set_key(std::string(key.AsBytes()));
  item->set_data(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  v1::PutResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(rpc.Put(&ctx, put, &resp).ok());
  ASSERT_EQ(resp.outcomes(0), v1::PutResponse::STORED);
}

// The block's bytes as the inline Get serves them (the CLI's path), or nothing on a miss.
std::optional<std::string> InlineGet(v1::Store::Stub& rpc, const BlockKey& key) {
  v1::GetRequest get;
  get.add_keys(std::string(key.AsBytes()));
  v1::GetResponse resp;
  grpc::ClientContext ctx;
  if (!rpc.Get(&ctx, get, &resp).ok() || resp.results(0).outcome() != v1::GetResult::FOUND) return std::nullopt;
  return resp.results(0).data();
}

uint64_t AddressOf(v1::Store::Stub& rpc, const BlockKey& key) {
  v1::StatRequest stat;
  stat.add_keys(std::string(key.AsBytes()));
  v1::StatResponse resp;
  grpc::ClientContext ctx;
  EXPECT_TRUE(rpc.Stat(&ctx, stat, &resp).ok());
  return resp.entries(0).found() ? resp.entries(0).info().remote_addr() : 0;
}

std::string AsString(const std::vector<std::byte>& bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// A raw one-sided attacker over tcp: a UCX context with the RMA feature and only tcp. Returns
// whether the write completed; the daemon must make that impossible.
bool RawTcpPut(const std::string& worker_address, const std::string& rkey, uint64_t remote,
               const std::vector<std::byte>& bytes) {
  transfer::UcxOptions options;
  options.transports = "tcp";
  auto context = transfer::UcxContext::Create(options);
  if (!context.ok()) return false;
  auto worker = transfer::UcxWorker::Create(*context);
  if (!worker.ok()) return false;
  auto ep = (*worker)->Endpoint(worker_address);
  if (!ep.ok()) return false;  // no transport reaches the daemon's one-sided worker
  auto key = (*worker)->RemoteKey(worker_address, rkey);
  if (!key.ok()) return false;
  ucp_request_param_t param{};
  ucs_status_ptr_t put = ucp_put_nbx(*ep, bytes.data(), bytes.size(), remote, *key, &param);
  if (UCS_PTR_IS_ERR(put)) return false;
  ucs_status_ptr_t flush = ucp_ep_flush_nbx(*ep, &param);
  const auto give_up = Steady::now() + std::chrono::seconds(3);
  ucs_status_t status = UCS_OK;
  for (ucs_status_ptr_t request : {put, flush}) {
    if (request == nullptr) continue;
    if (UCS_PTR_IS_ERR(request)) {
      status = UCS_PTR_STATUS(request);
      continue;
    }
    while (ucp_request_check_status(request) == UCS_INPROGRESS && Steady::now() < give_up) (*worker)->Progress();
    if (ucp_request_check_status(request) != UCS_OK) status = UCS_ERR_IO_ERROR;
    if (ucp_request_check_status(request) == UCS_INPROGRESS) ucp_request_cancel((*worker)->handle(), request);
    ucp_request_free(request);
  }
  return status == UCS_OK;
}

class OneSidedOverTcpTest : public ::testing::TestWithParam<std::string> {};

// Item 1 and 3: over tcp, UCX emulates RMA in software and writes wherever the message says. The
// daemon's one-sided worker must not be reachable over tcp at all: neither a committed block's
// bytes nor memory next to the arena may change, and the daemon keeps serving.
TEST_P(OneSidedOverTcpTest, CannotOverwriteCommittedBlocksOrWriteOutsideTheArena) {
  std::vector<std::string> args = {"--dram-capacity", "64MiB"};
  if (!GetParam().empty()) args.insert(args.end(), {"--ucx-transports", GetParam()});
  auto daemon = StartDaemon(args);
  ASSERT_TRUE(daemon->ok());
  auto rpc = RawStub(daemon->grpc_address());
  const BlockKey key = BlockKey::FromParts(0xA77AC4, 1);
  const auto original = BytesFor(key, 64 << 10);
  InlinePut(*rpc, key, original);
  const v1::DataPlaneResponse dp = DataPlaneOf(*rpc);
  ASSERT_TRUE(dp.ucx_available());
  const uint64_t at = AddressOf(*rpc, key);
  ASSERT_NE(at, 0u);

  const std::vector<std::byte> garbage(64 << 10, std::byte{0xEE});
  EXPECT_FALSE(RawTcpPut(dp.worker_address(), dp.rkey(), at, garbage))
      << "a tcp peer wrote one-sided into a committed block";
  EXPECT_FALSE(RawTcpPut(dp.worker_address(), dp.rkey(), dp.probe_addr() + dp.region_bytes() + 4096, garbage))
      << "a tcp peer wrote one-sided past the end of the arena";
  // The two-sided worker has no RMA at all: an emulated put sent there is not applied either.
  EXPECT_FALSE(RawTcpPut(dp.push_worker_address(), dp.rkey(), at, garbage))
      << "a tcp peer wrote one-sided through the two-sided worker";

  ASSERT_TRUE(Serving(*rpc)) << "kvstashd died under one-sided writes from a tcp peer";
  const auto served = InlineGet(*rpc, key);
  ASSERT_TRUE(served.has_value());
  EXPECT_EQ(*served, AsString(original)) << "a committed block's bytes changed";
  v1::StatsResponse stats;
  grpc::ClientContext ctx;
  ASSERT_TRUE(rpc->Stats(&ctx, v1::StatsRequest(), &stats).ok());
  EXPECT_EQ(stats.one_sided_transports().find("tcp"), std::string::npos) << stats.one_sided_transports();
}

INSTANTIATE_TEST_SUITE_P(DaemonTransports, OneSidedOverTcpTest, ::testing::Values("", "tcp", "tcp,posix,sysv,cma"),
                         [](const auto& info) {
                           if (info.param.empty()) return std::string("ucx_default");
                           return info.param == "tcp" ? std::string("tcp_only") : std::string("tcp_and_shm");
                         });

// Item 2: random active messages — any id, header and payload size, eager or rendezvous, with and
// without a reply endpoint — from a raw worker to a push worker. The daemon crashed (SEGV in
// ucp_am_rndv_process_rts) on every such run before; now each is refused and counted.
TEST(PushWorkerFuzzTest, RandomActiveMessagesAreRefusedAndCounted) {
  auto daemon = StartDaemon({"--dram-capacity", "64MiB", "--ucx-transports", "tcp"});
  ASSERT_TRUE(daemon->ok());
  auto rpc = RawStub(daemon->grpc_address());
  const v1::DataPlaneResponse dp = DataPlaneOf(*rpc);
  ASSERT_FALSE(dp.push_worker_address().empty());

  transfer::UcxOptions options;
  options.transports = "tcp";
  options.messages = true;
  auto context = transfer::UcxContext::Create(options);
  ASSERT_TRUE(context.ok()) << context.status().ToString();
  auto worker = transfer::UcxWorker::Create(*context);
  ASSERT_TRUE(worker.ok());
  // The daemon answers some of these: the attacker must survive its own replies (UCX 1.13 crashes a
  // worker that receives an id it has no handler for).
  ASSERT_TRUE((*worker)->SetMessageHandlers({}, nullptr, &transfer::UcxWorker::DropMessage).ok());
  auto ep = (*worker)->Endpoint(dp.push_worker_address());
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();

  std::mt19937_64 rng(20261206);
  std::vector<std::byte> payload(256 << 10);
  for (auto& b : payload) b = static_cast<std::byte>(rng());
  constexpr int kMessages = 1500;
  const auto stop_by = Steady::now() + std::chrono::seconds(60);
  int sent = 0;
  for (int i = 0; i < kMessages && Steady::now() < stop_by; ++i) {
    // Our own ids often, so that their checks are exercised too, and any other id.
    uint16_t id = static_cast<uint16_t>(rng());
    if (i % 3 == 0) id = static_cast<uint16_t>(1 + rng() % 4);
    if (i % 17 == 0) id = 0xFFFF;
    const size_t header_bytes = std::array<size_t, 6>{0, 8, 40, 56, 64, 200}[rng() % 6];
    const size_t data_bytes = std::array<size_t, 4>{0, 1, 4096, payload.size()}[rng() % 4];
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = (rng() % 2 ? UCP_AM_SEND_FLAG_REPLY : 0) | (rng() % 2 ? UCP_AM_SEND_FLAG_RNDV : UCP_AM_SEND_FLAG_EAGER);
    // A header that sometimes starts like one of ours, so the field checks run.
    std::vector<std::byte> header(payload.begin() + static_cast<long>(i % 1000), payload.begin() + static_cast<long>(i % 1000 + header_bytes));
    if (header_bytes >= 4 && rng() % 2) std::memcpy(header.data(), &transfer::push::kMagic, 4);
    ucs_status_ptr_t request = ucp_am_send_nbx(*ep, id, header_bytes ? header.data() : nullptr, header_bytes,
                                               data_bytes ? payload.data() : nullptr, data_bytes, &param);
    if (UCS_PTR_IS_PTR(request)) {
      const auto give_up = Steady::now() + std::chrono::seconds(5);
      while (ucp_request_check_status(request) == UCS_INPROGRESS && Steady::now() < give_up) (*worker)->Progress();
      if (ucp_request_check_status(request) == UCS_INPROGRESS) ucp_request_cancel((*worker)->handle(), request);
      ucp_request_free(request);
    }
    ++sent;
    for (int p = 0; p < 8; ++p) (*worker)->Progress();
  }
  ASSERT_GT(sent, 100);
  ASSERT_TRUE(Serving(*rpc)) << "kvstashd died under random active messages (" << sent << " sent)";

  // It still serves the protocol it was attacked through.
  ClientOptions client_options;
  client_options.address = daemon->grpc_address();
  client_options.data_path = DataPath::kUcx;
  client_options.ucx_transports = "tcp";
  auto client = Client::Connect(client_options);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  const BlockKey key = BlockKey::FromParts(0xF022, 1);
  const auto bytes = BytesFor(key, 128 << 10);
  PutItem item{key, std::nullopt, bytes};
  ASSERT_TRUE((*client)->Put(std::span(&item, 1), PutOptions{.eager = true}).ok());
  std::vector<std::byte> back(bytes.size());
  GetItem get;
  get.key = key;
  get.buffer = back;
  ASSERT_TRUE((*client)->Get(std::span(&get, 1)).ok());
  ASSERT_TRUE(get.found) << get.status.ToString();
  EXPECT_EQ(back, bytes);

  auto stats = (*client)->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_GT(stats->refused_messages["unknown_message"], 0u);
  EXPECT_GT(stats->refused_messages["malformed"], 0u);
  EXPECT_GT(stats->refused_messages["rendezvous"], 0u);
  // The metric mirrors the same counts at every scrape.
  const std::string& metrics = daemon->metrics_address();
  httplib::Client http(metrics.substr(0, metrics.rfind(':')), std::stoi(metrics.substr(metrics.rfind(':') + 1)));
  auto scraped = http.Get("/metrics");
  ASSERT_TRUE(scraped);
  for (const char* reason : {"unknown_message", "malformed", "rendezvous"}) {
    const std::string line = std::string("kvstash_data_plane_refused_total{reason=\"") + reason + "\"} " +
                             std::to_string(stats->refused_messages[reason]) + "\n";
    EXPECT_NE(scraped->body.find(line), std::string::npos) << line;
  }
  EXPECT_EQ(stats->two_sided_rejected, [&] {
    uint64_t sum = 0;
    for (const auto& [reason, n] : stats->refused_messages) sum += n;
    return sum;
  }());
}

// Item 4: a reservation's handle is 16 random bytes and works only on the connection that made
// it. Another connection cannot commit its own bytes under the victim's key, nor abort it.
TEST(ReservationTest, HandlesAreRandomAndBoundToTheirConnection) {
  auto daemon = StartDaemon({"--dram-capacity", "64MiB"});
  ASSERT_TRUE(daemon->ok());
  auto victim = RawStub(daemon->grpc_address());
  auto attacker = RawStub(daemon->grpc_address());
  const BlockKey key = BlockKey::FromParts(0x51C7, 1), other = BlockKey::FromParts(0x51C7, 2);
  v1::PutBeginRequest begin;
  for (const BlockKey& k : {key, other}) {
    auto* item = begin.add_items();
    item->set_key(std::string(k.AsBytes()));
    item->set_size(4096);
  }
  v1::PutBeginResponse begun;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(victim->PutBegin(&ctx, begin, &begun).ok());
  }
  ASSERT_EQ(begun.results(0).outcome(), v1::PutBeginResult::RESERVED);
  const std::string handle = begun.results(0).reservation();
  ASSERT_EQ(handle.size(), 16u);
  EXPECT_NE(handle, begun.results(1).reservation());
  // Not a counter: the two handles differ in more than their last bytes.
  EXPECT_NE(handle.substr(0, 8), begun.results(1).reservation().substr(0, 8));

  const std::vector<std::byte> forged(4096, std::byte{0x66});
  v1::PutCommitRequest steal;
  auto* s = steal.add_items();
  s->set_reservation(handle);
  s->set_checksum(BlockChecksum(forged.data(), forged.size()));
  s->set_data(AsString(forged));
  v1::PutCommitResponse none;
  {
    grpc::ClientContext ctx;
    const grpc::Status st = attacker->PutCommit(&ctx, steal, &none);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
  }
  v1::PutAbortRequest abort;
  abort.add_reservations(handle);
  v1::PutAbortResponse aborted;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(attacker->PutAbort(&ctx, abort, &aborted).ok());
  }
  EXPECT_EQ(aborted.aborted(), 0u) << "another connection aborted the reservation";

  // The victim's own commit still works, with its own bytes.
  const auto mine = BytesFor(key, 4096);
  v1::PutCommitRequest commit;
  auto* c = commit.add_items();
  c->set_reservation(handle);
  c->set_checksum(BlockChecksum(mine.data(), mine.size()));
  c->set_data(AsString(mine));
  {
    grpc::ClientContext ctx;
    const grpc::Status st = victim->PutCommit(&ctx, commit, &none);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  EXPECT_EQ(InlineGet(*victim, key), AsString(mine));
}

// Item 5: a reserved region never shows a removed block's bytes. Committing a one-sided
// reservation without writing it, with the removed block's checksum, must not store that block
// under the new key; and no refusal names a checksum the daemon computed.
TEST(ReservationTest, RemovedBytesCannotBeReadBackThroughANewReservation) {
  auto daemon = StartDaemon({"--dram-capacity", "64MiB"});
  ASSERT_TRUE(daemon->ok());
  auto rpc = RawStub(daemon->grpc_address());
  const BlockKey secret = BlockKey::FromParts(0x5EC2E7, 1), probe = BlockKey::FromParts(0x5EC2E7, 2);
  const auto secret_bytes = BytesFor(secret, 1 << 20);
  const uint64_t secret_sum = BlockChecksum(secret_bytes.data(), secret_bytes.size());
  InlinePut(*rpc, secret, secret_bytes);
  const uint64_t secret_at = AddressOf(*rpc, secret);
  {
    v1::RemoveRequest remove;
    remove.add_keys(std::string(secret.AsBytes()));
    v1::RemoveResponse removed;
    grpc::ClientContext ctx;
    ASSERT_TRUE(rpc->Remove(&ctx, remove, &removed).ok());
  }
  v1::PutBeginRequest begin;
  auto* item = begin.add_items();
  item->set_key(std::string(probe.AsBytes()));
  item->set_size(secret_bytes.size());
  v1::PutBeginResponse begun;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(rpc->PutBegin(&ctx, begin, &begun).ok());
  }
  ASSERT_EQ(begun.results(0).outcome(), v1::PutBeginResult::RESERVED);
  ASSERT_EQ(begun.results(0).remote_addr(), secret_at) << "the test needs the removed block's region again";

  auto commit_with = [&](uint64_t checksum) {
    v1::PutCommitRequest commit;
    auto* c = commit.add_items();
    c->set_reservation(begun.results(0).reservation());
    c->set_checksum(checksum);
    v1::PutCommitResponse none;
    grpc::ClientContext ctx;
    return rpc->PutCommit(&ctx, commit, &none);
  };
  const std::vector<std::byte> zeros(secret_bytes.size());
  const uint64_t zeros_sum = BlockChecksum(zeros.data(), zeros.size());
  const grpc::Status wrong = commit_with(1);
  ASSERT_EQ(wrong.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_EQ(wrong.error_message().find(std::to_string(secret_sum)), std::string::npos)
      << "the refusal revealed the removed block's checksum: " << wrong.error_message();
  EXPECT_EQ(wrong.error_message().find(std::to_string(zeros_sum)), std::string::npos)
      << "the refusal revealed what the region hashes to: " << wrong.error_message();
  const grpc::Status replay = commit_with(secret_sum);
  EXPECT_EQ(replay.error_code(), grpc::StatusCode::DATA_LOSS) << "a commit of unwritten bytes matched the removed block";
  const auto served = InlineGet(*rpc, probe);
  EXPECT_TRUE(!served.has_value() || *served != AsString(secret_bytes)) << "removed bytes were served under a new key";
}

// Item 3, second half: the daemon hashes a block before it sends it, inline or two-sided. A
// same-host peer may write the arena (it maps it: docs/SAME_HOST_TRUST.md); what it changed is
// never served, and the block is dropped.
TEST(VerifyBeforeSendTest, AlteredBlockIsNeitherSentInlineNorTwoSided) {
  auto daemon = StartDaemon({"--dram-capacity", "64MiB", "--ucx-transports", "tcp,posix,sysv,cma"});
  ASSERT_TRUE(daemon->ok());
  auto rpc = RawStub(daemon->grpc_address());
  const BlockKey inline_key = BlockKey::FromParts(0xC022, 1), pushed_key = BlockKey::FromParts(0xC022, 2);
  const auto inline_bytes = BytesFor(inline_key, 64 << 10), pushed_bytes = BytesFor(pushed_key, 64 << 10);
  InlinePut(*rpc, inline_key, inline_bytes);
  InlinePut(*rpc, pushed_key, pushed_bytes);
  const v1::DataPlaneResponse dp = DataPlaneOf(*rpc);

  // The same-host peer's write, through the one-sided protocol over shared memory.
  transfer::TransferEngineOptions engine_options;
  engine_options.ucx.transports = "posix,sysv,cma";
  auto engine = transfer::TransferEngine::Create(engine_options);
  ASSERT_TRUE(engine.ok());
  const transfer::RemoteTarget target{dp.worker_address(), dp.rkey(), dp.probe_addr(), dp.region_bytes()};
  std::vector<std::byte> flipped(16, std::byte{0x01});
  for (const BlockKey& k : {inline_key, pushed_key}) {
    transfer::TransferOp op{transfer::OpKind::kPut, flipped.data(), flipped.size(), AddressOf(*rpc, k) + 100, {}};
    ASSERT_TRUE((*engine)->Run(target, std::span(&op, 1)).ok());
    ASSERT_TRUE(op.status.ok()) << op.status.ToString();
  }

  EXPECT_FALSE(InlineGet(*rpc, inline_key).has_value()) << "an altered block was sent inline";
  // A two-sided reader that does not verify (checksums off) would take whatever comes.
  ClientOptions options;
  options.address = daemon->grpc_address();
  options.data_path = DataPath::kUcx;
  options.ucx_transports = "tcp";
  options.verify_checksums = false;
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  std::vector<std::byte> back(pushed_bytes.size());
  GetItem get;
  get.key = pushed_key;
  get.buffer = back;
  ASSERT_TRUE((*client)->Get(std::span(&get, 1)).ok());
  EXPECT_FALSE(get.found && back != pushed_bytes) << "an altered block was sent two-sided";
  EXPECT_FALSE(get.found);
  auto stats = (*client)->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->corrupt_blocks, 1u);
  EXPECT_GE(stats->refused_messages["corrupt"], 1u);
}

}  // namespace
}  // namespace kvstash
