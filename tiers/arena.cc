#include "tiers/arena.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace kvstash::tiers {
namespace {

// The default huge page size from /proc/meminfo ("Hugepagesize: 2048 kB"); 2 MiB when unknown.
uint64_t DefaultHugePageBytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string label;
  while (meminfo >> label) {
    if (label == "Hugepagesize:") {
      uint64_t kib = 0;
      if (meminfo >> kib && kib > 0) return kib * 1024;
      break;
    }
    std::string rest;
    std::getline(meminfo, rest);
  }
  return 2ULL << 20;
}

uint64_t RoundUpTo(uint64_t value, uint64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

}  // namespace

Result<std::unique_ptr<Arena>> Arena::Map(uint64_t bytes, ArenaHugePages mode) {
  if (bytes == 0) return InvalidArgument("arena size must be > 0");

  if (mode != ArenaHugePages::kNever) {
    const uint64_t huge = DefaultHugePageBytes();
    const uint64_t mapped = RoundUpTo(bytes, huge);
    void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
    if (p != MAP_FAILED) {
      return std::unique_ptr<Arena>(
          new Arena(static_cast<std::byte*>(p), bytes, mapped, /*hugetlb=*/true, /*thp=*/false));
    }
    if (mode == ArenaHugePages::kRequire) {
      return ResourceExhausted("huge pages unavailable for a " + std::to_string(bytes) +
                               "-byte arena: mmap(MAP_HUGETLB): " + std::strerror(errno));
    }
  }

  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return ResourceExhausted("cannot map a " + std::to_string(bytes) +
                             "-byte arena: mmap: " + std::strerror(errno));
  }
  bool thp = false;
  if (mode == ArenaHugePages::kPrefer) thp = madvise(p, bytes, MADV_HUGEPAGE) == 0;
  return std::unique_ptr<Arena>(new Arena(static_cast<std::byte*>(p), bytes, bytes, false, thp));
}

std::unique_ptr<Arena> Arena::Wrap(std::byte* base, uint64_t bytes) {
  return std::unique_ptr<Arena>(new Arena(base, bytes, /*mapped=*/0, /*hugetlb=*/false, /*thp=*/false));
}

Arena::~Arena() {
  if (mapped_ > 0) munmap(base_, mapped_);
}

void PrefaultMemory(std::byte* base, uint64_t bytes, unsigned threads) {
  constexpr uint64_t kPage = 4096;
  const uint64_t pages = (bytes + kPage - 1) / kPage;
  threads = std::max(1u, std::min<unsigned>(threads, static_cast<unsigned>(std::max<uint64_t>(1, pages / 256))));
  auto touch = [&](uint64_t first, uint64_t last) {
    for (uint64_t p = first; p < last; ++p) {
      __atomic_fetch_or(reinterpret_cast<unsigned char*>(base + p * kPage), 0, __ATOMIC_RELAXED);
    }
  };
  std::vector<std::thread> workers;
  const uint64_t per = (pages + threads - 1) / threads;
  for (unsigned t = 1; t < threads; ++t) {
    workers.emplace_back(touch, std::min(pages, t * per), std::min(pages, (t + 1) * per));
  }
  touch(0, std::min(pages, per));
  for (auto& w : workers) w.join();
}

}  // namespace kvstash::tiers
