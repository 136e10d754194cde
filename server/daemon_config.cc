#include "server/daemon_config.h"

#include <CLI/CLI.hpp>
#include <toml++/toml.h>

#include <cstdio>
#include <optional>
#include <sstream>

#include "common/units.h"
#include "kvstash/limits.h"
#include "server/version.h"

namespace kvstash::server {
namespace {

Status TypeError(const std::string& origin, std::string_view key, std::string_view want) {
  return InvalidArgument(origin + ": '" + std::string(key) + "' must be " + std::string(want));
}

Status ReadString(const toml::node& node, const std::string& origin, std::string_view key, std::string& out) {
  if (auto v = node.value<std::string>()) {
    out = *v;
    return Status::Ok();
  }
  return TypeError(origin, key, "a string");
}

Status ReadBool(const toml::node& node, const std::string& origin, std::string_view key, bool& out) {
  if (auto v = node.value<bool>()) {
    out = *v;
    return Status::Ok();
  }
  return TypeError(origin, key, "true or false");
}

template <typename Int>
Status ReadUint(const toml::node& node, const std::string& origin, std::string_view key, Int& out) {
  if (auto v = node.value<int64_t>(); v && *v >= 0) {
    out = static_cast<Int>(*v);
    return Status::Ok();
  }
  return TypeError(origin, key, "a non-negative integer");
}

Status ReadDouble(const toml::node& node, const std::string& origin, std::string_view key, double& out) {
  if (auto v = node.value<double>()) {
    out = *v;
    return Status::Ok();
  }
  return TypeError(origin, key, "a number");
}

// Sizes may be written as integers (bytes) or strings ("64MiB").
Status ReadSize(const toml::node& node, const std::string& origin, std::string_view key, uint64_t& out) {
  if (auto v = node.value<int64_t>(); v && *v >= 0) {
    out = static_cast<uint64_t>(*v);
    return Status::Ok();
  }
  if (auto s = node.value<std::string>()) {
    auto parsed = ParseByteSize(*s);
    if (!parsed.ok()) return InvalidArgument(origin + ": '" + std::string(key) + "': " + parsed.status().message());
    out = *parsed;
    return Status::Ok();
  }
  return TypeError(origin, key, "a size such as \"1GiB\" or a byte count");
}

// A host name or IPv4 address ([A-Za-z0-9.-]), or an IPv6 address (hex digits, '.' and ':'), or empty.
bool ValidAdvertise(const std::string& host) {
  if (host.size() > 253) return false;
  const bool name = host.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-") ==
                    std::string::npos;
  const bool ipv6 = host.find(':') != std::string::npos &&
                    host.find_first_not_of("0123456789abcdefABCDEF.:") == std::string::npos;
  return name || ipv6;
}

Status ApplyServerTable(const toml::table& table, const std::string& origin, DaemonConfig& c) {
  for (const auto& [k, node] : table) {
    const std::string key(k.str());
    const std::string full = "server." + key;
    if (key == "listen") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.listen));
    else if (key == "metrics_listen") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.metrics_listen));
    else if (key == "standalone") KVSTASH_RETURN_IF_ERROR(ReadBool(node, origin, full, c.standalone));
    else if (key == "member_id") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.member_id));
    else if (key == "advertise") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.advertise));
    else if (key == "threads") KVSTASH_RETURN_IF_ERROR(ReadUint(node, origin, full, c.threads));
    else if (key == "log_level") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.log_level));
    else if (key == "reservation_timeout_ms") KVSTASH_RETURN_IF_ERROR(ReadUint(node, origin, full, c.reservation_timeout_ms));
    else if (key == "reaper_interval_ms") KVSTASH_RETURN_IF_ERROR(ReadUint(node, origin, full, c.reaper_interval_ms));
    else if (key == "default_lease_ms") KVSTASH_RETURN_IF_ERROR(ReadUint(node, origin, full, c.default_lease_ms));
    else if (key == "verify_sends") KVSTASH_RETURN_IF_ERROR(ReadBool(node, origin, full, c.verify_sends));
    else return InvalidArgument(origin + ": unknown setting '" + full + "'");
  }
  return Status::Ok();
}

