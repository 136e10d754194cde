// etcd outages under a live cluster (issue 18): a real etcd and three real kvstashd members on
// 127.0.0.1 (run-time ports). While etcd is down for longer than the lease TTL, members keep
// serving their keys and a running client keeps routing on the last member set it saw; when etcd
// is back — with its data, or empty (a lost etcd) — every member is registered again. Also the
// SDK's outcomes for a member that is dead but still listed: PutOutcome::kUnreachable and Get's
// UNAVAILABLE, both naming it. Waits are bounded polls of observable state.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <functional>
#include <optional>
#include <regex>
#include <thread>

#include "kvstash/client.h"
#include "tests/support/block_bytes.h"
#include "tests/support/daemon_process.h"
#include "tests/support/etcd_process.h"

namespace kvstash {
namespace {

using testing::BytesFor;
using testing::DaemonProcess;
using testing::EtcdProcess;
using Clock = std::chrono::steady_clock;

constexpr int kLeaseTtlS = 2;
constexpr size_t kBlocks = 120;
constexpr size_t kBlockBytes = 4096;

BlockKey Key(uint64_t space, uint64_t i) {
  return BlockKey::FromParts(space * 0x9E3779B97F4A7C15ULL + 3, i * 0xC2B2AE3D27D4EB4FULL + 11);
}

// Polls `done` until it holds or `limit` passes.
bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  const auto give_up = Clock::now() + limit;
  while (Clock::now() < give_up) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling observable state
  }
  return done();
}

// One sample of a /metrics exposition, e.g. Metric(a, R"(kvstash_member_registration{state="registered"})").
std::optional<double> Metric(const std::string& address, const std::string& sample) {
  const size_t colon = address.rfind(':');
  httplib::Client http(address.substr(0, colon), std::stoi(address.substr(colon + 1)));
  http.set_read_timeout(5, 0);
  auto res = http.Get("/metrics");
  if (!res || res->status != 200) return std::nullopt;
  const size_t at = res->body.find("\n" + sample + " ");
  if (at == std::string::npos) return std::nullopt;
  return std::stod(res->body.substr(at + sample.size() + 2));
}

bool InState(const DaemonProcess& d, const std::string& state) {
  return Metric(d.metrics_address(), "kvstash_member_registration{state=\"" + state + "\"}") == 1.0;
}

class ClusterOutageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!EtcdProcess::Available())
      GTEST_SKIP() << "etcd is not installed (Debian package etcd-server): skipping";
    etcd_ = std::make_unique<EtcdProcess>();
    ASSERT_TRUE(etcd_->ok()) << etcd_->error();
  }

  std::unique_ptr<DaemonProcess> StartMember(const std::string& id, int ttl_s = kLeaseTtlS) {
    auto d = std::make_unique<DaemonProcess>(
        KVSTASHD_PATH, std::vector<std::string>{"--etcd", etcd_->endpoint(), "--cluster", "outage", "--lease-ttl",
                                                std::to_string(ttl_s), "--member-id", id, "--dram-capacity", "32MiB",
                                                "--log-level", "info"});
    EXPECT_TRUE(d->ok()) << d->error();
    return d;
  }

  std::unique_ptr<Client> Connect() {
    ClientOptions o;
    o.etcd_endpoints = {etcd_->endpoint()};
    o.cluster = "outage";
    o.timeout_ms = 5'000;
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(*c) : nullptr;
  }

  std::unique_ptr<EtcdProcess> etcd_;
};

size_t PutBlocks(Client& c, uint64_t space, size_t n, PutResult* last = nullptr) {
  std::vector<std::vector<std::byte>> data;
  std::vector<PutItem> items;
  for (size_t i = 0; i < n; ++i) data.push_back(BytesFor(Key(space, i), kBlockBytes));
  for (size_t i = 0; i < n; ++i) items.push_back({Key(space, i), std::nullopt, data[i]});
  auto r = c.Put(items);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (!r.ok()) return 0;
  if (last != nullptr) *last = *r;
  return r->stored + r->existed;
}

struct Tally {
  size_t hits = 0, misses = 0, wrong = 0;
  std::vector<Status> miss_status;
};

Tally GetBlocks(Client& c, uint64_t space, size_t n) {
  Tally t;
  std::vector<std::vector<std::byte>> back(n, std::vector<std::byte>(kBlockBytes));
  std::vector<GetItem> gets(n);
  for (size_t i = 0; i < n; ++i) {
    gets[i].key = Key(space, i);
    gets[i].buffer = back[i];
  }
  const Status st = c.Get(gets);
  EXPECT_TRUE(st.ok()) << st.ToString();
  for (size_t i = 0; i < n; ++i) {
    if (!gets[i].found) {
      ++t.misses;
      t.miss_status.push_back(gets[i].status);
    } else if (back[i] != BytesFor(Key(space, i), kBlockBytes)) {
      ++t.wrong;
    } else {
      ++t.hits;
    }
  }
  return t;
}

