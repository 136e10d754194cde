// Which UCX transports may carry the daemon's one-sided (RMA) protocol.
//
// The rule (docs/DATA_PLANE.md, "Who may write the daemon's memory"): a UCX context with the RMA
// feature installs UCX's software-RMA handlers on every transport it opens, and UCX 1.13 applies
// a peer's software PUT/GET to whatever address the message names, with no check against any
// registration (ucp_put_handler in ucp/rma/rma_sw.c). Any peer that can reach such a worker —
// over tcp, or with a modified UCX over any other transport — can therefore read and write the
// whole daemon process. So the daemon's one-sided context opens same-host shared-memory
// transports only (peers there map the arena anyway and are trusted like the daemon's user:
// docs/SAME_HOST_TRUST.md); every network peer is served by the two-sided protocol, whose context
// has no RMA feature and writes only into receives the daemon posted itself.
#pragma once

#include <string>
#include <string_view>

namespace kvstash::transfer {

// The UCX TLS list for the daemon's one-sided context, given the list the operator configured
// (UCX_TLS syntax; empty or "all" = UCX's default; "^a,b" = all but a and b): the same-host
// shared-memory transports the configuration allows (posix, sysv, xpmem, knem, cma; "sm", UCX's
// alias, when it allows all of them). When that
// leaves no transport that can carry UCX's connection setup (posix, sysv or xpmem), the answer is
// "self" — in-process only, so no peer can connect and the daemon serves no one-sided transfers.
std::string OneSidedTransports(std::string_view configured);

// True when `tls` (a value OneSidedTransports returned) lets no other process connect.
inline bool ServesNoPeers(std::string_view tls) { return tls == "self"; }

}  // namespace kvstash::transfer
