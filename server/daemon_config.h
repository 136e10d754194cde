// DaemonConfig: everything kvstashd reads at start, in one struct passed down (no environment
// lookups elsewhere). Precedence: command-line flags > TOML file (--config) > the defaults here.
// deploy/kvstashd.toml is the documented example of the file.
//
// Each member has exactly one row in DaemonSettings() (daemon_settings.cc): its file key, flag,
// help, unit and range. The TOML reader, the flags, the help text and the
// range checks are generated from that table (common/settings.h); Validate adds the rules that
// span several settings. A member's initializer here is its default.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/settings.h"
#include "kvstash/result.h"
#include "server/data_plane_protocol.h"
#include "tiers/dram_tier.h"
#include "tiers/eviction_policy.h"
#include "tiers/ssd_io_backend.h"
#include "tiers/tier_manager.h"

namespace kvstash::server {

// The settings whose values are a closed set of names: enums inside, names at the edge (files,
// flags, logs). The enums and their name tables live with the modules that take them (tiers/,
// server/data_plane_protocol.h, common/log_level.h); Name() gives the name a value is written as.
using settings::LogLevel;  // common/log_level.h: shared by every kvstash process
using tiers::EvictionPolicyKind;  // tiers/eviction_policy.h
using tiers::HugePages;           // tiers/dram_tier.h
using tiers::SsdIoBackend;        // tiers/ssd_io_backend.h
using settings::Name;

// The eviction policies the daemon offers, in the order its help lists them ("prefix-arc-unguarded"
// is left to kvstash-sim cache and tests).
// How HBM blocks reach readers (docs/GPU.md "GPU-direct"): kAuto sends them straight from GPU
// memory to device readers where the data plane's UCX moves CUDA memory, and stages them through
// DRAM otherwise; kStaged always stages.
enum class HbmServing { kAuto, kStaged };
inline constexpr settings::EnumName<HbmServing> kHbmServingNames[] = {{HbmServing::kAuto, "auto"},
                                                                      {HbmServing::kStaged, "staged"}};

inline constexpr settings::EnumName<EvictionPolicyKind> kDaemonEvictionPolicyNames[] = {
    {EvictionPolicyKind::kPrefixArc, "prefix-arc"}, {EvictionPolicyKind::kPrefix, "prefix"},
    {EvictionPolicyKind::kLru, "lru"}};

struct DaemonConfig {
  // [server]
  std::string listen = "127.0.0.1:7370";          // gRPC; port 0 picks a free port
  std::string metrics_listen = "127.0.0.1:7371";  // Prometheus /metrics; port 0 picks a free port
  bool standalone = true;                         // no etcd: this daemon is the whole cluster
  // The host name or IP address that peers and clients dial to reach this daemon (published in its
  // member record with the bound ports). Empty: the listen host, or this host's name when the
  // listen host is a wildcard (0.0.0.0, ::).
  std::string advertise;
  std::string member_id;                          // default: the advertised gRPC address (HOST:PORT)
  uint32_t threads = 64;                          // most gRPC handler threads (1..1024); requests beyond wait
  LogLevel log_level = LogLevel::kInfo;
  uint64_t reservation_timeout_ms = 30'000;       // default lifetime of a PutBegin reservation
  uint64_t max_reservation_timeout_ms = 600'000;  // the longest a client may ask for; longer asks are cut to it
  uint64_t reaper_interval_ms = 1'000;            // how often expired reservations are reclaimed
  uint64_t default_lease_ms = 5'000;              // lease given to located blocks when the caller names none
  // Hash every block before sending it inline or two-sided and refuse one that fails (docs/DATA_PLANE.md).
  // Off only to measure what it costs.
  bool verify_sends = true;

