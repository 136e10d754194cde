// kvstash-bench-transfer: the UCX data plane beside its limits and its peer, in one run on
// one machine. Rows: memcpy (the same-host limit), iperf3 over loopback (the TCP limit), Redis
// GET/SET (the peer a cache is usually measured against) and kvstash put/get over UCX shared
// memory and over UCX tcp, for 64 KiB, 1 MiB and 16 MiB blocks with 1 and 4 clients, over a
// working set larger than the last-level cache.
//
// kvstash get is measured two ways: "get" is the SDK's Get of one block (a locate RPC that leases
// it, the read, the checksum, an asynchronous lease release); "read" is how an engine uses the
// store after a prefix Lookup: the blocks are already located and leased, so a get is the read
// plus the checksum. Reads and writes use the UCX protocol the SDK picks for the transport
// (ClientOptions::ucx_protocol = auto unless --ucx-protocol says otherwise): one-sided over shm,
// two-sided over tcp. Each kvstash row's note names it.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>

#include "bench/peer_processes.h"
#include "kvstash/client.h"
#include "tests/support/daemon_process.h"

namespace kvstash::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Row {
  Row(std::string sys, std::string tr, std::string o, uint64_t bytes, int n)
      : system(std::move(sys)), transport(std::move(tr)), op(std::move(o)), block_bytes(bytes), clients(n) {}
  std::string system, transport, op;
  uint64_t block_bytes = 0;
  int clients = 1;
  double gbps = 0, ops_per_s = 0, p50_us = 0, p99_us = 0;
  std::string note;
};

double Percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return v[i];
}

void FillRandom(std::byte* p, size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t v = rng() | 1;
    std::memcpy(p + i, &v, std::min<size_t>(8, n - i));
  }
}

Row MeasureMemcpy(uint64_t block, uint64_t working_set, double seconds) {
  const uint64_t blocks = std::max<uint64_t>(2, working_set / block);
  std::vector<std::byte> src(blocks * block), dst(blocks * block);
  FillRandom(src.data(), src.size(), 1);
  std::memset(dst.data(), 1, dst.size());
  std::vector<double> lat;
  uint64_t ops = 0;
  const auto start = Clock::now();
  const auto stop = start + std::chrono::duration<double>(seconds);
  while (Clock::now() < stop || ops < blocks) {
    const uint64_t i = ops % blocks;
    const auto t0 = Clock::now();
    std::memcpy(dst.data() + i * block, src.data() + ((i * 7 + 3) % blocks) * block, block);
    lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    ++ops;
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  Row r("memcpy", "-", "copy", block, 1);
  r.ops_per_s = static_cast<double>(ops) / secs;
  r.gbps = r.ops_per_s * static_cast<double>(block) / 1e9;
  r.p50_us = Percentile(lat, 0.5);
  r.p99_us = Percentile(lat, 0.99);
  return r;
}

// One kvstash phase across `clients` threads; `fn(client_index, i)` does call i and returns ok.
// Each call moves `blocks_per_call` blocks (ops/s and GB/s count blocks; p50/p99 are per call).
template <typename Fn>
Row RunPhase(const std::string& transport, const std::string& op, uint64_t block, int clients, uint64_t ops_per_client,
             double seconds, Fn&& fn, std::string& error, uint64_t blocks_per_call = 1) {
  std::mutex mu;
  std::vector<double> lat;
  std::atomic<uint64_t> done{0};
  const auto start = Clock::now();
  const auto stop = start + std::chrono::duration<double>(seconds);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      std::vector<double> mine;
      for (uint64_t i = 0; i < ops_per_client && Clock::now() < stop; ++i) {
        const auto t0 = Clock::now();
        const Status st = fn(c, i);
        mine.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        if (!st.ok()) {
          std::lock_guard lock(mu);
          if (error.empty()) error = st.ToString();
          break;
        }
        ++done;
      }
      std::lock_guard lock(mu);
      lat.insert(lat.end(), mine.begin(), mine.end());
    });
  }
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  Row r("kvstash", transport, op, block, clients);
  r.ops_per_s = static_cast<double>(done.load() * blocks_per_call) / secs;
  r.gbps = r.ops_per_s * static_cast<double>(block) / 1e9;
  r.p50_us = Percentile(lat, 0.5);
  r.p99_us = Percentile(lat, 0.99);
  return r;
}

