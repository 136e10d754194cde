// Security of kvstashd's gRPC port (docs/SECURITY.md, issue 16), attacked with raw gRPC clients
// against a real daemon process: TLS refuses plaintext, a client of another CA, a server
// certificate of another CA and an expired one; mutual TLS refuses a client without a certificate;
// tokens refuse every RPC without a token or with an unknown one (UNAUTHENTICATED) and beyond the
// token's role (PERMISSION_DENIED), and nothing changes; failed attempts are rate-limited per peer;
// SIGHUP reloads the tokens file, and a broken file leaves the old tokens in force.
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <signal.h>
#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "common/auth.h"
#include "common/tls.h"
#include "kvstash/client.h"
#include "kvstash/limits.h"
#include "kvstash/v1/store.grpc.pb.h"
#include "membership/etcd_client.h"
#include "tests/support/daemon_process.h"
#include "tests/support/etcd_process.h"
#include "tests/support/eventually.h"
#include "transfer/ucx_worker.h"

namespace kvstash {
namespace {

namespace fs = std::filesystem;
using testing::DaemonProcess;

constexpr char kAdminToken[] = "admin-token-0123456789";
constexpr char kWriteToken[] = "write-token-0123456789";
constexpr char kReadToken[] = "read-token-0123456789";
constexpr char kOtherTenantToken[] = "team-b-token-0123456789";

std::string Key(uint64_t i) { return std::string(BlockKey::FromParts(0x5EC, i).AsBytes()); }

// One PKI (deploy/make-test-certs.sh) and tokens file for the whole suite, in a fresh directory.
class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // HTTPS and etcd clients refused in a handshake write to a closed socket (OpenSSL uses write(2)).
    signal(SIGPIPE, SIG_IGN);
    char tmpl[] = "/tmp/kvstash-security-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const std::string cmd = "bash " KVSTASH_SOURCE_ROOT "/deploy/make-test-certs.sh " + dir_.string() + " >/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    WriteTokens({{kAdminToken, "ops", "admin"}, {kWriteToken, "team-a", "write"}, {kReadToken, "team-a", "read"}});
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static std::string Path(const std::string& name) { return (dir_ / name).string(); }

  struct TokenLine {
    std::string token, tenant, role;
  };
  static void WriteTokens(const std::vector<TokenLine>& lines, const std::string& extra = "") {
    const std::string tmp = Path("tokens.tmp");
    std::ofstream out(tmp);
    out << "# test tokens\n";
    for (const TokenLine& l : lines) out << auth::Sha256Hex(l.token) << "  " << l.tenant << "  " << l.role << "\n";
    out << extra;
    out.close();
    fs::rename(tmp, Path("tokens"));  // whole-file replacement, as an operator's editor would
  }

  std::unique_ptr<DaemonProcess> Start(std::vector<std::string> args) {
    args.insert(args.end(), {"--no-ucx", "--dram-capacity", "64MiB"});
    auto daemon = std::make_unique<DaemonProcess>(KVSTASHD_PATH, args);
    EXPECT_TRUE(daemon->ok()) << daemon->error();
    return daemon;
  }
  std::vector<std::string> TlsArgs(bool mutual) {
    std::vector<std::string> args = {"--tls-cert", Path("server.pem"), "--tls-key", Path("server.key")};
    if (mutual) args.insert(args.end(), {"--tls-client-ca", Path("ca.pem")});
    return args;
  }

  // A raw Store client with exactly these TLS files (all empty = plaintext).
  static std::unique_ptr<v1::Store::Stub> RawClient(const std::string& address, const tls::ClientFiles& files) {
    auto credentials = tls::MakeChannelCredentials(files);
    EXPECT_TRUE(credentials.ok()) << credentials.status().ToString();
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a fresh handshake per client
    return v1::Store::NewStub(grpc::CreateCustomChannel(address, *credentials, args));
  }
  static tls::ClientFiles GoodFiles() { return {Path("ca.pem"), Path("client.pem"), Path("client.key"), ""}; }

  static grpc::Status Health(v1::Store::Stub& client, const std::string& token = "") {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    v1::HealthRequest req;
    v1::HealthResponse resp;
    return client.Health(&ctx, req, &resp);
  }

  // Every key the daemon holds, asked with the admin token.
  static std::vector<std::string> Keys(v1::Store::Stub& client) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", std::string("Bearer ") + kAdminToken);
    v1::ListRequest req;
    req.set_limit(1000);
    v1::ListResponse resp;
    const grpc::Status st = client.List(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    std::vector<std::string> keys;
    for (const auto& b : resp.blocks()) keys.push_back(b.key());
    return keys;
  }

