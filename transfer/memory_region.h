// MemoryRegion: memory registered with UCX (ucp_mem_map) so peers can reach it with one-sided
// operations, and its packed remote key for them.
//
// Thread-safety: immutable after Register; the context must outlive the region.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "transfer/ucx_context.h"

namespace kvstash::transfer {

class MemoryRegion {
 public:
  // Registers [base, base + length). INVALID_ARGUMENT for an empty range; UNAVAILABLE when UCX
  // refuses it.
  // `memory_type`: what the range is, when the caller knows (UCS_MEMORY_TYPE_CUDA for device
  // memory); UNKNOWN lets UCX detect it.
  static Result<std::unique_ptr<MemoryRegion>> Register(std::shared_ptr<UcxContext> context, void* base,
                                                        size_t length,
                                                        ucs_memory_type_t memory_type = UCS_MEMORY_TYPE_UNKNOWN);
  // Has UCX allocate `length` bytes and register them (UCP_MEM_MAP_ALLOCATE). UCX then picks the
  // memory's origin (by default System V or POSIX shared memory first), which lets a peer on the
  // same host map the region and read and write it with its own CPU: one-sided without the
  // owner's help. The memory is released with the region.
  // Who may map it: only processes of the owner's uid. UCX creates a System V segment mode 0660
  // (UCT_MM_SYSV_PERM, hard-coded in UCX 1.13), which Allocate narrows to 0600 before returning
  // (SetSysvSegmentMode widens it again where an operator asks); POSIX shared memory UCX creates
  // 0600 and shares only through /proc/PID/fd (ptrace rights over the owner). INTERNAL, the
  // region released, when the segment's mode cannot be set.
  static Result<std::unique_ptr<MemoryRegion>> Allocate(std::shared_ptr<UcxContext> context, size_t length);
  ~MemoryRegion();
  MemoryRegion(const MemoryRegion&) = delete;
  MemoryRegion& operator=(const MemoryRegion&) = delete;

  std::byte* base() const { return base_; }
  size_t length() const { return length_; }
  ucp_mem_h handle() const { return memh_; }
  // The packed rkey a peer unpacks to address this region (opaque bytes).
  const std::string& packed_rkey() const { return packed_rkey_; }
  bool Contains(const void* p, size_t n) const {
    auto* b = static_cast<const std::byte*>(p);
    return b >= base_ && n <= length_ && b - base_ <= static_cast<std::ptrdiff_t>(length_ - n);
  }

 private:
  MemoryRegion() = default;
  std::shared_ptr<UcxContext> context_;
  std::byte* base_ = nullptr;
  size_t length_ = 0;
  ucp_mem_h memh_ = nullptr;
  std::string packed_rkey_;
};

// The permission bits of the System V shared-memory segment attached at exactly `base` (a region
// from MemoryRegion::Allocate, say). The segment is found through /proc/self/maps, where the inode
// of a System V attachment is its shmid. NOT_FOUND when no System V segment starts at `base`
// (POSIX shared memory, or private memory): there is then no segment mode to read or set.
Result<uint32_t> SysvSegmentMode(const void* base);
// Sets those bits to `mode` (0..0777; IPC_STAT then IPC_SET, owner and group unchanged). Peers
// already attached keep their mapping; the mode decides who may attach from then on. NOT_FOUND as
// above; INVALID_ARGUMENT for a mode beyond 0777; INTERNAL with the system's reason when shmctl
// refuses (only the segment's owner or creator, or CAP_SYS_ADMIN, may change it).
Status SetSysvSegmentMode(const void* base, uint32_t mode);

}  // namespace kvstash::transfer
