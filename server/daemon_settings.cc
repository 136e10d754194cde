// kvstashd's settings table: one row per setting (file key, flag, help, unit, range). The TOML
// reader, the flags and their help, and the per-setting range checks are generated from it
// (common/settings.h); the defaults are DaemonConfig's member initializers.
#include <cstdio>
#include <limits>

#include "kvstash/limits.h"
#include "server/daemon_config.h"

namespace kvstash::server {
namespace {

using C = DaemonConfig;
using settings::Bool;
using settings::Bytes;
using settings::Enum;
using settings::Integer;
using settings::List;
using settings::Number;
using settings::String;

// A host name or IPv4 address ([A-Za-z0-9.-]), or an IPv6 address (hex digits, '.' and ':'), or empty.
bool ValidAdvertise(const std::string& host) {
  if (host.size() > 253) return false;
  const bool name = host.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-") ==
                    std::string::npos;
  const bool ipv6 = host.find(':') != std::string::npos &&
                    host.find_first_not_of("0123456789abcdefABCDEF.:") == std::string::npos;
  return name || ipv6;
}

bool ValidClusterName(const std::string& name) {
  return !name.empty() && name.size() <= 128 &&
         name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") ==
             std::string::npos;
}

bool AllHostPorts(const std::vector<std::string>& items) {
  for (const std::string& item : items) {
    const size_t colon = item.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == item.size()) return false;
  }
  return true;
}

std::string OctalMode(const uint32_t& mode) {
  char text[16];
  std::snprintf(text, sizeof(text), "0%o", mode);
  return text;
}

// ucx.shm_mode in a file: a string ("0660", octal) or a TOML integer (0o660: TOML writes octal so).
Result<uint32_t> ShmModeFromFile(const settings::FileValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v); i != nullptr && *i >= 0 && *i <= 07777) {
    return static_cast<uint32_t>(*i);
  }
  return InvalidArgument("must be an octal mode such as \"0600\" or 0o600");
}

bool SsdOn(const C& c) { return !c.ssd_dir.empty(); }
bool Clustered(const C& c) { return !c.standalone; }

