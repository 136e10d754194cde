// Bad input: every malformed request answers a clear gRPC status and leaves the store unchanged.
// Each test proves both halves: the status, and that a snapshot of the store is identical after.
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <random>

#include "common/checksum.h"
#include "kvstash/limits.h"
#include "kvstash/v1/store.grpc.pb.h"
#include "server/daemon.h"
#include "server/daemon_config.h"
#include "tiers/arena.h"

namespace kvstash::server {
namespace {

std::string Key(uint64_t i) { return std::string(BlockKey::FromParts(0xABCD, i).AsBytes()); }

struct Snapshot {
  std::vector<std::string> keys;
  std::vector<uint64_t> generations;
  uint64_t blocks = 0, used = 0, reserved = 0, reservations = 0;
  bool operator==(const Snapshot&) const = default;
};

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DaemonConfig config;
    config.listen = "127.0.0.1:0";
    config.metrics_listen = "127.0.0.1:0";
    config.dram_capacity = 128ULL << 20;
    auto daemon = Daemon::Start(config);
    ASSERT_TRUE(daemon.ok()) << daemon.status().ToString();
    daemon_ = std::move(*daemon);
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(static_cast<int>(limits::kMaxGrpcMessageBytes));
    args.SetMaxReceiveMessageSize(static_cast<int>(limits::kMaxGrpcMessageBytes));
    stub_ = v1::Store::NewStub(
        grpc::CreateCustomChannel(daemon_->grpc_address(), grpc::InsecureChannelCredentials(), args));
    // Some committed content for the bad requests to (not) disturb.
    v1::PutRequest put;
    for (uint64_t i = 0; i < 5; ++i) {
      auto* item = put.add_items();
      item->set_key(Key(i));
      if (i > 0) item->set_parent(Key(i - 1));
      item->set_data(std::string(4096 + i, static_cast<char>('a' + i)));
    }
    v1::PutResponse resp;
    ASSERT_TRUE(Call(&v1::Store::Stub::Put, put, resp).ok());
  }

