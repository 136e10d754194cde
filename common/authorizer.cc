#include "common/authorizer.h"

#include <spdlog/spdlog.h>

namespace kvstash::auth {

Result<std::unique_ptr<Authorizer>> Authorizer::Create(const std::string& tokens_file, FailureBudget limits,
                                                       const Clock* clock) {
  KVSTASH_ASSIGN_OR_RETURN(auth::TokenTable table, auth::TokenTable::Load(tokens_file));
  auto shared = std::make_shared<const auth::TokenTable>(std::move(table));
  return std::unique_ptr<Authorizer>(new Authorizer(tokens_file, std::move(shared), limits, clock));
}

Result<auth::Principal> Authorizer::Admit(const grpc::ServerContext& context, auth::Role needed) {
  const auto& metadata = context.client_metadata();
  const auto header = metadata.find("authorization");
  std::optional<std::string_view> authorization;
  if (header != metadata.end()) authorization = std::string_view(header->second.data(), header->second.size());
  return Admit(context.peer(), authorization, needed);
}

Result<auth::Principal> Authorizer::Admit(const std::string& grpc_peer, std::optional<std::string_view> authorization,
                                          auth::Role needed) {
  return AdmitPeer(PeerHost(grpc_peer), authorization, needed);
}

Result<auth::Principal> Authorizer::AdmitFromAddress(const std::string& remote_addr,
                                                     std::optional<std::string_view> authorization,
                                                     auth::Role needed) {
  // Keyed as gRPC names the same host (PeerHost of "ipv4:10.0.0.5:51234" is "ipv4:10.0.0.5"), so
  // an address's failures on HTTP and gRPC draw on one budget.
  const bool v6 = remote_addr.find(':') != std::string::npos;
  return AdmitPeer(v6 ? "ipv6:[" + remote_addr + "]" : "ipv4:" + remote_addr, authorization, needed);
}

Result<auth::Principal> Authorizer::AdmitPeer(const std::string& peer, std::optional<std::string_view> authorization,
                                              auth::Role needed) {
  if (!limiter_.Allowed(peer)) return Unauthenticated("too many failed attempts from this peer; try again later");
  std::shared_ptr<const auth::TokenTable> table;
  {
    MutexLock lock(mu_);
    table = table_;
  }
  std::optional<auth::Principal> principal;
  if (authorization) {
    if (std::optional<std::string_view> token = auth::BearerToken(*authorization)) principal = table->Find(*token);
  }
  if (!principal) {
    limiter_.RecordFailure(peer);
    return Unauthenticated(authorization ? "unknown bearer token" : "no bearer token (authorization metadata)");
  }
  if (principal->role < needed) {
    return PermissionDenied("tenant " + principal->tenant + " holds a " + std::string(auth::ToString(principal->role)) +
                            " token; this call needs " + std::string(auth::ToString(needed)));
  }
  return *principal;
}

Status Authorizer::Reload() {
  Result<auth::TokenTable> table = auth::TokenTable::Load(path_);
  if (!table.ok()) return table.status();
  auto shared = std::make_shared<const auth::TokenTable>(std::move(*table));
  const size_t count = shared->size();
  {
    MutexLock lock(mu_);
    table_ = std::move(shared);
  }
  spdlog::info("tokens file {} reloaded: {} tokens", path_, count);
  return Status::Ok();
}

size_t Authorizer::tokens() const {
  MutexLock lock(mu_);
  return table_->size();
}

}  // namespace kvstash::auth
