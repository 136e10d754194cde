// Helpers shared by the tier tests (DramTier, SsdTier, TierManager).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "common/checksum.h"
#include "kvstash/block_key.h"
#include "tiers/byte_access.h"

namespace kvstash::tiers::testing {

// Deterministic bytes for a key (xorshift seeded by the key and size), so any reader can check any
// block it sees.
inline std::vector<std::byte> Pattern(const BlockKey& key, uint64_t size) {
  std::vector<std::byte> out(size);
  uint64_t x = key.Low() * 0x9E3779B97F4A7C15ULL + key.High() + size;
  for (uint64_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<std::byte>(x);
  }
  return out;
}

// Host memory that claims to be device memory: a tier over it reaches every byte through this
// ByteAccess, as DramTier does for gpu/HbmTier. Counts copies in and hashes.
class FakeDeviceBytes final : public ByteAccess {
 public:
  bool host_addressable() const override { return false; }
  Status CopyOut(std::byte* dst, const std::byte* src, uint64_t size) const override {
    std::memcpy(dst, src, size);
    return Status::Ok();
  }
  Status CopyIn(std::byte* dst, const std::byte* src, uint64_t size) const override {
    ++copies_in;
    std::memcpy(dst, src, size);
    return Status::Ok();
  }
  Result<uint64_t> Checksum(const std::byte* src, uint64_t size) const override {
    ++hashes;
    return BlockChecksum(src, size);
  }
  mutable std::atomic<int> copies_in{0};
  mutable std::atomic<int> hashes{0};
};

// A fresh directory under $TMPDIR (else /tmp), removed with everything in it at scope exit.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "kvstash-test") {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + prefix + "-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace kvstash::tiers::testing
