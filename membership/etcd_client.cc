#include "membership/etcd_client.h"

#include <httplib.h>

#include <fstream>

#include <nlohmann/json.hpp>
#include <optional>

namespace kvstash::membership {
namespace {

using nlohmann::json;

constexpr int kWatchIdleSeconds = 5;
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int64_t JsonInt(const json& j, const char* field) {
  // The gateway prints 64-bit integers as strings; accept numbers too.
  auto it = j.find(field);
  if (it == j.end()) return 0;
  if (it->is_string()) {
    try {
      return std::stoll(it->get<std::string>());
    } catch (const std::exception&) {
      return 0;
    }
  }
  if (it->is_number_integer()) return it->get<int64_t>();
  return 0;
}

Result<EtcdKeyValue> ParseKv(const json& kv) {
  EtcdKeyValue out;
  KVSTASH_ASSIGN_OR_RETURN(out.key, Base64Decode(kv.value("key", "")));
  KVSTASH_ASSIGN_OR_RETURN(out.value, Base64Decode(kv.value("value", "")));
  out.mod_revision = JsonInt(kv, "mod_revision");
  out.lease = JsonInt(kv, "lease");
  return out;
}

// httplib's own names for its errors are single words ("Connection", "Read"): say what happened.
std::string Describe(httplib::Error error) {
  switch (error) {
    case httplib::Error::Connection:
      return "cannot connect (connection refused, or no route to the host)";
    case httplib::Error::ConnectionTimeout:
      return "connection timed out";
    case httplib::Error::Read:
      return "no answer in time, or the connection closed while reading";
    case httplib::Error::Write:
      return "the connection closed while sending";
    case httplib::Error::BindIPAddress:
      return "cannot bind the local address";
    case httplib::Error::Canceled:
      return "cancelled";
    case httplib::Error::SSLConnection:
      return "TLS handshake failed (a plaintext etcd, or it refused this client's certificate)";
    case httplib::Error::SSLServerVerification:
      return "etcd's certificate is not signed by the CA given (--etcd-ca) or names another host";
    case httplib::Error::SSLLoadingCerts:
      return "cannot load the etcd TLS files";
    default:
      return "HTTP client error " + httplib::to_string(error);
  }
}

Result<json> ParseJson(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return Unavailable("etcd sent a reply that is not JSON: " + text.substr(0, 200));
  return j;
}

}  // namespace

std::string Base64Encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = static_cast<uint8_t>(in[i]) << 16 | static_cast<uint8_t>(in[i + 1]) << 8 |
                       static_cast<uint8_t>(in[i + 2]);
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
  }
  if (i + 1 == in.size()) {
    const uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    const uint32_t v = static_cast<uint8_t>(in[i]) << 16 | static_cast<uint8_t>(in[i + 1]) << 8;
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

Result<std::string> Base64Decode(std::string_view in) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    const char* p = std::char_traits<char>::find(kB64, 64, c);
    if (p == nullptr) return InvalidArgument("bad base64 from etcd");
    acc = acc << 6 | static_cast<uint32_t>(p - kB64);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

std::string PrefixRangeEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (static_cast<uint8_t>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<uint8_t>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

Result<std::unique_ptr<EtcdClient>> EtcdClient::Create(const EtcdOptions& options) {
  if (options.endpoints.empty()) return InvalidArgument("no etcd endpoint given");
  std::vector<Endpoint> endpoints;
  if (options.cert_file.empty() != options.key_file.empty()) {
    return InvalidArgument("an etcd client certificate needs its key, and a key its certificate");
  }
  for (const std::string* file : {&options.ca_file, &options.cert_file, &options.key_file}) {
    if (file->empty()) continue;
    std::ifstream in(*file);
    std::string first;
    if (!in || !std::getline(in, first)) return InvalidArgument("cannot read etcd TLS file " + *file);
  }
  for (std::string e : options.endpoints) {
    const std::string original = e;
    bool tls = false;
    if (e.rfind("http://", 0) == 0) e = e.substr(7);
    if (e.rfind("https://", 0) == 0) {
      if (options.ca_file.empty()) {
        return InvalidArgument("etcd endpoint " + original +
                               " is https: give the CA that signed etcd's certificate (--etcd-ca)");
      }
      e = e.substr(8);
      tls = true;
    }
    while (!e.empty() && e.back() == '/') e.pop_back();
    const size_t colon = e.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == e.size() ||
        e.find_first_not_of("0123456789", colon + 1) != std::string::npos || e.size() - colon > 6) {
      return InvalidArgument("etcd endpoint must be [http://|https://]HOST:PORT, not '" + original + "'");
    }
    const int port = std::stoi(e.substr(colon + 1));
    if (port <= 0 || port > 65535)
      return InvalidArgument("etcd endpoint port out of range: " + original);
    endpoints.push_back({e.substr(0, colon), port, tls});
  }
  return std::unique_ptr<EtcdClient>(new EtcdClient(options, std::move(endpoints)));
}

EtcdClient::EtcdClient(EtcdOptions options, std::vector<Endpoint> endpoints)
    : options_(std::move(options)), endpoints_(std::move(endpoints)) {}

EtcdClient::~EtcdClient() { CancelWatch(); }

std::unique_ptr<httplib::Client> EtcdClient::Connect(const Endpoint& ep) const {
  if (!ep.tls) return std::make_unique<httplib::Client>(ep.host, ep.port);
  const std::string url = "https://" + ep.host + ":" + std::to_string(ep.port);
  auto client = options_.cert_file.empty() ? std::make_unique<httplib::Client>(url)
                                           : std::make_unique<httplib::Client>(url, options_.cert_file, options_.key_file);
  client->set_ca_cert_path(options_.ca_file.c_str());
  client->enable_server_certificate_verification(true);
  return client;
}

Result<std::string> EtcdClient::Post(const std::string& path, const std::string& body) {
  std::string last_error = "no endpoint";
  const size_t first = preferred_.load();
  for (size_t k = 0; k < endpoints_.size(); ++k) {
    const size_t idx = (first + k) % endpoints_.size();
    const Endpoint& ep = endpoints_[idx];
    std::unique_ptr<httplib::Client> client = Connect(ep);
    httplib::Client& cli = *client;
    const time_t sec = static_cast<time_t>(options_.timeout_ms / 1000);
    const time_t usec = static_cast<time_t>(options_.timeout_ms % 1000) * 1000;
    cli.set_connection_timeout(sec, usec);
    cli.set_read_timeout(sec, usec);
    cli.set_write_timeout(sec, usec);
    auto res = cli.Post(path.c_str(), body, "application/json");
    if (!res) {
      last_error = ep.host + ":" + std::to_string(ep.port) + ": " + Describe(res.error());
      continue;
    }
    preferred_.store(idx);
    if (res->status != 200) {
      // A gateway error carries {"error": ..., "code": grpc-code}; 404 "lease not found" etc.
      auto parsed = ParseJson(res->body);
      const std::string msg =
          parsed.ok() ? parsed->value("message", parsed->value("error", res->body)) : res->body;
      if (msg.find("not found") != std::string::npos) return NotFound("etcd: " + msg);
      if (msg.find("compacted") != std::string::npos) return OutOfRange("etcd: " + msg);
      return Unavailable("etcd " + path + ": HTTP " + std::to_string(res->status) + ": " + msg);
    }
    return res->body;
  }
  return Unavailable("cannot reach etcd (" + last_error + ")");
}

Result<int64_t> EtcdClient::LeaseGrant(int64_t ttl_s) {
  KVSTASH_ASSIGN_OR_RETURN(std::string body, Post("/v3/lease/grant", json{{"TTL", ttl_s}}.dump()));
  KVSTASH_ASSIGN_OR_RETURN(json j, ParseJson(body));
  const int64_t id = JsonInt(j, "ID");
  if (id == 0) return Unavailable("etcd granted no lease: " + j.value("error", body));
  return id;
}

Result<int64_t> EtcdClient::LeaseKeepAlive(int64_t lease_id) {
  KVSTASH_ASSIGN_OR_RETURN(
      std::string body, Post("/v3/lease/keepalive", json{{"ID", std::to_string(lease_id)}}.dump()));
  KVSTASH_ASSIGN_OR_RETURN(json j, ParseJson(body));
  const json& result = j.contains("result") ? j["result"] : j;
  const int64_t ttl = JsonInt(result, "TTL");
  if (ttl <= 0) return NotFound("etcd lease " + std::to_string(lease_id) + " has expired");
  return ttl;
}

Status EtcdClient::LeaseRevoke(int64_t lease_id) {
  return Post("/v3/lease/revoke", json{{"ID", std::to_string(lease_id)}}.dump()).status();
}

Status EtcdClient::Put(const std::string& key, const std::string& value, int64_t lease_id,
                       bool keep_lease) {
  json req{{"key", Base64Encode(key)}, {"value", Base64Encode(value)}};
  if (lease_id != 0) req["lease"] = std::to_string(lease_id);
  if (keep_lease) req["ignore_lease"] = true;
  return Post("/v3/kv/put", req.dump()).status();
}

Result<EtcdRange> EtcdClient::RangePrefix(const std::string& prefix) {
  json req{{"key", Base64Encode(prefix)}, {"range_end", Base64Encode(PrefixRangeEnd(prefix))}};
  KVSTASH_ASSIGN_OR_RETURN(std::string body, Post("/v3/kv/range", req.dump()));
  KVSTASH_ASSIGN_OR_RETURN(json j, ParseJson(body));
  EtcdRange out;
  if (j.contains("header")) out.revision = JsonInt(j["header"], "revision");
  if (j.contains("kvs") && j["kvs"].is_array()) {
    for (const json& kv : j["kvs"]) {
      KVSTASH_ASSIGN_OR_RETURN(EtcdKeyValue parsed, ParseKv(kv));
      out.kvs.push_back(std::move(parsed));
    }
  }
  return out;
}

Result<std::optional<EtcdKeyValue>> EtcdClient::Get(const std::string& key) {
  KVSTASH_ASSIGN_OR_RETURN(std::string body,
                           Post("/v3/kv/range", json{{"key", Base64Encode(key)}}.dump()));
  KVSTASH_ASSIGN_OR_RETURN(json j, ParseJson(body));
  if (!j.contains("kvs") || !j["kvs"].is_array() || j["kvs"].empty())
    return std::optional<EtcdKeyValue>();
  KVSTASH_ASSIGN_OR_RETURN(EtcdKeyValue kv, ParseKv(j["kvs"][0]));
  return std::optional<EtcdKeyValue>(std::move(kv));
}

Status EtcdClient::Delete(const std::string& key) {
  return Post("/v3/kv/deleterange", json{{"key", Base64Encode(key)}}.dump()).status();
}

Status EtcdClient::Watch(const std::string& prefix, int64_t start_revision, const OnEvents& on_events) {
  const Endpoint& ep = endpoints_[preferred_.load() % endpoints_.size()];
  std::unique_ptr<httplib::Client> client = Connect(ep);
  httplib::Client& cli = *client;
  const time_t sec = static_cast<time_t>(options_.timeout_ms / 1000);
  cli.set_connection_timeout(sec, static_cast<time_t>(options_.timeout_ms % 1000) * 1000);
  // An idle stream ends after this long (DEADLINE_EXCEEDED; the caller watches again from where it
  // was): this bounds how long a CancelWatch that raced with the connect can go unnoticed.
  cli.set_read_timeout(static_cast<time_t>(kWatchIdleSeconds), 0);
  {
    MutexLock lock(watch_mu_);
    if (cancelled_.load()) return Status::Ok();
    watch_socket_owner_ = &cli;
  }
  json create{{"key", Base64Encode(prefix)},
              {"range_end", Base64Encode(PrefixRangeEnd(prefix))},
              {"progress_notify", true}};
  if (start_revision > 0) create["start_revision"] = std::to_string(start_revision);

  httplib::Request req;
  req.method = "POST";
  req.path = "/v3/watch";
  req.body = json{{"create_request", create}}.dump();
  req.set_header("Content-Type", "application/json");
  std::string pending;
  Status stream_status = Status::Ok();
  bool stopped_by_callback = false;
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    pending.append(data, len);
    size_t nl;
    // The gateway writes one JSON object per line.
    while ((nl = pending.find('\n')) != std::string::npos) {
      const std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      Result<json> j = ParseJson(line);
      if (!j.ok()) {
        stream_status = j.status();
        return false;
      }
      if (j->contains("error")) {
        stream_status = Unavailable("etcd watch: " + (*j)["error"].dump());
        return false;
      }
      const json& result = j->contains("result") ? (*j)["result"] : *j;
      if (JsonInt(result, "compact_revision") > 0) {
        stream_status =
            OutOfRange("etcd watch: revision " + std::to_string(start_revision) + " was compacted");
        return false;
      }
      if (result.value("canceled", false)) {
        stream_status =
            Unavailable("etcd cancelled the watch: " + result.value("cancel_reason", ""));
        return false;
      }
      std::vector<EtcdEvent> events;
      if (result.contains("events") && result["events"].is_array()) {
        for (const json& e : result["events"]) {
          EtcdEvent ev;
          ev.type =
              e.value("type", "PUT") == "DELETE" ? EtcdEvent::Type::kDelete : EtcdEvent::Type::kPut;
          Result<EtcdKeyValue> kv = ParseKv(e.value("kv", json::object()));
          if (!kv.ok()) {
            stream_status = kv.status();
            return false;
          }
          ev.kv = std::move(*kv);
          events.push_back(std::move(ev));
        }
      }
      if (!events.empty() && !on_events(events)) {
        stopped_by_callback = true;
        return false;
      }
    }
    return !cancelled_.load();
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  const bool sent = cli.send(req, res, err);
  {
    MutexLock lock(watch_mu_);
    watch_socket_owner_ = nullptr;
  }
  if (cancelled_.load() || stopped_by_callback) return Status::Ok();
  if (!stream_status.ok()) return stream_status;
  if (!sent && err == httplib::Error::Read) return DeadlineExceeded("etcd watch idle");
  if (!sent) return Unavailable("etcd watch stream broke: " + Describe(err));
  return Unavailable("etcd ended the watch stream (HTTP " + std::to_string(res.status) + ")");
}

void EtcdClient::CancelWatch() {
  MutexLock lock(watch_mu_);
  cancelled_.store(true);
  if (watch_socket_owner_ != nullptr) static_cast<httplib::Client*>(watch_socket_owner_)->stop();
}

}  // namespace kvstash::membership
