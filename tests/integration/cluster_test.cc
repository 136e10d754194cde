// A cluster end to end: one real etcd and several real kvstashd processes on 127.0.0.1 (run-time
// ports, temporary data directories), clients that find the members through etcd by themselves,
// weighted sharding, members leaving (gracefully and by kill -9) under load, and a member joining
// without emptying the cache. Waits are bounded polls of observable state, never fixed sleeps.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "kvstash/client.h"
#include "tests/support/block_bytes.h"
#include "tests/support/daemon_process.h"
#include "tests/support/etcd_process.h"

namespace kvstash {
namespace {

using testing::DaemonProcess;
using testing::EtcdProcess;
using Clock = std::chrono::steady_clock;

constexpr int kLeaseTtlS = 2;

BlockKey Key(uint64_t space, uint64_t i) {
  return BlockKey::FromParts(space * 0x9E3779B97F4A7C15ULL + 1, i * 0xC2B2AE3D27D4EB4FULL + 7);
}

using testing::BytesFor;

// Polls `done` until it holds or `limit` passes; returns how long it took (or nullopt).
std::optional<std::chrono::milliseconds> WaitFor(const std::function<bool()>& done,
                                                 std::chrono::milliseconds limit) {
  const auto start = Clock::now();
  while (Clock::now() - start < limit) {
    if (done()) return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling observable state
  }
  return std::nullopt;
}

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!EtcdProcess::Available())
      GTEST_SKIP() << "etcd is not installed (Debian package etcd-server): skipping";
    etcd_ = std::make_unique<EtcdProcess>();
    ASSERT_TRUE(etcd_->ok()) << etcd_->error();
  }

  std::unique_ptr<DaemonProcess> StartDaemon(double weight = 1.0,
                                             const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"--etcd",   etcd_->endpoint(),      "--cluster",
                                     "test",     "--lease-ttl",          std::to_string(kLeaseTtlS),
                                     "--weight", std::to_string(weight), "--dram-capacity",
                                     "64MiB"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto d = std::make_unique<DaemonProcess>(KVSTASHD_PATH, args);
    EXPECT_TRUE(d->ok()) << d->error();
    return d;
  }

  ClientOptions Options() const {
    ClientOptions o;
    o.etcd_endpoints = {etcd_->endpoint()};
    o.cluster = "test";
    o.timeout_ms = 5'000;
    return o;
  }

  std::unique_ptr<Client> Connect(const ClientOptions& o) {
    auto c = Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(*c) : nullptr;
  }

  static bool HasMembers(const Client& c, size_t n) { return c.Members().size() == n; }

  std::unique_ptr<EtcdProcess> etcd_;
};

// Puts `n` blocks of `size` bytes from key space `space`; returns how many were stored.
size_t PutBlocks(Client& c, uint64_t space, size_t n, size_t size) {
  size_t stored = 0;
  for (size_t begin = 0; begin < n; begin += 256) {
    std::vector<std::vector<std::byte>> data;
    std::vector<PutItem> items;
    for (size_t i = begin; i < std::min(n, begin + 256); ++i)
      data.push_back(BytesFor(Key(space, i), size));
    for (size_t i = begin; i < std::min(n, begin + 256); ++i)
      items.push_back({Key(space, i), std::nullopt, data[i - begin]});
    auto r = c.Put(items);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (r.ok()) stored += r->stored + r->existed;
  }
  return stored;
}

struct GetTally {
  size_t hits = 0, misses = 0, wrong = 0, errors = 0;
  double HitRatio() const { return hits + misses == 0 ? 0 : double(hits) / double(hits + misses); }
};

GetTally GetBlocks(Client& c, uint64_t space, size_t n, size_t size) {
  GetTally t;
  for (size_t begin = 0; begin < n; begin += 256) {
    const size_t end = std::min(n, begin + 256);
    std::vector<std::vector<std::byte>> back(end - begin, std::vector<std::byte>(size));
    std::vector<GetItem> gets(end - begin);
    for (size_t i = begin; i < end; ++i) {
      gets[i - begin].key = Key(space, i);
      gets[i - begin].buffer = back[i - begin];
    }
    if (!c.Get(gets).ok()) {
      ++t.errors;
      continue;
    }
    for (size_t i = begin; i < end; ++i) {
      if (!gets[i - begin].found) {
        ++t.misses;
        continue;
      }
      ++t.hits;
      if (back[i - begin] != BytesFor(Key(space, i), size)) ++t.wrong;
    }
  }
  return t;
}