// put, get and read rows for one block size and client count against a running daemon.
std::vector<Row> MeasureKvstash(const std::string& address, const std::string& transport, const std::string& tls,
                                UcxProtocol protocol, size_t transfer_workers, uint64_t block, int clients,
                                uint64_t working_set, double seconds, std::string& error) {
  std::vector<std::unique_ptr<Client>> conns;
  for (int c = 0; c < clients; ++c) {
    ClientOptions o;
    o.address = address;
    o.data_path = DataPath::kUcx;
    o.ucx_transports = tls;
    o.ucx_protocol = protocol;
    if (transfer_workers > 0) o.transfer_workers = transfer_workers;
    auto client = Client::Connect(o);
    if (!client.ok()) {
      error = client.status().ToString();
      return {};
    }
    conns.push_back(std::move(*client));
  }
  // "ucx (tcp, two-sided)" -> "two-sided": the protocol the SDK picked, named in each row's note.
  const std::string path = conns.front()->data_path();
  const size_t comma = path.rfind(", ");
  const std::string used = comma == std::string::npos ? path : path.substr(comma + 2, path.size() - comma - 3);
  const uint64_t per_client = std::max<uint64_t>(4, working_set / block / static_cast<uint64_t>(clients));
  static uint64_t run = 0;
  ++run;
  auto key = [&](int c, uint64_t i) { return BlockKey::FromParts((run << 32) | static_cast<uint64_t>(c), i); };
  std::vector<std::vector<std::byte>> bufs(clients, std::vector<std::byte>(block));
  for (int c = 0; c < clients; ++c) FillRandom(bufs[c].data(), block, static_cast<uint64_t>(c) + 7);
  std::vector<Row> rows;
  std::vector<uint64_t> stored(clients, 0);
  rows.push_back(RunPhase(transport, "put", block, clients, per_client, seconds, [&](int c, uint64_t i) {
    // Distinct bytes per block (cheap: first word is the index) so nothing could be served from a stale copy.
    std::memcpy(bufs[c].data(), &i, sizeof(i));
    PutItem item{key(c, i), std::nullopt, bufs[c]};
    auto r = conns[c]->Put(std::span(&item, 1));
    if (!r.ok()) return r.status();
    if (r->stored != 1) return ResourceExhausted("put not stored (daemon full?)");
    stored[c] = i + 1;
    return Status::Ok();
  }, error));
  if (!error.empty()) return rows;
  std::vector<std::mt19937_64> rngs;
  for (int c = 0; c < clients; ++c) rngs.emplace_back(static_cast<uint64_t>(c) + 99);
  rows.push_back(RunPhase(transport, "get", block, clients, per_client, seconds, [&](int c, uint64_t) {
    const uint64_t i = rngs[c]() % stored[c];
    GetItem item;
    item.key = key(c, i);
    item.buffer = bufs[c];
    if (Status st = conns[c]->Get(std::span(&item, 1)); !st.ok()) return st;
    uint64_t first;
    std::memcpy(&first, bufs[c].data(), sizeof(first));
    if (!item.found || first != i) return DataLoss("get returned the wrong block: " + item.status.ToString());
    return Status::Ok();
  }, error));
  if (!error.empty()) return rows;
  // Pre-located reads: lease groups of 64 blocks with one Lookup, then read each (no locate RPC).
  constexpr uint64_t kGroup = 64;
  std::vector<LookupResult> located(clients);
  Row read = RunPhase(transport, "get", block, clients, per_client, seconds, [&](int c, uint64_t n) {
    const uint64_t i = n % stored[c];
    if (i % kGroup == 0) {
      if (!located[c].blocks.empty()) (void)conns[c]->ReleaseLeases(located[c].blocks);
      std::vector<BlockKey> group;
      for (uint64_t j = i; j < std::min(stored[c], i + kGroup); ++j) group.push_back(key(c, j));
      auto r = conns[c]->Lookup(group, 10'000);
      if (!r.ok()) return r.status();
      located[c] = std::move(*r);
    }
    const BlockInfo& info = located[c].blocks.at(i % kGroup);
    GetItem item;
    item.key = info.key;
    item.buffer = bufs[c];
    item.located = &info;
    if (Status st = conns[c]->Get(std::span(&item, 1)); !st.ok()) return st;
    if (!item.found) return DataLoss("located read missed: " + item.status.ToString());
    return Status::Ok();
  }, error);
  read.note = "pre-located (Lookup of 64, then " + used + " reads)";
  rows.push_back(read);
  if (!error.empty()) return rows;
  // The same, 8 blocks per Get call (how an engine reads a prefix): one request per block, all in
  // flight at once on the connection. Fewer when a client stored fewer (16 MiB blocks, 4 clients).
  constexpr uint64_t kMaxBatch = 8;
  const uint64_t kBatch = std::min(kMaxBatch, *std::min_element(stored.begin(), stored.end()));
  if (kBatch == 0) return rows;
  for (int c = 0; c < clients; ++c) {
    if (!located[c].blocks.empty()) (void)conns[c]->ReleaseLeases(located[c].blocks);
    located[c] = {};
  }
  std::vector<std::vector<std::vector<std::byte>>> batch_bufs(clients);
  for (auto& b : batch_bufs) b.assign(kBatch, std::vector<std::byte>(block));
  Row batched = RunPhase(transport, "get", block, clients, std::max<uint64_t>(1, per_client / kBatch), seconds,
                         [&](int c, uint64_t n) {
    const uint64_t usable = stored[c] / kBatch * kBatch;
    if (usable == 0) return FailedPrecondition("fewer blocks stored than one batch");
    const uint64_t start = (n * kBatch) % usable;
    if (start % kGroup == 0) {
      if (!located[c].blocks.empty()) (void)conns[c]->ReleaseLeases(located[c].blocks);
      std::vector<BlockKey> group;
      for (uint64_t j = start; j < std::min(usable, start + kGroup); ++j) group.push_back(key(c, j));
      auto r = conns[c]->Lookup(group, 10'000);
      if (!r.ok()) return r.status();
      located[c] = std::move(*r);
    }
    std::vector<GetItem> items(kBatch);
    for (uint64_t b = 0; b < kBatch; ++b) {
      const BlockInfo& info = located[c].blocks.at((start + b) % kGroup);
      items[b].key = info.key;
      items[b].buffer = batch_bufs[c][b];
      items[b].located = &info;
    }
    if (Status st = conns[c]->Get(std::span(items)); !st.ok()) return st;
    for (uint64_t b = 0; b < kBatch; ++b) {
      uint64_t first;
      std::memcpy(&first, batch_bufs[c][b].data(), sizeof(first));
      if (!items[b].found || first != start + b) return DataLoss("batched read missed: " + items[b].status.ToString());
    }
    return Status::Ok();
  }, error, kBatch);
  batched.note = "pre-located, " + std::to_string(kBatch) + " blocks per Get call (Lookup of 64, then " + used + " reads; p50/p99 per call)";
  rows.push_back(batched);
  if (!error.empty()) return rows;
  // Puts of the same batch size per Put call (one PutBegin, the sends, one PutCommit): how an engine
  // stores a prefix. Then, over two-sided, eager puts (PutOptions::eager: request and bytes in one
  // round, no RPC), one and kBatch blocks per call. Last, under keys of their own, because these
  // blocks may evict the ones read above; they are removed with the rest below.
  std::vector<std::vector<BlockKey>> more_keys(clients);
  auto put_phase = [&](uint64_t per_call, bool eager, uint64_t key_space) {
    std::vector<uint64_t> done(clients, 0);
    auto k = [&](int c, uint64_t i) {
      return BlockKey::FromParts((run << 32) | (key_space << 28) | static_cast<uint64_t>(c), i);
    };
    Row row = RunPhase(transport, "put", block, clients, std::max<uint64_t>(1, per_client / per_call), seconds,
                       [&](int c, uint64_t n) {
      std::vector<PutItem> items;
      for (uint64_t b = 0; b < per_call; ++b) {
        const uint64_t i = n * per_call + b;
        std::memcpy(batch_bufs[c][b].data(), &i, sizeof(i));
        items.push_back(PutItem{k(c, i), std::nullopt, batch_bufs[c][b]});
      }
      auto r = conns[c]->Put(std::span(items), PutOptions{.eager = eager});
      if (!r.ok()) return r.status();
      if (r->stored != per_call) return ResourceExhausted("put not stored (daemon full?)");
      done[c] = (n + 1) * per_call;
      return Status::Ok();
    }, error, per_call);
    for (int c = 0; c < clients; ++c) {
      for (uint64_t i = 0; i < done[c]; ++i) more_keys[c].push_back(k(c, i));
    }
    return row;
  };
  Row batched_put = put_phase(kBatch, false, 1);
  batched_put.note = std::to_string(kBatch) + " blocks per Put call (" + used + "; p50/p99 per call)";
  rows.push_back(batched_put);
  if (used == "two-sided") {
    for (uint64_t per_call : {uint64_t{1}, kBatch}) {
      if (!error.empty()) break;
      Row eager = put_phase(per_call, true, per_call == 1 ? 2 : 3);
      eager.note = "eager (request + bytes in one round, no RPC)";
      if (per_call > 1) eager.note += ", " + std::to_string(per_call) + " blocks per Put call (p50/p99 per call)";
      rows.push_back(eager);
    }
  }
  for (Row& r : rows) {
    if (r.note.empty()) r.note = used;
  }
  for (int c = 0; c < clients; ++c) {
    if (!located[c].blocks.empty()) (void)conns[c]->ReleaseLeases(located[c].blocks);
    std::vector<BlockKey> keys;
    for (uint64_t i = 0; i < stored[c]; ++i) keys.push_back(key(c, i));
    keys.insert(keys.end(), more_keys[c].begin(), more_keys[c].end());
    for (size_t b = 0; b < keys.size(); b += limits::kMaxBatchKeys) {
      (void)conns[c]->Remove(std::span(keys).subspan(b, std::min<size_t>(limits::kMaxBatchKeys, keys.size() - b)));
    }
  }
  return rows;
}

void PrintTable(const std::vector<Row>& rows) {
  std::printf("| system | transport | op | block | clients | GB/s | ops/s | p50 µs | p99 µs | note |\n");
  std::printf("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
  for (const Row& r : rows) {
    std::printf("| %s | %s | %s | %s | %d | %.3f | %.0f | %.1f | %.1f | %s |\n", r.system.c_str(), r.transport.c_str(),
                r.op.c_str(), r.block_bytes ? (std::to_string(r.block_bytes >> 10) + " KiB").c_str() : "-", r.clients,
                r.gbps, r.ops_per_s, r.p50_us, r.p99_us, r.note.c_str());
  }
}

}  // namespace
}  // namespace kvstash::bench

int main(int argc, char** argv) {
  using namespace kvstash;
  using namespace kvstash::bench;
  CLI::App app{"kvstash-bench-transfer — the UCX data plane beside memcpy, iperf3 and Redis"};
  bool quick = false, json = false;
  std::string kvstashd = KVSTASHD_PATH;
  std::string shm_tls = "posix,sysv,cma,self", tcp_tls = "tcp", protocol_name = "auto";
  uint64_t working_set_mib = 0;
  std::vector<std::string> systems = {"memcpy", "iperf3", "redis", "kvstash"};
  std::vector<uint64_t> sizes_kib = {64, 1024, 16384};
  std::vector<std::string> transports = {"shm", "tcp"};
  app.add_flag("--quick", quick, "small working set and short phases (under a minute)");
  app.add_flag("--json", json, "print one JSON object instead of the table");
  app.add_option("--kvstashd", kvstashd, "path of the daemon to start");
  app.add_option("--shm-transports", shm_tls, "UCX TLS for the same-host rows");
  app.add_option("--tcp-transports", tcp_tls, "UCX TLS for the tcp rows");
  app.add_option("--ucx-protocol", protocol_name, "UCX protocol of the kvstash clients: auto, one-sided, two-sided")
      ->check(CLI::IsMember({"auto", "one-sided", "two-sided"}));
  app.add_option("--working-set-mib", working_set_mib, "bytes touched per row [128 quick, 256 full]");
  uint64_t ucx_lanes = 0;
  app.add_option("--ucx-lanes", ucx_lanes, "the daemon's two-sided lanes (--ucx-lanes; 0 = its default)");
  size_t transfer_workers = 0;
  app.add_option("--transfer-workers", transfer_workers,
                 "each kvstash client's UCX workers (ClientOptions::transfer_workers; 0 = the SDK default). "
                 "1 keeps every batch on one lane");
  std::vector<std::string> daemon_args;
  app.add_option("--daemon-arg", daemon_args,
                 "one more kvstashd argument (repeatable), e.g. --daemon-arg=--no-verify-sends for an A/B");
  app.add_option("--systems", systems, "which systems to measure")->delimiter(',');
  app.add_option("--block-kib", sizes_kib, "block sizes in KiB")->delimiter(',');
  app.add_option("--transports", transports, "which kvstash transports to measure (shm, tcp)")
      ->delimiter(',')
      ->check(CLI::IsMember({"shm", "tcp"}));
  CLI11_PARSE(app, argc, argv);
  auto wanted = [&](const char* name) { return std::find(systems.begin(), systems.end(), name) != systems.end(); };
  const uint64_t ws = (working_set_mib ? working_set_mib : (quick ? 128 : 256)) << 20;
  const double seconds = quick ? 1.0 : 4.0;
  std::vector<uint64_t> sizes;
  for (uint64_t kib : sizes_kib) sizes.push_back(kib << 10);
  const std::vector<int> client_counts = {1, 4};
  const UcxProtocol protocol = protocol_name == "one-sided"   ? UcxProtocol::kOneSided
                               : protocol_name == "two-sided" ? UcxProtocol::kTwoSided
                                                              : UcxProtocol::kAuto;
  std::vector<Row> rows;
  auto progress = [&](const std::string& what) {
    if (!json) std::fprintf(stderr, "… %s\n", what.c_str());
  };

  for (uint64_t s : sizes) {
    if (!wanted("memcpy")) break;
    progress("memcpy " + std::to_string(s));
    rows.push_back(MeasureMemcpy(s, ws, seconds / 2));
  }
  for (int c : client_counts) {
    if (!wanted("iperf3")) break;
    progress("iperf3 -P " + std::to_string(c));
    if (auto r = RunIperf3(c, quick ? 1 : 3)) {
      Row row("iperf3", "tcp", "stream", 0, c);
      row.gbps = r->gbps;
      rows.push_back(row);
    } else {
      std::fprintf(stderr, "iperf3 unavailable: its rows are missing\n");
    }
  }
  for (uint64_t s : sizes) {
    if (!wanted("redis")) break;
    for (int c : client_counts) {
      for (const std::string op : {"set", "get"}) {
        progress("redis " + op + " " + std::to_string(s) + " x" + std::to_string(c));
        const uint64_t requests = std::max<uint64_t>(quick ? 50 : 100, std::min<uint64_t>(20000, ws / s));
        if (auto r = RunRedis(op, s, c, requests)) {
          Row row("redis", "tcp", op == "set" ? "put" : "get", s, c);
          row.ops_per_s = r->ops_per_s;
          row.gbps = r->ops_per_s * static_cast<double>(s) / 1e9;
          row.p50_us = r->p50_us;
          row.p99_us = r->p99_us;
          rows.push_back(row);
        } else {
          std::fprintf(stderr, "redis unavailable: its rows are missing\n");
        }
      }
    }
  }
  int rc = 0;
  for (const auto& [transport, tls] : {std::pair<std::string, std::string>{"shm", shm_tls}, {"tcp", tcp_tls}}) {
    if (!wanted("kvstash")) break;
    if (std::find(transports.begin(), transports.end(), transport) == transports.end()) continue;
    // --dram-prefault, as deploy/kvstashd.toml runs a daemon: puts land on resident pages, not
    // on first-touch faults of a freshly started arena.
    std::vector<std::string> args = {"--dram-capacity", std::to_string((ws >> 20) * 2 + 256) + "MiB",
                                     "--ucx-transports", tls, "--dram-prefault", "--ucx-lanes",
                                     std::to_string(ucx_lanes)};
    args.insert(args.end(), daemon_args.begin(), daemon_args.end());
    testing::DaemonProcess daemon(kvstashd, args);
    if (!daemon.ok()) {
      std::fprintf(stderr, "kvstashd did not start: %s\n", daemon.error().c_str());
      return 1;
    }
    for (uint64_t s : sizes) {
      for (int c : client_counts) {
        progress("kvstash " + transport + " " + std::to_string(s) + " x" + std::to_string(c));
        std::string error;
        auto got = MeasureKvstash(daemon.grpc_address(), transport, tls, protocol, transfer_workers, s, c, ws, seconds, error);
        rows.insert(rows.end(), got.begin(), got.end());
        if (!error.empty()) {
          std::fprintf(stderr, "kvstash %s %llu x%d: %s\n", transport.c_str(), static_cast<unsigned long long>(s), c,
                       error.c_str());
          rc = 1;
        }
      }
    }
    daemon.Stop();
  }

  if (json) {
    nlohmann::json doc = {{"bench", "transfer"}, {"rows", nlohmann::json::array()}};
    for (const Row& r : rows) {
      nlohmann::json j = {{"system", r.system}, {"transport", r.transport}, {"op", r.op},
                          {"block_bytes", r.block_bytes}, {"clients", r.clients}, {"gbps", r.gbps},
                          {"ops_per_s", r.ops_per_s}, {"p50_us", r.p50_us}, {"p99_us", r.p99_us}};
      if (!r.note.empty()) j["note"] = r.note;
      doc["rows"].push_back(j);
    }
    std::cout << doc.dump(2) << std::endl;
  } else {
    std::printf("kvstash-bench-transfer: working set %llu MiB per row, %u cores\n\n",
                static_cast<unsigned long long>(ws >> 20), std::thread::hardware_concurrency());
    PrintTable(rows);
  }
  return rc;
}
