// libkvstash: the client SDK of a kvstash daemon.
//
// Callers own every buffer: Put reads from spans the caller keeps alive for the call, Get writes
// into spans the caller provides.
//
// Data paths. Control messages always go over gRPC. Block bytes move, by default, with one-sided
// UCX operations between the caller's buffers and the daemon's registered memory (zero copies on
// the daemon's CPU): a put reserves space (PutBegin), writes it with UCX puts and commits with
// checksums; a get locates and leases the blocks, reads them with UCX gets and verifies their
// checksums. Where UCX only reaches the daemon over tcp the bytes are sent by the daemon instead
// (two-sided), a get of unlocated blocks asks for them by key with no RPC, and PutOptions::eager
// stores blocks in one round (docs/DATA_PLANE.md). When UCX is not available (DataPath::kAuto) or not wanted (kInline) the bytes travel
// inside the gRPC messages instead; the API and its results are the same.
//
// A get never returns torn or stale bytes: the lease keeps a located block's bytes in place while
// it is read (the daemon neither evicts, removes nor reuses them); the checksum, verified by
// default, catches anything else (a read that outlived its lease) and turns it into a miss.
//
// Clusters. Given one `address`, a Client talks to that daemon alone. Given `etcd_endpoints` (it
// then follows the members of `cluster` through an etcd watch) or a static `peers` list, it routes
// every key to its owner by weighted rendezvous hashing over the live members, splits each batch
// by owner and asks the owners in parallel (one RPC per owner per batch). For `join_grace_ms`
// after the member set changed, a key missing at its owner is also looked for at the owner(s) it
// had before, so a join does not empty the cache; a drained member (`kvstash drain`) is read the
// same way for `join_grace_ms` after its drain, by clients started before or after it. In a
// cluster a member that cannot be reached gives misses (Lookup/Stat; Get with
// GetItem::status UNAVAILABLE naming the member), "missing" (Remove) and
// PutOutcome::kUnreachable (Put, with PutResult::unreachable naming it), never an error and never
// wrong bytes; only invalid requests fail a call.
//
// Thread-safety: a Client is safe for concurrent use by multiple threads; each call is
// independent. Calls block until the daemon answers or `timeout_ms` passes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvstash/block_key.h"
#include "kvstash/limits.h"
#include "kvstash/result.h"
#include "kvstash/reuse_advice.h"