TEST_F(ClusterTest, MembersFoundThroughEtcdSpreadByWeightAndLeaveWithTheirLeases) {
  const double weights[3] = {1.0, 2.0, 1.0};
  std::vector<std::unique_ptr<DaemonProcess>> daemons;
  for (double w : weights) daemons.push_back(StartDaemon(w));
  auto client = Connect(Options());
  ASSERT_TRUE(client);
  ASSERT_TRUE(WaitFor([&] { return HasMembers(*client, 3); }, std::chrono::seconds(5)))
      << "the client saw " << client->Members().size() << " members";

  const size_t n = 6000;
  ASSERT_EQ(PutBlocks(*client, 1, n, 256), n);
  // Each daemon holds its weight's share of the keys, within 10%.
  std::vector<MemberStats> stats = client->ClusterStats();
  ASSERT_EQ(stats.size(), 3u);
  size_t total = 0;
  for (const MemberStats& m : stats) {
    ASSERT_TRUE(m.reachable) << m.error;
    uint64_t blocks = 0;
    for (const TierStats& t : m.stats.tiers) blocks += t.blocks;
    const double share = double(blocks) / double(n), want = m.member.weight / 4.0;
    EXPECT_NEAR(share, want, want * 0.10) << m.member.id << " holds " << blocks << " of " << n;
    total += blocks;
  }
  EXPECT_EQ(total, n);
  GetTally all = GetBlocks(*client, 1, n, 256);
  EXPECT_EQ(all.hits, n);
  EXPECT_EQ(all.wrong + all.errors, 0u);

  // A graceful stop revokes the lease: the member is gone at once.
  ASSERT_EQ(daemons[0]->Stop(), 0);
  auto gone = WaitFor([&] { return HasMembers(*client, 2); }, std::chrono::seconds(2));
  ASSERT_TRUE(gone) << "a stopped member stayed in the member set";
  // kill -9: the member disappears when its lease runs out, within the TTL.
  const auto killed_at = Clock::now();
  kill(daemons[1]->pid(), SIGKILL);
  auto expired =
      WaitFor([&] { return HasMembers(*client, 1); }, std::chrono::seconds(kLeaseTtlS + 3));
  ASSERT_TRUE(expired) << "a killed member was never dropped";
  const auto dropped_after =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - killed_at);
  EXPECT_LE(dropped_after.count(), kLeaseTtlS * 1000 + 1500)
      << "dropped after " << dropped_after.count() << " ms";
  std::printf("[ figures  ] killed member dropped after %lld ms (lease TTL %d s)\n",
              static_cast<long long>(dropped_after.count()), kLeaseTtlS);
  // The survivor keeps its lease alive past the TTL, and its keys are still served; the others' are
  // misses.
  EXPECT_EQ(client->Members().front().address, daemons[2]->grpc_address());
  GetTally after = GetBlocks(*client, 1, n, 256);
  EXPECT_EQ(after.errors + after.wrong, 0u);
  EXPECT_NEAR(after.HitRatio(), 0.25, 0.025);
}

TEST_F(ClusterTest, KillNineUnderLoadGivesMissesNeverErrorsOrWrongBytes) {
  std::vector<std::unique_ptr<DaemonProcess>> daemons;
  for (int i = 0; i < 3; ++i) daemons.push_back(StartDaemon());
  constexpr int kClients = 4;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(Connect(Options()));
    ASSERT_TRUE(clients.back());
    ASSERT_TRUE(WaitFor([&] { return HasMembers(*clients.back(), 3); }, std::chrono::seconds(5)));
  }
  std::atomic<bool> stop{false};
  std::atomic<size_t> rounds{0}, errors{0}, wrong{0}, hits{0}, misses{0}, put_failed{0};
  std::vector<std::string> first_error(kClients);
  auto load = [&](int c) {
    Client& client = *clients[c];
    constexpr size_t kChain = 8, kSize = 4096;
    for (uint64_t round = 0; !stop.load(); ++round) {
      // Put a chain, then read back this one and an older one.
      std::vector<BlockKey> chain;
      std::vector<std::vector<std::byte>> data;
      for (size_t i = 0; i < kChain; ++i) chain.push_back(Key(100 + c, round * kChain + i));
      for (const auto& k : chain) data.push_back(BytesFor(k, kSize));
      std::vector<std::span<const std::byte>> spans(data.begin(), data.end());
      auto put = client.PutChain(chain, spans);
      if (!put.ok()) {
        if (errors++ == 0) first_error[c] = put.status().ToString();
        continue;
      }
      put_failed += put->failed;
      for (uint64_t r : {round, round / 2}) {
        std::vector<BlockKey> keys;
        for (size_t i = 0; i < kChain; ++i) keys.push_back(Key(100 + c, r * kChain + i));
        auto look = client.Lookup(keys, 0);
        if (!look.ok()) {
          if (errors++ == 0) first_error[c] = look.status().ToString();
          continue;
        }
        std::vector<std::vector<std::byte>> back(kChain, std::vector<std::byte>(kSize));
        std::vector<GetItem> gets(kChain);
        for (size_t i = 0; i < kChain; ++i) {
          gets[i].key = keys[i];
          gets[i].buffer = back[i];
        }
        if (Status st = client.Get(gets); !st.ok()) {
          if (errors++ == 0) first_error[c] = st.ToString();
          continue;
        }
        for (size_t i = 0; i < kChain; ++i) {
          if (!gets[i].found) {
            ++misses;
            continue;
          }
          ++hits;
          if (back[i] != BytesFor(keys[i], kSize)) ++wrong;
        }
      }
      ++rounds;
    }
  };
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) threads.emplace_back(load, c);
  ASSERT_TRUE(WaitFor([&] { return rounds.load() >= 200; }, std::chrono::seconds(30)));
  const size_t misses_before = misses.load();
  const auto killed_at = Clock::now();
  kill(daemons[1]->pid(), SIGKILL);
  auto dropped = WaitFor(
      [&] {
        for (auto& c : clients) {
          if (!HasMembers(*c, 2)) return false;
        }
        return true;
      },
      std::chrono::seconds(kLeaseTtlS + 3));
  const auto drop_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - killed_at).count();
  // The load goes on after the drop.
  const size_t rounds_at_drop = rounds.load();
  const bool went_on =
      WaitFor([&] { return rounds.load() >= rounds_at_drop + 200; }, std::chrono::seconds(30))
          .has_value();
  stop = true;
  for (auto& t : threads) t.join();
  ASSERT_TRUE(dropped) << "the killed member was not dropped";
  EXPECT_LE(drop_ms, kLeaseTtlS * 1000 + 1500);
  EXPECT_TRUE(went_on);
  for (int c = 0; c < kClients; ++c) EXPECT_EQ(first_error[c], "") << "client " << c;
  EXPECT_EQ(errors.load(), 0u);
  EXPECT_EQ(wrong.load(), 0u);
  EXPECT_EQ(misses_before, 0u);
  EXPECT_GT(misses.load(), 0u);  // the killed member's keys
  std::printf(
      "[ figures  ] %zu rounds, %zu hits, %zu misses (%zu before the kill), %zu puts refused, "
      "0 errors; member dropped %lld ms after kill -9\n",
      rounds.load(), hits.load(), misses.load(), misses_before, put_failed.load(),
      static_cast<long long>(drop_ms));
}

TEST_F(ClusterTest, AJoinKeepsTheHitRatio) {
  std::vector<std::unique_ptr<DaemonProcess>> daemons;
  for (int i = 0; i < 2; ++i) daemons.push_back(StartDaemon());
  auto client = Connect(Options());
  ASSERT_TRUE(client);
  ASSERT_TRUE(WaitFor([&] { return HasMembers(*client, 2); }, std::chrono::seconds(5)));
  const size_t n = 3000;
  ASSERT_EQ(PutBlocks(*client, 7, n, 1024), n);
  const GetTally before = GetBlocks(*client, 7, n, 1024);

  // Steady put/get load from two other clients across the join.
  std::atomic<bool> stop_load{false};
  std::atomic<size_t> load_rounds{0}, load_errors{0}, load_wrong{0};
  std::vector<std::thread> load;
  for (int c = 0; c < 2; ++c) {
    load.emplace_back([&, c] {
      auto lc = Client::Connect(Options());
      if (!lc.ok()) {
        ++load_errors;
        return;
      }
      for (uint64_t r = 0; !stop_load.load(); ++r) {
        const uint64_t space = 200 + static_cast<uint64_t>(c);
        if (PutBlocks(**lc, space, 64, 2048) != 64) ++load_errors;
        GetTally t = GetBlocks(**lc, space, 64, 2048);
        load_errors += t.errors;
        load_wrong += t.wrong;
        ++load_rounds;
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return load_rounds.load() >= 4; }, std::chrono::seconds(20)));

  daemons.push_back(StartDaemon());
  ASSERT_TRUE(WaitFor([&] { return HasMembers(*client, 3); }, std::chrono::seconds(5)));
  // Without the grace period a third of the keys would be lost to the move.
  ClientOptions no_grace = Options();
  no_grace.join_grace_ms = 0;
  auto plain = Connect(no_grace);
  ASSERT_TRUE(plain);
  const GetTally plain_after = GetBlocks(*plain, 7, n, 1024);
  const GetTally after = GetBlocks(*client, 7, n, 1024);
  // A client that starts after the join falls back as well (by the member's join time).
  auto late = Connect(Options());
  ASSERT_TRUE(late);
  const GetTally late_after = GetBlocks(*late, 7, n, 1024);
  // The reads with fallback moved the blocks they found at the previous owner to the new one:
  // once the grace period is over they are still hits.
  const GetTally after_pull = GetBlocks(*plain, 7, n, 1024);
  stop_load = true;
  for (auto& t : load) t.join();
  std::printf(
      "[ figures  ] hit ratio before join %.3f, right after %.3f (client started later: %.3f; "
      "without grace period: %.3f, and %.3f once readers pulled the moved blocks); %zu rounds of "
      "put/get load from 2 other clients across the join\n",
      before.HitRatio(), after.HitRatio(), late_after.HitRatio(), plain_after.HitRatio(),
      after_pull.HitRatio(), load_rounds.load());
  EXPECT_GT(load_rounds.load(), 4u);
  EXPECT_EQ(load_errors.load(), 0u) << "puts refused or gets failed across the join";
  EXPECT_EQ(load_wrong.load(), 0u) << "wrong bytes read across the join";
  EXPECT_EQ(before.HitRatio(), 1.0);
  EXPECT_GE(after.HitRatio(), before.HitRatio() - 0.05);
  EXPECT_GE(late_after.HitRatio(), before.HitRatio() - 0.05);
  EXPECT_LT(plain_after.HitRatio(), 0.8);
  EXPECT_EQ(after_pull.hits, n);
  EXPECT_EQ(after.wrong + after.errors + late_after.wrong + late_after.errors, 0u);
  // New puts go to the new owner: its share of fresh keys is about a third.
  ASSERT_EQ(PutBlocks(*client, 8, 900, 512), 900u);
  auto owned = client->ClusterStats();
  bool newcomer_holds_blocks = false;
  for (const auto& m : owned) {
    if (m.member.address != daemons[2]->grpc_address()) continue;
    for (const auto& t : m.stats.tiers)
      newcomer_holds_blocks = newcomer_holds_blocks || t.blocks > 200;
  }
  EXPECT_TRUE(newcomer_holds_blocks);
}

// Runs a shell command; returns its exit code and stdout.
std::pair<int, std::string> RunCommand(const std::string& command) {
  std::string out;
  FILE* p = popen((command + " 2>/dev/null").c_str(), "r");
  if (p == nullptr) return {-1, ""};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// Runs the kvstash CLI.
std::pair<int, std::string> RunCli(const std::string& args) {
  return RunCommand(std::string(KVSTASH_CLI_PATH) + " " + args);
}

TEST_F(ClusterTest, CliShowsTheClusterAndDrainsAMember) {
  std::vector<std::unique_ptr<DaemonProcess>> daemons;
  for (int i = 0; i < 3; ++i) daemons.push_back(StartDaemon());
  auto client = Connect(Options());
  ASSERT_TRUE(client);
  ASSERT_TRUE(WaitFor([&] { return HasMembers(*client, 3); }, std::chrono::seconds(5)));
  ASSERT_EQ(PutBlocks(*client, 9, 600, 256), 600u);
  const std::string cluster_args = "--etcd " + etcd_->endpoint() + " --cluster test ";
  auto [rc, out] = RunCli(cluster_args + "status --json");
  ASSERT_EQ(rc, 0) << out;
  const nlohmann::json doc = nlohmann::json::parse(out, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << out;
  EXPECT_EQ(doc["reachable_members"], 3);
  EXPECT_EQ(doc["members"].size(), 3u);
  EXPECT_EQ(doc["tiers"][0]["blocks"], 600);  // the cluster's total
  auto [table_rc, table] = RunCli(cluster_args + "status");
  EXPECT_EQ(table_rc, 0);
  EXPECT_NE(table.find(daemons[0]->grpc_address()), std::string::npos) << table;

  // Drain one member: clients stop routing new keys to it, its keys stay readable in the grace
  // period.
  const std::string drained = client->Members()[0].id;
  auto [drain_rc, drain_out] = RunCli(cluster_args + "drain " + drained);
  ASSERT_EQ(drain_rc, 0) << drain_out;
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const auto& m : client->Members()) {
          if (m.id == drained) return m.draining;
        }
        return false;
      },
      std::chrono::seconds(5)));
  for (uint64_t i = 0; i < 300; ++i) EXPECT_NE(client->OwnerOf(Key(10, i)), drained);
  GetTally t = GetBlocks(*client, 9, 600, 256);
  EXPECT_EQ(t.hits, 600u);
  EXPECT_EQ(t.errors + t.wrong, 0u);
  EXPECT_EQ(RunCli(cluster_args + "drain --undo " + drained).first, 0);
  EXPECT_EQ(RunCli(cluster_args + "drain no-such-member").first, 1);
  EXPECT_EQ(RunCli("drain " + drained).first, 2);  // no etcd given
}

