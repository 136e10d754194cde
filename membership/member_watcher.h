// MemberWatcher: the live member set of a cluster, followed through an etcd watch on
// /kvstash/<cluster>/members/ (no polling): one range read at start, then the watch stream; when
// the stream breaks it reads the range again and watches from there, after a backoff (100 ms,
// doubling up to 2 s) timed by its Clock. etcd is reached through the KvStore interface
// (membership/kv_store.h): Start with EtcdOptions connects an EtcdClient; Start with a KvStore takes
// any (tests: an InMemoryKvStore client and a ManualClock).
//
// Thread-safety: `on_change` runs on the watcher's own thread (and once on the thread calling
// Start, before Start returns, when etcd answered), never concurrently with itself. Members() may be called from any
// thread. The destructor stops the thread; it must not run inside `on_change`.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/mutex.h"
#include "membership/etcd_client.h"
#include "membership/kv_store.h"
#include "membership/member_record.h"

namespace kvstash::membership {

class MemberWatcher {
 public:
  using OnChange = std::function<void(const std::vector<MemberRecord>&)>;

  // Whether Start needs etcd to answer: clients do (they have nothing to route on without it);
  // a daemon does not (it starts with no members and reads them once etcd answers).
  enum class AtStart { kRequireEtcd, kRetryEtcd };

  // Reads the current members (kRequireEtcd: UNAVAILABLE when etcd cannot be reached), calls
  // on_change with them, and starts following changes.
  static Result<std::unique_ptr<MemberWatcher>> Start(const EtcdOptions& etcd,
                                                      const std::string& cluster,
                                                      OnChange on_change,
                                                      AtStart at_start = AtStart::kRequireEtcd);
  // The same over `store`, with backoffs timed by `clock` (which must outlive the watcher).
  static Result<std::unique_ptr<MemberWatcher>> Start(std::unique_ptr<KvStore> store, const std::string& cluster,
                                                      OnChange on_change, AtStart at_start,
                                                      const Clock* clock = SteadyClock::Default());
  ~MemberWatcher();

  // The members as last seen, ordered by id.
  std::vector<MemberRecord> Members() const;

 private:
  MemberWatcher(std::unique_ptr<KvStore> etcd, std::string cluster, OnChange on_change, const Clock* clock);
  Status Reload(int64_t& revision);  // range read; replaces the member map and notifies
  void Run(int64_t revision);
  void Notify();
  // Waits until `delay` has passed on the clock, or until stopping; returns false when stopping.
  bool WaitOnClock(std::chrono::milliseconds delay) EXCLUDES(mu_);

  std::unique_ptr<KvStore> etcd_;
  const Clock* const clock_;
  const std::string cluster_;
  const std::string prefix_;
  OnChange on_change_;
  mutable Mutex mu_;
  std::condition_variable cv_;
  bool stopping_ GUARDED_BY(mu_) = false;
  std::map<std::string, MemberRecord> members_ GUARDED_BY(mu_);  // by etcd key
  std::thread thread_;
};

}  // namespace kvstash::membership
