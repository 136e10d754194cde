// Tokens, roles and the failure budget (common/auth.h, common/authorizer.h, common/failure_limiter.h),
// and which hosts count as loopback (common/tls.h). The daemon-level attacks are
// tests/integration/security_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "common/auth.h"
#include "common/clock.h"
#include "common/tls.h"
#include "common/authorizer.h"
#include "common/failure_limiter.h"
#include "server/security_mode.h"
#include "server/tenant_keys.h"

namespace kvstash {
namespace {

TEST(AuthTest, Sha256MatchesTheStandardVector) {
  EXPECT_EQ(auth::Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(auth::Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(AuthTest, TokenTableFindsOnlyListedTokens) {
  const std::string text = "# comment\n\n" + auth::Sha256Hex("t1") + " team-a write  # trailing\n" +
                           auth::Sha256Hex("t2") + "\tops\tadmin\n";
  auto table = auth::TokenTable::Parse(text, "tokens");
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  EXPECT_EQ(table->size(), 2u);
  auto p = table->Find("t1");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->tenant, "team-a");
  EXPECT_EQ(p->role, auth::Role::kWrite);
  EXPECT_EQ(table->Find("t2")->role, auth::Role::kAdmin);
  EXPECT_FALSE(table->Find("t3"));
  EXPECT_FALSE(table->Find(""));
  EXPECT_FALSE(table->Find(auth::Sha256Hex("t1")));  // the hash is not a token
}

TEST(AuthTest, TokenTableReadsTheSharedNamespacesATenantJoined) {
  const std::string text = auth::Sha256Hex("t1") + " team-a write shared=public,docs.v2\n" +
                           auth::Sha256Hex("t2") + " team-b read\n";
  auto table = auth::TokenTable::Parse(text, "tokens");
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  EXPECT_EQ(table->Find("t1")->shared, (std::vector<std::string>{"public", "docs.v2"}));
  EXPECT_TRUE(table->Find("t2")->shared.empty());
}

TEST(AuthTest, TokenTableRefusesMalformedLinesNamingThem) {
  const std::string h = auth::Sha256Hex("t");
  for (const std::string& bad : std::vector<std::string>{h + " team\n", h + " team read extra\n",
                                 h + " team read shared=a extra\n", h + " team read shared=\n",
                                 h + " team read shared=a,,b\n", h + " team read shared=a/b\n", "abc team read\n",
                                 std::string(64, 'G') + " team read\n", h + " te/am read\n", h + " team root\n",
                                 h + " a read\n" + h + " b write\n"}) {
    auto table = auth::TokenTable::Parse("# first\n" + bad, "f");
    ASSERT_FALSE(table.ok()) << bad;
    EXPECT_EQ(table.status().code(), StatusCode::kInvalidArgument);
    // The last line of `bad` is the wrong one (the comment is line 1).
    const std::string line = "f:" + std::to_string(1 + std::count(bad.begin(), bad.end(), '\n')) + ":";
    EXPECT_NE(table.status().message().find(line), std::string::npos) << table.status().message();
  }
}

TEST(AuthTest, BearerTokenTakesOnlyTheBearerForm) {
  EXPECT_EQ(auth::BearerToken("Bearer abc"), "abc");
  EXPECT_EQ(auth::BearerToken("bearer abc"), "abc");
  EXPECT_FALSE(auth::BearerToken("Basic abc"));
  EXPECT_FALSE(auth::BearerToken("Bearer "));
  EXPECT_FALSE(auth::BearerToken("Bearer a b"));
  EXPECT_FALSE(auth::BearerToken("abc"));
}

TEST(FailureLimiterTest, BudgetIsSpentPerPeerHostAndRefills) {
  ManualClock clock;
  FailureLimiter limiter(&clock, /*burst=*/3, /*refill_per_s=*/1);
  const std::string a = PeerHost("ipv4:10.0.0.5:40000");
  EXPECT_EQ(a, "ipv4:10.0.0.5");
  EXPECT_EQ(PeerHost("ipv6:[::1]:5"), "ipv6:[::1]");
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(limiter.Allowed(a));
    limiter.RecordFailure(a);
  }
  EXPECT_FALSE(limiter.Allowed(a));
  EXPECT_FALSE(limiter.Allowed(PeerHost("ipv4:10.0.0.5:40001")));  // another port, same host
  EXPECT_TRUE(limiter.Allowed("ipv4:10.0.0.6"));                           // another host
  clock.AdvanceMs(999);
  EXPECT_FALSE(limiter.Allowed(a));
  clock.AdvanceMs(1);
  EXPECT_TRUE(limiter.Allowed(a));
}

TEST(FailureLimiterTest, TrackedPeersAreBounded) {
  ManualClock clock;
  FailureLimiter limiter(&clock, 1, 1, /*max_peers=*/2);
  limiter.RecordFailure("p1");
  limiter.RecordFailure("p2");
  // Both tracked peers are spent: new peers share the overflow budget (burst 1).
  EXPECT_TRUE(limiter.Allowed("p3"));
  limiter.RecordFailure("p3");
  EXPECT_FALSE(limiter.Allowed("p4"));
  EXPECT_FALSE(limiter.Allowed("p1"));
  clock.AdvanceMs(1000);  // p1 and p2 are full again, and forgotten for the next new peer
  EXPECT_TRUE(limiter.Allowed("p5"));
}

class AuthorizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() / ("kvstash-auth-" + std::to_string(::getpid()));
    Write(auth::Sha256Hex("w") + " team-a write\n" + auth::Sha256Hex("r") + " team-a read\n");
  }
  void TearDown() override { std::filesystem::remove(path_); }
  void Write(const std::string& text) { std::ofstream(path_) << text; }
  std::filesystem::path path_;
  ManualClock clock_;
};

TEST_F(AuthorizerTest, RolesBoundWhatATokenMayDo) {
  auto authz = auth::Authorizer::Create(path_.string(), {}, &clock_);
  ASSERT_TRUE(authz.ok()) << authz.status().ToString();
  auto& a = **authz;
  EXPECT_EQ(a.Admit("ipv4:1.2.3.4:1", std::nullopt, auth::Role::kRead).status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(a.Admit("ipv4:1.2.3.4:1", "Bearer x", auth::Role::kRead).status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(a.Admit("ipv4:1.2.3.4:1", "Bearer r", auth::Role::kWrite).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(a.Admit("ipv4:1.2.3.4:1", "Bearer w", auth::Role::kAdmin).status().code(), StatusCode::kPermissionDenied);
  auto ok = a.Admit("ipv4:1.2.3.4:1", "Bearer w", auth::Role::kWrite);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->tenant, "team-a");
}

TEST_F(AuthorizerTest, BrokenReloadKeepsTheOldTokens) {
  auto authz = auth::Authorizer::Create(path_.string(), {}, &clock_);
  ASSERT_TRUE(authz.ok());
  auto& a = **authz;
  Write(auth::Sha256Hex("n") + " team-b read\n" + "garbage line here\n");
  EXPECT_FALSE(a.Reload().ok());
  EXPECT_TRUE(a.Admit("ipv4:1.2.3.4:1", "Bearer w", auth::Role::kWrite).ok());
  EXPECT_FALSE(a.Admit("ipv4:1.2.3.4:1", "Bearer n", auth::Role::kRead).ok());
  Write(auth::Sha256Hex("n") + " team-b read\n");
  ASSERT_TRUE(a.Reload().ok());
  EXPECT_TRUE(a.Admit("ipv4:1.2.3.4:1", "Bearer n", auth::Role::kRead).ok());
  EXPECT_FALSE(a.Admit("ipv4:1.2.3.4:1", "Bearer w", auth::Role::kRead).ok());
}

TEST_F(AuthorizerTest, FailuresAreRateLimitedAndAGoodTokenWaitsItOut) {
  auto authz = auth::Authorizer::Create(path_.string(), {2, 1}, &clock_);
  ASSERT_TRUE(authz.ok());
  auto& a = **authz;
  EXPECT_FALSE(a.Admit("ipv4:9.9.9.9:1", "Bearer bad", auth::Role::kRead).ok());
  EXPECT_FALSE(a.Admit("ipv4:9.9.9.9:2", "Bearer bad", auth::Role::kRead).ok());
  auto refused = a.Admit("ipv4:9.9.9.9:3", "Bearer w", auth::Role::kRead);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("too many"), std::string::npos);
  EXPECT_TRUE(a.Admit("ipv4:8.8.8.8:1", "Bearer w", auth::Role::kRead).ok());  // another peer is unaffected
  clock_.AdvanceMs(1000);
  EXPECT_TRUE(a.Admit("ipv4:9.9.9.9:3", "Bearer w", auth::Role::kRead).ok());
}

TEST(TlsTest, LoopbackHosts) {
  for (const char* h : {"127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"}) EXPECT_TRUE(tls::IsLoopbackHost(h)) << h;
  for (const char* h : {"0.0.0.0", "::", "10.0.0.1", "127.example.com", "", "128.0.0.1"}) {
    EXPECT_FALSE(tls::IsLoopbackHost(h)) << h;
  }
}

TEST(TlsTest, CredentialsRefuseHalfOrMissingFiles) {
  EXPECT_FALSE(tls::MakeServerCredentials({"cert.pem", "", "", 0}).ok());
  EXPECT_FALSE(tls::MakeServerCredentials({"/nonexistent/cert.pem", "/nonexistent/key.pem", "", 1}).ok());
  EXPECT_FALSE(tls::MakeChannelCredentials({"", "client.pem", "", ""}).ok());
  EXPECT_TRUE(tls::MakeServerCredentials({}).ok());   // plaintext
  EXPECT_TRUE(tls::MakeChannelCredentials({}).ok());  // plaintext
}

TEST(TenantKeysTest, TenantsGetDistinctStoredKeysAndAnswersMapBack) {
  const std::string key(16, '\x11'), parent(16, '\x22'), unknown(16, '\x33');
  EXPECT_NE(server::TenantStoredKey("a", key), server::TenantStoredKey("b", key));
  EXPECT_NE(server::TenantStoredKey("a", key), key);
  EXPECT_EQ(server::TenantStoredKey("a", key), server::TenantStoredKey("a", key));
  // The separator keeps ("ab", K) and ("a", "b" + K...) apart.
  EXPECT_NE(server::TenantStoredKey("ab", key), server::TenantStoredKey("a", "b" + key.substr(1)));

  server::TenantKeys tenant("a");
  std::string k = key, p = parent;
  tenant.ToStored(k);
  tenant.ToStored(p);
  EXPECT_EQ(k, server::TenantStoredKey("a", key));
  v1::BlockInfo info;
  info.set_key(k);
  info.set_parent(p);
  tenant.ToClient(info);
  EXPECT_EQ(info.key(), key);
  EXPECT_EQ(info.parent(), parent);
  info.set_parent(server::TenantStoredKey("a", unknown));  // a parent the request did not name
  tenant.ToClient(info);
  EXPECT_TRUE(info.parent().empty());

  // Malformed keys stay as they are, so validation refuses them as it would without tenants.
  std::string zero(16, '\0'), short_key(15, 'x');
  tenant.ToStored(zero);
  tenant.ToStored(short_key);
  EXPECT_EQ(zero, std::string(16, '\0'));
  EXPECT_EQ(short_key, std::string(15, 'x'));
}

TEST(SecurityModeTest, WarnsLoudlyOnlyOffLoopback) {
  server::DaemonConfig config;
  config.listen = "0.0.0.0:7370";
  const auto open = server::SecurityWarnings(config, "0.0.0.0");
  ASSERT_EQ(open.size(), 2u);
  EXPECT_NE(open[0].find("PLAINTEXT"), std::string::npos);
  EXPECT_NE(open[1].find("WITHOUT tokens"), std::string::npos);
  EXPECT_TRUE(server::SecurityWarnings(config, "127.0.0.1").empty());
  config.tokens_file = "tokens";
  const auto tokens_only = server::SecurityWarnings(config, "10.0.0.1");
  ASSERT_EQ(tokens_only.size(), 1u);
  EXPECT_NE(tokens_only[0].find("tokens included"), std::string::npos);
  config.tls_cert = "server.pem";
  config.tls_key = "server.key";
  EXPECT_TRUE(server::SecurityWarnings(config, "10.0.0.1").empty());
  EXPECT_EQ(server::DescribeSecurity(config), "TLS, bearer tokens from tokens");
}

}  // namespace
}  // namespace kvstash