namespace kvstash {

enum class DataPath {
  kAuto,    // UCX when the daemon offers it and it works from here, else inline gRPC
  kUcx,     // UCX or Connect fails with a clear error
  kInline,  // inline gRPC only
};

// How block bytes move over UCX (docs/DATA_PLANE.md). One-sided: the client reads and writes the
// daemon's memory itself (ucp_get/put, or a plain copy where the memory maps into this process).
// Two-sided: the daemon sends a read's bytes straight into the caller's buffer on request, and
// receives a put's bytes into the reserved region; used where UCX only emulates one-sided
// operations (tcp), whose emulation is several times slower.
enum class UcxProtocol {
  kAuto,      // the daemon's choice when it names one; else one-sided where the daemon's memory maps
              // here or UCX's path to it has native RMA (shared memory, RDMA), two-sided otherwise
  kOneSided,
  kTwoSided,  // Connect fails when the daemon does not serve it
};

struct ClientOptions {
  std::string address = "127.0.0.1:7370";  // host:port of a kvstashd
  DataPath data_path = DataPath::kAuto;
  std::string ucx_transports;              // UCX TLS list for this client; empty = UCX's default
  UcxProtocol ucx_protocol = UcxProtocol::kAuto;
  size_t transfer_workers = 2;             // UCX workers; large blocks are split across them
  uint64_t lease_ms = 0;                   // lease for located blocks; 0 = the daemon's default
  uint64_t timeout_ms = 30'000;            // per RPC
  bool verify_checksums = true;            // Get re-hashes received bytes and reports a mismatch as a miss
  uint64_t reservation_timeout_ms = limits::kDefaultReservationTimeoutMs;
  uint64_t max_inline_batch_bytes = 32ULL << 20;  // split puts/gets so one RPC carries at most this
  // Cluster mode (see the top of this file). etcd_endpoints wins over peers; both leave `address` unused.
  std::vector<std::string> etcd_endpoints;  // "http://host:port" of etcd, or "https://host:port" with etcd_tls_ca_file
  // etcd over TLS (docs/SECURITY.md): the CA of etcd's certificate, and a client certificate and
  // key for an etcd run with --client-cert-auth.
  std::string etcd_tls_ca_file{};
  std::string etcd_tls_cert_file{};
  std::string etcd_tls_key_file{};
  std::string cluster = "default";          // members are read from /kvstash/<cluster>/members/
  std::vector<std::string> peers;           // fixed member list of "host:port" (weight 1 each)
  uint64_t join_grace_ms = 30'000;          // how long keys are also looked for at their previous owner
  // Security (docs/SECURITY.md), the same for every daemon of a cluster. tls_ca_file set = TLS: the
  // daemon's certificate must chain to that CA and name the host dialled (or tls_server_name).
  // tls_cert_file + tls_key_file: this client's certificate, for daemons that demand one (mutual
  // TLS). All empty = plaintext. PEM files, read by Connect.
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_server_name;  // the name the daemon's certificate must carry; empty = the host dialled
  // Sent with every RPC as "authorization: Bearer <token>"; empty = none. Daemons with a tokens
  // file refuse calls without a token they know (UNAUTHENTICATED) or beyond its role
  // (PERMISSION_DENIED). Over plaintext the token is readable on the path: use it with TLS.
  std::string token;
  // Work in this shared namespace instead of the token's tenant's own (docs/SECURITY.md "Shared
  // namespaces"): sent with every RPC as "kvstash-namespace"; the token's tenant must have joined it
  // (PERMISSION_DENIED otherwise). Empty = the tenant's own keys.
  std::string shared_namespace;
};

enum class TierName { kUnknown, kHbm, kDram, kSsd };
std::string_view ToString(TierName tier);

// Where and what one stored block is.
struct BlockInfo {
  BlockKey key;
  uint64_t size = 0;
  uint64_t checksum = 0;  // XXH3-64
  TierName tier = TierName::kUnknown;
  uint64_t generation = 0;
  uint64_t lease_until_ms = 0;  // daemon clock; 0 = not leased
  std::optional<BlockKey> parent;
  bool pinned = false;
  uint64_t hits = 0;
  uint64_t age_ms = 0;
  uint64_t remote_addr = 0;  // where the bytes sit in the daemon's registered memory (UCX path)
  uint64_t lease_epoch = 0;  // non-zero when this answer leased the block: see ReleaseLeases
  std::string member;        // gRPC address of the daemon that holds this copy (routes Get/ReleaseLeases)
  uint32_t replicas = 0;     // hot-block copies on the next members in rendezvous order (cluster)
  // Opaque. From a daemon with tokens on, when this answer leased the block: what a two-sided read
  // of it shows the daemon (Get with GetItem::located passes it on). Empty otherwise.
  std::string read_grant;
};

struct LookupResult {
  size_t hit_blocks = 0;          // length of the longest present prefix of the chain
  std::vector<BlockInfo> blocks;  // one per hit, in chain order
};

struct PutItem {
  BlockKey key;
  std::optional<BlockKey> parent;  // previous block of the chain; lets the daemon evict chains tail-first
  std::span<const std::byte> data;  // 1 B .. 64 MiB
};

// kBusy: another writer holds a reservation for the key. kUnreachable (a cluster only): the key's
// owner did not answer (down, or partitioned from this client); PutResult::unreachable names it.
enum class PutOutcome { kStored, kExists, kBusy, kNoSpace, kUnreachable };
std::string_view ToString(PutOutcome outcome);

struct PutResult {
  std::vector<PutOutcome> outcomes;  // one per item, same order
  size_t stored = 0;
  size_t existed = 0;
  size_t failed = 0;  // busy, no space or unreachable
  // The members that did not answer, "<id> at <host:port>" (kUnreachable outcomes), once each.
  std::vector<std::string> unreachable;
};

struct PutOptions {
  bool pin = false;  // pinned blocks are never evicted
  // Send each block's bytes along with its request: one round trip and no RPC per batch, instead
  // of reserving first (PutBegin) and committing after (PutCommit). For callers that have just
  // looked the keys up: a key that is already stored is still not stored twice (kExists), but its
  // bytes cross the network, which the two-phase put avoids. Takes effect where the two-sided UCX
  // protocol is in use (tcp between hosts, see Client::data_path()); elsewhere puts are two-phase.
  bool eager = false;
  // What the caller knows of the blocks' future, for the daemon's eviction policy
  // (kvstash/reuse_advice.h): kLikely when the context will be extended or resent (an agent's
  // tool call, an open conversation), kUnlikely when it will not (a finished one-off request).
  // Advice never pins or refuses a block; blocks that were already stored keep their rank.
  std::optional<ReuseAdvice> advice{};
};

// Where a Get's destination buffer lives (GetItem::memory).
//   kHost        ordinary host memory.
//   kCudaPinned  page-locked host memory (cudaMallocHost, cudaHostRegister): host memory for this
//                library, read from the daemon's HBM tier in place where it serves HBM directly
//                (StoreStats::hbm_serving "direct"), else as kHost.
//   kCudaDevice  CUDA device memory. Written by UCX only, never by this library's CPU: needs the
//                UCX data path with a UCX that moves CUDA memory (a build of deploy/build-ucx-cuda.sh)
//                and a daemon that serves two-sided reads; otherwise the item fails
//                FAILED_PRECONDITION, and staging through host memory is the caller's. Read
//                two-sided, from the daemon's GPU memory where it serves HBM directly, else from its
//                DRAM. Received bytes are not re-hashed on this side (that would mean copying them
//                back): a found block is one the daemon checked against its checksum before sending
//                (server.verify_sends) and that arrived while its lease held it in place.
//                The calling thread's current CUDA context must own the buffer.
enum class BufferMemory { kHost, kCudaPinned, kCudaDevice };
std::string_view ToString(BufferMemory memory);

struct GetItem {
  BlockKey key;
  std::span<std::byte> buffer;  // destination; must hold the whole block
  // Optional: where a leased Lookup found the block. On the UCX path Get then reads it straight
  // away, with no locate round trip; the lease stays the caller's to release.
  const BlockInfo* located = nullptr;
  // What `buffer` is. Device and direct pinned items are located afresh (`located` is not used).
  BufferMemory memory = BufferMemory::kHost;
  // Filled by Get:
  bool found = false;
  uint64_t size = 0;            // bytes written into buffer when found
  Status status;                // why not found: NOT_FOUND (a miss), OUT_OF_RANGE (buffer too small),
                                // DATA_LOSS (checksum mismatch), UNAVAILABLE (in a cluster: a member
                                // that may hold the block did not answer; the message names it)
};

enum class RemoveOutcome { kRemoved, kMissing };

struct TierStats {
  TierName tier = TierName::kUnknown;
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;
  uint64_t reserved_bytes = 0;
  uint64_t blocks = 0;
  uint64_t leased_blocks = 0;
  uint64_t pinned_blocks = 0;
  uint64_t evictions = 0;
  std::string eviction_policy;
  bool huge_pages = false;
};

struct StoreStats {
  std::string version;
  std::string member_id;
  uint64_t uptime_ms = 0;
  std::vector<TierStats> tiers;
  uint64_t lookup_hit_blocks = 0;
  uint64_t lookup_miss_blocks = 0;
  uint64_t get_hits = 0;
  uint64_t get_misses = 0;
  uint64_t puts_stored = 0;
  uint64_t puts_deduplicated = 0;
  uint64_t reservations_open = 0;
  std::string data_plane;            // "ucx (transports)" or "inline"
  uint64_t put_bytes_inline = 0;     // block bytes the daemon received inside RPCs
  uint64_t put_bytes_one_sided = 0;  // block bytes committed after one-sided writes
  uint64_t put_bytes_two_sided = 0;  // block bytes committed after arriving as two-sided sends
  uint64_t get_bytes_two_sided = 0;  // block bytes the daemon sent to two-sided readers
  uint64_t two_sided_sends_in_flight = 0;  // two-sided reads being sent now
  uint64_t two_sided_rejected = 0;         // data-plane messages the daemon refused, all reasons
  // ... by reason ("unknown_message", "malformed", "rendezvous", "out_of_range", "not_authorized",
  // "corrupt"; docs/DATA_PLANE.md).
  std::map<std::string, uint64_t> refused_messages;
  uint64_t corrupt_blocks = 0;             // blocks that failed their checksum on the daemon before an inline send
  std::string one_sided_transports;        // same-host transports of the one-sided protocol ("self": none)
  uint64_t two_sided_receives_open = 0;    // two-sided put receives not yet committed, aborted or expired
  uint64_t eager_puts_stored = 0;          // eager puts (PutOptions::eager) committed
  uint64_t eager_puts_refused = 0;         // eager puts refused before their bytes came (exists, busy, ...)
  uint64_t eager_puts_failed = 0;          // eager puts whose bytes did not arrive whole or failed the checksum
  uint64_t eager_gets_sent = 0;            // eager gets (two-sided Get without a locate RPC) answered with the block
  uint64_t eager_gets_refused = 0;         // eager gets answered without it (miss, not in DRAM, too large)
  std::string gpu_data_path;         // "direct: …" or "staged: …" (how GPU memory reaches the store)
  std::string hbm_serving;           // "direct: …" or "staged: …" (how HBM blocks reach readers); "" without HBM
  std::vector<BlockInfo> hottest;    // the most-read resident blocks, most first (at most 10)
  // The daemon's cluster registration: "standalone", "registered", or "pending",
  // "etcd_unreachable", "conflict" followed by ": " and why (docs/OPERATIONS.md, Running a cluster).
  std::string membership;
};

struct ListResult {
  std::vector<BlockInfo> blocks;
  std::optional<BlockKey> next_start_after;  // empty on the last page
};

struct HealthInfo {
  bool serving = false;
  std::string version;
  std::string member_id;
};

// One member of the cluster as the client sees it (in single-daemon mode: that daemon).
struct MemberInfo {
  std::string id;
  std::string address;          // gRPC host:port
  std::string metrics_address;  // host:port of /metrics; empty when unknown (static peers)
  double weight = 1.0;
  bool draining = false;        // owns no keys; still answers for the ones it holds
  uint64_t dram_capacity_bytes = 0;
  uint64_t ssd_capacity_bytes = 0;
  uint64_t hbm_capacity_bytes = 0;
  uint64_t started_unix_ms = 0;  // when the member joined (wall clock); 0 when unknown
  uint64_t draining_since_unix_ms = 0;  // when its drain began (wall clock); 0 when serving or unknown
};

struct MemberStats {
  MemberInfo member;
  bool reachable = false;
  std::string error;  // why not reachable
  StoreStats stats;   // when reachable
};

class Client {
 public:
  // Connects and checks the daemon answers Health. UNAVAILABLE when it does not.
  static Result<std::unique_ptr<Client>> Connect(const ClientOptions& options);
  ~Client();

