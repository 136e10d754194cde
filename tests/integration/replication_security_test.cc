// Hot-block replication between daemons with mutual TLS and tokens on (docs/SECURITY.md, issue 16):
// two kvstashd on a real etcd, each demanding a client certificate and a bearer token. A hot block
// is copied to the other member over mutual TLS with the --peer-token-file's admin token, and the
// copy holds the right bytes. A daemon configured to replicate without the peers' CA or token is
// refused at start, by name, and the copies counted as failed when the peers refuse the token.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/auth.h"
#include "kvstash/client.h"
#include "tests/support/daemon_process.h"
#include "tests/support/etcd_process.h"
#include "tests/support/eventually.h"

namespace kvstash {
namespace {

namespace fs = std::filesystem;
using testing::DaemonProcess;
using testing::EtcdProcess;

constexpr char kAdminToken[] = "replication-admin-token-5f1c";
constexpr char kTenantToken[] = "replication-tenant-token-a7e2";

class ReplicationSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!EtcdProcess::Available()) GTEST_SKIP() << "etcd is not installed (Debian package etcd-server)";
    char tmpl[] = "/tmp/kvstash-repl-sec-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const std::string certs = "bash " KVSTASH_SOURCE_ROOT "/deploy/make-test-certs.sh " + dir_.string() + " >/dev/null";
    ASSERT_EQ(std::system(certs.c_str()), 0) << certs;
    std::ofstream(Path("tokens")) << auth::Sha256Hex(kAdminToken) << "  ops  admin\n"
                                  << auth::Sha256Hex(kTenantToken) << "  team-a  write\n";
    std::ofstream(Path("admin.token")) << kAdminToken << "\n";
    std::ofstream(Path("tenant.token")) << kTenantToken << "\n";
    etcd_ = std::make_unique<EtcdProcess>();
    ASSERT_TRUE(etcd_->ok()) << etcd_->error();
  }
  void TearDown() override {
    daemons_.clear();
    etcd_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  // Daemon flags: a member of cluster "repl" with mutual TLS and tokens, replicating a key read
  // 5 times a second, plus `extra`.
  std::vector<std::string> MemberArgs(const std::vector<std::string>& extra) const {
    std::vector<std::string> args = {"--no-ucx", "--etcd", etcd_->endpoint(), "--cluster", "repl", "--replicas", "2",
                                     "--hot-rate", "5", "--tls-cert", Path("server.pem"), "--tls-key",
                                     Path("server.key"), "--tls-client-ca", Path("ca.pem"), "--tokens-file",
                                     Path("tokens"), "--auth-failure-burst", "100000"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
  std::vector<std::string> PeerFlags(const std::string& token_file) const {
    return {"--peer-tls-ca", Path("ca.pem"), "--peer-tls-cert", Path("client.pem"), "--peer-tls-key",
            Path("client.key"), "--peer-token-file", Path(token_file)};
  }
  std::unique_ptr<Client> Connect() const {
    ClientOptions options;
    options.etcd_endpoints = {etcd_->endpoint()};
    options.cluster = "repl";
    options.tls_ca_file = Path("ca.pem");
    options.tls_cert_file = Path("client.pem");
    options.tls_key_file = Path("client.key");
    options.token = kAdminToken;
    auto client = Client::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    return client.ok() ? std::move(*client) : nullptr;
  }
  // A hot block: stored, then looked up until its owner reports a copy, or `limit` passes.
  bool CopiedWithin(Client& client, const BlockKey& key, std::chrono::seconds limit) {
    const std::vector<BlockKey> chain = {key};
    return testing::Eventually(
        [&] {
          for (int i = 0; i < 20; ++i) {
            auto r = client.Lookup(chain, 0);
            if (r.ok() && r->hit_blocks == 1 && r->blocks[0].replicas > 0) return true;
          }
          return false;
        },
        limit);
  }

  // kvstash_replica_copies_total{result="failed"} of a member (0 when not exported yet).
  static double FailedCopies(const DaemonProcess& d) {
    const std::string cmd = std::string("curl -sf -H 'Authorization: Bearer ") + kAdminToken + "' http://" +
                            d.metrics_address() + "/metrics";
    std::string metrics;
    FILE* p = popen(cmd.c_str(), "r");
    if (p == nullptr) return 0;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) metrics.append(buf, n);
    pclose(p);
    const std::string series = "kvstash_replica_copies_total{result=\"failed\"} ";
    const size_t at = metrics.find(series);
    return at == std::string::npos ? 0 : std::stod(metrics.substr(at + series.size()));
  }

  fs::path dir_;
  std::unique_ptr<EtcdProcess> etcd_;
  std::vector<std::unique_ptr<DaemonProcess>> daemons_;
};

TEST_F(ReplicationSecurityTest, HotBlocksAreCopiedOverMutualTlsWithThePeersToken) {
  for (int i = 0; i < 2; ++i) {
    daemons_.push_back(std::make_unique<DaemonProcess>(KVSTASHD_PATH, MemberArgs(PeerFlags("admin.token"))));
    ASSERT_TRUE(daemons_.back()->ok()) << daemons_.back()->error();
  }
  auto client = Connect();
  ASSERT_TRUE(client);
  ASSERT_TRUE(testing::Eventually([&] { return client->Members().size() == 2; }, std::chrono::seconds(20)));
  const BlockKey hot = BlockKey::FromParts(0x5EC, 7);
  std::vector<std::byte> block(8192);
  for (size_t i = 0; i < block.size(); ++i) block[i] = static_cast<std::byte>(i * 13 + 5);
  std::vector<PutItem> one = {{hot, std::nullopt, block}};
  auto put = client->Put(one);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  ASSERT_EQ(put->stored, 1u);

  ASSERT_TRUE(CopiedWithin(*client, hot, std::chrono::seconds(20))) << "the hot block was never copied";
  // Two blocks in the cluster: the copy is an ordinary block on the other member, with the bytes.
  uint64_t total = 0;
  for (const auto& m : client->ClusterStats()) {
    for (const auto& t : m.stats.tiers) total += t.blocks;
  }
  EXPECT_EQ(total, 2u);
  for (int i = 0; i < 40; ++i) {  // reads spread over both copies; every one byte-exact
    std::vector<std::byte> back(block.size());
    GetItem item;
    item.key = hot;
    item.buffer = back;
    ASSERT_TRUE(client->Get(std::span(&item, 1)).ok());
    ASSERT_TRUE(item.found);
    ASSERT_EQ(back, block);
  }
}

TEST_F(ReplicationSecurityTest, APeerThatRefusesTheTokenGetsNoCopy) {
  // The members present a tenant's write token: the peers refuse it (a copy's keys are the owner's
  // stored keys, so a replica put needs admin: a tenant's would land in its own derived key
  // space), so nothing is copied and the failures are counted.
  for (int i = 0; i < 2; ++i) {
    daemons_.push_back(std::make_unique<DaemonProcess>(KVSTASHD_PATH, MemberArgs(PeerFlags("tenant.token"))));
    ASSERT_TRUE(daemons_.back()->ok()) << daemons_.back()->error();
  }
  auto client = Connect();
  ASSERT_TRUE(client);
  ASSERT_TRUE(testing::Eventually([&] { return client->Members().size() == 2; }, std::chrono::seconds(20)));
  const BlockKey hot = BlockKey::FromParts(0x5EC, 8);
  std::vector<std::byte> block(4096, std::byte{0x3C});
  std::vector<PutItem> one = {{hot, std::nullopt, block}};
  ASSERT_TRUE(client->Put(one).ok());
  double failed = 0;
  ASSERT_TRUE(testing::Eventually(
      [&] {
        for (int i = 0; i < 20; ++i) (void)client->Lookup(std::vector<BlockKey>{hot}, 0);
        failed = 0;
        for (auto& d : daemons_) failed += FailedCopies(*d);
        return failed > 0;
      },
      std::chrono::seconds(20)))
      << "no copy was attempted and refused";
  uint64_t total = 0;
  for (const auto& m : client->ClusterStats()) {
    for (const auto& t : m.stats.tiers) total += t.blocks;
  }
  EXPECT_EQ(total, 1u) << "a copy was stored with a token the peers must refuse";
}

TEST_F(ReplicationSecurityTest, ReplicationWithoutThePeersCaOrTokenIsRefusedAtStart) {
  // Exit status and output of a member that must refuse its configuration (bounded by timeout).
  auto run_to_exit = [&](const std::vector<std::string>& extra) {
    std::string cmd = "timeout 30 " KVSTASHD_PATH " --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0";
    for (const std::string& a : MemberArgs(extra)) cmd += " '" + a + "'";
    cmd += " 2>&1";
    std::string output;
    FILE* pipe = popen(cmd.c_str(), "r");
    if (pipe == nullptr) return std::pair<int, std::string>{-1, "popen failed"};
    char chunk[4096];
    while (size_t n = fread(chunk, 1, sizeof(chunk), pipe)) output.append(chunk, n);
    const int status = pclose(pipe);
    return std::pair<int, std::string>{WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
  };
  auto [no_ca_code, no_ca_out] = run_to_exit({"--peer-token-file", Path("admin.token")});
  EXPECT_EQ(no_ca_code, 2) << no_ca_out;
  EXPECT_NE(no_ca_out.find("--peer-tls-ca"), std::string::npos) << no_ca_out;
  auto [no_token_code, no_token_out] = run_to_exit({"--peer-tls-ca", Path("ca.pem")});
  EXPECT_EQ(no_token_code, 2) << no_token_out;
  EXPECT_NE(no_token_out.find("--peer-token-file"), std::string::npos) << no_token_out;
}

}  // namespace
}  // namespace kvstash