  // [security] (docs/SECURITY.md). tls_cert and tls_key both set = the gRPC port speaks only TLS;
  // tls_client_ca set as well = mutual TLS (clients need a certificate that CA signed). tokens_file
  // set = every RPC needs a bearer token listed there (reloaded on SIGHUP), tenants' keys are scoped
  // to them, the one-sided UCX plane (the arena's rkey) is offered to admins only, tenants read
  // two-sided with grants the daemon seals, and eager requests (no token) are not served. All empty
  // = plaintext and no tokens: meant for loopback, and logged loudly on any other address.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  // The certificate, key and client CA are re-read when they change, checked this often (seconds);
  // 0 = read once at start.
  uint32_t tls_reload_s = 60;
  std::string tokens_file;
  // Tenants' shares of the DRAM tier (server/tenant_ledger.h: `tenant bytes` a line; reloaded on
  // SIGHUP with the tokens). Needs tokens_file: tenants are who its tokens name.
  std::string quotas_file;
  // The metrics endpoint (metrics_listen): HTTPS when metrics_tls_cert and metrics_tls_key are set
  // (client certificates required when metrics_tls_client_ca is); GET /metrics then needs
  // credentials when a basic-auth file (`user sha256(password)` a line) or tokens_file is set
  // (an admin bearer token). /healthz answers everyone.
  std::string metrics_tls_cert;
  std::string metrics_tls_key;
  std::string metrics_tls_client_ca;
  std::string metrics_basic_auth_file;
  // etcd over TLS (https:// endpoints): the CA that signed etcd's certificate, and this daemon's
  // client certificate and key when etcd demands one (--client-cert-auth).
  std::string etcd_ca;
  std::string etcd_cert;
  std::string etcd_key;
  // Hot-block replication (replicas > 1) towards peers with TLS or tokens: the CA of the peers'
  // certificates, this daemon's client certificate and key for peers with mutual TLS, and a file
  // whose first line is an admin token the peers accept (a copy is a Put in the raw key space).
  std::string peer_tls_ca;
  std::string peer_tls_cert;
  std::string peer_tls_key;
  std::string peer_token_file;
  // Failed token checks a peer (address, any port) may make in a row, and how many it regains per
  // second; past them its calls are refused unchecked.
  double auth_failure_burst = 10;
  double auth_failure_refill_per_s = 1;

  // [ssd] (off when dir is empty): blocks evicted from DRAM are demoted here and promoted back
  std::string ssd_dir;                        // segment files and the RocksDB index live here
  uint64_t ssd_capacity = 16ULL << 30;
  uint64_t ssd_segment = 256ULL << 20;
  uint32_t ssd_queue_depth = 32;
  SsdIoBackend ssd_io_backend = SsdIoBackend::kAuto;
  bool ssd_sync = false;                      // fdatasync each write: survive power loss, not only crashes

  // [ucx]
  bool ucx_enabled = true;       // offer the one-sided UCX data plane (else inline gRPC only)
  std::string ucx_transports;    // UCX TLS list ("cma,tcp", "tcp", ...); empty = UCX's default
  // How block bytes move over UCX (server/data_plane_protocol.h, docs/DATA_PLANE.md).
  DataPlaneProtocol ucx_protocol = DataPlaneProtocol::kAuto;
  // A two-sided send to a reader that stopped receiving (it vanished or hangs) is ended by closing
  // that reader's endpoint after this long.
  uint64_t ucx_send_timeout_ms = 60'000;
  // Serve eager gets and puts (one round, no RPC) on the two-sided plane; never with tokens on,
  // whatever this says (they carry no token). Off: clients take the two-phase path.
  bool ucx_eager_requests = true;
  // Two-sided lanes: push workers, each with a progress thread of its own (transfer_server.h);
  // 0 = one per four hardware threads, 1..4.
  uint64_t ucx_lanes = 0;
  // Where the data plane listens (server/ucx_listen.h): an interface ("eth0"), an IP address (the
  // interface that carries it), or "all"; empty = the interfaces of the gRPC listen address (every
  // interface when that is 0.0.0.0 or ::). An address no interface carries refuses the start.
  std::string ucx_listen;
  // Permission bits of the System V segment that holds a UCX-allocated DRAM arena: 0600 (only this
  // daemon's uid may map it) or 0660 (its group too). docs/SAME_HOST_TRUST.md says who that trusts.
  uint32_t ucx_shm_mode = 0600;