// A key read faster than --hot-rate at its owner is copied to the next member in its rendezvous
// order; clients learn it from lookups and spread their reads over both copies.
TEST_F(ClusterTest, HotBlocksAreCopiedAndReadsSpread) {
  std::vector<std::unique_ptr<DaemonProcess>> daemons;
  for (int i = 0; i < 3; ++i)
    daemons.push_back(StartDaemon(1.0, {"--replicas", "2", "--hot-rate", "20"}));
  auto client = Connect(Options());
  ASSERT_TRUE(client);
  ASSERT_TRUE(WaitFor([&] { return HasMembers(*client, 3); }, std::chrono::seconds(5)));
  ASSERT_EQ(PutBlocks(*client, 12, 20, 4096), 20u);
  const BlockKey hot = Key(12, 0);
  const std::vector<BlockKey> chain = {hot};
  auto copied = WaitFor(
      [&] {
        for (int i = 0; i < 25; ++i) {
          auto r = client->Lookup(chain, 0);
          if (r.ok() && r->hit_blocks == 1 && r->blocks[0].replicas > 0) return true;
        }
        return false;
      },
      std::chrono::seconds(10));
  ASSERT_TRUE(copied) << "the hot block was never reported as replicated";
  auto stat = client->Stat(chain);
  ASSERT_TRUE(stat.ok() && (*stat)[0]);
  EXPECT_EQ((*stat)[0]->replicas, 1u);
  EXPECT_EQ((*stat)[0]->member, [&] {
    for (const auto& m : client->Members())
      if (m.id == client->OwnerOf(hot)) return m.address;
    return std::string();
  }());
  // 21 blocks in the cluster now: the copy is an ordinary block on the next member.
  uint64_t total = 0;
  std::map<std::string, uint64_t> get_hits_before;
  for (const auto& m : client->ClusterStats()) {
    for (const auto& t : m.stats.tiers) total += t.blocks;
    get_hits_before[m.member.address] = m.stats.get_hits;
  }
  EXPECT_EQ(total, 21u);
  // Reads of the hot block land on both copies, with the right bytes.
  size_t wrong = 0;
  for (int i = 0; i < 200; ++i) {
    std::vector<std::byte> back(4096);
    GetItem item;
    item.key = hot;
    item.buffer = back;
    ASSERT_TRUE(client->Get(std::span(&item, 1)).ok());
    ASSERT_TRUE(item.found);
    wrong += back != BytesFor(hot, 4096);
  }
  EXPECT_EQ(wrong, 0u);
  size_t serving = 0;
  for (const auto& m : client->ClusterStats()) {
    if (m.stats.get_hits - get_hits_before[m.member.address] >= 40) ++serving;
  }
  EXPECT_EQ(serving, 2u) << "reads of a replicated block did not spread over its two copies";
  // Visible in the metrics and in `kvstash stat`.
  auto [rc, metrics] = RunCommand("curl -sf http://" + [&] {
    for (auto& d : daemons)
      if (d->grpc_address() == (*stat)[0]->member) return d->metrics_address();
    return std::string();
  }() + "/metrics");
  EXPECT_NE(metrics.find("kvstash_replica_copies_total{result=\"stored\"} 1"), std::string::npos)
      << metrics;
  auto [stat_rc, stat_out] =
      RunCli("--etcd " + etcd_->endpoint() + " --cluster test stat " + hot.ToHex() + " --json");
  EXPECT_EQ(stat_rc, 0);
  EXPECT_NE(stat_out.find("\"replicas\": 1"), std::string::npos) << stat_out;
}