TEST_F(ClusterOutageTest, MembersServeAndClientsRouteThroughAnOutageAndALostEtcd) {
  auto a = StartMember("a"), b = StartMember("b"), c = StartMember("c");
  auto client = Connect();
  ASSERT_TRUE(client);
  ASSERT_TRUE(WaitFor([&] { return client->Members().size() == 3; }, std::chrono::seconds(10)));
  ASSERT_EQ(PutBlocks(*client, 1, kBlocks), kBlocks);

  // etcd down for more than twice the lease TTL: every read still hits, new puts are stored.
  etcd_->Stop();
  const auto down_at = Clock::now();
  size_t rounds = 0;
  bool all_saw_it = false;
  while (!all_saw_it || Clock::now() - down_at < std::chrono::seconds(2 * kLeaseTtlS + 1)) {
    const Tally t = GetBlocks(*client, 1, kBlocks);
    ASSERT_EQ(t.hits, kBlocks) << "round " << rounds << ": " << t.misses << " misses, " << t.wrong << " wrong";
    ASSERT_EQ(client->Members().size(), 3u);
    all_saw_it = InState(*a, "etcd_unreachable") && InState(*b, "etcd_unreachable") && InState(*c, "etcd_unreachable");
    ++rounds;
    ASSERT_LT(Clock::now() - down_at, std::chrono::seconds(30)) << "members never noticed etcd was gone";
  }
  ASSERT_EQ(PutBlocks(*client, 2, kBlocks), kBlocks) << "puts during the outage";
  EXPECT_EQ(GetBlocks(*client, 2, kBlocks).hits, kBlocks);
  std::printf("etcd down %.1f s: %zu rounds of %zu gets, all hits\n",
              std::chrono::duration<double>(Clock::now() - down_at).count(), rounds, kBlocks);

  // etcd back with its data: the members are registered again (their leases were kept or are
  // renewed) and a new client sees all of them.
  ASSERT_TRUE(etcd_->Restart()) << etcd_->error();
  const auto back_at = Clock::now();
  for (DaemonProcess* d : {a.get(), b.get(), c.get()})
    ASSERT_TRUE(WaitFor([&] { return InState(*d, "registered"); }, std::chrono::seconds(15)));
  std::printf("registered again %.2f s after etcd came back\n",
              std::chrono::duration<double>(Clock::now() - back_at).count());
  auto fresh = Connect();
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->Members().size(), 3u);
  EXPECT_EQ(GetBlocks(*fresh, 1, kBlocks).hits, kBlocks);

  // A lost etcd (back empty): the members publish their records again, and the running client
  // follows the new etcd.
  ASSERT_TRUE(etcd_->Restart(/*fresh=*/true)) << etcd_->error();
  const auto empty_at = Clock::now();
  auto repopulated = [&] {
    auto probe = Connect();
    return probe && probe->Members().size() == 3;
  };
  ASSERT_TRUE(WaitFor(repopulated, std::chrono::seconds(20)));
  std::printf("an empty etcd held all 3 members again after %.2f s\n",
              std::chrono::duration<double>(Clock::now() - empty_at).count());
  for (DaemonProcess* d : {a.get(), b.get(), c.get()}) {
    EXPECT_GE(Metric(d->metrics_address(), "kvstash_member_registrations_total").value_or(0), 2.0);
  }
  // The running client re-read the members when its watch broke; it may have read the empty etcd
  // before all members were back, and follows their records as they come.
  ASSERT_TRUE(WaitFor([&] { return client->Members().size() == 3; }, std::chrono::seconds(10)));
  auto after = Connect();
  ASSERT_TRUE(after);
  EXPECT_EQ(GetBlocks(*after, 1, kBlocks).hits, kBlocks);
  EXPECT_EQ(GetBlocks(*client, 2, kBlocks).hits, kBlocks);
  c->Stop();  // the running client still follows membership through the new etcd
  EXPECT_TRUE(WaitFor([&] { return client->Members().size() == 2; }, std::chrono::seconds(10)));
}

TEST_F(ClusterOutageTest, ADeadMemberIsNamedByPutAndGet) {
  auto a = StartMember("a", 60), b = StartMember("b", 60);  // b's record outlives it for 60 s
  auto client = Connect();
  ASSERT_TRUE(client);
  ASSERT_TRUE(WaitFor([&] { return client->Members().size() == 2; }, std::chrono::seconds(10)));
  ASSERT_EQ(PutBlocks(*client, 3, 64), 64u);
  ASSERT_EQ(kill(b->pid(), SIGKILL), 0);

  const Tally t = GetBlocks(*client, 3, 64);
  EXPECT_EQ(t.wrong, 0u);
  ASSERT_GT(t.misses, 0u) << "no key of 64 was b's";
  for (const Status& st : t.miss_status) {
    EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.ToString();
    EXPECT_NE(st.message().find("member b at " + b->grpc_address()), std::string::npos) << st.message();
  }
  PutResult put;
  PutBlocks(*client, 4, 64, &put);
  size_t unreachable = 0;
  for (PutOutcome o : put.outcomes) unreachable += o == PutOutcome::kUnreachable;
  EXPECT_GT(unreachable, 0u);
  EXPECT_EQ(put.stored + unreachable, 64u);
  EXPECT_EQ(put.unreachable, std::vector<std::string>{"member b at " + b->grpc_address()});
}

}  // namespace
}  // namespace kvstash
