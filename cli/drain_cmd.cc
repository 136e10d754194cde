// `kvstash drain MEMBER [--undo]`: the member's drain mark (DrainKey, no lease: it outlives the
// member's lease and restarts) and, when the member is registered, its record's state, so that
// clients see the drain at once rather than at the member's next keep-alive round.
#include <chrono>
#include <iostream>

#include "cli/commands.h"
#include "cli/output.h"
#include "cli/session.h"
#include "membership/etcd_client.h"
#include "membership/member_record.h"

namespace kvstash::cli {
namespace {

uint64_t NowUnixMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

// Sets the drain mark (keeping the time of one already set) or deletes it; the drain time, 0
// after an undo.
Result<uint64_t> SetDrainMark(membership::EtcdClient& etcd, const std::string& mark_key, bool undo) {
  if (undo) {
    KVSTASH_RETURN_IF_ERROR(etcd.Delete(mark_key));
    return uint64_t{0};
  }
  KVSTASH_ASSIGN_OR_RETURN(std::optional<membership::EtcdKeyValue> mark, etcd.Get(mark_key));
  if (mark) {
    if (Result<uint64_t> since = membership::DrainMarkFromJson(mark->value); since.ok() && *since > 0) return since;
  }
  const uint64_t since = NowUnixMs();
  KVSTASH_RETURN_IF_ERROR(etcd.Put(mark_key, membership::DrainMarkJson(since)));
  return since;
}

// Rewrites a registered member's record with the drain state. The record stays attached to the
// member's own lease: it still vanishes if the member dies.
Status SetRecordState(membership::EtcdClient& etcd, const membership::EtcdKeyValue& current, uint64_t since) {
  KVSTASH_ASSIGN_OR_RETURN(membership::MemberRecord record, membership::MemberRecordFromJson(current.value));
  record.state = since == 0 ? membership::MemberState::kServing : membership::MemberState::kDraining;
  record.draining_since_unix_ms = since;
  return etcd.Put(current.key, membership::ToJson(record), 0, /*keep_lease=*/true);
}

}  // namespace

int RunDrain(const GlobalOptions& global, const DrainCommand& cmd) {
  constexpr std::string_view kCommand = "drain";
  const std::vector<std::string> endpoints = EtcdEndpoints(global);
  if (endpoints.empty()) return ReportUsage(kCommand, "drain needs the cluster's etcd (--etcd or $KVSTASH_ETCD)");
  if (Status st = membership::ValidateName("member id", cmd.member); !st.ok()) return ReportUsage(kCommand, st.message());
  auto etcd = membership::EtcdClient::Create({.endpoints = endpoints,
                                              .timeout_ms = global.timeout_ms,
                                              .ca_file = global.etcd_ca,
                                              .cert_file = global.etcd_cert,
                                              .key_file = global.etcd_key});
  if (!etcd.ok()) return ReportUsage(kCommand, etcd.status().message());
  auto current = (*etcd)->Get(membership::MemberKey(global.cluster, cmd.member));
  if (!current.ok()) return ReportFailure(kCommand, current.status());
  // An unregistered member can still be undrained, so that a stale mark can always be cleared.
  const bool registered = current->has_value();
  if (!registered && !cmd.undo)
    return ReportFailure(kCommand, NotFound("no member '" + cmd.member + "' in cluster " + global.cluster));
  Result<uint64_t> since = SetDrainMark(**etcd, membership::DrainKey(global.cluster, cmd.member), cmd.undo);
  if (!since.ok()) return ReportFailure(kCommand, since.status());
  if (registered) {
    if (Status st = SetRecordState(**etcd, **current, *since); !st.ok()) return ReportFailure(kCommand, st);
  }
  const std::string_view state = cmd.undo ? "serving" : "draining";
  if (global.json) {
    PrintJson({{"member", cmd.member},
               {"cluster", global.cluster},
               {"state", std::string(state)},
               {"registered", registered}});
  } else {
    std::cout << "member " << cmd.member << " is " << state
              << (registered ? "" : " (not registered now; the drain mark is cleared)") << '\n';
  }
  return kExitOk;
}

}  // namespace kvstash::cli