  // Longest present prefix of `chain` (at most 4096 keys per call). With lease_ms > 0 the hits
  // are leased: the daemon will not evict or remove them for that long.
  Result<LookupResult> Lookup(std::span<const BlockKey> chain, uint64_t lease_ms = 0);

  // Stores blocks with the two-phase protocol: keys the daemon already holds are not sent again.
  // Any number of items; split into RPCs by count and bytes. A request error (bad key, bad size)
  // fails the whole call before anything is stored.
  Result<PutResult> Put(std::span<const PutItem> items, const PutOptions& options = {});
  // Put of one chain: item i's parent is chain[i-1]. REQUIRES: chain.size() == blocks.size().
  Result<PutResult> PutChain(std::span<const BlockKey> chain, std::span<const std::span<const std::byte>> blocks,
                             const PutOptions& options = {});

  // Fetches blocks into the callers' buffers; per-item outcome in the items. Returns non-OK only
  // when the daemon could not be asked (or the request itself was invalid).
  Status Get(std::span<GetItem> items);

  // Ends the leases that a Lookup(…, lease_ms > 0) took on these blocks. Get releases the leases
  // it takes itself. Leases also end on their own when their time runs out.
  Status ReleaseLeases(std::span<const BlockInfo> blocks);

  // Per key: removed or missing. FAILED_PRECONDITION when a key is leased (nothing is removed).
  Result<std::vector<RemoveOutcome>> Remove(std::span<const BlockKey> keys);

