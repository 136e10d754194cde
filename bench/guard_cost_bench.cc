// kvstash-bench-guards: what the data plane's guards cost per block (issue 13), beside the copy
// every transfer already makes — measured in one run on one machine.
//
//   verify   XXH3-64 over the block: the daemon hashes every block before it sends it inline or
//            two-sided (docs/DATA_PLANE.md, "Who may write the daemon's memory").
//   clear    memset of the region: a one-sided reservation is cleared at PutBegin.
//   memcpy   the peer: the one copy a two-sided put or an inline get makes of the same bytes.
//
// Blocks are taken in turn from a buffer far larger than the caches (default 512 MiB), so each
// figure is at memory speed, as in a daemon whose arena is mostly cold.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/checksum.h"

namespace {

using Clock = std::chrono::steady_clock;

// Seconds per block for `op` over `rounds` passes through the buffer, best of `repeats`.
double SecondsPerBlock(std::vector<std::byte>& buffer, size_t block, int repeats,
                       const std::function<void(std::byte*, size_t)>& op) {
  const size_t blocks = buffer.size() / block;
  double best = 1e9;
  for (int r = 0; r < repeats; ++r) {
    const auto start = Clock::now();
    for (size_t i = 0; i < blocks; ++i) op(buffer.data() + i * block, block);
    best = std::min(best, std::chrono::duration<double>(Clock::now() - start).count() / static_cast<double>(blocks));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvstash-bench-guards: the cost of verify-before-send and clearing reservations, beside memcpy"};
  size_t buffer_mib = 512;
  int repeats = 3;
  std::vector<size_t> sizes_kib = {16, 256, 1024, 4096};
  app.add_option("--buffer-mib", buffer_mib, "working set (well above the last-level cache)")->check(CLI::Range(64, 8192));
  app.add_option("--repeats", repeats, "passes per figure; the best is kept")->check(CLI::Range(1, 20));
  app.add_option("--sizes-kib", sizes_kib, "block sizes");
  CLI11_PARSE(app, argc, argv);

  std::vector<std::byte> buffer(buffer_mib << 20), target(buffer_mib << 20);
  for (size_t i = 0; i < buffer.size(); ++i) buffer[i] = static_cast<std::byte>(i * 2654435761u >> 13);
  std::memset(target.data(), 1, target.size());  // fault every page in before timing
  volatile uint64_t sink = 0;

  std::printf("%-10s %14s %14s %14s %12s %12s\n", "block", "memcpy GB/s", "verify GB/s", "clear GB/s",
              "verify/copy", "clear/copy");
  for (size_t kib : sizes_kib) {
    const size_t block = kib << 10;
    if (block > buffer.size()) continue;
    const double copy = SecondsPerBlock(buffer, block, repeats, [&](std::byte* p, size_t n) {
      std::memcpy(target.data() + (p - buffer.data()), p, n);
    });
    const double verify = SecondsPerBlock(buffer, block, repeats, [&](std::byte* p, size_t n) {
      sink = sink + kvstash::BlockChecksum(p, n);
    });
    const double clear = SecondsPerBlock(target, block, repeats, [](std::byte* p, size_t n) { std::memset(p, 0, n); });
    auto gbps = [&](double s) { return static_cast<double>(block) / s / 1e9; };
    std::printf("%-10s %14.2f %14.2f %14.2f %12.2f %12.2f\n", (std::to_string(kib) + " KiB").c_str(), gbps(copy),
                gbps(verify), gbps(clear), verify / copy, clear / copy);
    std::printf("%-10s %11.1f us %11.1f us %11.1f us\n", "  per block", copy * 1e6, verify * 1e6, clear * 1e6);
  }
  return sink == 42 ? 1 : 0;
}