Status ApplyDramTable(const toml::table& table, const std::string& origin, DaemonConfig& c) {
  for (const auto& [k, node] : table) {
    const std::string key(k.str());
    const std::string full = "dram." + key;
    if (key == "capacity") KVSTASH_RETURN_IF_ERROR(ReadSize(node, origin, full, c.dram_capacity));
    else if (key == "high_watermark") KVSTASH_RETURN_IF_ERROR(ReadDouble(node, origin, full, c.high_watermark));
    else if (key == "low_watermark") KVSTASH_RETURN_IF_ERROR(ReadDouble(node, origin, full, c.low_watermark));
    else if (key == "eviction_policy") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.eviction_policy));
    else if (key == "huge_pages") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.huge_pages));
    else if (key == "max_block") KVSTASH_RETURN_IF_ERROR(ReadSize(node, origin, full, c.max_block));
    else if (key == "prefault") KVSTASH_RETURN_IF_ERROR(ReadBool(node, origin, full, c.dram_prefault));
    else return InvalidArgument(origin + ": unknown setting '" + full + "'");
  }
  return Status::Ok();
}

Status ApplySsdTable(const toml::table& table, const std::string& origin, DaemonConfig& c) {
  for (const auto& [k, node] : table) {
    const std::string key(k.str());
    const std::string full = "ssd." + key;
    if (key == "dir") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.ssd_dir));
    else if (key == "capacity") KVSTASH_RETURN_IF_ERROR(ReadSize(node, origin, full, c.ssd_capacity));
    else if (key == "segment") KVSTASH_RETURN_IF_ERROR(ReadSize(node, origin, full, c.ssd_segment));
    else if (key == "queue_depth") KVSTASH_RETURN_IF_ERROR(ReadUint(node, origin, full, c.ssd_queue_depth));
    else if (key == "io_backend") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.ssd_io_backend));
    else if (key == "sync") KVSTASH_RETURN_IF_ERROR(ReadBool(node, origin, full, c.ssd_sync));
    else return InvalidArgument(origin + ": unknown setting '" + full + "'");
  }
  return Status::Ok();
}

Status ApplySecurityTable(const toml::table& table, const std::string& origin, DaemonConfig& c) {
  for (const auto& [k, node] : table) {
    const std::string key(k.str());
    const std::string full = "security." + key;
    if (key == "tls_cert") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.tls_cert));
    else if (key == "tls_key") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.tls_key));
    else if (key == "tls_client_ca") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.tls_client_ca));
    else if (key == "tls_reload_s") KVSTASH_RETURN_IF_ERROR(ReadUint(node, origin, full, c.tls_reload_s));
    else if (key == "tokens_file") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.tokens_file));
    else if (key == "metrics_tls_cert") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.metrics_tls_cert));
    else if (key == "metrics_tls_key") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.metrics_tls_key));
    else if (key == "metrics_tls_client_ca") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.metrics_tls_client_ca));
    else if (key == "metrics_basic_auth_file") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.metrics_basic_auth_file));
    else if (key == "etcd_ca") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.etcd_ca));
    else if (key == "etcd_cert") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.etcd_cert));
    else if (key == "etcd_key") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.etcd_key));
    else if (key == "auth_failure_burst") KVSTASH_RETURN_IF_ERROR(ReadDouble(node, origin, full, c.auth_failure_burst));
    else if (key == "auth_failure_refill_per_s") {
      KVSTASH_RETURN_IF_ERROR(ReadDouble(node, origin, full, c.auth_failure_refill_per_s));
    }
    else return InvalidArgument(origin + ": unknown setting '" + full + "'");
  }
  return Status::Ok();
}

Status ApplyHbmTable(const toml::table& table, const std::string& origin, DaemonConfig& c) {
  for (const auto& [k, node] : table) {
    const std::string key(k.str());
    const std::string full = "hbm." + key;
    if (key == "capacity") KVSTASH_RETURN_IF_ERROR(ReadSize(node, origin, full, c.hbm_capacity));
    else if (key == "gpu") KVSTASH_RETURN_IF_ERROR(ReadUint(node, origin, full, c.gpu));
    else return InvalidArgument(origin + ": unknown setting '" + full + "'");
  }
  return Status::Ok();
}

// ucx.shm_mode as a string ("0660", octal) or a TOML integer (0o660: TOML writes octal so).
Status ReadShmMode(const toml::node& node, const std::string& origin, std::string_view key, uint32_t& out) {
  if (auto v = node.value<int64_t>(); v && *v >= 0 && *v <= 07777) {
    out = static_cast<uint32_t>(*v);
    return Status::Ok();
  }
  if (auto s = node.value<std::string>()) {
    Result<uint32_t> mode = ParseShmMode(*s);
    if (!mode.ok()) return InvalidArgument(origin + ": '" + std::string(key) + "': " + mode.status().message());
    out = *mode;
    return Status::Ok();
  }
  return TypeError(origin, key, "an octal mode such as \"0600\" or 0o600");
}