  // Full metadata for each key (nullopt when absent). Counts no access and takes no lease.
  Result<std::vector<std::optional<BlockInfo>>> Stat(std::span<const BlockKey> keys);

  Result<StoreStats> Stats();
  Result<ListResult> List(const std::optional<BlockKey>& start_after, uint32_t limit = limits::kDefaultListLimit);
  Result<HealthInfo> Health();
  // In a cluster: Stats sums the reachable members (tiers by kind, counters), member_id names the
  // cluster; List merges the members' pages in key order; Health is serving when any member is.

  // The members in use now (ordered by id); the Stats of each, in parallel.
  std::vector<MemberInfo> Members() const;
  std::vector<MemberStats> ClusterStats();
  // The member that owns `key` now (its id); empty when there is no member.
  std::string OwnerOf(const BlockKey& key) const;

  // Asynchronous forms: run on a background thread. Items and their buffers must stay alive and
  // untouched until the future is ready.
  std::future<Status> GetAsync(std::span<GetItem> items);
  std::future<Result<PutResult>> PutAsync(std::span<const PutItem> items, const PutOptions& options = {});

  // Registers caller memory (an engine's preallocated KV pool) with the transfer engine so that
  // transfers to and from it need no per-call registration. A no-op on the inline path.
  Status RegisterBuffer(void* base, size_t length);
  Status UnregisterBuffer(void* base);

  // "ucx (transports, protocol)" or "inline": the path block bytes take on this client.
  std::string data_path() const;

  const ClientOptions& options() const;

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstash
