#include "server/daemon_config.h"

#include "common/settings_toml.h"

namespace kvstash::server {

Result<uint32_t> ParseShmMode(const std::string& given) {
  const std::string text = given.rfind("0o", 0) == 0 ? given.substr(2) : given;  // TOML's octal prefix
  if (text.empty() || text.size() > 5 || text.find_first_not_of("01234567") != std::string::npos) {
    return InvalidArgument("shm mode must be octal permission bits such as 0600, not '" + given + "'");
  }
  return static_cast<uint32_t>(std::stoul(text, nullptr, 8));
}

Status ApplyTomlString(std::string_view toml_text, const std::string& origin, DaemonConfig& config) {
  return settings::ApplyTomlText(toml_text, origin, DaemonSettings(), config);
}

Status ApplyTomlFile(const std::string& path, DaemonConfig& config) {
  return settings::ApplyTomlPath(path, DaemonSettings(), config);
}

Result<tiers::DramTierOptions> DaemonConfig::DramOptions() const {
  tiers::DramTierOptions o;
  o.capacity_bytes = dram_capacity;
  o.high_watermark = high_watermark;
  o.low_watermark = low_watermark;
  o.eviction_policy = eviction_policy;
  o.max_block_bytes = max_block;
  o.expired_quarantine_ms = reservation_timeout_ms;
  o.huge_pages = huge_pages;
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

// Each setting's own range comes from the table; what follows are the rules between settings.
Status DaemonConfig::Validate() const {
  KVSTASH_RETURN_IF_ERROR(settings::CheckRanges(DaemonSettings(), *this));
  if (!(low_watermark > 0 && low_watermark <= high_watermark && high_watermark <= 1.0)) {
    return InvalidArgument("watermarks need 0 < low_watermark <= high_watermark <= 1");
  }
  if (!ssd_dir.empty() && ssd_capacity < 2 * ssd_segment) {
    return InvalidArgument("ssd capacity must hold at least two segments");
  }
  if (!standalone && etcd_endpoints.empty()) {
    return InvalidArgument("a clustered daemon needs etcd endpoints (--etcd or cluster.etcd_endpoints); or run --standalone");
  }
  if (!standalone && !peers.empty()) {
    return InvalidArgument("peers are for standalone daemons; etcd members find each other");
  }
  if (tls_cert.empty() != tls_key.empty()) {
    return InvalidArgument("TLS needs both security.tls_cert and security.tls_key (--tls-cert, --tls-key)");
  }
  if (!quotas_file.empty() && tokens_file.empty()) {
    return InvalidArgument("security.quotas_file (--quotas-file) needs security.tokens_file (--tokens-file): "
                           "quotas are per tenant, and tenants are who the tokens name");
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
  if (!tls_client_ca.empty() && tls_cert.empty()) {
    return InvalidArgument("security.tls_client_ca (--tls-client-ca) needs TLS: set tls_cert and tls_key too");
  }
  if (peer_tls_cert.empty() != peer_tls_key.empty()) {
    return InvalidArgument("a client certificate towards the peers needs its key (--peer-tls-cert, --peer-tls-key)");
  }
  if (!peer_tls_cert.empty() && peer_tls_ca.empty()) {
    return InvalidArgument("--peer-tls-cert needs --peer-tls-ca: the client certificate is for TLS towards the peers");
  }
  // Replicated members are configured alike: a daemon with TLS or tokens copies hot blocks to peers
  // that ask for them as well.
  if (replicas > 1 && !tls_cert.empty() && peer_tls_ca.empty()) {
    return InvalidArgument("hot-block replication (--replicas > 1) with TLS needs --peer-tls-ca (and "
                           "--peer-tls-cert/--peer-tls-key for peers with mutual TLS) to copy to the peers");
  }
  if (replicas > 1 && !tokens_file.empty() && peer_token_file.empty()) {
    return InvalidArgument("hot-block replication (--replicas > 1) with tokens needs --peer-token-file: an admin "
                           "token the peers accept");
  }
  return DramOptions().status();
}

}  // namespace kvstash::server
