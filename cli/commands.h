// The commands of the `kvstash` admin CLI. main.cc parses the command line into these option
// structs and calls one Run* function; each returns the process exit code (exit_codes.h).
//
// Every command prints human tables on stdout by default and one JSON document with `json`;
// errors go to stderr as one line "kvstash: <command>: <CODE>: <message>".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvstash::cli {

// Options every command shares.
struct GlobalOptions {
  std::string addr;  // --addr; empty = $KVSTASH_ADDR, else the default address
  std::string etcd;  // --etcd: comma-separated etcd endpoints (else $KVSTASH_ETCD): talk to the whole cluster
  std::string cluster = "default";  // --cluster: the cluster's name in etcd
  uint64_t timeout_ms = 30'000;
  bool json = false;  // --json: machine-readable output on stdout
  // Security (docs/SECURITY.md): --tls-ca turns TLS on; --tls-cert/--tls-key for mutual TLS.
  std::string tls_ca, tls_cert, tls_key, tls_server_name;
  // etcd over TLS: --etcd-ca (required for https:// endpoints), --etcd-cert/--etcd-key.
  std::string etcd_ca, etcd_cert, etcd_key;
  // --token-file: a file whose first line is the bearer token (else $KVSTASH_TOKEN). Never taken
  // on the command line, where other users of the host could read it.
  std::string token_file;
};

struct PutCommand {
  std::string key;
  std::string file;    // "-" = stdin
  std::string parent;  // empty = no parent
  bool pin = false;
};

struct GetCommand {
  std::string key;
  std::string output;  // "-" = stdout
};

struct RemoveCommand {
  std::vector<std::string> keys;
};

struct StatCommand {
  std::string key;
};

struct ListCommand {
  uint32_t limit = 0;       // page size; 0 = the SDK's default
  std::string start_after;  // empty = from the first key
  bool all = false;         // follow pages to the end
};

struct HashCommand {
  std::string file;  // "-" = stdin
  std::string namespace_id = "default";
  uint32_t block_tokens = 0;    // 0 = PrefixHasher::kDefaultBlockTokens
  std::string format = "text";  // "text" | "u32"
};

struct BenchCommand {
  std::string op = "both";  // "put" | "get" | "both"
  std::string block_size = "64KiB";
  uint64_t count = 1000;  // blocks per phase
  uint32_t threads = 4;
  double duration_s = 60;     // per phase
  uint32_t batch = 1;         // blocks per RPC
  uint32_t verify_every = 8;  // compare every Nth fetched block with what was put (1 = all)
  bool progress = false;      // force the progress bar even when stderr is not a TTY
  bool keep = false;          // leave the bench blocks in the store
  std::string data_path = "auto";  // "auto" | "ucx" | "inline"
  std::string ucx_transports;      // UCX TLS list for the bench client; empty = UCX's default
  bool eager_puts = false;         // PutOptions::eager: request and bytes in one round (two-sided UCX)
};

int RunStatus(const GlobalOptions& global);
int RunPut(const GlobalOptions& global, const PutCommand& cmd);
int RunGet(const GlobalOptions& global, const GetCommand& cmd);
int RunRemove(const GlobalOptions& global, const RemoveCommand& cmd);
int RunStat(const GlobalOptions& global, const StatCommand& cmd);
int RunList(const GlobalOptions& global, const ListCommand& cmd);
int RunHash(const GlobalOptions& global, const HashCommand& cmd);
int RunBench(const GlobalOptions& global, const BenchCommand& cmd);

struct DrainCommand {
  std::string member;  // member id as listed by `kvstash --etcd ... status`
  bool undo = false;   // put a drained member back into the ring
};
// Marks a member "draining" in etcd (its record keeps the member's lease): clients stop routing
// new keys to it, and look keys up there only during their grace period. Needs --etcd.
int RunDrain(const GlobalOptions& global, const DrainCommand& cmd);
// The cluster view of `kvstash status` (with --etcd): members, per-tier use, hit ratio, leases.
int RunClusterStatus(const GlobalOptions& global);
// The etcd endpoints given by --etcd or $KVSTASH_ETCD; empty when neither is set.
std::vector<std::string> EtcdEndpoints(const GlobalOptions& global);

}  // namespace kvstash::cli
