// Per-tenant quotas and metrics against a real kvstashd with tokens (docs/SECURITY.md "Quotas and
// per-tenant metrics"), driven by raw gRPC clients: a tenant over its DRAM quota evicts its own
// blocks and nobody else's; another tenant's flood never evicts a share within its quota; a
// block larger than the quota is refused and changes nothing; /metrics reports use, quota,
// evictions, rejections and reads by tenant with no key in any label; SIGHUP reloads the quotas.
// With an SSD tier: a tenant's SSD share holds the same way (its own oldest SSD blocks go, another
// tenant's share within its quota survives the log's reclaims), and after a restart each tenant's
// SSD blocks are charged to it again.
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "common/auth.h"
#include "kvstash/block_key.h"
#include "kvstash/v1/store.grpc.pb.h"
#include "tests/support/daemon_process.h"
#include "tests/support/eventually.h"

namespace kvstash {
namespace {

namespace fs = std::filesystem;
using testing::DaemonProcess;

constexpr char kTeamA[] = "team-a-token-0123456789";
constexpr char kTeamB[] = "team-b-token-0123456789";
constexpr char kAdmin[] = "admin-token-0123456789";
constexpr uint64_t kBlock = 16 << 10;
constexpr uint64_t kQuotaBlocks = 16;

std::string Key(char tenant, uint64_t i) {
  return std::string(BlockKey::FromParts(static_cast<uint64_t>(tenant), i).AsBytes());
}
std::string Bytes(char tenant, uint64_t i) {
  std::string data(kBlock, '\0');
  for (uint64_t j = 0; j < kBlock; ++j) data[j] = static_cast<char>((j * 131 + i * 7 + tenant) & 0xff);
  return data;
}

class TenantQuotaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kvstash-quota-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::ofstream(dir_ / "tokens") << auth::Sha256Hex(kTeamA) << " team-a write\n"
                                   << auth::Sha256Hex(kTeamB) << " team-b write\n"
                                   << auth::Sha256Hex(kAdmin) << " ops admin\n";
    Configure();
  }
  // Writes the quotas file and starts the daemon.
  virtual void Configure() {
    WriteQuotas("team-a " + std::to_string(kQuotaBlocks * kBlock) + "\n");
    StartDaemon({"--dram-capacity", "2MiB"});
  }
  void TearDown() override {
    if (daemon_) {
      EXPECT_EQ(daemon_->Stop(), 0);
    }
    fs::remove_all(dir_);
  }

  void StartDaemon(std::vector<std::string> args) {
    for (const std::string& a : {std::string("--no-ucx"), std::string("--tokens-file"), (dir_ / "tokens").string(),
                                 std::string("--quotas-file"), (dir_ / "quotas").string()}) {
      args.push_back(a);
    }
    daemon_ = std::make_unique<DaemonProcess>(KVSTASHD_PATH, args);
    ASSERT_TRUE(daemon_->ok()) << daemon_->error();
    client_ = v1::Store::NewStub(grpc::CreateChannel(daemon_->grpc_address(), grpc::InsecureChannelCredentials()));
  }
  void StopDaemon() {
    if (daemon_) {
      EXPECT_EQ(daemon_->Stop(), 0);
    }
    daemon_.reset();
  }

  void WriteQuotas(const std::string& text) {
    std::ofstream(dir_ / "quotas.tmp") << text;
    fs::rename(dir_ / "quotas.tmp", dir_ / "quotas");
  }

  // Puts blocks [first, last) of `tenant` one by one; returns their outcomes.
  std::vector<v1::PutResponse::Outcome> Put(const char* token, char tenant, uint64_t first, uint64_t last,
                                            uint64_t size = kBlock) {
    std::vector<v1::PutResponse::Outcome> outcomes;
    for (uint64_t i = first; i < last; ++i) {
      grpc::ClientContext ctx;
      ctx.AddMetadata("authorization", std::string("Bearer ") + token);
      v1::PutRequest req;
      v1::PutItem* item = req.add_items();
      item->set_key(Key(tenant, i));
      std::string data = Bytes(tenant, i);
      data.resize(size, 'x');
      item->set_data(data);
      v1::PutResponse resp;
      const grpc::Status st = client_->Put(&ctx, req, &resp);
      EXPECT_TRUE(st.ok()) << st.error_message();
      outcomes.push_back(st.ok() && resp.outcomes_size() == 1 ? resp.outcomes(0) : v1::PutResponse::OUTCOME_UNSPECIFIED);
    }
    return outcomes;
  }

