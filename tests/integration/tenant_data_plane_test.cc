// Tenants on the UCX data plane of a daemon with tokens on (docs/SECURITY.md, issue 16), against a
// real kvstashd over UCX tcp (as between hosts). Tenants get the two-sided plane and never the
// arena's remote key; a two-sided read is served only with a grant the daemon sealed for the
// reader's own lease; eager requests (no RPC, so no token) are not served. The attacks use a raw
// UCX worker (tests/support/raw_push_sender.h) and the raw transfer engine, with the worst case
// granted: the attacker knows the victim's stored key, the block's address and its live lease.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/auth.h"
#include "common/checksum.h"
#include "common/read_grant.h"
#include "kvstash/client.h"
#include "kvstash/v1/store.grpc.pb.h"
#include "tests/support/block_bytes.h"
#include "tests/support/daemon_process.h"
#include "tests/support/raw_push_sender.h"
#include "transfer/transfer_engine.h"

namespace kvstash {
namespace {

namespace fs = std::filesystem;
using testing::BytesFor;
using testing::DaemonProcess;
using testing::RawSender;

constexpr char kAdminToken[] = "tenant-plane-admin-token";
constexpr char kTeamAToken[] = "tenant-plane-team-a-token";
constexpr char kTeamBToken[] = "tenant-plane-team-b-token";

GetItem GetOf(const BlockKey& key, std::span<std::byte> buffer) {
  GetItem item;
  item.key = key;
  item.buffer = buffer;
  return item;
}

class TenantDataPlaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kvstash-tenant-plane-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::ofstream tokens(dir_ / "tokens");
    tokens << auth::Sha256Hex(kAdminToken) << " ops admin\n"
           << auth::Sha256Hex(kTeamAToken) << " team-a write\n"
           << auth::Sha256Hex(kTeamBToken) << " team-b write\n";
    tokens.close();
    daemon_ = std::make_unique<DaemonProcess>(
        KVSTASHD_PATH, std::vector<std::string>{"--tokens-file", (dir_ / "tokens").string(), "--dram-capacity",
                                                "256MiB", "--ucx-transports", "tcp"});
    ASSERT_TRUE(daemon_->ok()) << daemon_->error();
    stub_ = v1::Store::NewStub(grpc::CreateChannel(daemon_->grpc_address(), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    daemon_.reset();
    fs::remove_all(dir_);
  }

  std::unique_ptr<Client> Sdk(const char* token) {
    ClientOptions options;
    options.address = daemon_->grpc_address();
    options.token = token;
    options.data_path = DataPath::kUcx;
    options.ucx_transports = "tcp";
    auto client = Client::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    return client.ok() ? std::move(*client) : nullptr;
  }
  std::unique_ptr<grpc::ClientContext> Ctx(const char* token) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->AddMetadata("authorization", std::string("Bearer ") + token);
    return ctx;
  }
  v1::DataPlaneResponse DataPlane(const char* token) {
    v1::DataPlaneResponse resp;
    EXPECT_TRUE(stub_->DataPlane(Ctx(token).get(), v1::DataPlaneRequest(), &resp).ok());
    return resp;
  }
  // A leasing Lookup of one key as `token` sees it; the block's info, or none on a miss.
  std::optional<v1::BlockInfo> Leased(const char* token, const std::string& key) {
    v1::LookupRequest req;
    req.add_keys(key);
    req.set_lease_ms(30'000);
    v1::LookupResponse resp;
    const grpc::Status st = stub_->Lookup(Ctx(token).get(), req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    if (resp.blocks_size() != 1) return std::nullopt;
    return resp.blocks(0);
  }
  // The one key the daemon holds besides `except`, as the admin's List names it (the stored key).
  std::string StoredKeyOtherThan(const std::string& except) {
    v1::ListRequest req;
    req.set_limit(100);
    v1::ListResponse resp;
    EXPECT_TRUE(stub_->List(Ctx(kAdminToken).get(), req, &resp).ok());
    for (const auto& block : resp.blocks()) {
      if (block.key() != except) return block.key();
    }
    return "";
  }
  v1::StatsResponse Stats() {
    v1::StatsResponse resp;
    EXPECT_TRUE(stub_->Stats(Ctx(kAdminToken).get(), v1::StatsRequest(), &resp).ok());
    return resp;
  }

  fs::path dir_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<v1::Store::Stub> stub_;
};

TEST_F(TenantDataPlaneTest, TenantsGetTheTwoSidedPlaneWithoutTheArenasKey) {
  const v1::DataPlaneResponse admin = DataPlane(kAdminToken);
  ASSERT_TRUE(admin.ucx_available());
  EXPECT_FALSE(admin.rkey().empty());
  EXPECT_FALSE(admin.worker_address().empty());
  EXPECT_TRUE(admin.two_sided());
  EXPECT_FALSE(admin.eager_requests()) << "eager requests carry no token: not served with tokens on";
  for (const char* token : {kTeamAToken, kTeamBToken}) {
    const v1::DataPlaneResponse tenant = DataPlane(token);
    ASSERT_TRUE(tenant.ucx_available());
    EXPECT_TRUE(tenant.rkey().empty()) << "a tenant was handed the arena's remote key";
    EXPECT_TRUE(tenant.worker_address().empty());
    EXPECT_TRUE(tenant.two_sided());
    EXPECT_EQ(tenant.protocol(), "two-sided");
    EXPECT_FALSE(tenant.eager_requests());
    EXPECT_GT(tenant.push_lane_addresses_size(), 0);
  }
}

// A tenant's SDK puts and gets its blocks two-sided over UCX, byte-exact; another tenant's same
// keys miss; a tenant that asks for one-sided access is told why it gets none.
TEST_F(TenantDataPlaneTest, TenantsMoveBlocksTwoSidedAndOnlyTheirOwn) {
  auto team_a = Sdk(kTeamAToken);
  auto team_b = Sdk(kTeamBToken);
  ASSERT_NE(team_a, nullptr);
  ASSERT_NE(team_b, nullptr);
  EXPECT_NE(team_a->data_path().find("two-sided"), std::string::npos) << team_a->data_path();
  constexpr size_t kBlocks = 6;
  std::vector<BlockKey> keys;
  std::vector<std::vector<std::byte>> data;
  std::vector<PutItem> items;
  uint64_t bytes = 0;
  for (size_t i = 0; i < kBlocks; ++i) {
    keys.push_back(BlockKey::FromParts(0x7E4A, i));
    data.push_back(BytesFor(keys.back(), i % 2 == 0 ? (1 << 20) : (4 << 10) + i));
    bytes += data.back().size();
  }
  for (size_t i = 0; i < kBlocks; ++i) items.push_back({keys[i], i == 0 ? std::nullopt : std::optional(keys[i - 1]), data[i]});
  const v1::StatsResponse before = Stats();
  auto put = team_a->Put(items);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->stored, kBlocks);
  std::vector<std::vector<std::byte>> got(kBlocks, std::vector<std::byte>(1 << 20));
  std::vector<GetItem> gets(kBlocks);
  for (size_t i = 0; i < kBlocks; ++i) gets[i] = GetOf(keys[i], got[i]);
  ASSERT_TRUE(team_a->Get(gets).ok());
  for (size_t i = 0; i < kBlocks; ++i) {
    ASSERT_TRUE(gets[i].found) << i << ": " << gets[i].status.ToString();
    ASSERT_EQ(gets[i].size, data[i].size());
    EXPECT_EQ(std::memcmp(got[i].data(), data[i].data(), data[i].size()), 0) << "block " << i << " not byte-exact";
  }
  const v1::StatsResponse after = Stats();
  EXPECT_EQ(after.put_bytes_two_sided() - before.put_bytes_two_sided(), bytes) << "puts did not go two-sided";
  EXPECT_GE(after.get_bytes_two_sided() - before.get_bytes_two_sided(), bytes) << "gets did not go two-sided";
  // A Get of blocks a Lookup leased: the SDK passes the sealed grants on.
  auto lookup = team_a->Lookup(keys, 30'000);
  ASSERT_TRUE(lookup.ok() && lookup->hit_blocks == kBlocks);
  for (size_t i = 0; i < kBlocks; ++i) {
    EXPECT_EQ(lookup->blocks[i].read_grant.size(), kReadGrantBytes);
    gets[i] = GetOf(keys[i], got[i]);
    gets[i].located = &lookup->blocks[i];
  }
  ASSERT_TRUE(team_a->Get(gets).ok());
  for (size_t i = 0; i < kBlocks; ++i) EXPECT_TRUE(gets[i].found) << i << ": " << gets[i].status.ToString();
  (void)team_a->ReleaseLeases(lookup->blocks);

  for (size_t i = 0; i < kBlocks; ++i) gets[i] = GetOf(keys[i], got[i]);
  ASSERT_TRUE(team_b->Get(gets).ok());
  for (size_t i = 0; i < kBlocks; ++i) EXPECT_FALSE(gets[i].found) << "team-b read team-a's block " << i;

  ClientOptions one_sided;
  one_sided.address = daemon_->grpc_address();
  one_sided.token = kTeamAToken;
  one_sided.data_path = DataPath::kUcx;
  one_sided.ucx_transports = "tcp";
  one_sided.ucx_protocol = UcxProtocol::kOneSided;
  auto refused = Client::Connect(one_sided);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("no one-sided"), std::string::npos) << refused.status().message();
}

// team-b holds a legitimate session of its own and is given the worst case: team-a's stored key,
// the address of its bytes and a live lease on them. No read request it can make is served.
TEST_F(TenantDataPlaneTest, ARawUcxPeerCannotReadAnotherTenantsBlock) {
  auto team_a = Sdk(kTeamAToken);
  auto team_b = Sdk(kTeamBToken);
  ASSERT_NE(team_a, nullptr);
  ASSERT_NE(team_b, nullptr);
  const BlockKey key_a = BlockKey::FromParts(0xA77A, 1), key_b = BlockKey::FromParts(0xA77B, 1);
  const auto secret = BytesFor(key_a, 64 << 10), own = BytesFor(key_b, 64 << 10);
  PutItem put_a{key_a, std::nullopt, secret}, put_b{key_b, std::nullopt, own};
  ASSERT_EQ(team_a->Put(std::span(&put_a, 1))->stored, 1u);
  ASSERT_EQ(team_b->Put(std::span(&put_b, 1))->stored, 1u);

  // team-b's own grant, from its own leasing Lookup.
  const std::optional<v1::BlockInfo> mine = Leased(kTeamBToken, std::string(key_b.AsBytes()));
  ASSERT_TRUE(mine.has_value());
  ASSERT_EQ(mine->read_grant().size(), kReadGrantBytes);
  // What it is given about team-a's block: the stored key (List), the address and a live lease.
  const std::string stored_b = [&] {
    v1::ListRequest req;
    v1::ListResponse resp;
    EXPECT_TRUE(stub_->List(Ctx(kAdminToken).get(), req, &resp).ok());
    for (const auto& block : resp.blocks()) {
      if (block.checksum() == mine->checksum()) return block.key();
    }
    return std::string();
  }();
  const std::string stored_a = StoredKeyOtherThan(stored_b);
  ASSERT_EQ(stored_a.size(), 16u);
  const std::optional<v1::BlockInfo> victim = Leased(kAdminToken, stored_a);
  ASSERT_TRUE(victim.has_value());
  ASSERT_NE(victim->lease_epoch(), 0u);
  ASSERT_NE(victim->remote_addr(), 0u);
  const BlockKey victim_key = *BlockKey::FromBytes(stored_a);

  const v1::DataPlaneResponse plane = DataPlane(kTeamBToken);
  ASSERT_GT(plane.push_lane_addresses_size(), 0);

  // Forged, borrowed and altered grants, sent by a raw UCX worker: each answered with a refusal.
  RawSender raw(plane.push_worker_address());
  ASSERT_TRUE(raw.ok());
  auto ask = [&](uint64_t tag, uint64_t addr, uint64_t length, const ReadGrantBytes& grant) {
    transfer::push::PushRequest req;
    req.reply_tag = tag;
    req.remote_addr = addr;
    req.length = length;
    std::memcpy(req.grant, grant.data(), sizeof(req.grant));
    return raw.Send(&req, sizeof(req), tag, {}, true, transfer::push::kPushRequestAm);
  };
  ReadGrantBytes borrowed{};
  std::memcpy(borrowed.data(), mine->read_grant().data(), kReadGrantBytes);
  ReadGrantBytes altered = borrowed;  // team-b's seal over team-a's key and lease
  std::memcpy(altered.data(), stored_a.data(), 16);
  const uint64_t epoch = victim->lease_epoch();
  std::memcpy(altered.data() + 16, &epoch, sizeof(epoch));
  const uint64_t rejected_before = Stats().two_sided_rejected();
  struct Attempt {
    const char* what;
    ReadGrantBytes grant;
  } attempts[] = {
      {"an unsealed grant for the victim's key and live lease", EncodeReadGrant(victim_key, epoch)},
      {"the attacker's own sealed grant, aimed at the victim's bytes", borrowed},
      {"the attacker's seal over the victim's key and lease", altered},
      {"an all-zero grant (the probe's) aimed at the victim's bytes", ReadGrantBytes{}},
  };
  uint64_t tag = 0x7E4A0000;
  for (const Attempt& attempt : attempts) {
    const auto answer = ask(++tag, victim->remote_addr(), secret.size(), attempt.grant);
    ASSERT_TRUE(answer.has_value()) << attempt.what << ": no answer";
    EXPECT_NE(answer->code, 0u) << attempt.what << " was served";
  }
  EXPECT_EQ(Stats().two_sided_rejected() - rejected_before, std::size(attempts));

  // The raw transfer engine (a posted receive, so bytes would land if sent): nothing lands, while
  // the attacker's own block reads byte-exact with its own grant through the same path.
  transfer::TransferEngineOptions options;
  options.ucx.transports = "tcp";
  options.timeout_ms = 20'000;
  options.split_bytes = 0;
  auto engine = transfer::TransferEngine::Create(options);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  const transfer::RemoteTarget target{"", "", plane.probe_addr(), plane.region_bytes(), transfer::Protocol::kTwoSided,
                                      plane.push_worker_address()};
  std::vector<std::byte> into(secret.size(), std::byte{0xEE});
  for (const Attempt& attempt : attempts) {
    transfer::TransferOp op{transfer::OpKind::kGet, into.data(), into.size(), victim->remote_addr(), {}};
    op.grant = attempt.grant;
    const Status run = (*engine)->Run(target, std::span(&op, 1));
    EXPECT_FALSE(run.ok() && op.status.ok()) << attempt.what << " was served";
    EXPECT_TRUE(std::all_of(into.begin(), into.end(), [](std::byte b) { return b == std::byte{0xEE}; }))
        << attempt.what << ": bytes landed";
  }
  // The connectivity probe (8 bytes at the arena's start, all-zero grant) is answered with zeros of
  // the daemon's own, not with the first bytes of the block stored there (the victim's: the first
  // block a fresh daemon stores sits at the arena's start).
  ASSERT_EQ(victim->remote_addr(), plane.probe_addr()) << "expected the first block at the arena's start";
  uint64_t probed = ~uint64_t{0};
  uint64_t victim_head = 0;
  std::memcpy(&victim_head, secret.data(), sizeof(victim_head));
  ASSERT_NE(victim_head, 0u);
  transfer::TransferOp probe{transfer::OpKind::kGet, &probed, sizeof(probed), plane.probe_addr(), {}};
  ASSERT_TRUE((*engine)->Run(target, std::span(&probe, 1)).ok());
  ASSERT_TRUE(probe.status.ok()) << probe.status.ToString();
  EXPECT_EQ(probed, 0u) << "the probe served the first bytes of a stored block";

  transfer::TransferOp control{transfer::OpKind::kGet, into.data(), own.size(), mine->remote_addr(), {}};
  control.grant = borrowed;
  ASSERT_TRUE((*engine)->Run(target, std::span(&control, 1)).ok());
  ASSERT_TRUE(control.status.ok()) << control.status.ToString();
  EXPECT_EQ(std::memcmp(into.data(), own.data(), own.size()), 0);
}

// Eager requests name a key with no token behind them: with tokens on, a raw peer's eager get of
// another tenant's stored key and its eager put are refused, and nothing is stored.
TEST_F(TenantDataPlaneTest, EagerRequestsAreRefusedWithTokensOn) {
  auto team_a = Sdk(kTeamAToken);
  ASSERT_NE(team_a, nullptr);
  const BlockKey key = BlockKey::FromParts(0xEA6E, 1);
  const auto data = BytesFor(key, 16 << 10);
  PutItem item{key, std::nullopt, data};
  ASSERT_EQ(team_a->Put(std::span(&item, 1))->stored, 1u);
  const std::string stored = StoredKeyOtherThan("");
  ASSERT_EQ(stored.size(), 16u);
  RawSender raw(DataPlane(kTeamBToken).push_worker_address());
  ASSERT_TRUE(raw.ok());
  transfer::push::GetRequest get;
  get.reply_tag = 0xEA61;
  get.max_length = data.size();
  std::memcpy(get.key, stored.data(), sizeof(get.key));
  const auto got = raw.Send(&get, sizeof(get), get.reply_tag, {}, true, transfer::push::kGetRequestAm);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(static_cast<StatusCode>(got->code), StatusCode::kFailedPrecondition);

  const BlockKey planted = BlockKey::FromParts(0xEA6E, 2);
  const auto bytes = BytesFor(planted, 16 << 10);
  transfer::push::PutRequest put;
  put.data_tag = 0xEA62;
  put.size = bytes.size();
  put.checksum = BlockChecksum(bytes.data(), bytes.size());
  std::memcpy(put.key, planted.bytes().data(), sizeof(put.key));
  const auto answer = raw.Send(&put, sizeof(put), put.data_tag, bytes);
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(static_cast<StatusCode>(answer->code), StatusCode::kFailedPrecondition);
  v1::ListRequest req;
  v1::ListResponse resp;
  ASSERT_TRUE(stub_->List(Ctx(kAdminToken).get(), req, &resp).ok());
  EXPECT_EQ(resp.blocks_size(), 1) << "an eager put without a token stored a block";
}

}  // namespace
}  // namespace kvstash
