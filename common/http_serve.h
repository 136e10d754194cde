// Running a cpp-httplib server in the background: the one way the daemon's /metrics, the node's
// HTTP API and the conductor's front door start and stop their servers.
//
// Thread-safety: call both from the thread that owns `server` and `thread`.
#pragma once

#include <string>
#include <string_view>
#include <thread>

#include "kvstash/result.h"

namespace httplib {
class Server;
}

namespace kvstash {

// Binds HOST:PORT (port 0 picks a free one), runs the accept loop on `thread` and returns the bound
// port once the loop runs (httplib's stop() is a no-op before that, so a StopServing right after
// cannot leave it running). The port is bound without SO_REUSEPORT: one in use is refused. FAILED_PRECONDITION when `thread` already runs; UNAVAILABLE naming
// `what` when the address cannot be bound.
Result<int> ServeInBackground(httplib::Server& server, const std::string& host, int port, std::thread& thread,
                              std::string_view what);
// Stops the loop and joins `thread`; nothing when it does not run.
void StopServing(httplib::Server& server, std::thread& thread);

}  // namespace kvstash