// A real Prometheus server scrapes every daemon through file-based service discovery (as
// deploy/prometheus/prometheus.yml does); PromQL over its HTTP API sums the cluster's blocks.
TEST_F(ClusterTest, PrometheusScrapesEveryDaemon) {
  if (std::system("prometheus --version >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "prometheus is not installed (Debian package prometheus): skipping";
  }
  std::vector<std::unique_ptr<DaemonProcess>> daemons;
  for (int i = 0; i < 3; ++i) daemons.push_back(StartDaemon());
  auto client = Connect(Options());
  ASSERT_TRUE(client);
  ASSERT_TRUE(WaitFor([&] { return HasMembers(*client, 3); }, std::chrono::seconds(5)));
  const size_t n = 1234;
  ASSERT_EQ(PutBlocks(*client, 11, n, 300), n);

  char tmpl[] = "/tmp/kvstash-prom-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  {
    std::ofstream targets(dir + "/kvstashd-test.json");
    targets << "[{\"targets\": [";
    for (size_t i = 0; i < daemons.size(); ++i)
      targets << (i ? "," : "") << '"' << daemons[i]->metrics_address() << '"';
    targets << "]}]\n";
    std::ofstream config(dir + "/prometheus.yml");
    config << "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: kvstashd\n    "
              "file_sd_configs:\n"
              "      - files: ['"
           << dir << "/kvstashd-*.json']\n        refresh_interval: 1s\n";
  }
  const int port = testing::PickFreePort();
  ASSERT_NE(port, 0);
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  pid_t prom = fork();
  ASSERT_GE(prom, 0);
  if (prom == 0) {
    const std::string cfg = "--config.file=" + dir + "/prometheus.yml",
                      db = "--storage.tsdb.path=" + dir + "/data",
                      web = "--web.listen-address=" + listen;
    freopen((dir + "/prometheus.log").c_str(), "w", stderr);
    execlp("prometheus", "prometheus", cfg.c_str(), db.c_str(), web.c_str(),
           static_cast<char*>(nullptr));
    _exit(127);
  }
  // PromQL through the HTTP API until every daemon was scraped with the blocks put.
  std::string last;
  auto agreed = WaitFor(
      [&] {
        auto [rc, out] = RunCommand(
            "curl -sf 'http://" + listen +
            "/api/v1/"
            "query?query=sum(kvstash_tier_blocks)%20and%20on()%20(count(up%3D%3D1)%3D%3D3)'");
        last = out;
        const nlohmann::json doc = nlohmann::json::parse(out, nullptr, false);
        if (rc != 0 || doc.is_discarded() || doc.value("status", "") != "success") return false;
        const auto& result = doc["data"]["result"];
        return result.size() == 1 && result[0]["value"][1] == std::to_string(n);
      },
      std::chrono::seconds(60));
  kill(prom, SIGTERM);
  waitpid(prom, nullptr, 0);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  EXPECT_TRUE(agreed) << "sum(kvstash_tier_blocks) never reached " << n
                      << "; last answer: " << last;
}