  // [cluster] (used when standalone is false: membership on etcd)
  std::vector<std::string> etcd_endpoints;  // "http://host:port"; required unless standalone
  std::string cluster = "default";          // members register under /kvstash/<cluster>/members/
  double weight = 1.0;                      // this daemon's share of the keys, relative to the others
  int64_t lease_ttl_s = 10;                 // a crashed daemon leaves the member set within this
  // Standalone daemons of a fixed cluster: every member's gRPC address (this one's included, as its
  // member id). Clients take the same list (ClientOptions::peers); the daemons use it for
  // hot-block replication.
  std::vector<std::string> peers;

  // [replication] (etcd members, or standalone daemons with peers): hot blocks are copied to the
  // next members of their rendezvous order so that reads of them spread out.
  uint32_t replicas = 1;     // copies of a hot block, the owner's included; 1 = no replication (1..8)
  uint32_t hot_rate = 100;   // hits per second at the owner that make a block hot

  // [hbm] (off when capacity is 0): GPU memory lent as the fastest tier. New blocks land there,
  // its eviction victims are demoted to DRAM; readers are served through DRAM, or straight from
  // GPU memory to device readers (hbm_serving; docs/GPU.md). Needs a CUDA build and a GPU.
  uint64_t hbm_capacity = 0;
  int gpu = 0;  // the device whose memory holds the HBM tier (CUDA device index)
  HbmServing hbm_serving = HbmServing::kAuto;

  // [dram]
  uint64_t dram_capacity = 1ULL << 30;
  double high_watermark = 0.95;
  double low_watermark = 0.85;
  EvictionPolicyKind eviction_policy = EvictionPolicyKind::kPrefixArc;
  HugePages huge_pages = HugePages::kAuto;
  uint64_t max_block = 64ULL << 20;
  // Touch every arena page at start (the arena is resident from then on, start-up takes about
  // 0.3 s per GiB per core) so puts never pay first-touch page faults. Off by default so that
  // small test daemons stay cheap; on in deploy/kvstashd.toml.
  bool dram_prefault = false;

  // The DRAM tier's options implied by this config.
  Result<tiers::DramTierOptions> DramOptions() const;
  // The tier manager's options (DRAM, plus SSD when ssd_dir is set).
  Result<tiers::TierManagerOptions> TierOptions() const;
  // Checks every setting's range (DaemonSettings) and the rules between settings; INVALID_ARGUMENT
  // naming the first bad setting.
  Status Validate() const;
};

// The table of kvstashd's settings, in the order the help lists them (daemon_settings.cc). Built
// once; safe to read from any thread.
std::span<const settings::Setting<DaemonConfig>> DaemonSettings();

// "0600", "600", "0o600" or "0660" (octal, as chmod takes it) -> the mode; INVALID_ARGUMENT
// otherwise. Which modes a daemon accepts is the ucx.shm_mode setting's range.
Result<uint32_t> ParseShmMode(const std::string& text);

// Applies a TOML document on top of `config`; nothing changes on error. Unknown keys are an error
// (a typo must not be silently ignored), and so is a value outside its setting's range. Rules
// between settings are left to Validate (flags may still complete the file). INVALID_ARGUMENT
// with the file, key and reason.
Status ApplyTomlFile(const std::string& path, DaemonConfig& config);
Status ApplyTomlString(std::string_view toml, const std::string& origin, DaemonConfig& config);

// Parses argv: reads --config first (if given), then applies every flag given on the command line
// over it. On --help/--version prints to stdout and returns a FAILED_PRECONDITION whose message
// is "exit:0"; on a usage error INVALID_ARGUMENT with the message.
Result<DaemonConfig> ParseCommandLine(int argc, char** argv);

}  // namespace kvstash::server
