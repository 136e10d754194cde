// Bearer tokens in front of an HTTP API served with cpp-httplib (kvstash-node's OpenAI-compatible
// API, the conductor's front door): docs/SECURITY.md "Tokens".
//
// RequireTokens installs a pre-routing handler, so every route is checked before its handler runs
// and a refused request changes nothing. `role_for` names the role a request needs, or nullopt for
// a route that stays open (health probes). A request without `Authorization: Bearer <token>`, or
// with an unknown token, is answered 401 with `WWW-Authenticate: Bearer`; a token whose role is too
// low, 403. Failures count against the peer's budget in the Authorizer (shared with its gRPC port),
// and a peer over it is answered 401 without the token being looked at.
//
// Thread-safety: install before the server starts; the handler runs on the server's workers.
#pragma once

#include <httplib.h>

#include <functional>
#include <optional>
#include <string>

#include "common/authorizer.h"

namespace kvstash::auth {

// Writes a refusal in the API's own error format (status is 401 or 403).
using HttpRefusal = std::function<void(httplib::Response& res, int http_status, const std::string& message)>;
using HttpRoleFor = std::function<std::optional<Role>(const httplib::Request& req)>;

// The roles of an OpenAI-compatible completions API (kvstash-node's, the front door's):
// POST /v1/completions runs a completion (`write`), /healthz is open to probes, any other path (the
// model list, unknown paths) needs `read`.
std::optional<Role> CompletionApiRole(const httplib::Request& req);

// `authorizer` is not owned and outlives `server`.
void RequireTokens(httplib::Server& server, Authorizer& authorizer, HttpRoleFor role_for, HttpRefusal refuse);

}  // namespace kvstash::auth