  // Which of `tenant`'s blocks [first, last) read back byte-exact; fails on any wrong byte.
  std::vector<uint64_t> Present(const char* token, char tenant, uint64_t first, uint64_t last) {
    std::vector<uint64_t> present;
    for (uint64_t i = first; i < last; ++i) {
      grpc::ClientContext ctx;
      ctx.AddMetadata("authorization", std::string("Bearer ") + token);
      v1::GetRequest req;
      req.add_keys(Key(tenant, i));
      v1::GetResponse resp;
      const grpc::Status st = client_->Get(&ctx, req, &resp);
      EXPECT_TRUE(st.ok()) << st.error_message();
      if (!st.ok() || resp.results_size() != 1 || resp.results(0).outcome() != v1::GetResult::FOUND) continue;
      EXPECT_EQ(resp.results(0).data(), Bytes(tenant, i)) << "wrong bytes for block " << i;
      present.push_back(i);
    }
    return present;
  }

  std::string Metrics() {
    const std::string& address = daemon_->metrics_address();
    httplib::Client http(address.substr(0, address.rfind(':')), std::stoi(address.substr(address.rfind(':') + 1)));
    http.set_bearer_token_auth(kAdmin);
    auto resp = http.Get("/metrics");
    EXPECT_TRUE(resp && resp->status == 200);
    return resp ? resp->body : "";
  }
  // The value of the sample whose line starts with `series` ("name{labels}"), or -1.
  static double Sample(const std::string& text, const std::string& series) {
    const size_t at = text.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + series.size() + 2));
  }

  fs::path dir_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<v1::Store::Stub> client_;
};

TEST_F(TenantQuotaTest, TenantOverItsQuotaEvictsItsOwnBlocksAndNoOneElses) {
  for (auto outcome : Put(kTeamB, 'b', 0, 8)) ASSERT_EQ(outcome, v1::PutResponse::STORED);
  for (auto outcome : Put(kTeamA, 'a', 0, 40)) ASSERT_EQ(outcome, v1::PutResponse::STORED);
  // team-a keeps exactly its quota's worth: its newest blocks; team-b lost nothing.
  const std::vector<uint64_t> a = Present(kTeamA, 'a', 0, 40);
  EXPECT_EQ(a.size(), kQuotaBlocks);
  for (uint64_t i : a) EXPECT_GE(i, 40 - kQuotaBlocks);
  EXPECT_EQ(Present(kTeamB, 'b', 0, 8).size(), 8u);

  const std::string m = Metrics();
  EXPECT_EQ(Sample(m, "kvstash_tenant_used_bytes{tenant=\"team-a\",tier=\"dram\"}"), kQuotaBlocks * kBlock);
  EXPECT_EQ(Sample(m, "kvstash_tenant_blocks{tenant=\"team-a\",tier=\"dram\"}"), kQuotaBlocks);
  EXPECT_EQ(Sample(m, "kvstash_tenant_quota_bytes{tenant=\"team-a\",tier=\"dram\"}"), kQuotaBlocks * kBlock);
  EXPECT_EQ(Sample(m, "kvstash_tenant_evictions_total{tenant=\"team-a\",tier=\"dram\"}"), 40 - kQuotaBlocks);
  EXPECT_EQ(Sample(m, "kvstash_tenant_evictions_total{tenant=\"team-b\",tier=\"dram\"}"), 0);
  EXPECT_EQ(Sample(m, "kvstash_tenant_used_bytes{tenant=\"team-b\",tier=\"dram\"}"), 8 * kBlock);
  EXPECT_EQ(Sample(m, "kvstash_tenant_quota_bytes{tenant=\"team-b\",tier=\"dram\"}"), -1);  // unlimited
  EXPECT_EQ(Sample(m, "kvstash_tenant_read_blocks_total{tenant=\"team-a\",result=\"hit\"}"), kQuotaBlocks);
  EXPECT_EQ(Sample(m, "kvstash_tenant_read_blocks_total{tenant=\"team-a\",result=\"miss\"}"), 40 - kQuotaBlocks);
  // No key, as the tenant wrote it or as stored, appears in any tenant series.
  std::istringstream lines(m);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("kvstash_tenant_", 0) != 0) continue;
    EXPECT_TRUE(std::regex_match(line, std::regex(R"re(kvstash_tenant_[a-z_]+\{tenant="team-[ab]",(tier="dram"|result="(hit|miss)")\} [0-9.e+]+)re")))
        << line;
  }
}

