// The MemberWatcher over an in-memory etcd (membership/in_memory_kv_store.h) and a ManualClock:
// members join and leave (a lease that expires by the clock), and a broken watch is read again
// after its backoff on the clock. The watcher runs its own thread; the test waits for the member
// sets it reports (a condition variable, no polling), never for time.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"
#include "membership/in_memory_kv_store.h"
#include "membership/member_record.h"
#include "membership/member_watcher.h"
#include "membership/registrar.h"

namespace kvstash::membership {
namespace {

using Ids = std::set<std::string>;

// What the watcher reported last, and a way to wait for a given member set.
class Seen {
 public:
  void Record(const std::vector<MemberRecord>& members) {
    Ids ids;
    for (const MemberRecord& m : members) ids.insert(m.id);
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_ = std::move(ids);
    }
    cv_.notify_all();
  }
  // True once the watcher has reported exactly `want` (it is reported on the watcher's thread).
  bool WaitFor(const Ids& want, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return last_ == want; });
  }
  Ids last() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  Ids last_;
};

class MemberWatcherTest : public ::testing::Test {
 protected:
  std::unique_ptr<Registrar> Join(const std::string& id) {
    RegistrarOptions o;
    o.cluster = "c1";
    o.lease_ttl_s = 6;
    o.record.id = id;
    o.record.grpc_address = id + ".local:7000";
    o.clock = &clock_;
    o.background = false;
    auto r = Registrar::Start(o, etcd_.Connect(id));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(*r) : nullptr;
  }

  std::unique_ptr<MemberWatcher> Watch() {
    auto w = MemberWatcher::Start(
        etcd_.Connect("watcher"), "c1", [this](const std::vector<MemberRecord>& m) { seen_.Record(m); },
        MemberWatcher::AtStart::kRequireEtcd, &clock_);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    return w.ok() ? std::move(*w) : nullptr;
  }

  ManualClock clock_;
  InMemoryKvStore etcd_{&clock_};
  Seen seen_;
};

TEST_F(MemberWatcherTest, SeesMembersJoinAndLeave) {
  auto a = Join("a");
  auto watcher = Watch();
  ASSERT_NE(watcher, nullptr);
  EXPECT_EQ(seen_.last(), Ids({"a"}));  // reported before Start returned

  auto b = Join("b");
  ASSERT_TRUE(seen_.WaitFor({"a", "b"}));

  // b is cut off from etcd and its lease runs out: the watch reports b gone.
  etcd_.SetReachable("b", false);
  clock_.AdvanceMs(4'000);
  ASSERT_TRUE(a->RunDueRound());  // a renews its lease (its round was due at 2 s) ...
  clock_.AdvanceMs(2'000);        // ... b's runs out (6 s without a keep-alive)
  etcd_.ExpireLeases();
  ASSERT_TRUE(seen_.WaitFor({"a"}));
  EXPECT_EQ(watcher->Members().size(), 1u);

  // b reaches etcd again and registers under a new lease: it is back.
  etcd_.SetReachable("b", true);
  clock_.AdvanceMs(b->NextRoundMs() > clock_.NowMs() ? b->NextRoundMs() - clock_.NowMs() : 0);
  ASSERT_TRUE(b->RunDueRound());
  ASSERT_TRUE(seen_.WaitFor({"a", "b"}));

  // A graceful stop revokes the lease: b leaves at once.
  b->Stop();
  ASSERT_TRUE(seen_.WaitFor({"a"}));
}

TEST_F(MemberWatcherTest, ABrokenWatchIsReadAgainAfterItsBackoff) {
  auto a = Join("a");
  auto watcher = Watch();
  ASSERT_NE(watcher, nullptr);

  // The watcher loses etcd: its stream breaks (the store refused it), and c joins meanwhile.
  etcd_.SetReachable("watcher", false);
  etcd_.AwaitRefusals("watcher", 1);
  auto c = Join("c");
  EXPECT_EQ(seen_.last(), Ids({"a"}));

  // Back in reach, but its backoff has not passed on the clock (which stands still): it does not
  // read the members yet.
  etcd_.SetReachable("watcher", true);
  EXPECT_FALSE(seen_.WaitFor({"a", "c"}, std::chrono::milliseconds(300)));

  // Once the backoff has passed on the clock it reads them again. The clock moves on as it would in
  // life (a watcher that parked only after an advance needs the next one).
  bool seen = false;
  for (int step = 0; step < 50 && !seen; ++step) {
    clock_.AdvanceMs(2'000);  // the longest backoff
    seen = seen_.WaitFor({"a", "c"}, std::chrono::milliseconds(500));
  }
  ASSERT_TRUE(seen);
  ASSERT_EQ(watcher->Members().size(), 2u);
  EXPECT_EQ(watcher->Members()[1].grpc_address, "c.local:7000");
}

}  // namespace
}  // namespace kvstash::membership
