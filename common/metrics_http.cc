#include "common/metrics_http.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/failure_limiter.h"
#include "common/http_serve.h"
#include "common/metrics.h"

namespace kvstash::metrics {
namespace {

std::string Sha256Hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

// RFC 4648 base64 with padding; nullopt for anything else.
std::optional<std::string> Base64Decode(std::string_view in) {
  if (in.empty() || in.size() % 4 != 0 || in.size() > 4096) return std::nullopt;
  std::string out(in.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) return std::nullopt;
  size_t pad = 0;
  if (in.back() == '=') ++pad;
  if (in.size() >= 2 && in[in.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

bool EqualsConstantTime(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool StartsWithNoCase(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(text[i])) != std::tolower(static_cast<unsigned char>(prefix[i]))) return false;
  }
  return true;
}

}  // namespace

Result<std::vector<std::pair<std::string, std::string>>> ParseBasicAuthFile(std::string_view text,
                                                                             const std::string& origin) {
  std::vector<std::pair<std::string, std::string>> users;
  std::istringstream in{std::string(text)};
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream fields(line);
    std::string user, digest, extra;
    if (!(fields >> user)) continue;
    const std::string where = origin + ":" + std::to_string(number);
    if (!(fields >> digest) || (fields >> extra)) {
      return InvalidArgument(where + ": expected `<user> <sha256 of the password>`");
    }
    if (user.find(':') != std::string::npos) return InvalidArgument(where + ": a user name cannot hold ':'");
    if (digest.size() != 64 || digest.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
      return InvalidArgument(where + ": the password's SHA-256 must be 64 hex digits");
    }
    for (char& c : digest) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const auto& [known, unused] : users) {
      if (known == user) return InvalidArgument(where + ": user " + user + " listed twice");
    }
    users.emplace_back(user, digest);
  }
  if (users.empty()) return InvalidArgument(origin + ": no users");
  return users;
}

struct MetricsHttpServer::Impl {
  // Refusals are logged at most once a second (with how many were not), so that a client sending
  // bad credentials in a loop cannot flood the log.
  std::mutex log_mu;
  std::chrono::steady_clock::time_point last_log{};
  uint64_t unlogged = 0;
  void LogRefusal(const std::string& peer, int status, const std::string& why) {
    std::lock_guard<std::mutex> lock(log_mu);
    const auto now = std::chrono::steady_clock::now();
    if (now - last_log < std::chrono::seconds(1)) {
      ++unlogged;
      return;
    }
    if (unlogged > 0) {
      spdlog::warn("/metrics refused {} to {}: {} (and {} more refusals in the last second, not logged)", status, peer,
                   why, unlogged);
    } else {
      spdlog::warn("/metrics refused {} to {}: {}", status, peer, why);
    }
    unlogged = 0;
    last_log = now;
  }

  const Registry* registry;
  MetricsHttpOptions options;
  std::vector<std::pair<std::string, std::string>> users;  // user -> hex SHA-256 of the password
  std::unique_ptr<FailureLimiter> basic_failures;           // made at Start
  std::unique_ptr<HttpServer> server;
  std::thread thread;

  // Empty when the request may read /metrics; else the refusal, already written into `res`.
  bool Admit(const httplib::Request& req, httplib::Response& res) {
    const MetricsAuth& auth = options.auth;
    if (!auth.required()) return true;
    std::string challenge;
    if (!users.empty()) challenge = "Basic realm=\"kvstash metrics\"";
    if (auth.bearer) challenge += std::string(challenge.empty() ? "" : ", ") + "Bearer realm=\"kvstash metrics\"";
    auto refuse = [&](int status, const std::string& why) {
      res.status = status;
      if (status == 401) res.set_header("WWW-Authenticate", challenge);
      res.set_content(why + "\n", "text/plain");
      LogRefusal(req.remote_addr, status, why);
      return false;
    };
    if (!req.has_header("Authorization")) return refuse(401, "credentials required");
    const std::string value = req.get_header_value("Authorization");
    if (StartsWithNoCase(value, "Basic ")) {
      if (users.empty()) return refuse(401, "basic authentication is not configured");
      if (!basic_failures->Allowed(req.remote_addr)) return refuse(401, "too many failed attempts");
      auto fail = [&](const std::string& why) {
        basic_failures->RecordFailure(req.remote_addr);
        return refuse(401, why);
      };
      std::optional<std::string> decoded = Base64Decode(std::string_view(value).substr(6));
      const size_t colon = decoded ? decoded->find(':') : std::string::npos;
      if (colon == std::string::npos) return fail("malformed basic credentials");
      const std::string user = decoded->substr(0, colon);
      const std::string digest = Sha256Hex(std::string_view(*decoded).substr(colon + 1));
      bool match = false;
      for (const auto& [known, known_digest] : users) {
        // Every entry compared, in constant time each: no early exit tells which users exist.
        match = (EqualsConstantTime(known, user) & EqualsConstantTime(known_digest, digest)) || match;
      }
      if (!match) return fail("unknown user or wrong password");
      return true;
    }
    if (StartsWithNoCase(value, "Bearer ")) {
      if (!auth.bearer) return refuse(401, "bearer tokens are not configured");
      Status st = auth.bearer(req.remote_addr, value);
      if (st.ok()) return true;
      return refuse(st.code() == StatusCode::kPermissionDenied ? 403 : 401, st.message());
    }
    return refuse(401, "unsupported authorization scheme");
  }
};

MetricsHttpServer::MetricsHttpServer(const Registry* registry, MetricsHttpOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->registry = registry;
  impl_->options = std::move(options);
}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

Result<int> MetricsHttpServer::Start(const std::string& host, int port) {
  if (impl_->thread.joinable()) return FailedPrecondition("/metrics server already started");
  const MetricsHttpOptions& options = impl_->options;
  impl_->users.clear();
  if (!options.auth.basic_auth_file.empty()) {
    std::ifstream in(options.auth.basic_auth_file);
    if (!in) return InvalidArgument("cannot read the metrics basic-auth file " + options.auth.basic_auth_file);
    std::ostringstream text;
    text << in.rdbuf();
    KVSTASH_ASSIGN_OR_RETURN(impl_->users, ParseBasicAuthFile(text.str(), options.auth.basic_auth_file));
  }
  impl_->basic_failures = std::make_unique<FailureLimiter>(options.auth.clock, options.auth.basic_failure_burst,
                                                           options.auth.basic_failure_refill_per_s);
  impl_->server = std::make_unique<HttpServer>(options.limits);
  KVSTASH_RETURN_IF_ERROR(impl_->server->EnableTls(options.tls));
  Impl* impl = impl_.get();
  impl_->server->Get("/metrics", [impl](const httplib::Request& req, httplib::Response& res) {
    if (!impl->Admit(req, res)) return;
    res.set_content(impl->registry->Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  impl_->server->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  return ServeInBackground(*impl_->server, host, port, impl_->thread, "/metrics");
}

void MetricsHttpServer::Stop() {
  if (impl_->server) StopServing(*impl_->server, impl_->thread);
}

bool MetricsHttpServer::tls() const { return impl_->server && impl_->server->tls(); }

HttpCounters MetricsHttpServer::counters() const { return impl_->server ? impl_->server->counters() : HttpCounters{}; }

}  // namespace kvstash::metrics