Status ApplyUcxTable(const toml::table& table, const std::string& origin, DaemonConfig& c) {
  for (const auto& [k, node] : table) {
    const std::string key(k.str());
    const std::string full = "ucx." + key;
    if (key == "enabled") KVSTASH_RETURN_IF_ERROR(ReadBool(node, origin, full, c.ucx_enabled));
    else if (key == "transports") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.ucx_transports));
    else if (key == "protocol") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.ucx_protocol));
    else if (key == "send_timeout_ms") KVSTASH_RETURN_IF_ERROR(ReadUint(node, origin, full, c.ucx_send_timeout_ms));
    else if (key == "lanes") KVSTASH_RETURN_IF_ERROR(ReadUint(node, origin, full, c.ucx_lanes));
    else if (key == "listen") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.ucx_listen));
    else if (key == "shm_mode") KVSTASH_RETURN_IF_ERROR(ReadShmMode(node, origin, full, c.ucx_shm_mode));
    else return InvalidArgument(origin + ": unknown setting '" + full + "'");
  }
  return Status::Ok();
}

Status ApplyClusterTable(const toml::table& table, const std::string& origin, DaemonConfig& c) {
  for (const auto& [k, node] : table) {
    const std::string key(k.str());
    const std::string full = "cluster." + key;
    if (key == "etcd_endpoints") {
      const toml::array* list = node.as_array();
      if (list == nullptr) return TypeError(origin, full, "a list of strings");
      c.etcd_endpoints.clear();
      for (const auto& item : *list) {
        std::string endpoint;
        KVSTASH_RETURN_IF_ERROR(ReadString(item, origin, full, endpoint));
        c.etcd_endpoints.push_back(std::move(endpoint));
      }
    } else if (key == "peers") {
      const toml::array* list = node.as_array();
      if (list == nullptr) return TypeError(origin, full, "a list of strings");
      c.peers.clear();
      for (const auto& item : *list) {
        std::string peer;
        KVSTASH_RETURN_IF_ERROR(ReadString(item, origin, full, peer));
        c.peers.push_back(std::move(peer));
      }
    } else if (key == "name") KVSTASH_RETURN_IF_ERROR(ReadString(node, origin, full, c.cluster));
    else if (key == "weight") KVSTASH_RETURN_IF_ERROR(ReadDouble(node, origin, full, c.weight));
    else if (key == "lease_ttl_s") KVSTASH_RETURN_IF_ERROR(ReadUint(node, origin, full, c.lease_ttl_s));
    else return InvalidArgument(origin + ": unknown setting '" + full + "'");
  }
  return Status::Ok();
}

Status ApplyReplicationTable(const toml::table& table, const std::string& origin, DaemonConfig& c) {
  for (const auto& [k, node] : table) {
    const std::string key(k.str());
    const std::string full = "replication." + key;
    if (key == "copies") KVSTASH_RETURN_IF_ERROR(ReadUint(node, origin, full, c.replicas));
    else if (key == "hot_rate") KVSTASH_RETURN_IF_ERROR(ReadUint(node, origin, full, c.hot_rate));
    else return InvalidArgument(origin + ": unknown setting '" + full + "'");
  }
  return Status::Ok();
}

Status ApplyTable(const toml::table& root, const std::string& origin, DaemonConfig& config) {
  DaemonConfig updated = config;  // a bad file changes nothing
  for (const auto& [k, node] : root) {
    const std::string key(k.str());
    const toml::table* table = node.as_table();
    if (table == nullptr) return InvalidArgument(origin + ": '" + key + "' must be a table ([server], [hbm], [dram], [ssd], [ucx], [cluster], [replication] or [security])");
    if (key == "server") KVSTASH_RETURN_IF_ERROR(ApplyServerTable(*table, origin, updated));
    else if (key == "dram") KVSTASH_RETURN_IF_ERROR(ApplyDramTable(*table, origin, updated));
    else if (key == "hbm") KVSTASH_RETURN_IF_ERROR(ApplyHbmTable(*table, origin, updated));
    else if (key == "ucx") KVSTASH_RETURN_IF_ERROR(ApplyUcxTable(*table, origin, updated));
    else if (key == "ssd") KVSTASH_RETURN_IF_ERROR(ApplySsdTable(*table, origin, updated));
    else if (key == "cluster") KVSTASH_RETURN_IF_ERROR(ApplyClusterTable(*table, origin, updated));
    else if (key == "replication") KVSTASH_RETURN_IF_ERROR(ApplyReplicationTable(*table, origin, updated));
    else if (key == "security") KVSTASH_RETURN_IF_ERROR(ApplySecurityTable(*table, origin, updated));
    else return InvalidArgument(origin + ": unknown table [" + key + "]");
  }
  config = std::move(updated);
  return Status::Ok();
}

}  // namespace

