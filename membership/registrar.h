// Registrar: a daemon's presence in the cluster. Takes an etcd lease, publishes the daemon's
// MemberRecord under it at /kvstash/<cluster>/members/<id>, and keeps it there from a background
// thread (every TTL/3):
//   * the lease is kept alive; when it is lost anyway (etcd unreachable for longer than the TTL),
//     the record is published again under a new lease once etcd answers;
//   * the record is read back: one that disappeared (deleted by hand, or revoked by another
//     process) is published again; one that another address took over is left alone and reported
//     (RegistrationState::kConflict, an error in the log) until that member is gone;
//   * the member's drain mark (DrainKey, written by `kvstash drain`) is copied into the record,
//     so a drain survives lease loss and restarts.
// When etcd does not answer at start, Start still succeeds and registration is retried in the
// background with backoff; Health() says where it stands. Stop revokes the lease so that the
// member disappears at once; a crashed daemon disappears when its TTL runs out.
//
// Time comes from options.clock: a round is due every TTL/3 while registered, and after each
// failure at 200 ms, doubling up to max_retry. etcd is reached through the KvStore interface
// (membership/kv_store.h): Start(options) connects an EtcdClient; Start(options, store) takes any
// KvStore (tests pass an InMemoryKvStore client and a ManualClock, with background = false, and run
// the rounds with RunDueRound).
//
// Thread-safety: Start, Stop and RunDueRound are called by the owner; Health and NextRoundMs from
// any thread; the keep-alive thread is internal.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <string>
#include <thread>

#include "common/clock.h"
#include "common/mutex.h"
#include "membership/etcd_client.h"
#include "membership/kv_store.h"
#include "membership/member_record.h"

namespace kvstash::membership {

struct RegistrarOptions {
  EtcdOptions etcd;
  std::string cluster = "default";
  int64_t lease_ttl_s = 10;  // 1..3600; a crashed member is dropped within this
  MemberRecord record;
  // Longest wait between registration attempts while etcd does not answer (the first is 200 ms;
  // each failure doubles it).
  std::chrono::milliseconds max_retry{5'000};
  // What the rounds' timing reads; must outlive the Registrar.
  const Clock* clock = SteadyClock::Default();
  // false: no keep-alive thread; the owner runs the rounds with RunDueRound.
  bool background = true;
};

enum class RegistrationState {
  kPending,          // not registered yet: etcd did not answer since the start
  kRegistered,       // the record is in etcd under this daemon's lease
  kEtcdUnreachable,  // etcd stopped answering; the record stays until the lease runs out
  kConflict,         // another live address holds this member id; this daemon is out of the cluster
};
std::string_view ToString(RegistrationState state);

struct RegistrationHealth {
  RegistrationState state = RegistrationState::kPending;
  std::string detail;          // why not registered (the last error); empty when registered
  bool draining = false;       // as published
  uint64_t registrations = 0;  // times the record was published: the first, and every repair since
};

class Registrar {
 public:
  // INVALID_ARGUMENT for bad options; ALREADY_EXISTS when etcd answers and a live member with
  // another address holds the same id. When etcd cannot be reached, returns a Registrar that keeps
  // trying (Health().state == kPending).
  static Result<std::unique_ptr<Registrar>> Start(const RegistrarOptions& options);
  // The same over `store` (options.etcd is not used).
  static Result<std::unique_ptr<Registrar>> Start(const RegistrarOptions& options, std::unique_ptr<KvStore> store);
  ~Registrar();  // Stop()

  // Stops the keep-alive and revokes the lease (best effort). Idempotent.
  void Stop();

  RegistrationHealth Health() const;
  const std::string& key() const { return key_; }

  // When the next round is due, in options.clock's milliseconds.
  uint64_t NextRoundMs() const;
  // Runs a round when options.clock has reached NextRoundMs(); returns whether it ran. For owners
  // that start with background = false (the thread calls nothing else).
  bool RunDueRound();

 private:
  explicit Registrar(RegistrarOptions options, std::unique_ptr<KvStore> etcd);
  // Conflict check, drain mark, a new lease, the record under it.
  Status Register();
  // One keep-alive round while registered: the lease, then the record and drain mark.
  Status Maintain(int64_t lease);
  // Puts the record (with the drain mark read now) under `lease`.
  Status Publish(int64_t lease);
  void Loop();
  // One round (Register without a lease, else Maintain), its outcome noted and the next scheduled.
  void RunRound() EXCLUDES(mu_);
  // Records the outcome of a round and logs state changes (errors again every 30 s).
  void Note(const Status& round);
  // Schedules the next round by the state now: TTL/3 when registered, else the backoff (which
  // doubles with every failed round).
  void ScheduleNextLocked() REQUIRES(mu_);

  RegistrarOptions options_;
  std::unique_ptr<KvStore> etcd_;
  const std::string key_;
  const std::string drain_key_;
  mutable Mutex mu_;
  std::condition_variable cv_;
  bool stopping_ GUARDED_BY(mu_) = false;
  int64_t lease_id_ GUARDED_BY(mu_) = 0;
  RegistrationHealth health_ GUARDED_BY(mu_);
  uint64_t last_error_log_ms_ GUARDED_BY(mu_) = 0;
  uint64_t next_round_ms_ GUARDED_BY(mu_) = 0;
  std::chrono::milliseconds retry_ GUARDED_BY(mu_);  // the wait after the next failed round
  std::thread thread_;
};

}  // namespace kvstash::membership