  template <typename Req, typename Resp>
  grpc::Status Call(grpc::Status (v1::Store::Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                    const Req& req, Resp& resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return (stub_.get()->*method)(&ctx, req, &resp);
  }

  Snapshot Take() {
    Snapshot s;
    std::string after;
    do {
      v1::ListRequest req;
      req.set_start_after(after);
      req.set_limit(1000);
      v1::ListResponse resp;
      EXPECT_TRUE(Call(&v1::Store::Stub::List, req, resp).ok());
      for (const auto& b : resp.blocks()) {
        s.keys.push_back(b.key());
        s.generations.push_back(b.generation());
      }
      after = resp.next_start_after();
    } while (!after.empty());
    v1::StatsResponse stats;
    EXPECT_TRUE(Call(&v1::Store::Stub::Stats, v1::StatsRequest(), stats).ok());
    s.blocks = stats.tiers(0).blocks();
    s.used = stats.tiers(0).used_bytes();
    s.reserved = stats.tiers(0).reserved_bytes();
    s.reservations = stats.reservations_open();
    return s;
  }

  // Asserts `status` has `code` and a message, and the store is as `before`.
  void ExpectRejected(const grpc::Status& status, grpc::StatusCode code, const Snapshot& before) {
    EXPECT_EQ(status.error_code(), code) << status.error_message();
    EXPECT_FALSE(status.error_message().empty());
    EXPECT_EQ(Take(), before);
  }

  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<v1::Store::Stub> stub_;
};

TEST_F(BadInputTest, MalformedKeys) {
  const Snapshot before = Take();
  for (const std::string& bad : {std::string(), std::string(15, 'k'), std::string(17, 'k'), std::string(32, 'f')}) {
    v1::LookupRequest lookup;
    lookup.add_keys(bad);
    v1::LookupResponse lr;
    ExpectRejected(Call(&v1::Store::Stub::Lookup, lookup, lr), grpc::StatusCode::INVALID_ARGUMENT, before);

    v1::PutRequest put;
    auto* item = put.add_items();
    item->set_key(bad);
    item->set_data("x");
    v1::PutResponse pr;
    ExpectRejected(Call(&v1::Store::Stub::Put, put, pr), grpc::StatusCode::INVALID_ARGUMENT, before);

    v1::PutBeginRequest begin;
    auto* b = begin.add_items();
    b->set_key(Key(100));
    b->set_size(10);
    b->set_parent(bad.empty() ? std::string(3, 'p') : bad);  // a parent must be 16 bytes or empty
    v1::PutBeginResponse br;
    ExpectRejected(Call(&v1::Store::Stub::PutBegin, begin, br), grpc::StatusCode::INVALID_ARGUMENT, before);

    v1::RemoveRequest rm;
    rm.add_keys(Key(0));
    rm.add_keys(bad);  // the valid key before it must not be removed either
    v1::RemoveResponse rr;
    ExpectRejected(Call(&v1::Store::Stub::Remove, rm, rr), grpc::StatusCode::INVALID_ARGUMENT, before);
  }
  v1::ListRequest list;
  list.set_start_after("short");
  v1::ListResponse lr;
  ExpectRejected(Call(&v1::Store::Stub::List, list, lr), grpc::StatusCode::INVALID_ARGUMENT, before);
}

TEST_F(BadInputTest, ZeroAndOversizedSizes) {
  const Snapshot before = Take();
  v1::PutBeginRequest zero;
  auto* z = zero.add_items();
  z->set_key(Key(200));
  z->set_size(0);
  v1::PutBeginResponse br;
  ExpectRejected(Call(&v1::Store::Stub::PutBegin, zero, br), grpc::StatusCode::INVALID_ARGUMENT, before);

  v1::PutBeginRequest huge;
  auto* h = huge.add_items();
  h->set_key(Key(201));
  h->set_size(limits::kMaxBlockBytes + 1);
  ExpectRejected(Call(&v1::Store::Stub::PutBegin, huge, br), grpc::StatusCode::INVALID_ARGUMENT, before);

  v1::PutRequest empty_data;
  auto* e = empty_data.add_items();
  e->set_key(Key(202));
  v1::PutResponse pr;
  ExpectRejected(Call(&v1::Store::Stub::Put, empty_data, pr), grpc::StatusCode::INVALID_ARGUMENT, before);

  v1::PutRequest too_big;
  auto* t = too_big.add_items();
  t->set_key(Key(203));
  t->set_data(std::string(limits::kMaxBlockBytes + 1, 'z'));
  ExpectRejected(Call(&v1::Store::Stub::Put, too_big, pr), grpc::StatusCode::INVALID_ARGUMENT, before);
}

TEST_F(BadInputTest, CountsOverLimits) {
  const Snapshot before = Take();
  v1::GetRequest get;
  for (uint64_t i = 0; i <= limits::kMaxBatchKeys; ++i) get.add_keys(Key(1000 + i));
  v1::GetResponse gr;
  ExpectRejected(Call(&v1::Store::Stub::Get, get, gr), grpc::StatusCode::INVALID_ARGUMENT, before);

  v1::GetRequest none;
  ExpectRejected(Call(&v1::Store::Stub::Get, none, gr), grpc::StatusCode::INVALID_ARGUMENT, before);

  v1::LookupRequest lease;
  lease.add_keys(Key(0));
  lease.set_lease_ms(limits::kMaxLeaseMs + 1);
  v1::LookupResponse lr;
  ExpectRejected(Call(&v1::Store::Stub::Lookup, lease, lr), grpc::StatusCode::INVALID_ARGUMENT, before);
  // ... and the block did not get leased by the refused lookup.
  v1::StatRequest stat;
  stat.add_keys(Key(0));
  v1::StatResponse sr;
  ASSERT_TRUE(Call(&v1::Store::Stub::Stat, stat, sr).ok());
  EXPECT_EQ(sr.entries(0).info().lease_until_ms(), 0u);

  v1::ListRequest list;
  list.set_limit(limits::kMaxListLimit + 1);
  v1::ListResponse lsr;
  ExpectRejected(Call(&v1::Store::Stub::List, list, lsr), grpc::StatusCode::INVALID_ARGUMENT, before);

  v1::PutBeginRequest slow;
  auto* s = slow.add_items();
  s->set_key(Key(300));
  s->set_size(100);
  slow.set_timeout_ms(limits::kMaxReservationTimeoutMs + 1);
  v1::PutBeginResponse br;
  ExpectRejected(Call(&v1::Store::Stub::PutBegin, slow, br), grpc::StatusCode::INVALID_ARGUMENT, before);

  // Inline bytes over 64 MiB in one request.
  v1::PutRequest heavy;
  for (uint64_t i = 0; i < 2; ++i) {
    auto* item = heavy.add_items();
    item->set_key(Key(400 + i));
    item->set_data(std::string(limits::kMaxInlineBytes / 2 + 1, 'h'));
  }
  v1::PutResponse pr;
  ExpectRejected(Call(&v1::Store::Stub::Put, heavy, pr), grpc::StatusCode::INVALID_ARGUMENT, before);
}

TEST_F(BadInputTest, DuplicateKeysInOneBatch) {
  const Snapshot before = Take();
  v1::PutRequest put;
  for (int i = 0; i < 2; ++i) {
    auto* item = put.add_items();
    item->set_key(Key(500));
    item->set_data("dup");
  }
  v1::PutResponse pr;
  ExpectRejected(Call(&v1::Store::Stub::Put, put, pr), grpc::StatusCode::INVALID_ARGUMENT, before);

  v1::PutBeginRequest begin;
  for (uint64_t i : {501, 502, 501}) {
    auto* b = begin.add_items();
    b->set_key(Key(i));
    b->set_size(64);
  }
  v1::PutBeginResponse br;
  ExpectRejected(Call(&v1::Store::Stub::PutBegin, begin, br), grpc::StatusCode::INVALID_ARGUMENT, before);

  v1::LookupRequest lookup;
  lookup.add_keys(Key(0));
  lookup.add_keys(Key(0));
  v1::LookupResponse lr;
  ExpectRejected(Call(&v1::Store::Stub::Lookup, lookup, lr), grpc::StatusCode::INVALID_ARGUMENT, before);
}

TEST_F(BadInputTest, CommitWithoutBegin) {
  const Snapshot before = Take();
  v1::PutCommitRequest commit;
  auto* c = commit.add_items();
  c->set_reservation(std::string(16, '\x07'));
  c->set_checksum(1);
  c->set_data("bytes");
  v1::PutCommitResponse cr;
  ExpectRejected(Call(&v1::Store::Stub::PutCommit, commit, cr), grpc::StatusCode::NOT_FOUND, before);

  v1::PutAbortRequest abort;
  abort.add_reservations(std::string(16, '\x07'));
  v1::PutAbortResponse ar;
  ASSERT_TRUE(Call(&v1::Store::Stub::PutAbort, abort, ar).ok());
  EXPECT_EQ(ar.aborted(), 0u);
  EXPECT_EQ(Take(), before);
}

TEST_F(BadInputTest, CommitWithWrongChecksumChangesNothingAndBatchIsAtomic) {
  // Two reservations; the commit has a good first item and a bad second one.
  v1::PutBeginRequest begin;
  for (uint64_t i : {600, 601}) {
    auto* b = begin.add_items();
    b->set_key(Key(i));
    b->set_size(8);
  }
  v1::PutBeginResponse br;
  ASSERT_TRUE(Call(&v1::Store::Stub::PutBegin, begin, br).ok());
  ASSERT_EQ(br.results(0).outcome(), v1::PutBeginResult::RESERVED);
  ASSERT_EQ(br.results(1).outcome(), v1::PutBeginResult::RESERVED);
  const Snapshot before = Take();
  EXPECT_EQ(before.reservations, 2u);

  const std::string good = "goodgood", bad = "badbadba";
  v1::PutCommitRequest commit;
  auto* c0 = commit.add_items();
  c0->set_reservation(br.results(0).reservation());
  c0->set_data(good);
  c0->set_checksum(BlockChecksum(good.data(), good.size()));
  auto* c1 = commit.add_items();
  c1->set_reservation(br.results(1).reservation());
  c1->set_data(bad);
  c1->set_checksum(BlockChecksum(good.data(), good.size()));  // wrong for `bad`
  v1::PutCommitResponse cr;
  ExpectRejected(Call(&v1::Store::Stub::PutCommit, commit, cr), grpc::StatusCode::DATA_LOSS, before);

  // Wrong size of inline data.
  commit.mutable_items(1)->set_data("short");
  commit.mutable_items(1)->set_checksum(BlockChecksum("short", 5));
  ExpectRejected(Call(&v1::Store::Stub::PutCommit, commit, cr), grpc::StatusCode::INVALID_ARGUMENT, before);

  // The reservations are still open: fixing the bytes commits both.
  commit.mutable_items(1)->set_data(bad);
  commit.mutable_items(1)->set_checksum(BlockChecksum(bad.data(), bad.size()));
  ASSERT_TRUE(Call(&v1::Store::Stub::PutCommit, commit, cr).ok());
  v1::GetRequest get;
  get.add_keys(Key(600));
  get.add_keys(Key(601));
  v1::GetResponse gr;
  ASSERT_TRUE(Call(&v1::Store::Stub::Get, get, gr).ok());
  EXPECT_EQ(gr.results(0).data(), good);
  EXPECT_EQ(gr.results(1).data(), bad);
  EXPECT_EQ(Take().reservations, 0u);
}

TEST_F(BadInputTest, InlinePutWithWrongChecksumStoresNothing) {
  const Snapshot before = Take();
  v1::PutRequest put;
  auto* ok_item = put.add_items();
  ok_item->set_key(Key(700));
  ok_item->set_data("fine");
  auto* bad_item = put.add_items();
  bad_item->set_key(Key(701));
  bad_item->set_data("corrupt");
  bad_item->set_checksum(12345);
  v1::PutResponse pr;
  ExpectRejected(Call(&v1::Store::Stub::Put, put, pr), grpc::StatusCode::DATA_LOSS, before);
}

TEST_F(BadInputTest, RemoveOfLeasedBlockIsRefused) {
  v1::LookupRequest lease;
  lease.add_keys(Key(0));
  lease.add_keys(Key(1));
  lease.set_lease_ms(30'000);
  v1::LookupResponse lr;
  ASSERT_TRUE(Call(&v1::Store::Stub::Lookup, lease, lr).ok());
  ASSERT_EQ(lr.hit_blocks(), 2u);
  const Snapshot before = Take();
  v1::RemoveRequest rm;
  rm.add_keys(Key(4));  // unleased, listed first: must survive too
  rm.add_keys(Key(1));
  v1::RemoveResponse rr;
  ExpectRejected(Call(&v1::Store::Stub::Remove, rm, rr), grpc::StatusCode::FAILED_PRECONDITION, before);
}

TEST_F(BadInputTest, RandomGarbageNeverCrashesTheDaemon) {
  std::mt19937_64 rng(20261126);
  auto random_bytes = [&](size_t max) {
    std::string s(rng() % (max + 1), '\0');
    for (char& c : s) c = static_cast<char>(rng());
    return s;
  };
  for (int i = 0; i < 300; ++i) {
    switch (rng() % 5) {
      case 0: {
        v1::LookupRequest req;
        for (int k = 0, n = static_cast<int>(rng() % 5); k < n; ++k) req.add_keys(random_bytes(20));
        req.set_lease_ms(rng() % 100'000);
        v1::LookupResponse resp;
        (void)Call(&v1::Store::Stub::Lookup, req, resp);
        break;
      }
      case 1: {
        v1::PutBeginRequest req;
        for (int k = 0, n = static_cast<int>(rng() % 4); k < n; ++k) {
          auto* item = req.add_items();
          item->set_key(random_bytes(18));
          item->set_size(rng() % (1ULL << 27));
          item->set_parent(random_bytes(18));
        }
        req.set_timeout_ms(rng() % 1'000'000);
        v1::PutBeginResponse resp;
        if (Call(&v1::Store::Stub::PutBegin, req, resp).ok()) {
          v1::PutAbortRequest abort;
          for (const auto& r : resp.results()) {
            if (r.outcome() == v1::PutBeginResult::RESERVED) abort.add_reservations(r.reservation());
          }
          v1::PutAbortResponse ar;
          if (abort.reservations_size() > 0) (void)Call(&v1::Store::Stub::PutAbort, abort, ar);
        }
        break;
      }
      case 2: {
        v1::PutCommitRequest req;
        for (int k = 0, n = static_cast<int>(rng() % 4); k < n; ++k) {
          auto* item = req.add_items();
          item->set_reservation(random_bytes(rng() % 2 == 0 ? 16 : rng() % 40));
          item->set_checksum(rng());
          item->set_data(random_bytes(64));
        }
        v1::PutCommitResponse resp;
        (void)Call(&v1::Store::Stub::PutCommit, req, resp);
        break;
      }
      case 3: {
        v1::GetRequest req;
        for (int k = 0, n = static_cast<int>(rng() % 5); k < n; ++k) req.add_keys(random_bytes(20));
        v1::GetResponse resp;
        (void)Call(&v1::Store::Stub::Get, req, resp);
        break;
      }
      default: {
        v1::ListRequest req;
        req.set_start_after(random_bytes(20));
        req.set_limit(static_cast<uint32_t>(rng() % 2000));
        v1::ListResponse resp;
        (void)Call(&v1::Store::Stub::List, req, resp);
      }
    }
  }
  v1::HealthResponse health;
  ASSERT_TRUE(Call(&v1::Store::Stub::Health, v1::HealthRequest(), health).ok());
  EXPECT_TRUE(health.serving());
  // The original five blocks are all still there, byte for byte.
  v1::GetRequest get;
  for (uint64_t i = 0; i < 5; ++i) get.add_keys(Key(i));
  v1::GetResponse gr;
  ASSERT_TRUE(Call(&v1::Store::Stub::Get, get, gr).ok());
  for (uint64_t i = 0; i < 5; ++i) {
    ASSERT_EQ(gr.results(static_cast<int>(i)).outcome(), v1::GetResult::FOUND);
    EXPECT_EQ(gr.results(static_cast<int>(i)).data(), std::string(4096 + i, static_cast<char>('a' + i)));
  }
}

TEST(DaemonConfigTest, FlagsOverrideFileOverDefaults) {
  DaemonConfig config;
  ASSERT_TRUE(ApplyTomlString("[server]\nthreads = 3\nlisten = \"127.0.0.1:9999\"\n[dram]\ncapacity = \"2GiB\"\n"
                              "eviction_policy = \"lru\"\n",
                              "test.toml", config)
                  .ok());
  EXPECT_EQ(config.threads, 3u);
  EXPECT_EQ(config.dram_capacity, 2ULL << 30);
  EXPECT_EQ(config.eviction_policy, EvictionPolicyKind::kLru);
  EXPECT_EQ(config.low_watermark, 0.85);  // untouched default

  const DaemonConfig unchanged = config;
  const Status typo = ApplyTomlString("[dram]\ncapacty = \"1GiB\"\n", "typo.toml", config);
  EXPECT_EQ(typo.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(typo.message().find("dram.capacty"), std::string::npos) << typo.message();
  const Status syntax = ApplyTomlString("[server\nthreads = 3", "broken.toml", config);
  EXPECT_EQ(syntax.code(), StatusCode::kInvalidArgument);
  const Status type = ApplyTomlString("[server]\nthreads = \"many\"\n", "type.toml", config);
  EXPECT_EQ(type.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(config.threads, unchanged.threads);
  EXPECT_EQ(config.listen, unchanged.listen);
}

TEST(DaemonConfigTest, CommandLine) {
  const char* argv[] = {"kvstashd", "--standalone", "--dram-capacity", "512MiB", "--eviction-policy", "lru",
                        "--threads", "4"};
  auto config = ParseCommandLine(8, const_cast<char**>(argv));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->dram_capacity, 512ULL << 20);
  EXPECT_EQ(config->eviction_policy, EvictionPolicyKind::kLru);
  EXPECT_EQ(config->threads, 4u);
  const char* bad[] = {"kvstashd", "--eviction-policy", "random"};
  EXPECT_EQ(ParseCommandLine(3, const_cast<char**>(bad)).status().code(), StatusCode::kInvalidArgument);
  const char* unknown[] = {"kvstashd", "--no-such-flag"};
  EXPECT_EQ(ParseCommandLine(2, const_cast<char**>(unknown)).status().code(), StatusCode::kInvalidArgument);
}

TEST(DaemonConfigTest, PrefaultIsOffUnlessAsked) {
  DaemonConfig config;
  EXPECT_FALSE(config.dram_prefault);
  ASSERT_TRUE(ApplyTomlString("[dram]\nprefault = true\n", "test.toml", config).ok());
  EXPECT_TRUE(config.dram_prefault);
  EXPECT_EQ(ApplyTomlString("[dram]\nprefault = \"yes\"\n", "type.toml", config).code(), StatusCode::kInvalidArgument);
  const char* argv[] = {"kvstashd", "--dram-prefault"};
  auto flagged = ParseCommandLine(2, const_cast<char**>(argv));
  ASSERT_TRUE(flagged.ok()) << flagged.status().ToString();
  EXPECT_TRUE(flagged->dram_prefault);
}

// PrefaultMemory touches every page without changing a byte.
TEST(ArenaTest, PrefaultKeepsContents) {
  auto arena = tiers::Arena::Map(8ULL << 20, tiers::ArenaHugePages::kNever);
  ASSERT_TRUE(arena.ok()) << arena.status().ToString();
  std::byte* base = (*arena)->base();
  for (uint64_t i = 0; i < (8ULL << 20); i += 4096 * 3 + 7) base[i] = static_cast<std::byte>(i % 251 + 1);
  tiers::PrefaultMemory(base, 8ULL << 20, 3);
  for (uint64_t i = 0; i < (8ULL << 20); i += 1) {
    const std::byte want = i % (4096 * 3 + 7) == 0 ? static_cast<std::byte>(i % 251 + 1) : std::byte{0};
    ASSERT_EQ(base[i], want) << "byte " << i;
  }
}

TEST(DaemonConfigTest, HbmTierSettings) {
  DaemonConfig config;
  EXPECT_EQ(config.hbm_capacity, 0u);  // no HBM tier unless asked
  ASSERT_TRUE(ApplyTomlString("[hbm]\ncapacity = \"8GiB\"\ngpu = 1\n", "hbm.toml", config).ok());
  EXPECT_EQ(config.hbm_capacity, 8ULL << 30);
  EXPECT_EQ(config.gpu, 1);
  EXPECT_TRUE(config.Validate().ok());
  EXPECT_EQ(ApplyTomlString("[hbm]\ndevice = 1\n", "typo.toml", config).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplyTomlString("[hbm]\ngpu = -1\n", "neg.toml", config).code(), StatusCode::kInvalidArgument);

  const char* argv[] = {"kvstashd", "--hbm-capacity", "2GiB", "--gpu", "3"};
  auto parsed = ParseCommandLine(5, const_cast<char**>(argv));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->hbm_capacity, 2ULL << 30);
  EXPECT_EQ(parsed->gpu, 3);
  const char* zero[] = {"kvstashd", "--hbm-capacity", "0"};
  ASSERT_TRUE(ParseCommandLine(3, const_cast<char**>(zero)).ok());
  const char* tiny[] = {"kvstashd", "--hbm-capacity", "100KiB"};
  EXPECT_EQ(ParseCommandLine(3, const_cast<char**>(tiny)).status().code(), StatusCode::kInvalidArgument);
  const char* negative[] = {"kvstashd", "--gpu", "-1"};
  EXPECT_EQ(ParseCommandLine(3, const_cast<char**>(negative)).status().code(), StatusCode::kInvalidArgument);
  const char* junk[] = {"kvstashd", "--hbm-capacity", "lots"};
  EXPECT_EQ(ParseCommandLine(3, const_cast<char**>(junk)).status().code(), StatusCode::kInvalidArgument);
}

// Without a GPU (or in a build without CUDA) a daemon asked for an HBM tier does not start, and
// says why; with one, the tier comes up.
TEST(DaemonHbmTest, StartsOnlyWhereAGpuCanHoldTheTier) {
  DaemonConfig config;
  config.listen = "127.0.0.1:0";
  config.metrics_listen = "127.0.0.1:0";
  config.dram_capacity = 32ULL << 20;
  config.max_block = 1ULL << 20;
  config.hbm_capacity = 16ULL << 20;
  config.ucx_enabled = false;
  auto daemon = Daemon::Start(config);
  if (daemon.ok()) GTEST_SKIP() << "a GPU is present: the HBM tier started (tests/integration/hbm_daemon_test covers it)";
  const Status& st = daemon.status();
  EXPECT_TRUE(st.code() == StatusCode::kUnavailable || st.code() == StatusCode::kFailedPrecondition) << st.ToString();
  EXPECT_NE(st.message().find("hbm"), std::string::npos) << st.ToString();
}

}  // namespace
}  // namespace kvstash::server