TEST_F(TenantQuotaTest, AnotherTenantsFloodNeverEvictsAShareWithinItsQuota) {
  for (auto outcome : Put(kTeamA, 'a', 0, kQuotaBlocks)) ASSERT_EQ(outcome, v1::PutResponse::STORED);
  // team-b, unlimited, writes three times the DRAM tier (2 MiB): it evicts only its own.
  const auto b = Put(kTeamB, 'b', 0, 3 * (2 << 20) / kBlock);
  for (auto outcome : b) ASSERT_EQ(outcome, v1::PutResponse::STORED);
  EXPECT_EQ(Present(kTeamA, 'a', 0, kQuotaBlocks).size(), kQuotaBlocks);
  const std::string m = Metrics();
  EXPECT_EQ(Sample(m, "kvstash_tenant_evictions_total{tenant=\"team-a\",tier=\"dram\"}"), 0);
  EXPECT_GT(Sample(m, "kvstash_tenant_evictions_total{tenant=\"team-b\",tier=\"dram\"}"), 0);
}

TEST_F(TenantQuotaTest, BlockLargerThanTheQuotaIsRefusedAndChangesNothing) {
  for (auto outcome : Put(kTeamA, 'a', 0, 4)) ASSERT_EQ(outcome, v1::PutResponse::STORED);
  const auto refused = Put(kTeamA, 'a', 100, 101, (kQuotaBlocks + 1) * kBlock);
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0], v1::PutResponse::NO_SPACE);
  EXPECT_EQ(Present(kTeamA, 'a', 0, 4).size(), 4u);
  const std::string m = Metrics();
  EXPECT_EQ(Sample(m, "kvstash_tenant_rejections_total{tenant=\"team-a\",tier=\"dram\"}"), 1);
  EXPECT_EQ(Sample(m, "kvstash_tenant_used_bytes{tenant=\"team-a\",tier=\"dram\"}"), 4 * kBlock);
  EXPECT_EQ(Sample(m, "kvstash_tenant_evictions_total{tenant=\"team-a\",tier=\"dram\"}"), 0);
}

TEST_F(TenantQuotaTest, SighupReloadsTheQuotas) {
  for (auto outcome : Put(kTeamA, 'a', 0, kQuotaBlocks)) ASSERT_EQ(outcome, v1::PutResponse::STORED);
  WriteQuotas("team-a " + std::to_string(4 * kBlock) + "\nteam-b 1MiB\n");
  ASSERT_EQ(kill(daemon_->pid(), SIGHUP), 0);
  ASSERT_TRUE(testing::Eventually(
      [&] { return Sample(Metrics(), "kvstash_tenant_quota_bytes{tenant=\"team-a\",tier=\"dram\"}") == 4 * kBlock; },
      std::chrono::seconds(10)));
  // The next put holds team-a to its new share: down to 4 blocks, its own evicted.
  for (auto outcome : Put(kTeamA, 'a', kQuotaBlocks, kQuotaBlocks + 1)) ASSERT_EQ(outcome, v1::PutResponse::STORED);
  EXPECT_EQ(Present(kTeamA, 'a', 0, kQuotaBlocks + 1).size(), 4u);
  // After a broken file the daemon keeps serving and holding team-a to 4 blocks. (That a broken
  // file leaves the previous quotas in force is TenantLedgerTest.ReloadAppliesANewFileAndKeeps-
  // TheOldOneOnError: a signal gives no answer to wait for.)
  WriteQuotas("team-a nonsense\n");
  ASSERT_EQ(kill(daemon_->pid(), SIGHUP), 0);
  // (Which 4: the eviction policy's choice — prefix-arc keeps the blocks read above over new ones.)
  for (auto outcome : Put(kTeamA, 'a', 200, 206)) ASSERT_EQ(outcome, v1::PutResponse::STORED);
  EXPECT_EQ(Present(kTeamA, 'a', 0, kQuotaBlocks + 1).size() + Present(kTeamA, 'a', 200, 206).size(), 4u);
  // A quota lifted by a reload takes its series with it (team-a unlimited in DRAM from now on).
  WriteQuotas("team-b 1MiB\n");
  ASSERT_EQ(kill(daemon_->pid(), SIGHUP), 0);
  ASSERT_TRUE(testing::Eventually(
      [&] { return Sample(Metrics(), "kvstash_tenant_quota_bytes{tenant=\"team-a\",tier=\"dram\"}") == -1; },
      std::chrono::seconds(10)));
  EXPECT_GT(Sample(Metrics(), "kvstash_tenant_used_bytes{tenant=\"team-a\",tier=\"dram\"}"), 0);
}

