// kvstash-bench-ssd: SsdTier throughput beside fio (io_uring engine) measured in the same run, on
// the same file system, with the same block sizes and queue depth.
//
// For each block size (256 KiB, 1 MiB) and each (op, pattern) in write/seq, write/rand, read/seq,
// read/rand, fio runs one job (--ioengine=io_uring --direct=1 --fixedbufs --registerfiles, one
// file of --size bytes) and then kvstash moves the same number of bytes through SsdTier:
// Both systems first write their space once, untimed, so timed writes land on written extents.
//   * write: Write() calls of 4 x iodepth blocks from a registered source buffer, each block
//     indexed in RocksDB (WAL) before the call returns; seq = keys in order, rand = keys shuffled
//     (the log makes both sequential on the device, which is the point of the design);
//   * read: Read() calls of 4 x iodepth blocks into a registered destination buffer, each block
//     checksum-verified; seq = in log order, rand = shuffled.
// Reinsertion is off for the run (the read phases would make every block hot, and write/rand would
// then measure reclaim copying, not writing). Checksums of the source data are computed before timing (the DRAM tier knows them already).
//
// Usage: kvstash-bench-ssd [--quick] [--json] [--dir DIR] [--iodepth N] [--size-mib N]
//   --dir defaults to $TMPDIR or /tmp; everything it writes there is removed at the end.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/checksum.h"
#include "tiers/ssd_tier.h"

namespace {

using kvstash::BlockKey;
using kvstash::tiers::SsdRead;
using kvstash::tiers::SsdTier;
using kvstash::tiers::SsdTierOptions;
using kvstash::tiers::SsdWrite;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;

struct Row {
  std::string system, op, pattern;
  uint64_t block_bytes = 0;
  uint32_t iodepth = 0;
  double gbps = 0;
  double iops = 0;
};

struct Config {
  bool quick = false;
  bool json = false;
  std::string dir;
  uint32_t iodepth = 32;
  uint64_t size_bytes = 0;
};

class AlignedMemory {
 public:
  explicit AlignedMemory(uint64_t bytes) : data_(static_cast<std::byte*>(std::aligned_alloc(4096, bytes))), size_(bytes) {}
  ~AlignedMemory() { std::free(data_); }
  std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  std::byte* data_;
  uint64_t size_;
};

std::string Shell(const std::string& cmd, int* rc) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) {
    *rc = -1;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  *rc = ::pclose(p);
  return out;
}

// One fio job; nullopt (with a message on stderr) when fio is missing or fails.
std::optional<Row> RunFio(const Config& c, const std::string& op, const std::string& pattern, uint64_t bs) {
  const std::string rw = (pattern == "rand" ? "rand" : "") + op;
  const std::string file = c.dir + "/fio-peer.dat";
  const std::string cmd = "fio --name=kvstash-peer --ioengine=io_uring --direct=1 --fixedbufs=1 --registerfiles=1"
                          " --filename=" + file + " --size=" + std::to_string(c.size_bytes) +
                          " --bs=" + std::to_string(bs) + " --rw=" + rw + " --iodepth=" + std::to_string(c.iodepth) +
                          " --numjobs=1 --randrepeat=0 --norandommap --output-format=json 2>&1";
  int rc = 0;
  const std::string out = Shell(cmd, &rc);
  const size_t brace = out.find('{');
  if (rc != 0 || brace == std::string::npos) {
    std::fprintf(stderr, "fio failed (rc %d): %s\n%s\n", rc, cmd.c_str(), out.c_str());
    return std::nullopt;
  }
  const auto j = nlohmann::json::parse(out.substr(brace), nullptr, false);
  if (j.is_discarded() || !j.contains("jobs") || j["jobs"].empty()) {
    std::fprintf(stderr, "fio printed no usable JSON: %s\n", out.c_str());
    return std::nullopt;
  }
  const auto& side = j["jobs"][0][op];
  Row r{"fio", op, pattern, bs, c.iodepth, side["bw_bytes"].get<double>() / 1e9, side["iops"].get<double>()};
  return r;
}