Result<uint32_t> ParseShmMode(const std::string& given) {
  const std::string text = given.rfind("0o", 0) == 0 ? given.substr(2) : given;  // TOML's octal prefix
  if (text.empty() || text.size() > 5 || text.find_first_not_of("01234567") != std::string::npos) {
    return InvalidArgument("shm mode must be octal permission bits such as 0600, not '" + given + "'");
  }
  return static_cast<uint32_t>(std::stoul(text, nullptr, 8));
}

// Debian's toml++ is built with exceptions: parse errors arrive as toml::parse_error and are
// turned into a Status here, at the edge of this module.
Status ApplyTomlString(std::string_view toml_text, const std::string& origin, DaemonConfig& config) {
  try {
    const toml::table table = toml::parse(toml_text, origin);
    return ApplyTable(table, origin, config);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << origin << ":" << e.source().begin.line << ": " << e.description();
    return InvalidArgument(msg.str());
  }
}

Status ApplyTomlFile(const std::string& path, DaemonConfig& config) {
  try {
    const toml::table table = toml::parse_file(path);
    return ApplyTable(table, path, config);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    if (e.source().begin.line == 0) msg << path << ": " << e.description();
    else msg << path << ":" << e.source().begin.line << ": " << e.description();
    return InvalidArgument(msg.str());
  }
}

Result<tiers::DramTierOptions> DaemonConfig::DramOptions() const {
  tiers::DramTierOptions o;
  o.capacity_bytes = dram_capacity;
  o.high_watermark = high_watermark;
  o.low_watermark = low_watermark;
  o.eviction_policy = eviction_policy;
  o.max_block_bytes = max_block;
  o.expired_quarantine_ms = reservation_timeout_ms;
  if (huge_pages == "auto") o.huge_pages = tiers::HugePages::kAuto;
  else if (huge_pages == "on") o.huge_pages = tiers::HugePages::kOn;
  else if (huge_pages == "off") o.huge_pages = tiers::HugePages::kOff;
  else return InvalidArgument("huge_pages must be auto, on or off, not '" + huge_pages + "'");
  return o;
}

Result<tiers::TierManagerOptions> DaemonConfig::TierOptions() const {
  tiers::TierManagerOptions o;
  KVSTASH_ASSIGN_OR_RETURN(o.dram, DramOptions());
  if (!ssd_dir.empty()) {
    tiers::SsdTierOptions ssd;
    ssd.dir = ssd_dir;
    ssd.capacity_bytes = ssd_capacity;
    ssd.segment_bytes = ssd_segment;
    ssd.max_block_bytes = std::min(max_block, ssd_segment);
    ssd.queue_depth = ssd_queue_depth;
    ssd.io_backend = ssd_io_backend;
    ssd.sync = ssd_sync;
    o.ssd = std::move(ssd);
  }
  return o;
}

