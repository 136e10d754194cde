// Cluster building blocks without processes: weighted rendezvous hashing, the SDK's member view
// with its join grace period, member records, the etcd gateway's encodings, and the daemon's
// [cluster] configuration.
#include <gtest/gtest.h>

#include <map>

#include "client/cluster_view.h"
#include "common/rendezvous.h"
#include "membership/etcd_client.h"
#include "membership/member_record.h"
#include "server/daemon_config.h"
#include "server/replication/hot_key_tracker.h"

namespace kvstash {
namespace {

BlockKey Key(uint64_t i) { return BlockKey::FromParts(i * 0x9E3779B97F4A7C15ULL, ~i); }

TEST(RendezvousTest, SpreadFollowsWeights) {
  RendezvousRing ring({{"a", 1.0}, {"b", 2.0}, {"c", 1.0}});
  std::map<size_t, size_t> counts;
  const size_t n = 40'000;
  for (uint64_t i = 0; i < n; ++i) ++counts[ring.Owner(Key(i))];
  EXPECT_NEAR(counts[0] / double(n), 0.25, 0.25 * 0.05);
  EXPECT_NEAR(counts[1] / double(n), 0.50, 0.50 * 0.05);
  EXPECT_NEAR(counts[2] / double(n), 0.25, 0.25 * 0.05);
}

TEST(RendezvousTest, JoinMovesOnlyKeysToTheNewMember) {
  RendezvousRing before({{"a", 1}, {"b", 1}});
  RendezvousRing after({{"a", 1}, {"b", 1}, {"c", 1}});
  size_t moved = 0;
  const size_t n = 30'000;
  for (uint64_t i = 0; i < n; ++i) {
    const std::string& was = before.member(before.Owner(Key(i))).id;
    const std::string& now = after.member(after.Owner(Key(i))).id;
    if (was != now) {
      EXPECT_EQ(now, "c");
      ++moved;
    }
  }
  EXPECT_NEAR(moved / double(n), 1.0 / 3, 0.02);
}

TEST(RendezvousTest, OrderStartsWithTheOwnerAndHasNoRepeats) {
  RendezvousRing ring({{"a", 1}, {"b", 3}, {"c", 1}, {"d", 0}});
  for (uint64_t i = 0; i < 100; ++i) {
    auto order = ring.Order(Key(i), 10);
    ASSERT_EQ(order.size(), 3u);  // the zero-weight member is never chosen
    EXPECT_EQ(order[0], ring.Owner(Key(i)));
    EXPECT_NE(order[0], order[1]);
    EXPECT_NE(order[1], order[2]);
  }
}

MemberInfo Member(const std::string& id, double weight = 1, bool draining = false) {
  MemberInfo m;
  m.id = id;
  m.address = id + ":1";
  m.weight = weight;
  m.draining = draining;
  return m;
}

TEST(ClusterViewTest, PreviousOwnerIsASourceDuringTheGracePeriodOnly) {
  using namespace std::chrono_literals;
  client_internal::ClusterView view(1000ms);
  const auto t0 = std::chrono::steady_clock::now();
  view.Update({Member("a"), Member("b")}, t0);
  EXPECT_TRUE(view.Current(t0)->previous.empty());
  view.Update({Member("a"), Member("b"), Member("c")}, t0);
  auto snap = view.Current(t0 + 10ms);
  ASSERT_EQ(snap->previous.size(), 1u);
  size_t with_fallback = 0;
  for (uint64_t i = 0; i < 3000; ++i) {
    auto sources = snap->Sources(Key(i));
    ASSERT_FALSE(sources.empty());
    if (sources.size() == 2) {
      EXPECT_EQ(sources[0], "c:1");  // only keys that moved to the new member fall back
      ++with_fallback;
    }
  }
  EXPECT_GT(with_fallback, 800u);
  EXPECT_TRUE(view.Current(t0 + 1001ms)->previous.empty());
  // An unchanged member set starts no new grace period.
  view.Update({Member("a"), Member("b"), Member("c")}, t0 + 2000ms);
  EXPECT_TRUE(view.Current(t0 + 2001ms)->previous.empty());
}

TEST(ClusterViewTest, AClientStartedAfterAJoinFallsBackToo) {
  using namespace std::chrono_literals;
  client_internal::ClusterView view(30'000ms);
  const uint64_t now_ms = 1'000'000'000;
  MemberInfo a = Member("a"), b = Member("b"), c = Member("c");
  a.started_unix_ms = b.started_unix_ms = now_ms - 3'600'000;
  c.started_unix_ms = now_ms - 1'000;  // joined a second ago
  const auto t0 = std::chrono::steady_clock::now();
  view.Update({a, b, c}, t0, now_ms);
  auto snap = view.Current(t0);
  ASSERT_EQ(snap->previous.size(), 1u);
  size_t moved = 0;
  for (uint64_t i = 0; i < 1000; ++i) {
    auto sources = snap->Sources(Key(i));
    if (sources[0] == "c:1") {
      ASSERT_EQ(sources.size(), 2u);
      ++moved;
    }
  }
  EXPECT_GT(moved, 200u);
  EXPECT_TRUE(view.Current(t0 + 29'001ms)->previous.empty());  // the rest of c's grace period
}

TEST(ClusterViewTest, DrainingMembersOwnNothing) {
  client_internal::ClusterView view(std::chrono::milliseconds(0));
  view.Update({Member("a"), Member("b", 1, /*draining=*/true)});
  auto snap = view.Current();
  EXPECT_EQ(snap->members.size(), 2u);
  for (uint64_t i = 0; i < 200; ++i) EXPECT_EQ(snap->current.Owner(Key(i)), "a:1");
}

TEST(ClusterViewTest, AClientStartedAfterADrainReadsTheDrainedMemberDuringItsGrace) {
  using namespace std::chrono_literals;
  client_internal::ClusterView view(30'000ms);
  const uint64_t now_ms = 1'000'000'000;
  MemberInfo a = Member("a"), b = Member("b", 1, /*draining=*/true), c = Member("c");
  a.started_unix_ms = b.started_unix_ms = c.started_unix_ms = now_ms - 3'600'000;
  b.draining_since_unix_ms = now_ms - 10'000;  // drained 10 s ago
  const auto t0 = std::chrono::steady_clock::now();
  view.Update({a, b, c}, t0, now_ms);  // the first view of a fresh client
  auto snap = view.Current(t0);
  size_t from_b = 0;
  for (uint64_t i = 0; i < 1000; ++i) {
    auto sources = snap->Sources(Key(i));
    ASSERT_FALSE(sources.empty());
    EXPECT_NE(sources[0], "b:1");  // b owns nothing
    if (sources.size() == 2) {
      EXPECT_EQ(sources[1], "b:1");
      ++from_b;
    }
  }
  EXPECT_GT(from_b, 200u);  // about a third of the keys were b's
  EXPECT_TRUE(view.Current(t0 + 20'001ms)->previous.empty());  // the rest of b's grace period
  // A drain older than the grace period, or of unknown time, yields no fallback.
  b.draining_since_unix_ms = now_ms - 31'000;
  client_internal::ClusterView late(30'000ms);
  late.Update({a, b, c}, t0, now_ms);
  EXPECT_TRUE(late.Current(t0)->previous.empty());
  b.draining_since_unix_ms = 0;
  client_internal::ClusterView unknown(30'000ms);
  unknown.Update({a, b, c}, t0, now_ms);
  EXPECT_TRUE(unknown.Current(t0)->previous.empty());
}

TEST(HotKeyTrackerTest, ReportsACrossingOncePerWindow) {
  ManualClock clock;
  server::HotKeyTracker tracker(5, &clock);
  int crossings = 0;
  for (int i = 0; i < 20; ++i) crossings += tracker.Record(Key(1));
  EXPECT_EQ(crossings, 1);
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(tracker.Record(Key(2)));  // under the rate
  clock.AdvanceMs(1'000);  // a new window forgets the counts
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(tracker.Record(Key(1)));
  EXPECT_TRUE(tracker.Record(Key(1)));
}

TEST(MemberRecordTest, JsonRoundTripAndValidation) {
  membership::MemberRecord r;
  r.id = "node-1:7370";
  r.grpc_address = "10.0.0.1:7370";
  r.metrics_address = "10.0.0.1:7371";
  r.ucx_worker_address = std::string("\0\x01\xff binary", 10);
  r.weight = 2.5;
  r.dram_capacity_bytes = 1ULL << 34;
  r.state = membership::MemberState::kDraining;
  auto back = membership::MemberRecordFromJson(membership::ToJson(r));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->id, r.id);
  EXPECT_EQ(back->grpc_address, r.grpc_address);
  EXPECT_EQ(back->ucx_worker_address, r.ucx_worker_address);
  EXPECT_EQ(back->weight, 2.5);
  EXPECT_EQ(back->dram_capacity_bytes, r.dram_capacity_bytes);
  EXPECT_EQ(back->state, membership::MemberState::kDraining);
  EXPECT_FALSE(membership::MemberRecordFromJson("not json").ok());
  EXPECT_FALSE(membership::MemberRecordFromJson(R"({"id":"a","grpc":"h:1","weight":-1})").ok());
  EXPECT_FALSE(membership::MemberRecordFromJson(R"({"id":"a/b","grpc":"h:1"})").ok());
  EXPECT_FALSE(membership::MemberRecordFromJson(R"({"id":"a"})").ok());
  // The drain time travels with a draining record only.
  r.draining_since_unix_ms = 1234;
  EXPECT_EQ(membership::MemberRecordFromJson(membership::ToJson(r))->draining_since_unix_ms, 1234u);
  r.state = membership::MemberState::kServing;
  EXPECT_EQ(membership::MemberRecordFromJson(membership::ToJson(r))->draining_since_unix_ms, 0u);
}

TEST(MemberRecordTest, DrainMarks) {
  EXPECT_EQ(membership::DrainKey("prod", "m1"), "/kvstash/prod/drain/m1");
  EXPECT_EQ(*membership::DrainMarkFromJson(membership::DrainMarkJson(42)), 42u);
  EXPECT_FALSE(membership::DrainMarkFromJson("{}").ok());
  EXPECT_FALSE(membership::DrainMarkFromJson(R"({"since_unix_ms":-1})").ok());
  EXPECT_FALSE(membership::DrainMarkFromJson("[1]").ok());
  // Drain marks are not under the members prefix: a member watch never sees them.
  EXPECT_NE(membership::DrainKey("p", "m").rfind(membership::MembersPrefix("p"), 0), 0u);
}

TEST(EtcdEncodingTest, Base64AndPrefixEnd) {
  for (const std::string& s : std::vector<std::string>{"", "a", "ab", "abc", "/kvstash/x/members/",
                                                       std::string("\0\xff\x10", 3)}) {
    auto back = membership::Base64Decode(membership::Base64Encode(s));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, s);
  }
  EXPECT_EQ(membership::Base64Encode("/k/a"), "L2svYQ==");
  EXPECT_EQ(membership::PrefixRangeEnd("/k/"), "/k0");
  EXPECT_EQ(membership::PrefixRangeEnd(std::string("a\xff", 2)), "b");
  EXPECT_FALSE(membership::EtcdClient::Create({}).ok());
  EXPECT_FALSE(membership::EtcdClient::Create({{"https://h:1"}}).ok());
  EXPECT_FALSE(membership::EtcdClient::Create({{"h"}}).ok());
  EXPECT_TRUE(membership::EtcdClient::Create({{"http://127.0.0.1:2379", "h:2"}}).ok());
}

TEST(ClusterConfigTest, TomlAndFlags) {
  server::DaemonConfig c;
  ASSERT_TRUE(server::ApplyTomlString("[server]\nstandalone = false\n[cluster]\netcd_endpoints = "
                                      "[\"http://e1:2379\", \"e2:2379\"]\n"
                                      "name = \"prod\"\nweight = 2.0\nlease_ttl_s = 5\n",
                                      "t.toml", c)
                  .ok());
  EXPECT_EQ(c.etcd_endpoints.size(), 2u);
  EXPECT_EQ(c.cluster, "prod");
  EXPECT_EQ(c.weight, 2.0);
  EXPECT_EQ(c.lease_ttl_s, 5);
  EXPECT_TRUE(c.Validate().ok());
  server::DaemonConfig bad;
  EXPECT_FALSE(server::ApplyTomlString("[cluster]\nbogus = 1\n", "t.toml", bad).ok());
  bad.standalone = false;
  EXPECT_FALSE(bad.Validate().ok());  // no etcd endpoints

  const char* argv[] = {"kvstashd", "--etcd", "http://a:1,b:2", "--cluster", "c1",
                        "--weight", "3",      "--lease-ttl",    "2"};
  auto parsed = server::ParseCommandLine(9, const_cast<char**>(argv));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_FALSE(parsed->standalone);
  EXPECT_EQ(parsed->etcd_endpoints, (std::vector<std::string>{"http://a:1", "b:2"}));
  EXPECT_EQ(parsed->cluster, "c1");
  const char* advertised[] = {"kvstashd", "--etcd", "http://a:1", "--advertise", "10.0.0.7"};
  auto with_advertise = server::ParseCommandLine(5, const_cast<char**>(advertised));
  ASSERT_TRUE(with_advertise.ok()) << with_advertise.status().ToString();
  EXPECT_EQ(with_advertise->advertise, "10.0.0.7");
  for (const char* host : {"node-1.example", "fe80::1", ""}) {
    server::DaemonConfig ok_host;
    ok_host.advertise = host;
    EXPECT_TRUE(ok_host.Validate().ok()) << host;
  }
  for (const char* host : {"h:1", "a b", "http://h", "[::1]"}) {
    server::DaemonConfig bad_host;
    bad_host.advertise = host;
    EXPECT_FALSE(bad_host.Validate().ok()) << host;
  }
  const char* peers[] = {"kvstashd", "--standalone", "--peers", "h1:1,h2:2", "--replicas", "2"};
  auto with_peers = server::ParseCommandLine(6, const_cast<char**>(peers));
  ASSERT_TRUE(with_peers.ok()) << with_peers.status().ToString();
  EXPECT_EQ(with_peers->peers, (std::vector<std::string>{"h1:1", "h2:2"}));
  EXPECT_EQ(with_peers->replicas, 2u);
  const char* peers_and_etcd[] = {"kvstashd", "--etcd", "a:1", "--peers", "h1:1"};
  EXPECT_FALSE(server::ParseCommandLine(5, const_cast<char**>(peers_and_etcd)).ok());
  const char* both[] = {"kvstashd", "--etcd", "a:1", "--standalone"};
  EXPECT_FALSE(server::ParseCommandLine(4, const_cast<char**>(both)).ok());
}

}  // namespace
}  // namespace kvstash