// kvstash rows for one block size, on one tier: an untimed warm-up set fills the log once; then
// write/seq of a second set (reclaiming the first), read/seq and read/rand of it, and write/rand
// of a third set. Returns false on any error (printed).
bool RunKvstash(const Config& c, uint64_t bs, std::vector<Row>& rows) {
  const uint64_t blocks = c.size_bytes / bs;
  const uint64_t batch = 4ULL * c.iodepth;
  const uint64_t pool_blocks = std::min<uint64_t>(blocks, std::max<uint64_t>(batch, (256 * kMiB) / bs));
  AlignedMemory source(pool_blocks * bs);
  AlignedMemory dest(batch * bs);
  std::mt19937_64 rng(42);
  for (uint64_t i = 0; i < source.size() / 8; ++i) {
    const uint64_t v = rng();
    std::memcpy(source.data() + i * 8, &v, 8);
  }
  std::vector<uint64_t> sums(pool_blocks);
  for (uint64_t i = 0; i < pool_blocks; ++i) sums[i] = kvstash::BlockChecksum(source.data() + i * bs, bs);

  const uint64_t segment = c.quick ? 64 * kMiB : 256 * kMiB;
  auto open = [&](const std::string& sub) -> std::unique_ptr<SsdTier> {  // sized for one set
    SsdTierOptions o;
    o.dir = c.dir + "/" + sub;
    o.segment_bytes = segment;
    o.capacity_bytes = (c.size_bytes / segment + 2) * segment;  // no reclaim during the run
    o.max_block_bytes = bs;
    o.queue_depth = c.iodepth;
    o.rings = 1;
    o.io_backend = kvstash::tiers::SsdIoBackend::kUring;
    o.reinsert_min_hits = 0;  // the read phases make every block "hot"; measure plain log writes
    o.io_memory = {{source.data(), source.size()}, {dest.data(), dest.size()}};
    auto t = SsdTier::Open(o);
    if (!t.ok()) {
      std::fprintf(stderr, "SsdTier::Open: %s\n", t.status().ToString().c_str());
      return nullptr;
    }
    return std::move(t).value();
  };
  auto key = [](uint64_t set, uint64_t i) { return BlockKey::FromParts(set, i); };
  auto timed = [](auto&& fn) {
    const auto t0 = std::chrono::steady_clock::now();
    const bool ok = fn();
    return ok ? std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() : -1.0;
  };
  auto add = [&](const std::string& op, const std::string& pattern, double secs) {
    rows.push_back({"kvstash", op, pattern, bs, c.iodepth, double(blocks * bs) / secs / 1e9, double(blocks) / secs});
  };
  auto write_all = [&](SsdTier& t, const std::vector<uint64_t>& order, uint64_t set) {
    std::vector<SsdWrite> w;
    for (uint64_t at = 0; at < order.size(); at += batch) {
      w.clear();
      for (uint64_t i = at; i < std::min<uint64_t>(order.size(), at + batch); ++i) {
        const uint64_t slot = order[i] % pool_blocks;
        w.push_back({key(set, order[i]), std::nullopt, {source.data() + slot * bs, bs}, bs, sums[slot]});
      }
      for (const auto& st : t.Write(w)) {
        if (!st.ok()) {
          std::fprintf(stderr, "SsdTier::Write: %s\n", st.ToString().c_str());
          return false;
        }
      }
    }
    return true;
  };
  auto read_all = [&](SsdTier& t, const std::vector<uint64_t>& order, uint64_t set) {
    std::vector<SsdRead> r;
    for (uint64_t at = 0; at < order.size(); at += batch) {
      r.clear();
      for (uint64_t i = at; i < std::min<uint64_t>(order.size(), at + batch); ++i) {
        r.push_back({key(set, order[i]), {dest.data() + (i - at) * bs, bs}});
      }
      for (const auto& res : t.Read(r)) {
        if (!res.ok()) {
          std::fprintf(stderr, "SsdTier::Read: %s\n", res.status().ToString().c_str());
          return false;
        }
      }
    }
    return true;
  };

  std::vector<uint64_t> seq(blocks);
  for (uint64_t i = 0; i < blocks; ++i) seq[i] = i;
  std::vector<uint64_t> shuffled = seq;
  std::shuffle(shuffled.begin(), shuffled.end(), rng);

  // Steady state, as fio sees it too: the log has been written once already, so the timed writes
  // reclaim and overwrite earlier segments rather than fresh (unwritten) extents.
  auto t = open("kvstash");
  if (!t) return false;
  if (!write_all(*t, seq, 0xa11)) return false;
  double s = timed([&] { return write_all(*t, seq, 0xa12); });
  if (s < 0) return false;
  add("write", "seq", s);
  s = timed([&] { return read_all(*t, seq, 0xa12); });
  if (s < 0) return false;
  add("read", "seq", s);
  s = timed([&] { return read_all(*t, shuffled, 0xa12); });
  if (s < 0) return false;
  add("read", "rand", s);
  s = timed([&] { return write_all(*t, shuffled, 0xa13); });
  if (s < 0) return false;
  add("write", "rand", s);
  t.reset();
  std::filesystem::remove_all(c.dir + "/kvstash");
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  const char* tmp = std::getenv("TMPDIR");
  std::string base = tmp && *tmp ? tmp : "/tmp";
  uint64_t size_mib = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") c.quick = true;
    else if (a == "--json") c.json = true;
    else if (a == "--dir" && i + 1 < argc) base = argv[++i];
    else if (a == "--iodepth" && i + 1 < argc) c.iodepth = static_cast<uint32_t>(std::stoul(argv[++i]));
    else if (a == "--size-mib" && i + 1 < argc) size_mib = std::stoull(argv[++i]);
    else {
      std::fprintf(stderr, "usage: kvstash-bench-ssd [--quick] [--json] [--dir DIR] [--iodepth N] [--size-mib N]\n");
      return 2;
    }
  }
  c.size_bytes = (size_mib ? size_mib : (c.quick ? 512 : 2048)) * kMiB;
  std::string tmpl = base + "/kvstash-bench-ssd-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  c.dir = tmpl;

  std::vector<Row> rows;
  bool ok = true;
  for (uint64_t bs : {256 * kKiB, 1 * kMiB}) {
    // fio: an untimed pass lays the file out and writes it once (as kvstash's warm-up pass does
    // for its log), then the timed writes and the reads of it.
    if (!RunFio(c, "write", "seq", bs)) {
      ok = false;
      break;
    }
    for (const auto& [op, pattern] : std::vector<std::pair<std::string, std::string>>{
             {"write", "seq"}, {"write", "rand"}, {"read", "seq"}, {"read", "rand"}}) {
      auto r = RunFio(c, op, pattern, bs);
      if (!r) {
        ok = false;
        break;
      }
      rows.push_back(*r);
    }
    std::filesystem::remove(c.dir + "/fio-peer.dat");
    if (!ok || !RunKvstash(c, bs, rows)) {
      ok = false;
      break;
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(c.dir, ec);
  if (!ok) return 1;

  auto peer = [&](const Row& r) -> const Row* {
    for (const Row& p : rows) {
      if (p.system == "fio" && p.op == r.op && p.pattern == r.pattern && p.block_bytes == r.block_bytes) return &p;
    }
    return nullptr;
  };
  if (c.json) {
    nlohmann::json j;
    j["bench"] = "ssd";
    j["rows"] = nlohmann::json::array();
    for (const Row& r : rows) {
      j["rows"].push_back({{"system", r.system}, {"op", r.op}, {"pattern", r.pattern}, {"block_bytes", r.block_bytes},
                           {"iodepth", r.iodepth}, {"gbps", r.gbps}, {"iops", r.iops}});
    }
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("ssd bench: %s, %llu MiB per case, iodepth %u (fio: io_uring, direct, fixedbufs, registerfiles)\n",
              base.c_str(), static_cast<unsigned long long>(c.size_bytes / kMiB), c.iodepth);
  std::printf("%-8s %-6s %-5s %10s %8s %8s %10s %12s\n", "system", "op", "pat", "block", "iodepth", "GB/s", "IOPS",
              "vs fio");
  for (const Row& r : rows) {
    const Row* p = peer(r);
    char ratio[32] = "";
    if (r.system == "kvstash" && p && p->gbps > 0) std::snprintf(ratio, sizeof(ratio), "%.2fx", r.gbps / p->gbps);
    std::printf("%-8s %-6s %-5s %9lluK %8u %8.3f %10.0f %12s\n", r.system.c_str(), r.op.c_str(), r.pattern.c_str(),
                static_cast<unsigned long long>(r.block_bytes / kKiB), r.iodepth, r.gbps, r.iops, ratio);
  }
  return 0;
}