  static inline fs::path dir_;
};

// ---- TLS ------------------------------------------------------------------------------------

TEST_F(SecurityTest, TlsPortRefusesPlaintextAndServesTls) {
  auto daemon = Start(TlsArgs(false));
  auto plaintext = RawClient(daemon->grpc_address(), {});
  EXPECT_EQ(Health(*plaintext).error_code(), grpc::StatusCode::UNAVAILABLE);
  auto secure = RawClient(daemon->grpc_address(), {Path("ca.pem"), "", "", ""});
  EXPECT_TRUE(Health(*secure).ok());
}

TEST_F(SecurityTest, ClientRefusesServerOfAnotherCaAndExpiredServer) {
  auto daemon = Start(TlsArgs(false));
  auto wrong_ca = RawClient(daemon->grpc_address(), {Path("other-ca.pem"), "", "", ""});
  EXPECT_EQ(Health(*wrong_ca).error_code(), grpc::StatusCode::UNAVAILABLE);

  auto expired = Start({"--tls-cert", Path("expired.pem"), "--tls-key", Path("expired.key")});
  auto to_expired = RawClient(expired->grpc_address(), {Path("ca.pem"), "", "", ""});
  EXPECT_EQ(Health(*to_expired).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(SecurityTest, MutualTlsRefusesClientsWithoutCertificateOrOfAnotherCa) {
  auto daemon = Start(TlsArgs(true));
  auto no_cert = RawClient(daemon->grpc_address(), {Path("ca.pem"), "", "", ""});
  EXPECT_EQ(Health(*no_cert).error_code(), grpc::StatusCode::UNAVAILABLE);
  auto other_ca = RawClient(daemon->grpc_address(), {Path("ca.pem"), Path("other-client.pem"), Path("other-client.key"), ""});
  EXPECT_EQ(Health(*other_ca).error_code(), grpc::StatusCode::UNAVAILABLE);
  auto good = RawClient(daemon->grpc_address(), GoodFiles());
  EXPECT_TRUE(Health(*good).ok());
}

// The daemon watches its certificate files (--tls-reload-s): a certificate and key replaced on
// disk serve new connections without a restart.
TEST_F(SecurityTest, ReplacedServerCertificateIsPickedUpWithoutARestart) {
  auto install = [&](const std::string& from) {
    for (const char* ext : {".key", ".pem"}) {
      fs::copy_file(Path(from + ext), Path(std::string("live.tmp") + ext), fs::copy_options::overwrite_existing);
      fs::rename(Path(std::string("live.tmp") + ext), Path(std::string("live") + ext));
    }
  };
  install("server");
  auto daemon = Start({"--tls-cert", Path("live.pem"), "--tls-key", Path("live.key"), "--tls-reload-s", "1"});
  ASSERT_TRUE(daemon->ok());
  auto trusting_other_ca = [&] { return Health(*RawClient(daemon->grpc_address(), {Path("other-ca.pem"), "", "", ""})); };
  EXPECT_TRUE(Health(*RawClient(daemon->grpc_address(), {Path("ca.pem"), "", "", ""})).ok());
  EXPECT_FALSE(trusting_other_ca().ok());
  install("other-server");
  EXPECT_TRUE(testing::Eventually([&] { return trusting_other_ca().ok(); }, std::chrono::seconds(20)))
      << "the replaced certificate was not picked up";
  EXPECT_FALSE(Health(*RawClient(daemon->grpc_address(), {Path("ca.pem"), "", "", ""})).ok());
}

TEST_F(SecurityTest, DaemonRefusesToStartWithMissingOrHalfTlsFiles) {
  DaemonProcess half(KVSTASHD_PATH, {"--no-ucx", "--tls-cert", Path("server.pem")});
  EXPECT_FALSE(half.ok());
  DaemonProcess missing(KVSTASHD_PATH, {"--no-ucx", "--tls-cert", Path("absent.pem"), "--tls-key", Path("server.key")});
  EXPECT_FALSE(missing.ok());
  DaemonProcess not_pem(KVSTASHD_PATH, {"--no-ucx", "--tls-cert", Path("tokens"), "--tls-key", Path("server.key")});
  EXPECT_FALSE(not_pem.ok());
}

// ---- tokens ---------------------------------------------------------------------------------

// Calls every Store RPC with `token` (empty = none) and expects `code` from each, on a store that
// holds key 0; then checks that the store still holds exactly that.
void ExpectEveryRpcRefused(v1::Store::Stub& client, const std::string& token, grpc::StatusCode code,
                           const std::function<std::vector<std::string>()>& keys) {
  const std::vector<std::string> before = keys();
  auto call = [&](auto method, auto req, auto resp, const char* name) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    const grpc::Status st = (client.*method)(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), code) << name << ": " << st.error_message();
  };
  v1::PutRequest put;
  auto* item = put.add_items();
  item->set_key(Key(99));
  item->set_data(std::string(4096, 'x'));
  v1::PutBeginRequest begin;
  auto* want = begin.add_items();
  want->set_key(Key(98));
  want->set_size(4096);
  v1::RemoveRequest remove;
  remove.add_keys(Key(0));
  v1::LookupRequest lookup;
  lookup.add_keys(Key(0));
  v1::GetRequest get;
  get.add_keys(Key(0));
  v1::StatRequest stat;
  stat.add_keys(Key(0));
  v1::ListRequest list;
  call(&v1::Store::Stub::Put, put, v1::PutResponse{}, "put");
  call(&v1::Store::Stub::PutBegin, begin, v1::PutBeginResponse{}, "put_begin");
  call(&v1::Store::Stub::PutCommit, v1::PutCommitRequest{}, v1::PutCommitResponse{}, "put_commit");
  call(&v1::Store::Stub::PutAbort, v1::PutAbortRequest{}, v1::PutAbortResponse{}, "put_abort");
  call(&v1::Store::Stub::Remove, remove, v1::RemoveResponse{}, "remove");
  call(&v1::Store::Stub::Lookup, lookup, v1::LookupResponse{}, "lookup");
  call(&v1::Store::Stub::Get, get, v1::GetResponse{}, "get");
  call(&v1::Store::Stub::Stat, stat, v1::StatResponse{}, "stat");
  call(&v1::Store::Stub::ReleaseLeases, v1::ReleaseLeasesRequest{}, v1::ReleaseLeasesResponse{}, "release_leases");
  call(&v1::Store::Stub::Stats, v1::StatsRequest{}, v1::StatsResponse{}, "stats");
  call(&v1::Store::Stub::List, list, v1::ListResponse{}, "list");
  call(&v1::Store::Stub::Health, v1::HealthRequest{}, v1::HealthResponse{}, "health");
  call(&v1::Store::Stub::DataPlane, v1::DataPlaneRequest{}, v1::DataPlaneResponse{}, "data_plane");
  EXPECT_EQ(keys(), before);
}

class TokenTest : public SecurityTest {
 protected:
  void SetUp() override {
    WriteTokens({{kAdminToken, "ops", "admin"},
                 {kWriteToken, "team-a", "write"},
                 {kReadToken, "team-a", "read"},
                 {kOtherTenantToken, "team-b", "write"}});
    std::vector<std::string> args = TlsArgs(true);
    args.insert(args.end(), {"--tokens-file", Path("tokens")});
    // The rate-limit test keeps the default budget; the others make more failed calls than it.
    if (std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()).find("RateLimited") ==
        std::string::npos) {
      args.insert(args.end(), {"--auth-failure-burst", "1000"});
    }
    daemon_ = Start(args);
    ASSERT_TRUE(daemon_->ok());
    client_ = RawClient(daemon_->grpc_address(), GoodFiles());
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", std::string("Bearer ") + kWriteToken);
    v1::PutRequest put;
    auto* item = put.add_items();
    item->set_key(Key(0));
    item->set_data(std::string(4096, 'a'));
    v1::PutResponse resp;
    ASSERT_TRUE(client_->Put(&ctx, put, &resp).ok());
  }
  std::function<std::vector<std::string>()> KeysFn() {
    return [this] { return Keys(*client_); };
  }
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<v1::Store::Stub> client_;
};

TEST_F(TokenTest, EveryRpcWithoutATokenIsUnauthenticatedAndChangesNothing) {
  ExpectEveryRpcRefused(*client_, "", grpc::StatusCode::UNAUTHENTICATED, KeysFn());
}

TEST_F(TokenTest, EveryRpcWithAnUnknownTokenIsUnauthenticatedAndChangesNothing) {
  // A token whose hash is in the file is accepted; the hash itself is not a token.
  ExpectEveryRpcRefused(*client_, auth::Sha256Hex(kAdminToken), grpc::StatusCode::UNAUTHENTICATED, KeysFn());
}

// Refusals are counted under their code — with no latency sample, and no token in any label.
TEST_F(TokenTest, RefusalsAreCountedWithoutTokensInLabels) {
  for (int i = 0; i < 3; ++i) ASSERT_FALSE(Health(*client_, "secret-wrong-token").ok());
  ASSERT_FALSE(Health(*client_, "").ok());
  const std::string& metrics = daemon_->metrics_address();
  httplib::Client http(metrics.substr(0, metrics.rfind(':')), std::stoi(metrics.substr(metrics.rfind(':') + 1)));
  http.set_bearer_token_auth(kAdminToken);  // with tokens on, /metrics takes an admin's
  auto scraped = http.Get("/metrics");
  ASSERT_TRUE(scraped);
  ASSERT_EQ(scraped->status, 200);
  EXPECT_NE(scraped->body.find("kvstash_ops_total{op=\"health\",result=\"unauthenticated\"} 4\n"), std::string::npos)
      << scraped->body.substr(0, 2000);
  EXPECT_EQ(scraped->body.find("secret-wrong-token"), std::string::npos);
  EXPECT_EQ(scraped->body.find("kvstash_op_duration_seconds_count{op=\"health\"}"), std::string::npos)
      << "refused calls must not add latency samples";
}