TEST(StaticPeersTest, AFixedPeerListShardsWithoutEtcd) {
  DaemonProcess a(KVSTASHD_PATH, {"--dram-capacity", "64MiB"}),
      b(KVSTASHD_PATH, {"--dram-capacity", "64MiB"});
  ASSERT_TRUE(a.ok() && b.ok());
  ClientOptions o;
  o.peers = {a.grpc_address(), b.grpc_address()};
  o.timeout_ms = 5'000;
  auto client = Client::Connect(o);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  const size_t n = 1000;
  ASSERT_EQ(PutBlocks(**client, 3, n, 128), n);
  auto stats = (*client)->ClusterStats();
  ASSERT_EQ(stats.size(), 2u);
  for (const auto& m : stats) {
    ASSERT_TRUE(m.reachable);
    EXPECT_NEAR(double(m.stats.tiers.at(0).blocks), n / 2.0, n * 0.05);
  }
  auto total = (*client)->Stats();
  ASSERT_TRUE(total.ok());
  EXPECT_EQ(total->tiers.at(0).blocks, n);
  auto page = (*client)->List(std::nullopt, 100);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->blocks.size(), 100u);
  EXPECT_TRUE(std::is_sorted(page->blocks.begin(), page->blocks.end(),
                             [](const BlockInfo& x, const BlockInfo& y) { return x.key < y.key; }));
  // One peer down: its keys are misses, the call still succeeds.
  kill(b.pid(), SIGKILL);
  GetTally t = GetBlocks(**client, 3, n, 128);
  EXPECT_EQ(t.errors + t.wrong, 0u);
  EXPECT_NEAR(t.HitRatio(), 0.5, 0.05);
  auto look = (*client)->Lookup(std::vector<BlockKey>{Key(3, 0), Key(3, 1)}, 0);
  EXPECT_TRUE(look.ok());
}

// Standalone daemons given the same --peers list copy hot blocks to each other without etcd.
TEST(StaticPeersTest, HotBlocksAreCopiedWithoutEtcd) {
  const int p1 = testing::PickFreePort(), p2 = testing::PickFreePort();
  ASSERT_TRUE(p1 != 0 && p2 != 0 && p1 != p2);
  const std::string a1 = "127.0.0.1:" + std::to_string(p1), a2 = "127.0.0.1:" + std::to_string(p2);
  const std::vector<std::string> common = {"--dram-capacity", "64MiB", "--peers",    a1 + "," + a2,
                                           "--replicas",      "2",     "--hot-rate", "20"};
  auto args = [&](const std::string& listen) {
    std::vector<std::string> v = {"--listen", listen};
    v.insert(v.end(), common.begin(), common.end());
    return v;
  };
  DaemonProcess a(KVSTASHD_PATH, args(a1)), b(KVSTASHD_PATH, args(a2));
  ASSERT_TRUE(a.ok() && b.ok()) << a.error() << b.error();
  ClientOptions o;
  o.peers = {a1, a2};
  o.timeout_ms = 5'000;
  auto client = Client::Connect(o);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  ASSERT_EQ(PutBlocks(**client, 13, 10, 2048), 10u);
  const std::vector<BlockKey> chain = {Key(13, 3)};
  auto copied = WaitFor(
      [&] {
        for (int i = 0; i < 25; ++i) {
          auto r = (*client)->Lookup(chain, 0);
          if (r.ok() && r->hit_blocks == 1 && r->blocks[0].replicas == 1) return true;
        }
        return false;
      },
      std::chrono::seconds(10));
  ASSERT_TRUE(copied);
  auto total = (*client)->Stats();
  ASSERT_TRUE(total.ok());
  EXPECT_EQ(total->tiers.at(0).blocks, 11u);
  // A daemon whose --peers list lacks its own address refuses to start.
  DaemonProcess wrong(KVSTASHD_PATH,
                      {"--dram-capacity", "64MiB", "--peers", a1 + "," + a2, "--replicas", "2"});
  EXPECT_FALSE(wrong.ok());
}

}  // namespace
}  // namespace kvstash