Status DaemonConfig::Validate() const {
  if (listen.empty()) return InvalidArgument("listen must be HOST:PORT");
  if (threads == 0 || threads > 1024) return InvalidArgument("threads must be 1..1024");
  if (dram_capacity < (1ULL << 20)) return InvalidArgument("dram capacity must be at least 1MiB");
  if (!(low_watermark > 0 && low_watermark <= high_watermark && high_watermark <= 1.0)) {
    return InvalidArgument("watermarks need 0 < low_watermark <= high_watermark <= 1");
  }
  if (max_block == 0 || max_block > limits::kMaxBlockBytes) return InvalidArgument("max_block must be 1B..64MiB");
  if (reservation_timeout_ms == 0 || reservation_timeout_ms > limits::kMaxReservationTimeoutMs) {
    return InvalidArgument("reservation_timeout_ms must be 1..600000");
  }
  if (reaper_interval_ms == 0) return InvalidArgument("reaper_interval_ms must be positive");
  if (ucx_protocol != "auto" && ucx_protocol != "one-sided" && ucx_protocol != "two-sided") {
    return InvalidArgument("ucx protocol must be auto, one-sided or two-sided, not '" + ucx_protocol + "'");
  }
  if (ucx_send_timeout_ms < 100 || ucx_send_timeout_ms > 600'000) {
    return InvalidArgument("ucx send_timeout_ms must be 100..600000");
  }
  if (ucx_lanes > 16) return InvalidArgument("ucx lanes must be 0 (automatic) .. 16");
  if (ucx_shm_mode != 0600 && ucx_shm_mode != 0660) {
    char given[16];
    std::snprintf(given, sizeof(given), "0%o", ucx_shm_mode);
    return InvalidArgument(std::string("ucx shm_mode must be 0600 (this uid only) or 0660 (and its group), not ") +
                           given + " (in TOML write \"0660\" or 0o660)");
  }
  if (gpu < 0 || gpu > 1023) return InvalidArgument("gpu must be a CUDA device index 0..1023");
  if (hbm_capacity != 0) {
    // Blocks larger than the HBM tier stay in DRAM (TierManager placement falls back).
    if (hbm_capacity < (1ULL << 20)) return InvalidArgument("hbm capacity must be 0 (no HBM tier) or at least 1MiB");
  }
  if (!ssd_dir.empty()) {
    if (ssd_segment < (1ULL << 20) || ssd_segment % 4096 != 0) {
      return InvalidArgument("ssd segment must be a multiple of 4KiB and at least 1MiB");
    }
    if (ssd_capacity < 2 * ssd_segment) return InvalidArgument("ssd capacity must hold at least two segments");
    if (ssd_queue_depth == 0 || ssd_queue_depth > 4096) return InvalidArgument("ssd queue_depth must be 1..4096");
    if (ssd_io_backend != "auto" && ssd_io_backend != "uring" && ssd_io_backend != "threads") {
      return InvalidArgument("ssd io_backend must be auto, uring or threads");
    }
  }
  if (default_lease_ms == 0 || default_lease_ms > limits::kMaxLeaseMs) {
    return InvalidArgument("default_lease_ms must be 1..60000");
  }
  if (eviction_policy != "prefix-arc" && eviction_policy != "prefix" && eviction_policy != "lru") {
    return InvalidArgument("eviction_policy must be prefix-arc, prefix or lru, not '" + eviction_policy + "'");
  }
  if (!standalone && etcd_endpoints.empty()) {
    return InvalidArgument("a clustered daemon needs etcd endpoints (--etcd or cluster.etcd_endpoints); or run --standalone");
  }
  if (!standalone && !peers.empty()) {
    return InvalidArgument("peers are for standalone daemons; etcd members find each other");
  }
  for (const std::string& peer : peers) {
    const size_t colon = peer.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == peer.size()) {
      return InvalidArgument("peer must be HOST:PORT, not '" + peer + "'");
    }
  }
  if (!ValidAdvertise(advertise)) {
    return InvalidArgument("advertise must be a host name, IPv4 or IPv6 address without a port, not '" + advertise +
                           "'");
  }
  if (replicas < 1 || replicas > 8) return InvalidArgument("replication.copies must be 1..8");
  if (tls_cert.empty() != tls_key.empty()) {
    return InvalidArgument("TLS needs both security.tls_cert and security.tls_key (--tls-cert, --tls-key)");
  }
  if (!(auth_failure_burst >= 1 && auth_failure_burst <= 1e6) ||
      !(auth_failure_refill_per_s > 0 && auth_failure_refill_per_s <= 1e6)) {
    return InvalidArgument("security.auth_failure_burst must be 1..1e6 and auth_failure_refill_per_s in (0, 1e6]");
  }
  if (!tokens_file.empty() && ucx_enabled && ucx_protocol == "two-sided") {
    return InvalidArgument("two-sided UCX transfers carry no token (docs/SECURITY.md): with a tokens file use "
                           "--ucx-protocol auto or one-sided (same-host one-sided only), or --no-ucx");
  }
  if (metrics_tls_cert.empty() != metrics_tls_key.empty()) {
    return InvalidArgument("HTTPS on the metrics endpoint needs both security.metrics_tls_cert and metrics_tls_key "
                           "(--metrics-tls-cert, --metrics-tls-key)");
  }
  if (!metrics_tls_client_ca.empty() && metrics_tls_cert.empty()) {
    return InvalidArgument("security.metrics_tls_client_ca (--metrics-tls-client-ca) needs metrics_tls_cert and "
                           "metrics_tls_key too");
  }
  if (etcd_cert.empty() != etcd_key.empty()) {
    return InvalidArgument("an etcd client certificate needs its key (--etcd-cert, --etcd-key)");
  }
  if (tls_reload_s > 86'400) return InvalidArgument("security.tls_reload_s must be 0 (never) .. 86400");
  if (!tls_client_ca.empty() && tls_cert.empty()) {
    return InvalidArgument("security.tls_client_ca (--tls-client-ca) needs TLS: set tls_cert and tls_key too");
  }
  if (replicas > 1 && (!tls_cert.empty() || !tokens_file.empty())) {
    return InvalidArgument("hot-block replication (--replicas > 1) does not speak TLS or carry tokens yet "
                           "(docs/SECURITY.md): run replicated daemons without [security], or --replicas 1");
  }
  if (hot_rate < 1) return InvalidArgument("replication.hot_rate must be at least 1 hit per second");
  if (!standalone) {
    if (!(weight > 0) || weight > 1e6) return InvalidArgument("weight must be > 0 and at most 1e6");
    if (lease_ttl_s < 1 || lease_ttl_s > 3600) return InvalidArgument("lease_ttl_s must be 1..3600");
    if (cluster.empty() || cluster.size() > 128 || cluster.find_first_not_of(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") != std::string::npos) {
      return InvalidArgument("cluster name must be 1..128 of A-Z a-z 0-9 . _ : -");
    }
  }
  return DramOptions().status().ok() ? Status::Ok() : DramOptions().status();
}

Result<DaemonConfig> ParseCommandLine(int argc, char** argv) {
  CLI::App app{"kvstashd — the kvstash storage daemon"};
  app.set_version_flag("--version", std::string("kvstashd ") + kVersion);
  std::string config_path;
  std::optional<std::string> listen, metrics_listen, member_id, advertise, log_level, dram_capacity, eviction_policy,
      huge_pages;
  std::optional<uint32_t> threads;
  std::optional<double> high_watermark, low_watermark;
  std::optional<uint64_t> reservation_timeout_ms, default_lease_ms;
  std::optional<std::string> ucx_protocol;
  std::optional<uint64_t> ucx_send_timeout_ms;
  std::optional<uint64_t> ucx_lanes;
  std::optional<std::string> ucx_transports, ssd_dir, ssd_capacity, hbm_capacity;
  std::optional<std::string> ucx_listen, shm_mode;
  std::optional<int> gpu;
  bool standalone = false;
  bool no_ucx = false;
  bool dram_prefault = false;
  std::optional<std::string> etcd, cluster, peers;
  std::optional<std::string> tls_cert, tls_key, tls_client_ca, tokens_file;
  std::optional<std::string> metrics_tls_cert, metrics_tls_key, metrics_tls_client_ca, metrics_basic_auth_file;
  std::optional<std::string> etcd_ca, etcd_cert, etcd_key;
  std::optional<double> auth_failure_burst;
  std::optional<uint32_t> tls_reload_s;
  std::optional<double> weight;
  std::optional<int64_t> lease_ttl_s;
  std::optional<uint32_t> replicas, hot_rate;
  app.add_option("--config", config_path, "TOML config file (see deploy/kvstashd.toml)");
  app.add_option("--listen", listen, "gRPC address HOST:PORT (port 0 picks one) [127.0.0.1:7370]");
  app.add_option("--metrics-listen", metrics_listen, "/metrics address HOST:PORT [127.0.0.1:7371]");
  app.add_flag("--standalone", standalone, "run without etcd as a one-member cluster [default]");
  app.add_option("--member-id", member_id, "member id [the advertised gRPC address, HOST:PORT]");
  app.add_option("--advertise", advertise,
                 "host name or IP peers and clients dial [the listen host; this host's name for 0.0.0.0 or ::]");
  app.add_option("--threads", threads, "most gRPC handler threads [64]");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off [info]");
  app.add_option("--dram-capacity", dram_capacity, "DRAM tier size, e.g. 4GiB [1GiB]");
  app.add_option("--high-watermark", high_watermark, "start evicting above this fraction [0.95]");
  app.add_option("--low-watermark", low_watermark, "evict down to this fraction [0.85]");
  app.add_option("--eviction-policy", eviction_policy, "prefix-arc|prefix|lru [prefix-arc]");
  app.add_option("--huge-pages", huge_pages, "auto|on|off [auto]");
  app.add_flag("--dram-prefault", dram_prefault, "make the whole DRAM arena resident at start [off]");
  app.add_option("--reservation-timeout-ms", reservation_timeout_ms, "PutBegin reservation lifetime [30000]");
  app.add_option("--default-lease-ms", default_lease_ms, "lease for located blocks when none is asked [5000]");
  app.add_option("--ucx-transports", ucx_transports, "UCX transport list, as UCX_TLS [UCX default]");
  app.add_flag("--no-ucx", no_ucx, "offer only the inline gRPC data path");
  bool no_verify_sends = false;
  app.add_flag("--no-verify-sends", no_verify_sends,
               "send blocks without hashing them first (only to measure what the check costs)");
  app.add_option("--ucx-protocol", ucx_protocol,
                 "how bytes move over UCX: auto (one-sided where memory maps or RMA is native, two-sided over tcp), "
                 "one-sided, two-sided [auto]");
  app.add_option("--ucx-send-timeout-ms", ucx_send_timeout_ms,
                 "end a two-sided send whose reader stopped receiving after this long [60000]");
  app.add_option("--ucx-lanes", ucx_lanes,
                 "two-sided push workers, each with its own progress thread; 0 = one per 4 hardware threads, 1..4 [0]");
  app.add_option("--ucx-listen", ucx_listen,
                 "where the UCX data plane listens: an interface, an IP address (its interface) or all "
                 "[the interface of --listen]");
  app.add_option("--shm-mode", shm_mode,
                 "mode of the arena's shared-memory segment: 0600 (this uid) or 0660 (and its group) [0600]");
  app.add_option("--ssd-dir", ssd_dir, "directory for the SSD tier (segment files + index); empty = no SSD tier");
  app.add_option("--ssd-capacity", ssd_capacity, "SSD tier size, e.g. 64GiB [16GiB]");
  app.add_option("--hbm-capacity", hbm_capacity, "GPU memory lent as the HBM tier, e.g. 8GiB; 0 = no HBM tier [0]");
  app.add_option("--gpu", gpu, "CUDA device index of the HBM tier [0]");
  app.add_option("--etcd", etcd, "etcd endpoints, comma-separated: join that cluster instead of --standalone");
  app.add_option("--cluster", cluster, "cluster name in etcd [default]");
  app.add_option("--peers", peers, "standalone daemons of a fixed cluster: every member's HOST:PORT, comma-separated");
  app.add_option("--weight", weight, "share of the keys relative to other members [1]");
  app.add_option("--lease-ttl", lease_ttl_s, "etcd lease TTL in seconds [10]");
  app.add_option("--replicas", replicas, "copies of a hot block, the owner's included; 1 = none [1]");
  app.add_option("--hot-rate", hot_rate, "hits per second that make a block hot [100]");
  app.add_option("--tls-cert", tls_cert, "PEM certificate chain: the gRPC port speaks only TLS [plaintext]");
  app.add_option("--tls-key", tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", tls_client_ca,
                 "PEM CA bundle: clients must present a certificate it signed (mutual TLS) [none]");
  app.add_option("--tls-reload-s", tls_reload_s,
                 "re-read the TLS certificate, key and client CA when they change, checked this often; 0 = never [60]");
  app.add_option("--tokens-file", tokens_file,
                 "bearer tokens file (sha256 tenant role per line; reloaded on SIGHUP): every RPC needs a token "
                 "[no tokens]");
  app.add_option("--metrics-tls-cert", metrics_tls_cert, "PEM certificate chain: /metrics and /healthz over HTTPS only [HTTP]");
  app.add_option("--metrics-tls-key", metrics_tls_key, "PEM private key of --metrics-tls-cert");
  app.add_option("--metrics-tls-client-ca", metrics_tls_client_ca,
                 "PEM CA bundle: metrics clients must present a certificate it signed [none]");
  app.add_option("--metrics-basic-auth-file", metrics_basic_auth_file,
                 "`user sha256(password)` per line: GET /metrics needs basic auth (or, with --tokens-file, an admin "
                 "bearer token) [open]");
  app.add_option("--etcd-ca", etcd_ca, "PEM CA bundle that signed etcd's certificate (https:// endpoints)");
  app.add_option("--etcd-cert", etcd_cert, "PEM client certificate for etcd (etcd --client-cert-auth)");
  app.add_option("--etcd-key", etcd_key, "PEM private key of --etcd-cert");
  app.add_option("--auth-failure-burst", auth_failure_burst,
                 "failed token checks a peer may make in a row before it is refused unchecked [10]");
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    app.exit(e);
    return FailedPrecondition("exit:0");
  } catch (const CLI::ParseError& e) {
    return InvalidArgument(e.what());
  }

  DaemonConfig config;
  if (!config_path.empty()) KVSTASH_RETURN_IF_ERROR(ApplyTomlFile(config_path, config));
  if (listen) config.listen = *listen;
  if (metrics_listen) config.metrics_listen = *metrics_listen;
  if (standalone) config.standalone = true;
  if (member_id) config.member_id = *member_id;
  if (advertise) config.advertise = *advertise;
  if (threads) config.threads = *threads;
  if (log_level) config.log_level = *log_level;
  if (dram_capacity) {
    auto bytes = ParseByteSize(*dram_capacity);
    if (!bytes.ok()) return InvalidArgument("--dram-capacity: " + bytes.status().message());
    config.dram_capacity = *bytes;
  }
  if (high_watermark) config.high_watermark = *high_watermark;
  if (low_watermark) config.low_watermark = *low_watermark;
  if (eviction_policy) config.eviction_policy = *eviction_policy;
  if (huge_pages) config.huge_pages = *huge_pages;
  if (reservation_timeout_ms) config.reservation_timeout_ms = *reservation_timeout_ms;
  if (default_lease_ms) config.default_lease_ms = *default_lease_ms;
  if (ucx_transports) config.ucx_transports = *ucx_transports;
  if (ucx_protocol) config.ucx_protocol = *ucx_protocol;
  if (ucx_send_timeout_ms) config.ucx_send_timeout_ms = *ucx_send_timeout_ms;
  if (ucx_lanes) config.ucx_lanes = *ucx_lanes;
  if (ucx_listen) config.ucx_listen = *ucx_listen;
  if (shm_mode) {
    auto mode = ParseShmMode(*shm_mode);
    if (!mode.ok()) return InvalidArgument("--shm-mode: " + mode.status().message());
    config.ucx_shm_mode = *mode;
  }
  if (no_ucx) config.ucx_enabled = false;
  if (no_verify_sends) config.verify_sends = false;
  if (dram_prefault) config.dram_prefault = true;
  if (ssd_dir) config.ssd_dir = *ssd_dir;
  if (ssd_capacity) {
    auto bytes = ParseByteSize(*ssd_capacity);
    if (!bytes.ok()) return InvalidArgument("--ssd-capacity: " + bytes.status().message());
    config.ssd_capacity = *bytes;
  }
  if (hbm_capacity) {
    auto bytes = ParseByteSize(*hbm_capacity);
    if (!bytes.ok()) return InvalidArgument("--hbm-capacity: " + bytes.status().message());
    config.hbm_capacity = *bytes;
  }
  if (gpu) config.gpu = *gpu;
  if (etcd) {
    if (standalone) return InvalidArgument("--etcd and --standalone exclude each other");
    config.etcd_endpoints.clear();
    std::stringstream list(*etcd);
    for (std::string endpoint; std::getline(list, endpoint, ',');) {
      if (!endpoint.empty()) config.etcd_endpoints.push_back(endpoint);
    }
    config.standalone = false;
  }
  if (peers) {
    config.peers.clear();
    std::stringstream list(*peers);
    for (std::string peer; std::getline(list, peer, ',');) {
      if (!peer.empty()) config.peers.push_back(peer);
    }
  }
  if (cluster) config.cluster = *cluster;
  if (weight) config.weight = *weight;
  if (lease_ttl_s) config.lease_ttl_s = *lease_ttl_s;
  if (replicas) config.replicas = *replicas;
  if (hot_rate) config.hot_rate = *hot_rate;
  if (tls_cert) config.tls_cert = *tls_cert;
  if (tls_key) config.tls_key = *tls_key;
  if (tls_client_ca) config.tls_client_ca = *tls_client_ca;
  if (tls_reload_s) config.tls_reload_s = *tls_reload_s;
  if (tokens_file) config.tokens_file = *tokens_file;
  if (auth_failure_burst) config.auth_failure_burst = *auth_failure_burst;
  if (metrics_tls_cert) config.metrics_tls_cert = *metrics_tls_cert;
  if (metrics_tls_key) config.metrics_tls_key = *metrics_tls_key;
  if (metrics_tls_client_ca) config.metrics_tls_client_ca = *metrics_tls_client_ca;
  if (metrics_basic_auth_file) config.metrics_basic_auth_file = *metrics_basic_auth_file;
  if (etcd_ca) config.etcd_ca = *etcd_ca;
  if (etcd_cert) config.etcd_cert = *etcd_cert;
  if (etcd_key) config.etcd_key = *etcd_key;
  KVSTASH_RETURN_IF_ERROR(config.Validate());
  return config;
}

}  // namespace kvstash::server