std::vector<settings::Setting<C>> BuildTable() {
  std::vector<settings::Setting<C>> t;
  // [server]
  t.push_back(String("server.listen", "--listen", &C::listen, "gRPC address (port 0 picks one)")
                  .Check("HOST:PORT", [](const C& c) { return !c.listen.empty(); }));
  t.push_back(String("server.metrics_listen", "--metrics-listen", &C::metrics_listen,
                     "/metrics and /healthz address HOST:PORT (port 0 picks one)"));
  t.push_back(Bool("server.standalone", "--standalone", &C::standalone, "run without etcd as a one-member cluster")
                  .Switch("true"));
  t.push_back(String("server.member_id", "--member-id", &C::member_id, "member id")
                  .DefaultText("the advertised gRPC address, HOST:PORT"));
  t.push_back(String("server.advertise", "--advertise", &C::advertise, "host name or IP peers and clients dial")
                  .DefaultText("the listen host; this host's name for 0.0.0.0 or ::")
                  .Check("a host name, IPv4 or IPv6 address without a port",
                         [](const C& c) { return ValidAdvertise(c.advertise); }));
  t.push_back(Integer("server.threads", "--threads", &C::threads, "most gRPC handler threads; requests beyond wait")
                  .Range(1, 1024));
  t.push_back(Enum("server.log_level", "--log-level", &C::log_level, std::span(settings::kLogLevelNames), "log level"));
  t.push_back(Integer("server.reservation_timeout_ms", "--reservation-timeout-ms", &C::reservation_timeout_ms,
                      "PutBegin reservation lifetime")
                  .Range(uint64_t{1}, limits::kMaxReservationTimeoutMs)
                  .Unit("ms"));
  t.push_back(Integer("server.max_reservation_timeout_ms", "--max-reservation-timeout-ms",
                      &C::max_reservation_timeout_ms,
                      "longest reservation a client may ask for; a longer ask is cut to it")
                  .Range(uint64_t{1}, limits::kMaxReservationTimeoutMs)
                  .Check("at least server.reservation_timeout_ms",
                         [](const C& c) { return c.max_reservation_timeout_ms >= c.reservation_timeout_ms; })
                  .Unit("ms"));
  t.push_back(Integer("server.reaper_interval_ms", "", &C::reaper_interval_ms,
                      "how often expired reservations are reclaimed")
                  .Check("at least 1", [](const C& c) { return c.reaper_interval_ms > 0; })
                  .Unit("ms"));
  t.push_back(Integer("server.default_lease_ms", "--default-lease-ms", &C::default_lease_ms,
                      "lease for located blocks when none is asked")
                  .Range(uint64_t{1}, limits::kMaxLeaseMs)
                  .Unit("ms"));
  t.push_back(Bool("server.verify_sends", "--no-verify-sends", &C::verify_sends,
                   "send blocks without hashing them first (only to measure what the check costs)")
                  .Switch("false"));
  // [dram]
  t.push_back(Bytes("dram.capacity", "--dram-capacity", &C::dram_capacity, "DRAM tier size, e.g. 4GiB")
                  .Check("at least 1MiB", [](const C& c) { return c.dram_capacity >= (1ULL << 20); }));
  t.push_back(Number("dram.high_watermark", "--high-watermark", &C::high_watermark,
                     "start evicting above this fraction of capacity")
                  .Range(0.0, 1.0));
  t.push_back(Number("dram.low_watermark", "--low-watermark", &C::low_watermark, "evict down to this fraction")
                  .Range(0.0, 1.0));
  t.push_back(Enum("dram.eviction_policy", "--eviction-policy", &C::eviction_policy, std::span(kDaemonEvictionPolicyNames),
                   "which blocks DRAM evicts first"));
  t.push_back(Enum("dram.huge_pages", "--huge-pages", &C::huge_pages, std::span(tiers::kHugePagesNames),
                   "map the arena with huge pages (on: refuse to start without them)"));
  t.push_back(Bytes("dram.max_block", "", &C::max_block, "largest block accepted")
                  .Check("1B..64MiB", [](const C& c) { return c.max_block > 0 && c.max_block <= limits::kMaxBlockBytes; }));
  t.push_back(Bool("dram.prefault", "--dram-prefault", &C::dram_prefault,
                   "make the whole DRAM arena resident at start")
                  .Switch("true"));
  // [hbm]
  t.push_back(Bytes("hbm.capacity", "--hbm-capacity", &C::hbm_capacity,
                    "GPU memory lent as the HBM tier, e.g. 8GiB")
                  .Check("0 (no HBM tier) or at least 1MiB",
                         [](const C& c) { return c.hbm_capacity == 0 || c.hbm_capacity >= (1ULL << 20); }));
  t.push_back(Integer("hbm.gpu", "--gpu", &C::gpu, "the GPU that holds the HBM tier")
                  .Check("a CUDA device index 0..1023", [](const C& c) { return c.gpu >= 0 && c.gpu <= 1023; }));
  t.push_back(Enum("hbm.serving", "--hbm-serving", &C::hbm_serving, std::span(kHbmServingNames),
                   "auto: send HBM blocks from GPU memory to device readers where UCX moves CUDA memory; "
                   "staged: always through DRAM"));
  // [ssd]
  t.push_back(String("ssd.dir", "--ssd-dir", &C::ssd_dir,
                     "directory for the SSD tier (segment files + index); empty = no SSD tier"));
  t.push_back(Bytes("ssd.capacity", "--ssd-capacity", &C::ssd_capacity, "SSD tier size, e.g. 64GiB"));
  t.push_back(Bytes("ssd.segment", "", &C::ssd_segment, "segment size: reclaimed whole, oldest first")
                  .Check("a multiple of 4KiB and at least 1MiB",
                         [](const C& c) { return c.ssd_segment >= (1ULL << 20) && c.ssd_segment % 4096 == 0; })
                  .When(SsdOn));
  t.push_back(Integer("ssd.queue_depth", "", &C::ssd_queue_depth, "I/Os in flight per caller")
                  .Range(1u, 4096u)
                  .When(SsdOn));
  t.push_back(Enum("ssd.io_backend", "", &C::ssd_io_backend, std::span(tiers::kSsdIoBackendNames),
                   "how the SSD tier does I/O (auto: io_uring, else threads)"));
  t.push_back(Bool("ssd.sync", "", &C::ssd_sync, "fdatasync each write: survive power loss, not only crashes"));
  // [ucx]
  t.push_back(Bool("ucx.enabled", "--no-ucx", &C::ucx_enabled, "offer only the inline gRPC data path")
                  .Switch("false"));
  t.push_back(String("ucx.transports", "--ucx-transports", &C::ucx_transports, "UCX transport list, as UCX_TLS")
                  .DefaultText("UCX default"));
  t.push_back(Enum("ucx.protocol", "--ucx-protocol", &C::ucx_protocol, std::span(kDataPlaneProtocolNames),
                   "how bytes move over UCX: auto (one-sided where memory maps or RMA is native, two-sided over "
                   "tcp), one-sided or two-sided"));
  t.push_back(Integer("ucx.send_timeout_ms", "--ucx-send-timeout-ms", &C::ucx_send_timeout_ms,
                      "end a two-sided send whose reader stopped receiving after this long")
                  .Range(uint64_t{100}, uint64_t{600'000})
                  .Unit("ms"));
  t.push_back(Bool("ucx.eager_requests", "--no-eager-requests", &C::ucx_eager_requests,
                   "serve no eager (one-round, RPC-less) gets and puts: clients take the two-phase path; "
                   "never served with tokens on")
                  .Switch("false"));
  t.push_back(Integer("ucx.lanes", "--ucx-lanes", &C::ucx_lanes,
                      "two-sided push workers, each with its own progress thread; 0 = one per 4 hardware threads")
                  .Range(uint64_t{0}, uint64_t{16}));
  t.push_back(String("ucx.listen", "--ucx-listen", &C::ucx_listen,
                     "where the UCX data plane listens: an interface, an IP address (its interface) or all")
                  .DefaultText("the interface of --listen"));
  t.push_back(settings::Custom<C, uint32_t>("ucx.shm_mode", "--shm-mode", &C::ucx_shm_mode,
                                            "mode of the arena's shared-memory segment (docs/SAME_HOST_TRUST.md)",
                                            ParseShmMode, OctalMode, ShmModeFromFile)
                  .Check("0600 (this uid only) or 0660 (and its group)",
                         [](const C& c) { return c.ucx_shm_mode == 0600 || c.ucx_shm_mode == 0660; }));
  // [cluster]
  t.push_back(List("cluster.etcd_endpoints", "--etcd", &C::etcd_endpoints,
                   "etcd endpoints, comma-separated: join that cluster instead of --standalone"));
  t.push_back(String("cluster.name", "--cluster", &C::cluster, "cluster name in etcd")
                  .Check("1..128 of A-Z a-z 0-9 . _ : -", [](const C& c) { return ValidClusterName(c.cluster); })
                  .When(Clustered));
  t.push_back(Number("cluster.weight", "--weight", &C::weight, "share of the keys relative to other members")
                  .Check("> 0 and at most 1e6", [](const C& c) { return c.weight > 0 && c.weight <= 1e6; })
                  .When(Clustered));
  t.push_back(Integer("cluster.lease_ttl_s", "--lease-ttl", &C::lease_ttl_s,
                      "etcd lease TTL: a crashed daemon leaves the member set within this")
                  .Range(int64_t{1}, int64_t{3600})
                  .Unit("s")
                  .When(Clustered));
  t.push_back(List("cluster.peers", "--peers", &C::peers,
                   "standalone daemons of a fixed cluster: every member's HOST:PORT, comma-separated")
                  .Check("a list of HOST:PORT", [](const C& c) { return AllHostPorts(c.peers); }));
  // [replication]
  t.push_back(Integer("replication.copies", "--replicas", &C::replicas,
                      "copies of a hot block, the owner's included; 1 = none")
                  .Range(1u, 8u));
  t.push_back(Integer("replication.hot_rate", "--hot-rate", &C::hot_rate, "hits per second that make a block hot")
                  .Check("at least 1 hit per second", [](const C& c) { return c.hot_rate >= 1; }));
  // [security] (docs/SECURITY.md)
  t.push_back(String("security.tls_cert", "--tls-cert", &C::tls_cert,
                     "PEM certificate chain: the gRPC port speaks only TLS")
                  .DefaultText("plaintext"));
  t.push_back(String("security.tls_key", "--tls-key", &C::tls_key, "PEM private key of --tls-cert"));
  t.push_back(String("security.tls_client_ca", "--tls-client-ca", &C::tls_client_ca,
                     "PEM CA bundle: clients must present a certificate it signed (mutual TLS)"));
  t.push_back(Integer("security.tls_reload_s", "--tls-reload-s", &C::tls_reload_s,
                      "re-read the TLS certificate, key and client CA when they change, checked this often; 0 = never")
                  .Range(0u, 86'400u)
                  .Unit("s"));
  t.push_back(String("security.tokens_file", "--tokens-file", &C::tokens_file,
                     "bearer tokens file (sha256 tenant role per line; reloaded on SIGHUP): every RPC needs a token")
                  .DefaultText("no tokens"));
  t.push_back(String("security.quotas_file", "--quotas-file", &C::quotas_file,
                     "tenants' DRAM and SSD quotas (tenant dram [ssd] per line, - for no limit; reloaded on SIGHUP); needs a tokens file")
                  .DefaultText("no quotas"));
  t.push_back(String("security.metrics_tls_cert", "--metrics-tls-cert", &C::metrics_tls_cert,
                     "PEM certificate chain: /metrics and /healthz over HTTPS only")
                  .DefaultText("HTTP"));
  t.push_back(String("security.metrics_tls_key", "--metrics-tls-key", &C::metrics_tls_key,
                     "PEM private key of --metrics-tls-cert"));
  t.push_back(String("security.metrics_tls_client_ca", "--metrics-tls-client-ca", &C::metrics_tls_client_ca,
                     "PEM CA bundle: metrics clients must present a certificate it signed"));
  t.push_back(String("security.metrics_basic_auth_file", "--metrics-basic-auth-file", &C::metrics_basic_auth_file,
                     "`user sha256(password)` per line: GET /metrics needs basic auth (or, with --tokens-file, an "
                     "admin bearer token)")
                  .DefaultText("open"));
  t.push_back(String("security.etcd_ca", "--etcd-ca", &C::etcd_ca,
                     "PEM CA bundle that signed etcd's certificate (https:// endpoints)"));
  t.push_back(String("security.etcd_cert", "--etcd-cert", &C::etcd_cert,
                     "PEM client certificate for etcd (etcd --client-cert-auth)"));
  t.push_back(String("security.etcd_key", "--etcd-key", &C::etcd_key, "PEM private key of --etcd-cert"));
  t.push_back(String("security.peer_tls_ca", "--peer-tls-ca", &C::peer_tls_ca,
                     "PEM CA of the peers' certificates: hot-block copies go to them over TLS"));
  t.push_back(String("security.peer_tls_cert", "--peer-tls-cert", &C::peer_tls_cert,
                     "PEM client certificate for peers with mutual TLS (hot-block copies)"));
  t.push_back(String("security.peer_tls_key", "--peer-tls-key", &C::peer_tls_key, "PEM private key of --peer-tls-cert"));
  t.push_back(String("security.peer_token_file", "--peer-token-file", &C::peer_token_file,
                     "file whose first line is an admin token the peers accept (hot-block copies)"));
  t.push_back(Number("security.auth_failure_burst", "--auth-failure-burst", &C::auth_failure_burst,
                     "failed token checks a peer may make in a row before it is refused unchecked")
                  .Range(1.0, 1e6));
  t.push_back(Number("security.auth_failure_refill_per_s", "", &C::auth_failure_refill_per_s,
                     "failed token checks a peer regains per second")
                  .Check("in (0, 1e6]", [](const C& c) {
                    return c.auth_failure_refill_per_s > 0 && c.auth_failure_refill_per_s <= 1e6;
                  }));
  return t;
}

}  // namespace

std::span<const settings::Setting<DaemonConfig>> DaemonSettings() {
  static const std::vector<settings::Setting<DaemonConfig>> table = BuildTable();
  return table;
}

}  // namespace kvstash::server