TEST_F(TokenTest, MalformedAuthorizationIsUnauthenticated) {
  for (const std::string& value : std::vector<std::string>{std::string("Basic ") + kAdminToken, std::string(kAdminToken), std::string("Bearer "),
                                  std::string("Bearer ") + kAdminToken + " extra"}) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", value);
    v1::HealthResponse resp;
    EXPECT_EQ(client_->Health(&ctx, v1::HealthRequest{}, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << value;
  }
}

TEST_F(TokenTest, ReadTokenCannotWriteOrRemoveButReads) {
  const std::vector<std::string> before = Keys(*client_);
  auto call = [&](auto method, auto req, auto resp) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", std::string("Bearer ") + kReadToken);
    return (client_.get()->*method)(&ctx, req, &resp).error_code();
  };
  v1::PutRequest put;
  auto* item = put.add_items();
  item->set_key(Key(7));
  item->set_data(std::string(4096, 'r'));
  v1::RemoveRequest remove;
  remove.add_keys(Key(0));
  v1::PutBeginRequest begin;
  auto* want = begin.add_items();
  want->set_key(Key(8));
  want->set_size(4096);
  EXPECT_EQ(call(&v1::Store::Stub::Put, put, v1::PutResponse{}), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(call(&v1::Store::Stub::PutBegin, begin, v1::PutBeginResponse{}), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(call(&v1::Store::Stub::Remove, remove, v1::RemoveResponse{}), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(call(&v1::Store::Stub::List, v1::ListRequest{}, v1::ListResponse{}), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(call(&v1::Store::Stub::Stats, v1::StatsRequest{}, v1::StatsResponse{}), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Keys(*client_), before);

  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", std::string("Bearer ") + kReadToken);
  v1::GetRequest get;
  get.add_keys(Key(0));
  v1::GetResponse got;
  ASSERT_TRUE(client_->Get(&ctx, get, &got).ok());
  ASSERT_EQ(got.results_size(), 1);
  EXPECT_EQ(got.results(0).outcome(), v1::GetResult::FOUND);
  EXPECT_EQ(got.results(0).data(), std::string(4096, 'a'));
}

TEST_F(TokenTest, WriteTokenCannotListOrStats) {
  for (auto op : {0, 1}) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", std::string("Bearer ") + kWriteToken);
    grpc::Status st;
    if (op == 0) {
      v1::ListResponse resp;
      st = client_->List(&ctx, v1::ListRequest{}, &resp);
    } else {
      v1::StatsResponse resp;
      st = client_->Stats(&ctx, v1::StatsRequest{}, &resp);
    }
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
}

TEST_F(TokenTest, FailedAttemptsAreRateLimitedPerPeer) {
  // Past the burst of failures, even a good token from the same peer is refused unchecked.
  int refused_unchecked = 0;
  for (int i = 0; i < 40 && refused_unchecked == 0; ++i) {
    const grpc::Status st = Health(*client_, "wrong-token");
    ASSERT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    if (st.error_message().find("too many failed attempts") != std::string::npos) ++refused_unchecked;
  }
  ASSERT_EQ(refused_unchecked, 1) << "no failure budget: 40 wrong tokens were all checked";
  const grpc::Status good = Health(*client_, kAdminToken);
  EXPECT_EQ(good.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(good.error_message().find("too many failed attempts"), std::string::npos);
  // The budget refills (1 a second): the good token is accepted again, within a bounded wait.
  EXPECT_TRUE(testing::Eventually([&] { return Health(*client_, kAdminToken).ok(); }, std::chrono::seconds(10)));
}

TEST_F(TokenTest, SighupReloadsTheTokensFile) {
  constexpr char kNewToken[] = "new-token-after-reload";
  EXPECT_EQ(Health(*client_, kNewToken).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  WriteTokens({{kAdminToken, "ops", "admin"}, {kNewToken, "team-b", "read"}});
  ASSERT_EQ(kill(daemon_->pid(), SIGHUP), 0);
  EXPECT_TRUE(testing::Eventually([&] { return Health(*client_, kNewToken).ok(); }, std::chrono::seconds(10)));
  // The write token is gone with the old file. (A broken file keeping the old tokens in force is
  // AuthorizerTest.BrokenReloadKeepsTheOldTokens: a signal gives no answer to wait for.)
  EXPECT_EQ(Health(*client_, kWriteToken).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

// ---- the UCX data plane with tokens on ------------------------------------------------------

// A daemon with UCX and tokens: the arena's remote key (a capability to read and write every
// tenant's bytes) goes to admin principals only. With --ucx-protocol one-sided there is no
// two-sided plane to offer tenants either (tenant_data_plane_test covers the default, where
// tenants read and write two-sided with sealed grants): tenant SDK clients fall back to the inline
// path, an admin's uses UCX, and no eager requests are served.
TEST_F(SecurityTest, OneSidedOnlyDaemonsGiveTenantsNoUcxAtAll) {
  WriteTokens({{kAdminToken, "ops", "admin"}, {kWriteToken, "team-a", "write"}, {kReadToken, "team-a", "read"}});
  DaemonProcess daemon(KVSTASHD_PATH,
                       {"--tokens-file", Path("tokens"), "--dram-capacity", "64MiB", "--ucx-protocol", "one-sided"});
  ASSERT_TRUE(daemon.ok()) << daemon.error();
  auto raw = RawClient(daemon.grpc_address(), {});
  auto data_plane = [&](const std::string& token) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token);
    v1::DataPlaneResponse resp;
    EXPECT_TRUE(raw->DataPlane(&ctx, v1::DataPlaneRequest{}, &resp).ok());
    return resp;
  };
  const v1::DataPlaneResponse admin = data_plane(kAdminToken);
  ASSERT_TRUE(admin.ucx_available()) << "the daemon should serve UCX here";
  EXPECT_FALSE(admin.rkey().empty());
  EXPECT_EQ(admin.protocol(), "one-sided");
  EXPECT_FALSE(admin.two_sided());
  EXPECT_TRUE(admin.push_lane_addresses().empty());
  EXPECT_FALSE(admin.eager_requests());
  for (const char* tenant_token : {kWriteToken, kReadToken}) {
    const v1::DataPlaneResponse tenant = data_plane(tenant_token);
    EXPECT_FALSE(tenant.ucx_available());
    EXPECT_TRUE(tenant.rkey().empty());
    EXPECT_TRUE(tenant.worker_address().empty());
    EXPECT_EQ(tenant.probe_addr(), 0u);
  }

  ClientOptions options;
  options.address = daemon.grpc_address();
  options.token = kReadToken;
  auto tenant = Client::Connect(options);
  ASSERT_TRUE(tenant.ok()) << tenant.status().ToString();
  EXPECT_EQ((*tenant)->data_path(), "inline");
  options.token = kAdminToken;
  auto admin_client = Client::Connect(options);
  ASSERT_TRUE(admin_client.ok()) << admin_client.status().ToString();
  EXPECT_NE((*admin_client)->data_path(), "inline");
}

// ---- tenant isolation -----------------------------------------------------------------------

class TenantTest : public TokenTest {
 protected:
  grpc::ClientContext* Ctx(grpc::ClientContext& ctx, const char* token) {
    ctx.AddMetadata("authorization", std::string("Bearer ") + token);
    return &ctx;
  }
  v1::PutResponse::Outcome Put(const char* token, const std::string& key, const std::string& data,
                               const std::string& parent = "") {
    grpc::ClientContext ctx;
    v1::PutRequest put;
    auto* item = put.add_items();
    item->set_key(key);
    item->set_data(data);
    if (!parent.empty()) item->set_parent(parent);
    v1::PutResponse resp;
    const grpc::Status st = client_->Put(Ctx(ctx, token), put, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp.outcomes_size() == 1 ? resp.outcomes(0) : v1::PutResponse::OUTCOME_UNSPECIFIED;
  }
  // The bytes `token` reads for `key`, or "" on a miss.
  std::string Get(const char* token, const std::string& key) {
    grpc::ClientContext ctx;
    v1::GetRequest get;
    get.add_keys(key);
    v1::GetResponse resp;
    const grpc::Status st = client_->Get(Ctx(ctx, token), get, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    if (resp.results_size() != 1 || resp.results(0).outcome() != v1::GetResult::FOUND) return "";
    EXPECT_EQ(resp.results(0).info().key(), key);  // the caller's key, not the stored one
    return resp.results(0).data();
  }
};

// SetUp stored Key(0) = 4096 x 'a' as tenant team-a (kWriteToken).
TEST_F(TenantTest, AnotherTenantCannotReadLookUpStatOrRemove) {
  EXPECT_EQ(Get(kOtherTenantToken, Key(0)), "");
  {
    grpc::ClientContext ctx;
    v1::LookupRequest lookup;
    lookup.add_keys(Key(0));
    v1::LookupResponse resp;
    ASSERT_TRUE(client_->Lookup(Ctx(ctx, kOtherTenantToken), lookup, &resp).ok());
    EXPECT_EQ(resp.hit_blocks(), 0u);
  }
  {
    grpc::ClientContext ctx;
    v1::StatRequest stat;
    stat.add_keys(Key(0));
    v1::StatResponse resp;
    ASSERT_TRUE(client_->Stat(Ctx(ctx, kOtherTenantToken), stat, &resp).ok());
    ASSERT_EQ(resp.entries_size(), 1);
    EXPECT_FALSE(resp.entries(0).found());
  }
  {
    grpc::ClientContext ctx;
    v1::RemoveRequest remove;
    remove.add_keys(Key(0));
    v1::RemoveResponse resp;
    ASSERT_TRUE(client_->Remove(Ctx(ctx, kOtherTenantToken), remove, &resp).ok());
    ASSERT_EQ(resp.outcomes_size(), 1);
    EXPECT_EQ(resp.outcomes(0), v1::RemoveResponse::MISSING);
  }
  EXPECT_EQ(Get(kWriteToken, Key(0)), std::string(4096, 'a'));
  EXPECT_EQ(Get(kReadToken, Key(0)), std::string(4096, 'a'));  // the same tenant with a read token
}

TEST_F(TenantTest, SameKeyOfTwoTenantsIsTwoBlocksAndDedupTellsNothing) {
  // team-b's put of team-a's key is stored, not "exists": no answer says team-a cached it.
  EXPECT_EQ(Put(kOtherTenantToken, Key(0), std::string(4096, 'b')), v1::PutResponse::STORED);
  EXPECT_EQ(Get(kOtherTenantToken, Key(0)), std::string(4096, 'b'));
  EXPECT_EQ(Get(kWriteToken, Key(0)), std::string(4096, 'a'));
  EXPECT_EQ(Put(kOtherTenantToken, Key(0), std::string(4096, 'c')), v1::PutResponse::EXISTS);  // its own dedup holds
  // The daemon holds two blocks, neither under the raw key.
  const std::vector<std::string> keys = Keys(*client_);
  EXPECT_EQ(keys.size(), 2u);
  for (const std::string& k : keys) EXPECT_NE(k, Key(0));
}

TEST_F(TenantTest, ParentsAreMappedBackToTheCallersKeys) {
  EXPECT_EQ(Put(kWriteToken, Key(1), std::string(4096, 'p'), Key(0)), v1::PutResponse::STORED);
  grpc::ClientContext ctx;
  v1::StatRequest stat;
  stat.add_keys(Key(1));
  stat.add_keys(Key(0));
  v1::StatResponse resp;
  ASSERT_TRUE(client_->Stat(Ctx(ctx, kWriteToken), stat, &resp).ok());
  ASSERT_EQ(resp.entries_size(), 2);
  ASSERT_TRUE(resp.entries(0).found());
  EXPECT_EQ(resp.entries(0).info().key(), Key(1));
  EXPECT_EQ(resp.entries(0).info().parent(), Key(0));
}

TEST_F(TenantTest, SdkClientsOfTwoTenantsSeeOnlyTheirOwnBlocks) {
  auto connect = [&](const char* token) {
    ClientOptions options;
    options.address = daemon_->grpc_address();
    options.tls_ca_file = Path("ca.pem");
    options.tls_cert_file = Path("client.pem");
    options.tls_key_file = Path("client.key");
    options.token = token;
    auto client = Client::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    return client.ok() ? std::move(*client) : nullptr;
  };
  auto a = connect(kWriteToken);
  auto b = connect(kOtherTenantToken);
  ASSERT_TRUE(a && b);
  const BlockKey key = BlockKey::FromParts(0x5EC, 7);
  std::vector<std::byte> bytes(8192, std::byte{0x7A});
  PutItem item{key, std::nullopt, bytes};
  ASSERT_TRUE(a->Put(std::span<const PutItem>(&item, 1)).ok());
  auto a_sees = a->Lookup(std::span<const BlockKey>(&key, 1));
  ASSERT_TRUE(a_sees.ok()) << a_sees.status().ToString();
  EXPECT_EQ(a_sees->hit_blocks, 1u);
  auto b_sees = b->Lookup(std::span<const BlockKey>(&key, 1));
  ASSERT_TRUE(b_sees.ok()) << b_sees.status().ToString();
  EXPECT_EQ(b_sees->hit_blocks, 0u);
}

// ---- a raw UCX worker ------------------------------------------------------------------------

// A raw UCX reader over tcp, the network path a tenant on another host has: an RMA context with
// only tcp, reading `length` bytes at `remote` through `worker_address` and `rkey`. The bytes
// when the read completed; nullopt when it could not even start or did not complete.
std::optional<std::string> RawTcpGet(const std::string& worker_address, const std::string& rkey, uint64_t remote,
                                     size_t length) {
  transfer::UcxOptions options;
  options.transports = "tcp";
  auto context = transfer::UcxContext::Create(options);
  if (!context.ok()) return std::nullopt;
  auto worker = transfer::UcxWorker::Create(*context);
  if (!worker.ok()) return std::nullopt;
  auto ep = (*worker)->Endpoint(worker_address);
  if (!ep.ok()) return std::nullopt;
  auto key = (*worker)->RemoteKey(worker_address, rkey);
  if (!key.ok()) return std::nullopt;
  std::string buffer(length, '\0');
  ucp_request_param_t param{};
  ucs_status_ptr_t get = ucp_get_nbx(*ep, buffer.data(), length, remote, *key, &param);
  if (UCS_PTR_IS_ERR(get)) return std::nullopt;
  if (get != nullptr) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (ucp_request_check_status(get) == UCS_INPROGRESS && std::chrono::steady_clock::now() < give_up) {
      (*worker)->Progress();
    }
    const ucs_status_t status = ucp_request_check_status(get);
    if (status == UCS_INPROGRESS) ucp_request_cancel((*worker)->handle(), get);
    ucp_request_free(get);
    if (status != UCS_OK) return std::nullopt;
  }
  return buffer;
}

// Tenant team-b attacks team-a's block over the network with a raw UCX worker, one-sided. Its own
// session gives it no one-sided description; so it is handed the most it could steal — the worker
// address and rkey an admin got, and the block's address an admin's Stat shows — and still reads
// nothing: the daemon's one-sided worker speaks no network transport. (The two-sided plane it is
// offered is attacked in tenant_data_plane_test.)
TEST_F(SecurityTest, RawUcxWorkerOfAnotherTenantReadsNothing) {
  WriteTokens({{kAdminToken, "ops", "admin"}, {kWriteToken, "team-a", "write"}, {kOtherTenantToken, "team-b", "write"}});
  DaemonProcess daemon(KVSTASHD_PATH, {"--tokens-file", Path("tokens"), "--dram-capacity", "64MiB"});
  ASSERT_TRUE(daemon.ok()) << daemon.error();
  auto raw = RawClient(daemon.grpc_address(), {});
  auto with = [](grpc::ClientContext& ctx, const char* token) {
    ctx.AddMetadata("authorization", std::string("Bearer ") + token);
    return &ctx;
  };
  const std::string secret(64 << 10, 's');
  {
    grpc::ClientContext ctx;
    v1::PutRequest put;
    auto* item = put.add_items();
    item->set_key(Key(5));
    item->set_data(secret);
    v1::PutResponse resp;
    ASSERT_TRUE(raw->Put(with(ctx, kWriteToken), put, &resp).ok());
  }
  // What team-b's own session gives it.
  v1::DataPlaneResponse own;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(raw->DataPlane(with(ctx, kOtherTenantToken), v1::DataPlaneRequest{}, &own).ok());
  }
  // The two-sided plane only (its reads need grants the daemon seals: tenant_data_plane_test);
  // never the one-sided worker or the arena's key.
  EXPECT_TRUE(own.ucx_available());
  EXPECT_TRUE(own.two_sided());
  EXPECT_TRUE(own.worker_address().empty());
  EXPECT_TRUE(own.rkey().empty());
  // The most it could steal: an admin's description and the block's address.
  v1::DataPlaneResponse leaked;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(raw->DataPlane(with(ctx, kAdminToken), v1::DataPlaneRequest{}, &leaked).ok());
  }
  ASSERT_TRUE(leaked.ucx_available());
  ASSERT_FALSE(leaked.rkey().empty());
  const std::vector<std::string> stored = Keys(*raw);
  ASSERT_EQ(stored.size(), 1u);
  v1::StatResponse stat;
  {
    grpc::ClientContext ctx;
    v1::StatRequest req;
    req.add_keys(stored[0]);
    ASSERT_TRUE(raw->Stat(with(ctx, kAdminToken), req, &stat).ok());
  }
  ASSERT_TRUE(stat.entries(0).found());
  const uint64_t at = stat.entries(0).info().remote_addr();
  ASSERT_NE(at, 0u);

  const std::optional<std::string> stolen = RawTcpGet(leaked.worker_address(), leaked.rkey(), at, secret.size());
  EXPECT_FALSE(stolen.has_value() && *stolen == secret) << "a raw tcp worker read another tenant's block";
  EXPECT_FALSE(stolen.has_value()) << "a raw tcp read of the arena completed";
  EXPECT_TRUE(Health(*raw, kAdminToken).ok()) << "kvstashd stopped serving after the raw UCX attempt";
}

// ---- the CLI ----------------------------------------------------------------------------------

// Runs the kvstash CLI with `args` (and `env`, "NAME=value " prefixes); its exit code and output.
std::pair<int, std::string> RunCli(const std::string& env, const std::string& args) {
  const std::string cmd = env + " " KVSTASH_CLI_PATH " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string output;
  char chunk[4096];
  while (size_t n = fread(chunk, 1, sizeof(chunk), pipe)) output.append(chunk, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

TEST_F(TokenTest, CliTakesTlsFilesAndATokenFileAndIsRefusedWithout) {
  const std::string tls = "--addr " + daemon_->grpc_address() + " --tls-ca " + Path("ca.pem") + " --tls-cert " +
                          Path("client.pem") + " --tls-key " + Path("client.key");
  std::ofstream(Path("admin.token")) << kAdminToken << "\n";
  auto [ok_code, ok_out] = RunCli("", tls + " --token-file " + Path("admin.token") + " status");
  EXPECT_EQ(ok_code, 0) << ok_out;
  auto [no_token_code, no_token_out] = RunCli("env -u KVSTASH_TOKEN", tls + " status");
  EXPECT_EQ(no_token_code, 1) << no_token_out;
  EXPECT_NE(no_token_out.find("UNAUTHENTICATED"), std::string::npos) << no_token_out;
  auto [plain_code, plain_out] = RunCli("", "--addr " + daemon_->grpc_address() + " --token-file " +
                                                Path("admin.token") + " status");
  EXPECT_EQ(plain_code, 1) << plain_out;  // a plaintext client against the TLS port
  std::ofstream(Path("block")) << std::string(4096, 'z');
  auto [put_code, put_out] = RunCli(std::string("KVSTASH_TOKEN=") + kReadToken,
                                    tls + " put 0123456789abcdef0123456789abcdef " + Path("block"));
  EXPECT_EQ(put_code, 1) << put_out;
  EXPECT_NE(put_out.find("PERMISSION_DENIED"), std::string::npos) << put_out;
  auto [missing_code, missing_out] = RunCli("", tls + " --token-file " + Path("absent.token") + " status");
  EXPECT_EQ(missing_code, 2) << missing_out;  // a usage error: nothing was sent
}

// ---- the SDK --------------------------------------------------------------------------------

TEST_F(TokenTest, SdkWithTlsAndTokenRoundTripsAndWrongTokenIsRefused) {
  ClientOptions options;
  options.address = daemon_->grpc_address();
  options.data_path = DataPath::kInline;
  options.tls_ca_file = Path("ca.pem");
  options.tls_cert_file = Path("client.pem");
  options.tls_key_file = Path("client.key");
  options.token = kWriteToken;
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  const BlockKey key = BlockKey::FromParts(0x5EC, 42);
  std::vector<std::byte> bytes(8192, std::byte{0x42});
  PutItem item{key, std::nullopt, bytes};
  auto put = (*client)->Put(std::span<const PutItem>(&item, 1));
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->stored, 1u);

  options.token = "not-a-token";
  auto refused = Client::Connect(options);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnauthenticated);

  options.token = kWriteToken;
  options.tls_ca_file = Path("other-ca.pem");
  auto wrong_ca = Client::Connect(options);
  ASSERT_FALSE(wrong_ca.ok());
  EXPECT_EQ(wrong_ca.status().code(), StatusCode::kUnavailable);
}

// ---- a cluster on etcd ---------------------------------------------------------------------

// Two daemons registered in etcd, both with mutual TLS and tokens: a client that finds them through
// etcd and holds the CA, a client certificate and a token stores blocks across both and reads them
// back; one without a token stores nothing. (etcd itself is plaintext here: docs/SECURITY.md.)
TEST_F(SecurityTest, ClusterOnEtcdWithTlsAndTokensWorksEndToEnd) {
  if (!testing::EtcdProcess::Available()) GTEST_SKIP() << "etcd is not installed (Debian package etcd-server)";
  testing::EtcdProcess etcd;
  ASSERT_TRUE(etcd.ok()) << etcd.error();
  WriteTokens({{kAdminToken, "ops", "admin"}, {kWriteToken, "team-a", "write"}});
  std::vector<std::unique_ptr<DaemonProcess>> daemons;
  for (int i = 0; i < 2; ++i) {
    std::vector<std::string> args = TlsArgs(true);
    args.insert(args.end(), {"--tokens-file", Path("tokens"), "--etcd", etcd.endpoint(), "--cluster", "secure"});
    daemons.push_back(Start(args));
    ASSERT_TRUE(daemons.back()->ok());
  }
  ClientOptions options;
  options.etcd_endpoints = {etcd.endpoint()};
  options.cluster = "secure";
  options.tls_ca_file = Path("ca.pem");
  options.tls_cert_file = Path("client.pem");
  options.tls_key_file = Path("client.key");
  options.token = kWriteToken;
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  ASSERT_TRUE(testing::Eventually([&] { return (*client)->Members().size() == 2; }, std::chrono::seconds(20)));

  constexpr size_t kBlocks = 32;
  std::vector<std::vector<std::byte>> data;
  std::vector<PutItem> items;
  for (size_t i = 0; i < kBlocks; ++i) data.emplace_back(4096, static_cast<std::byte>(i + 1));
  for (size_t i = 0; i < kBlocks; ++i) items.push_back({BlockKey::FromParts(0xC1, i), std::nullopt, data[i]});
  auto put = (*client)->Put(items);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->stored, kBlocks);
  std::set<std::string> owners;
  for (const PutItem& item : items) owners.insert((*client)->OwnerOf(item.key));
  EXPECT_EQ(owners.size(), 2u) << "the blocks should spread over both members";

  std::vector<std::vector<std::byte>> back(kBlocks, std::vector<std::byte>(4096));
  std::vector<GetItem> gets(kBlocks);
  for (size_t i = 0; i < kBlocks; ++i) {
    gets[i].key = items[i].key;
    gets[i].buffer = back[i];
  }
  ASSERT_TRUE((*client)->Get(gets).ok());
  for (size_t i = 0; i < kBlocks; ++i) {
    EXPECT_TRUE(gets[i].found) << "block " << i << ": " << gets[i].status.ToString();
    EXPECT_EQ(back[i], data[i]) << "block " << i;
  }

  options.token.clear();
  auto anonymous = Client::Connect(options);
  if (anonymous.ok()) {
    std::vector<PutItem> more = {{BlockKey::FromParts(0xC2, 1), std::nullopt, data[0]}};
    auto refused = (*anonymous)->Put(more);
    EXPECT_TRUE(!refused.ok() || refused->stored == 0);
  }
}

// ---- the metrics endpoint -------------------------------------------------------------------

// HOST and PORT of a "HOST:PORT".
std::pair<std::string, int> HostPort(const std::string& address) {
  const size_t colon = address.rfind(':');
  return {address.substr(0, colon), std::stoi(address.substr(colon + 1))};
}

// A GET over HTTPS trusting `ca` (and presenting `cert`/`key` when set); nullopt when no answer
// came (a failed handshake).
struct HttpAnswer {
  int status = 0;
  std::string body;
  std::string challenge;  // WWW-Authenticate
};
std::optional<HttpAnswer> HttpsGet(const std::string& address, const std::string& path, const std::string& ca,
                                   const std::string& cert = "", const std::string& key = "",
                                   const std::function<void(httplib::ClientImpl&)>& setup = {}) {
  auto [host, port] = HostPort(address);
  std::unique_ptr<httplib::SSLClient> client = cert.empty() ? std::make_unique<httplib::SSLClient>(host, port)
                                                            : std::make_unique<httplib::SSLClient>(host, port, cert, key);
  client->set_ca_cert_path(ca.c_str());
  client->enable_server_certificate_verification(true);
  client->set_connection_timeout(5);
  client->set_read_timeout(5);
  if (setup) setup(*client);
  auto res = client->Get(path.c_str());
  if (!res) return std::nullopt;
  return HttpAnswer{res->status, res->body, res->get_header_value("WWW-Authenticate")};
}
class MetricsEndpointTest : public SecurityTest {
 protected:
  static constexpr char kUser[] = "prometheus";
  static constexpr char kPassword[] = "scrape-password-0123456789";
  void SetUp() override {
    std::ofstream users(Path("metrics-users"));
    users << "# user  sha256(password)\n" << kUser << "  " << auth::Sha256Hex(kPassword) << "\n";
  }
  std::vector<std::string> MetricsTlsArgs(bool mutual) {
    std::vector<std::string> args = {"--metrics-tls-cert", Path("server.pem"), "--metrics-tls-key", Path("server.key"),
                                     "--metrics-basic-auth-file", Path("metrics-users")};
    if (mutual) args.insert(args.end(), {"--metrics-tls-client-ca", Path("ca.pem")});
    return args;
  }
};

TEST_F(MetricsEndpointTest, HttpsWithBasicAuthRefusesPlaintextStrangersAndWrongPasswords) {
  auto daemon = Start(MetricsTlsArgs(false));
  ASSERT_TRUE(daemon->ok());
  const std::string address = daemon->metrics_address();
  const std::string ca = Path("ca.pem");
  // Plaintext HTTP gets no answer from an HTTPS port.
  {
    auto [host, port] = HostPort(address);
    httplib::Client plain(host, port);
    plain.set_read_timeout(5);
    plain.set_basic_auth(kUser, kPassword);
    auto res = plain.Get("/metrics");
    EXPECT_TRUE(!res || res->status == 400) << "plaintext was answered with " << res->status;
    if (res) {
      EXPECT_EQ(res->body.find("kvstash_"), std::string::npos);
    }
  }
  // A client that does not trust the daemon's CA refuses the handshake.
  EXPECT_FALSE(HttpsGet(address, "/healthz", Path("other-ca.pem")).has_value());
  // /healthz needs no credentials; /metrics does.
  auto health = HttpsGet(address, "/healthz", ca);
  ASSERT_TRUE(health.has_value());
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "ok\n");
  auto none = HttpsGet(address, "/metrics", ca);
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(none->status, 401);
  EXPECT_NE(none->challenge.find("Basic"), std::string::npos) << none->challenge;
  EXPECT_EQ(none->body.find("kvstash_"), std::string::npos);
  for (const auto& [user, password] : std::vector<std::pair<std::string, std::string>>{
           {kUser, "wrong-password"}, {"someone", kPassword}, {kUser, ""}, {"", ""}}) {
    auto wrong = HttpsGet(address, "/metrics", ca, "", "",
                          [&](httplib::ClientImpl& c) { c.set_basic_auth(user.c_str(), password.c_str()); });
    ASSERT_TRUE(wrong.has_value());
    EXPECT_EQ(wrong->status, 401) << user << ":" << password;
    EXPECT_EQ(wrong->body.find("kvstash_"), std::string::npos);
  }
  // A bearer token where the daemon has no tokens: refused, not ignored.
  auto bearer = HttpsGet(address, "/metrics", ca, "", "",
                         [](httplib::ClientImpl& c) { c.set_bearer_token_auth(kAdminToken); });
  ASSERT_TRUE(bearer.has_value());
  EXPECT_EQ(bearer->status, 401);
  auto good = HttpsGet(address, "/metrics", ca, "", "", [](httplib::ClientImpl& c) { c.set_basic_auth(kUser, kPassword); });
  ASSERT_TRUE(good.has_value());
  EXPECT_EQ(good->status, 200);
  EXPECT_NE(good->body.find("kvstash_ops_total"), std::string::npos);
  // The plaintext request above failed the TLS handshake: counted.
  EXPECT_EQ(good->body.find("kvstash_metrics_http_connections_closed_total{reason=\"bad_head\"} 0\n"), std::string::npos);
  EXPECT_NE(good->body.find("kvstash_metrics_http_connections_closed_total{reason=\"bad_head\"} "), std::string::npos)
      << good->body.substr(0, 3000);
}

TEST_F(MetricsEndpointTest, MutualTlsRefusesClientsWithoutACertificateOfTheCa) {
  auto daemon = Start(MetricsTlsArgs(true));
  ASSERT_TRUE(daemon->ok());
  const std::string address = daemon->metrics_address();
  auto with_password = [](httplib::ClientImpl& c) { c.set_basic_auth(kUser, kPassword); };
  EXPECT_FALSE(HttpsGet(address, "/healthz", Path("ca.pem")).has_value()) << "no client certificate";
  EXPECT_FALSE(HttpsGet(address, "/metrics", Path("ca.pem"), Path("other-client.pem"), Path("other-client.key"),
                        with_password)
                   .has_value())
      << "a client certificate of another CA";
  auto good = HttpsGet(address, "/metrics", Path("ca.pem"), Path("client.pem"), Path("client.key"), with_password);
  ASSERT_TRUE(good.has_value());
  EXPECT_EQ(good->status, 200);
  EXPECT_NE(good->body.find("kvstash_ops_total"), std::string::npos);
}

// kvstashd run to its exit (bounded: a daemon that starts is killed after 30 s); its status and output.
std::pair<int, std::string> RunDaemonToExit(const std::string& args) {
  const std::string mode = args.find("--etcd ") == std::string::npos ? " --standalone" : "";
  const std::string cmd = "timeout 30 " KVSTASHD_PATH + mode + " --no-ucx --listen 127.0.0.1:0 --metrics-listen "
                          "127.0.0.1:0 " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string output;
  char chunk[4096];
  while (size_t n = fread(chunk, 1, sizeof(chunk), pipe)) output.append(chunk, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

TEST_F(MetricsEndpointTest, DaemonRefusesHalfMetricsTlsAndUnreadableUsersFiles) {
  auto [half_code, half_out] = RunDaemonToExit("--metrics-tls-cert " + Path("server.pem"));
  EXPECT_EQ(half_code, 2) << half_out;
  EXPECT_NE(half_out.find("metrics_tls_key"), std::string::npos) << half_out;
  auto [missing_code, missing_out] = RunDaemonToExit("--metrics-basic-auth-file " + Path("absent-users"));
  EXPECT_EQ(missing_code, 1) << missing_out;
  EXPECT_NE(missing_out.find("absent-users"), std::string::npos) << missing_out;
  {
    std::ofstream bad(Path("bad-users"));
    bad << kUser << " not-a-hash\n";
  }
  auto [bad_code, bad_out] = RunDaemonToExit("--metrics-basic-auth-file " + Path("bad-users"));
  EXPECT_EQ(bad_code, 1) << bad_out;
  EXPECT_NE(bad_out.find("bad-users:1"), std::string::npos) << bad_out;
}

// With tokens on, /metrics takes an admin's bearer token: none or an unknown one is 401, a
// tenant's (read or write) is 403, and /healthz stays open.
TEST_F(TokenTest, MetricsNeedsAnAdminTokenAndHealthzNone) {
  auto [host, port] = HostPort(daemon_->metrics_address());
  auto get = [&, host = host, port = port](const std::string& path, const std::string& token) {
    httplib::Client http(host, port);
    http.set_read_timeout(5);
    if (!token.empty()) http.set_bearer_token_auth(token.c_str());
    auto res = http.Get(path.c_str());
    EXPECT_TRUE(res) << path;
    return res ? std::make_pair(res->status, res->body) : std::make_pair(0, std::string());
  };
  EXPECT_EQ(get("/metrics", "").first, 401);
  EXPECT_EQ(get("/metrics", "not-a-token").first, 401);
  EXPECT_EQ(get("/metrics", auth::Sha256Hex(kAdminToken)).first, 401);
  auto read = get("/metrics", kReadToken);
  EXPECT_EQ(read.first, 403);
  EXPECT_EQ(read.second.find("kvstash_ops_total"), std::string::npos);
  EXPECT_EQ(get("/metrics", kWriteToken).first, 403);
  EXPECT_EQ(get("/metrics", kOtherTenantToken).first, 403);
  auto admin = get("/metrics", kAdminToken);
  EXPECT_EQ(admin.first, 200);
  EXPECT_NE(admin.second.find("kvstash_ops_total"), std::string::npos);
  auto health = get("/healthz", "");
  EXPECT_EQ(health.first, 200);
  EXPECT_EQ(health.second, "ok\n");
}

// ---- shared namespaces -------------------------------------------------------------------

constexpr char kOutsiderToken[] = "team-c-token-0123456789";

// team-a and team-b joined the shared namespace "public"; team-c did not.
class SharedNamespaceTest : public SecurityTest {
 protected:
  void SetUp() override {
    WriteTokens({{kAdminToken, "ops", "admin"},
                 {kWriteToken, "team-a", "write shared=public"},
                 {kReadToken, "team-a", "read shared=public"},
                 {kOtherTenantToken, "team-b", "write shared=public,docs"},
                 {kOutsiderToken, "team-c", "write"}});
    std::vector<std::string> args = TlsArgs(true);
    args.insert(args.end(), {"--tokens-file", Path("tokens"), "--auth-failure-burst", "1000"});
    daemon_ = Start(args);
    ASSERT_TRUE(daemon_->ok());
    client_ = RawClient(daemon_->grpc_address(), GoodFiles());
  }
  // A call's context with `token` and, when not empty, the shared namespace `ns`.
  static void Prepare(grpc::ClientContext& ctx, const char* token, const std::string& ns) {
    ctx.AddMetadata("authorization", std::string("Bearer ") + token);
    if (!ns.empty()) ctx.AddMetadata(auth::kSharedNamespaceHeader, ns);
  }
  grpc::Status Put(const char* token, const std::string& ns, const std::string& key, const std::string& data,
                   v1::PutResponse* resp) {
    grpc::ClientContext ctx;
    Prepare(ctx, token, ns);
    v1::PutRequest put;
    auto* item = put.add_items();
    item->set_key(key);
    item->set_data(data);
    return client_->Put(&ctx, put, resp);
  }
  // The bytes `token` reads for `key` in `ns`, "" on a miss, or "refused: CODE".
  std::string Get(const char* token, const std::string& ns, const std::string& key) {
    grpc::ClientContext ctx;
    Prepare(ctx, token, ns);
    v1::GetRequest get;
    get.add_keys(key);
    v1::GetResponse resp;
    const grpc::Status st = client_->Get(&ctx, get, &resp);
    if (!st.ok()) return "refused: " + std::to_string(st.error_code());
    if (resp.results_size() != 1 || resp.results(0).outcome() != v1::GetResult::FOUND) return "";
    EXPECT_EQ(resp.results(0).info().key(), key);
    return resp.results(0).data();
  }
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<v1::Store::Stub> client_;
};

TEST_F(SharedNamespaceTest, MembersShareBlocksThereAndNowhereElse) {
  const std::string prompt(4096, 's');
  v1::PutResponse put;
  ASSERT_TRUE(Put(kWriteToken, "public", Key(7), prompt, &put).ok());
  ASSERT_EQ(put.outcomes(0), v1::PutResponse::STORED);
  // Every member reads it there, with any role; a member's second put of it is deduplicated.
  EXPECT_EQ(Get(kOtherTenantToken, "public", Key(7)), prompt);
  EXPECT_EQ(Get(kReadToken, "public", Key(7)), prompt);
  v1::PutResponse again;
  ASSERT_TRUE(Put(kOtherTenantToken, "public", Key(7), prompt, &again).ok());
  EXPECT_EQ(again.outcomes(0), v1::PutResponse::EXISTS);
  // Outside the namespace the key is nobody's: not team-a's own, not team-b's.
  EXPECT_EQ(Get(kWriteToken, "", Key(7)), "");
  EXPECT_EQ(Get(kOtherTenantToken, "", Key(7)), "");
  // Another shared namespace is another key space, even for a member of both.
  EXPECT_EQ(Get(kOtherTenantToken, "docs", Key(7)), "");
  // An admin reaches it by naming the namespace; in the raw key space the key is not there.
  EXPECT_EQ(Get(kAdminToken, "public", Key(7)), prompt);
  EXPECT_EQ(Get(kAdminToken, "", Key(7)), "");
  const std::vector<std::string> keys = Keys(*client_);
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_NE(keys[0], Key(7));
}

TEST_F(SharedNamespaceTest, ATenantThatDidNotJoinIsRefusedAndChangesNothing) {
  v1::PutResponse put;
  ASSERT_TRUE(Put(kWriteToken, "public", Key(8), std::string(4096, 'p'), &put).ok());
  const std::vector<std::string> before = Keys(*client_);
  // team-c names "public": every call is PERMISSION_DENIED, reads and writes alike.
  EXPECT_EQ(Get(kOutsiderToken, "public", Key(8)), "refused: " + std::to_string(grpc::StatusCode::PERMISSION_DENIED));
  v1::PutResponse refused;
  EXPECT_EQ(Put(kOutsiderToken, "public", Key(9), std::string(4096, 'x'), &refused).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  {
    grpc::ClientContext ctx;
    Prepare(ctx, kOutsiderToken, "public");
    v1::LookupRequest lookup;
    lookup.add_keys(Key(8));
    v1::LookupResponse resp;
    EXPECT_EQ(client_->Lookup(&ctx, lookup, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext ctx;
    Prepare(ctx, kOutsiderToken, "public");
    v1::RemoveRequest remove;
    remove.add_keys(Key(8));
    v1::RemoveResponse resp;
    EXPECT_EQ(client_->Remove(&ctx, remove, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  // A name outside the alphabet is refused as such; a member's own space is not "public".
  EXPECT_EQ(Get(kWriteToken, "no/slashes", Key(8)), "refused: " + std::to_string(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_EQ(Get(kOutsiderToken, "", Key(8)), "");
  EXPECT_EQ(Keys(*client_), before);
  EXPECT_EQ(Get(kOtherTenantToken, "public", Key(8)), std::string(4096, 'p'));
}

TEST_F(SharedNamespaceTest, SdkClientsShareThroughTheOption) {
  auto connect = [&](const char* token, const std::string& ns) {
    ClientOptions options;
    options.address = daemon_->grpc_address();
    options.tls_ca_file = Path("ca.pem");
    options.tls_cert_file = Path("client.pem");
    options.tls_key_file = Path("client.key");
    options.token = token;
    options.shared_namespace = ns;
    auto client = Client::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    return client.ok() ? std::move(*client) : nullptr;
  };
  auto writer = connect(kWriteToken, "public");
  auto reader = connect(kOtherTenantToken, "public");
  auto own = connect(kOtherTenantToken, "");
  ASSERT_TRUE(writer && reader && own);
  const BlockKey key = BlockKey::FromParts(0x5A4, 1);
  std::vector<std::byte> block(8192, std::byte{0x7E});
  std::vector<PutItem> one = {{key, std::nullopt, block}};
  ASSERT_TRUE(writer->Put(one).ok());
  std::vector<std::byte> back(block.size());
  GetItem item;
  item.key = key;
  item.buffer = back;
  ASSERT_TRUE(reader->Get(std::span(&item, 1)).ok());
  EXPECT_TRUE(item.found);
  EXPECT_EQ(back, block);
  GetItem mine;
  mine.key = key;
  mine.buffer = back;
  ASSERT_TRUE(own->Get(std::span(&mine, 1)).ok());
  EXPECT_FALSE(mine.found) << "the shared block leaked into team-b's own key space";
}

// ---- etcd over TLS with client certificates --------------------------------------------------

// A real etcd whose client port speaks only TLS with the test CA's server certificate and demands
// a client certificate that CA signed (--client-cert-auth).
class TlsEtcd {
 public:
  TlsEtcd(const std::string& certs, const std::string& data_dir) : data_dir_(data_dir) {
    const int client_port = testing::PickFreePort(), peer_port = testing::PickFreePort();
    endpoint_ = "https://127.0.0.1:" + std::to_string(client_port);
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port);
    std::vector<std::string> args = {"etcd", "--name", "tls", "--data-dir", data_dir,
                                     "--listen-client-urls", endpoint_, "--advertise-client-urls", endpoint_,
                                     "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                                     "--initial-cluster", "tls=" + peer, "--cert-file", certs + "/server.pem",
                                     "--key-file", certs + "/server.key", "--client-cert-auth",
                                     "--trusted-ca-file", certs + "/ca.pem", "--log-level", "error"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    if (posix_spawnp(&pid_, "etcd", &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~TlsEtcd() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    fs::remove_all(data_dir_);
  }
  bool started() const { return pid_ > 0; }
  const std::string& endpoint() const { return endpoint_; }

 private:
  pid_t pid_ = -1;
  std::string endpoint_, data_dir_;
};

TEST_F(SecurityTest, EtcdOverTlsWithClientCertificatesRegistersTheDaemonAndRefusesOthers) {
  if (!testing::EtcdProcess::Available()) GTEST_SKIP() << "etcd is not installed (Debian package etcd-server)";
  TlsEtcd etcd(dir_.string(), Path("etcd-data"));
  ASSERT_TRUE(etcd.started());
  membership::EtcdOptions good{{etcd.endpoint()}, 3000, Path("ca.pem"), Path("client.pem"), Path("client.key")};
  auto admin = membership::EtcdClient::Create(good);
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();
  ASSERT_TRUE(testing::Eventually([&] { return (*admin)->RangePrefix("/").ok(); }, std::chrono::seconds(30)))
      << "etcd over TLS never answered a client with the CA's certificate";

  // Refused: plaintext to the TLS port, no client certificate, one of another CA, and a client
  // that does not trust etcd's CA. None of them reads or writes anything.
  const std::string plain = "http://" + etcd.endpoint().substr(8);
  std::vector<std::pair<std::string, membership::EtcdOptions>> refused = {
      {"plaintext", {{plain}, 3000, "", "", ""}},
      {"no client certificate", {{etcd.endpoint()}, 3000, Path("ca.pem"), "", ""}},
      {"client certificate of another CA", {{etcd.endpoint()}, 3000, Path("ca.pem"), Path("other-client.pem"), Path("other-client.key")}},
      {"etcd's CA not trusted", {{etcd.endpoint()}, 3000, Path("other-ca.pem"), Path("client.pem"), Path("client.key")}},
  };
  for (const auto& [what, options] : refused) {
    auto client = membership::EtcdClient::Create(options);
    ASSERT_TRUE(client.ok()) << what << ": " << client.status().ToString();
    EXPECT_FALSE((*client)->Put("/intruder/" + what, "x").ok()) << what;
    EXPECT_FALSE((*client)->RangePrefix("/").ok()) << what;
  }
  auto everything = (*admin)->RangePrefix("/");
  ASSERT_TRUE(everything.ok());
  EXPECT_TRUE(everything->kvs.empty()) << "a refused client wrote " << everything->kvs.front().key;
  // An https endpoint without a CA is refused before any connection, by name.
  auto no_ca = membership::EtcdClient::Create({{etcd.endpoint()}, 3000, "", "", ""});
  ASSERT_FALSE(no_ca.ok());
  EXPECT_NE(no_ca.status().message().find("--etcd-ca"), std::string::npos) << no_ca.status().ToString();

  // A daemon with the CA and a client certificate registers itself; its record is in etcd.
  auto daemon = Start({"--etcd", etcd.endpoint(), "--cluster", "tls-etcd", "--etcd-ca", Path("ca.pem"), "--etcd-cert",
                       Path("client.pem"), "--etcd-key", Path("client.key")});
  ASSERT_TRUE(daemon->ok()) << daemon->error();
  auto members = (*admin)->RangePrefix("/kvstash/tls-etcd/");
  ASSERT_TRUE(members.ok()) << members.status().ToString();
  bool found = false;
  for (const auto& kv : members->kvs) found = found || kv.value.find(daemon->grpc_address()) != std::string::npos;
  EXPECT_TRUE(found) << "no member record names " << daemon->grpc_address();

  // The SDK follows the member set over TLS with its own client certificate, and stores through it.
  ClientOptions options;
  options.etcd_endpoints = {etcd.endpoint()};
  options.cluster = "tls-etcd";
  options.etcd_tls_ca_file = Path("ca.pem");
  options.etcd_tls_cert_file = Path("client.pem");
  options.etcd_tls_key_file = Path("client.key");
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  ASSERT_TRUE(testing::Eventually([&] { return (*client)->Members().size() == 1; }, std::chrono::seconds(20)));
  std::vector<std::byte> block(4096, std::byte{0x5A});
  std::vector<PutItem> one = {{BlockKey::FromParts(0xE7C, 1), std::nullopt, block}};
  auto put = (*client)->Put(one);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->stored, 1u);
  // Without etcd's CA the SDK refuses the https endpoint by name.
  ClientOptions sdk_no_ca = options;
  sdk_no_ca.etcd_tls_ca_file.clear();
  auto sdk_refused = Client::Connect(sdk_no_ca);
  ASSERT_FALSE(sdk_refused.ok());
  EXPECT_NE(sdk_refused.status().message().find("--etcd-ca"), std::string::npos) << sdk_refused.status().ToString();
  // The CLI: status and drain over TLS to etcd; without a client certificate etcd refuses it.
  const std::string etcd_flags = "--etcd " + etcd.endpoint() + " --cluster tls-etcd --etcd-ca " + Path("ca.pem");
  const std::string cert_flags = " --etcd-cert " + Path("client.pem") + " --etcd-key " + Path("client.key");
  auto [status_code, status_out] = RunCli("", etcd_flags + cert_flags + " status");
  EXPECT_EQ(status_code, 0) << status_out;
  EXPECT_NE(status_out.find(daemon->grpc_address()), std::string::npos) << status_out;
  auto [drain_code, drain_out] = RunCli("", etcd_flags + cert_flags + " drain " + daemon->grpc_address());
  EXPECT_EQ(drain_code, 0) << drain_out;
  auto mark = (*admin)->RangePrefix("/kvstash/tls-etcd/drain/");
  ASSERT_TRUE(mark.ok());
  EXPECT_EQ(mark->kvs.size(), 1u) << "the drain mark was not written over TLS";
  auto [no_cert_code, no_cert_out] = RunCli("", etcd_flags + " drain --undo " + daemon->grpc_address());
  EXPECT_NE(no_cert_code, 0) << no_cert_out;
  mark = (*admin)->RangePrefix("/kvstash/tls-etcd/drain/");
  ASSERT_TRUE(mark.ok());
  EXPECT_EQ(mark->kvs.size(), 1u) << "a CLI without a client certificate changed the drain mark";
  // Without the CA a daemon refuses the https endpoint at start.
  auto [no_ca_code, no_ca_out] = RunDaemonToExit("--etcd " + etcd.endpoint() + " --cluster tls-etcd");
  EXPECT_NE(no_ca_code, 0) << no_ca_out;
  EXPECT_NE(no_ca_out.find("--etcd-ca"), std::string::npos) << no_ca_out;
}

}  // namespace
}  // namespace kvstash