// A DRAM tier of 2 MiB over an SSD log of four 1 MiB segments. team-a (an SSD share of 32
// blocks) writes five times the log; team-b (a share of 16) wrote its 16 blocks first.
class TenantSsdQuotaTest : public TenantQuotaTest {
 protected:
  static constexpr uint64_t kSsdA = 32, kSsdB = 16;
  void Configure() override {
    WriteQuotas("# tenant dram ssd\nteam-a - " + std::to_string(kSsdA * kBlock) + "\nteam-b - " +
                std::to_string(kSsdB * kBlock) + "\n");
    std::ofstream(dir_ / "kvstashd.toml") << "[dram]\ncapacity = \"2MiB\"\n[ssd]\ndir = \"" << (dir_ / "ssd").string()
                                          << "\"\ncapacity = \"4MiB\"\nsegment = \"1MiB\"\n";
    Start();
  }
  void Start() { StartDaemon({"--config", (dir_ / "kvstashd.toml").string()}); }
  double Ssd(const std::string& m, const char* what, const char* tenant) {
    return Sample(m, std::string("kvstash_tenant_") + what + "{tenant=\"" + tenant + "\",tier=\"ssd\"}");
  }
};

TEST_F(TenantSsdQuotaTest, ATenantsSsdShareHoldsAndOutlivesARestart) {
  for (auto outcome : Put(kTeamB, 'b', 0, kSsdB)) ASSERT_EQ(outcome, v1::PutResponse::STORED);
  for (auto outcome : Put(kTeamA, 'a', 0, 5 * (4 << 20) / kBlock)) ASSERT_EQ(outcome, v1::PutResponse::STORED);
  // Demotion is asynchronous: wait for team-b's blocks, all evicted from DRAM by team-a's flood,
  // to be on the SSD.
  ASSERT_TRUE(testing::Eventually([&] { return Ssd(Metrics(), "blocks", "team-b") == kSsdB; }, std::chrono::seconds(30)))
      << Metrics();
  std::string m = Metrics();
  EXPECT_LE(Ssd(m, "used_bytes", "team-a"), kSsdA * kBlock);
  EXPECT_GT(Ssd(m, "used_bytes", "team-a"), 0);
  EXPECT_GT(Ssd(m, "evictions_total", "team-a"), 0);  // its own oldest, for its share and by reclaims
  EXPECT_EQ(Ssd(m, "evictions_total", "team-b"), 0);  // never team-b's share
  EXPECT_EQ(Ssd(m, "quota_bytes", "team-b"), kSsdB * kBlock);
  const double a_blocks = Ssd(m, "blocks", "team-a");

  // A restart empties DRAM; the SSD blocks come back charged to the same tenants.
  StopDaemon();
  Start();
  if (HasFatalFailure()) return;
  m = Metrics();
  EXPECT_EQ(Ssd(m, "blocks", "team-b"), kSsdB) << m;
  EXPECT_GE(Ssd(m, "blocks", "team-a"), a_blocks) << m;  // what was written since, too
  EXPECT_LE(Ssd(m, "used_bytes", "team-a"), kSsdA * kBlock);
  EXPECT_EQ(Present(kTeamB, 'b', 0, kSsdB).size(), kSsdB);
  // team-a goes on within the same share: its recovered blocks count against it.
  for (auto outcome : Put(kTeamA, 'a', 10'000, 10'000 + (4 << 20) / kBlock)) {
    ASSERT_EQ(outcome, v1::PutResponse::STORED);
  }
  ASSERT_TRUE(testing::Eventually([&] { return Ssd(Metrics(), "evictions_total", "team-a") > 0; },
                                  std::chrono::seconds(30)));
  m = Metrics();
  EXPECT_LE(Ssd(m, "used_bytes", "team-a"), kSsdA * kBlock);
  EXPECT_EQ(Ssd(m, "blocks", "team-b"), kSsdB);
  EXPECT_EQ(Present(kTeamB, 'b', 0, kSsdB).size(), kSsdB);
}

}  // namespace
}  // namespace kvstash
