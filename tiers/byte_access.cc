#include "tiers/byte_access.h"

#include <cstring>

#include "common/checksum.h"

namespace kvstash::tiers {
namespace {

class HostBytes final : public ByteAccess {
 public:
  bool host_addressable() const override { return true; }
  Status CopyOut(std::byte* dst, const std::byte* src, uint64_t size) const override {
    std::memcpy(dst, src, size);
    return Status::Ok();
  }
  Status CopyIn(std::byte* dst, const std::byte* src, uint64_t size) const override {
    std::memcpy(dst, src, size);
    return Status::Ok();
  }
  Result<uint64_t> Checksum(const std::byte* src, uint64_t size) const override { return BlockChecksum(src, size); }
};

}  // namespace

const ByteAccess& HostByteAccess() {
  static const HostBytes host;
  return host;
}

}  // namespace kvstash::tiers
