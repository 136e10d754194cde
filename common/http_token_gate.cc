#include "common/http_token_gate.h"

#include <spdlog/spdlog.h>

#include <utility>

namespace kvstash::auth {

std::optional<Role> CompletionApiRole(const httplib::Request& req) {
  if (req.path == "/healthz") return std::nullopt;
  return req.path == "/v1/completions" ? Role::kWrite : Role::kRead;
}

void RequireTokens(httplib::Server& server, Authorizer& authorizer, HttpRoleFor role_for, HttpRefusal refuse) {
  server.set_pre_routing_handler([&authorizer, role_for = std::move(role_for), refuse = std::move(refuse)](
                                     const httplib::Request& req, httplib::Response& res) {
    const std::optional<Role> needed = role_for(req);
    if (!needed) return httplib::Server::HandlerResponse::Unhandled;
    const bool sent = req.has_header("Authorization");
    const std::string header = sent ? req.get_header_value("Authorization") : std::string();
    std::optional<std::string_view> authorization;
    if (sent) authorization = std::string_view(header);
    const Result<Principal> admitted = authorizer.AdmitFromAddress(req.remote_addr, authorization, *needed);
    if (admitted.ok()) return httplib::Server::HandlerResponse::Unhandled;
    const int status = admitted.status().code() == StatusCode::kPermissionDenied ? 403 : 401;
    if (status == 401) res.set_header("WWW-Authenticate", "Bearer");
    spdlog::debug("refused {} {} from {}: {}", req.method, req.path, req.remote_addr, admitted.status().message());
    refuse(res, status, admitted.status().message());
    res.status = status;
    return httplib::Server::HandlerResponse::Handled;
  });
}

}  // namespace kvstash::auth
