// kvstash-bench-hbm-direct: gets from a running kvstashd into device, pinned and host buffers
// (GetItem::memory), beside cudaMemcpy of the same bytes in this process: the issue-20 targets
// (docs/BENCHMARKS.md "GPU-direct gets"). The daemon is another process on the same host, started
// by tests/device/hbm_direct_cycle.sh with or without an HBM tier.
//
//   kvstash-bench-hbm-direct --addr HOST:PORT [--sizes 1,4,16] [--count 8] [--reps 20] [--memory device,pinned,host]
//
// For each block size (MiB): puts `count` blocks, then per memory kind gets all of them in one
// call, `reps` times after one warm-up, and prints GB/s of block bytes per wall second. Baselines:
// cudaMemcpy device-to-device and device-to-pinned-host of the same count and size.
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "gpu/cuda_util.h"
#include "kvstash/client.h"

namespace {

using kvstash::BlockKey;
using kvstash::BufferMemory;

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');) out.push_back(part);
  return out;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "kvstash-bench-hbm-direct: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string addr, sizes = "1,4,16", memories = "device,pinned,host";
  int count = 8, reps = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--addr") addr = value;
    else if (flag == "--sizes") sizes = value;
    else if (flag == "--count") count = std::stoi(value);
    else if (flag == "--reps") reps = std::stoi(value);
    else if (flag == "--memory") memories = value;
    else return Fail("unknown flag " + flag);
  }
  if (addr.empty() || count <= 0 || reps <= 0) return Fail("usage: --addr HOST:PORT [--sizes 1,4,16] [--count N] [--reps N]");
  kvstash::ClientOptions options;
  options.address = addr;
  options.data_path = kvstash::DataPath::kUcx;
  auto client = kvstash::Client::Connect(options);
  if (!client.ok()) return Fail(client.status().ToString());
  auto stats = (*client)->Stats();
  if (!stats.ok()) return Fail(stats.status().ToString());
  std::printf("daemon: hbm serving = %s\n", stats->hbm_serving.empty() ? "(no HBM tier)" : stats->hbm_serving.c_str());
  std::printf("client: %s\n", (*client)->data_path().c_str());
  std::printf("%-8s %-8s %10s %10s %8s\n", "size", "memory", "GB/s", "memcpy", "ratio");
  uint64_t key_base = 1;
  for (const std::string& mib : Split(sizes)) {
    const size_t bytes = std::stoull(mib) << 20;
    std::vector<BlockKey> keys;
    std::vector<std::byte> pattern(bytes);
    for (int b = 0; b < count; ++b) {
      keys.push_back(BlockKey::FromParts(0xbe4c, key_base++));
      for (size_t i = 0; i < bytes; i += 4096) pattern[i] = std::byte(static_cast<uint8_t>(b + i / 4096));
      kvstash::PutItem item{keys.back(), std::nullopt, pattern};
      auto put = (*client)->Put(std::span(&item, 1));
      if (!put.ok() || put->failed > 0) return Fail("put failed");
    }
    // Destinations and baselines.
    std::vector<kvstash::gpu::DeviceBuffer> device, device_src;
    std::vector<kvstash::gpu::PinnedBuffer> pinned;
    std::vector<std::vector<std::byte>> host(count, std::vector<std::byte>(bytes));
    for (int b = 0; b < count; ++b) {
      auto d = kvstash::gpu::DeviceBuffer::Allocate(bytes);
      auto s = kvstash::gpu::DeviceBuffer::Allocate(bytes);
      auto p = kvstash::gpu::PinnedBuffer::Allocate(bytes);
      if (!d.ok() || !s.ok() || !p.ok()) return Fail("allocating buffers");
      device.push_back(std::move(*d));
      device_src.push_back(std::move(*s));
      pinned.push_back(std::move(*p));
    }
    auto copy_rate = [&](cudaMemcpyKind kind) {
      auto once = [&] {
        for (int b = 0; b < count; ++b) {
          void* dst = kind == cudaMemcpyDeviceToDevice ? static_cast<void*>(device[b].data()) : pinned[b].data();
          cudaMemcpy(dst, device_src[b].data(), bytes, kind);
        }
      };
      once();
      const auto start = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r) once();
      return double(bytes) * count * reps / Seconds(start) / 1e9;
    };
    const double d2d = copy_rate(cudaMemcpyDeviceToDevice);
    const double d2h = copy_rate(cudaMemcpyDeviceToHost);
    for (const std::string& memory : Split(memories)) {
      std::vector<kvstash::GetItem> items(count);
      for (int b = 0; b < count; ++b) {
        items[b].key = keys[b];
        if (memory == "device") {
          items[b].buffer = std::span(device[b].data(), bytes);
          items[b].memory = BufferMemory::kCudaDevice;
        } else if (memory == "pinned") {
          items[b].buffer = std::span(pinned[b].data(), bytes);
          items[b].memory = BufferMemory::kCudaPinned;
        } else {
          items[b].buffer = host[b];
        }
      }
      auto once = [&]() -> bool {
        if (!(*client)->Get(items).ok()) return false;
        for (const auto& item : items) {
          if (!item.found) {
            std::fprintf(stderr, "miss: %s\n", item.status.ToString().c_str());
            return false;
          }
        }
        return true;
      };
      if (!once()) return Fail("warm-up get failed (" + memory + ")");
      // Check the bytes once: the first 4 KiB page markers of block 0.
      std::vector<std::byte> back(bytes);
      const std::byte* got = memory == "device" ? back.data() : static_cast<const std::byte*>(items[0].buffer.data());
      if (memory == "device") cudaMemcpy(back.data(), device[0].data(), bytes, cudaMemcpyDeviceToHost);
      for (size_t i = 0; i < bytes; i += 4096) {
        if (got[i] != std::byte(static_cast<uint8_t>(0 + i / 4096))) return Fail("wrong bytes in block 0 (" + memory + ")");
      }
      const auto start = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r) {
        if (!once()) return Fail("get failed (" + memory + ")");
      }
      const double rate = double(bytes) * count * reps / Seconds(start) / 1e9;
      const double base = memory == "device" ? d2d : d2h;
      std::printf("%-8s %-8s %10.2f %10.2f %8.2f\n", (mib + "MiB").c_str(), memory.c_str(), rate, base, rate / base);
    }
  }
  std::fflush(stdout);
  return 0;
}
