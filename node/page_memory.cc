#include "node/page_memory.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace kvstash::node {
namespace {

class HostPageMemory final : public PageMemory {
 public:
  HostPageMemory(std::byte* base, size_t size) : base_(base), size_(size) {}
  ~HostPageMemory() override { munmap(base_, size_); }

  std::byte* data() override { return base_; }
  size_t size() const override { return size_; }
  bool host_accessible() const override { return true; }
  Status CopyIn(size_t offset, std::span<const std::byte> src) override {
    std::memcpy(base_ + offset, src.data(), src.size());
    return Status::Ok();
  }
  Status CopyOut(size_t offset, std::span<std::byte> dst) const override {
    std::memcpy(dst.data(), base_ + offset, dst.size());
    return Status::Ok();
  }

 private:
  std::byte* base_;
  size_t size_;
};

}  // namespace

Result<std::unique_ptr<PageMemory>> AllocateHostPageMemory(size_t bytes) {
  if (bytes == 0) return InvalidArgument("a page pool of 0 bytes");
  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) {
    return Status(StatusCode::kResourceExhausted,
                  "cannot map " + std::to_string(bytes) + " bytes for the KV pool: " + std::strerror(errno));
  }
  return std::unique_ptr<PageMemory>(new HostPageMemory(static_cast<std::byte*>(base), bytes));
}

}  // namespace kvstash::node
