#include "transfer/memory_region.h"

#include <sys/shm.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

namespace kvstash::transfer {
namespace {

// What Allocate leaves a System V segment at: read and write for the owner's uid only.
constexpr uint32_t kOwnerOnlyMode = 0600;

// The shmid of the System V segment attached at exactly `base`. A line of /proc/self/maps reads
// "START-END PERMS OFFSET MAJOR:MINOR INODE PATH"; a System V attachment's PATH is
// "/SYSV<key as 8 hex digits>" (with " (deleted)" once removed, as UCX removes its segments right
// after attaching them) and its INODE is the shmid. NOT_FOUND when no such line starts at `base`.
Result<int> SysvShmidAt(const void* base) {
  std::ifstream maps("/proc/self/maps");
  if (!maps) return Internal("cannot read /proc/self/maps");
  const auto wanted = reinterpret_cast<uintptr_t>(base);
  for (std::string line; std::getline(maps, line);) {
    uintptr_t start = 0, end = 0;
    unsigned long long inode = 0;
    int path_at = 0;
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR " %*s %*s %*s %llu %n", &start, &end, &inode, &path_at) < 3) {
      continue;
    }
    if (start != wanted || path_at == 0) continue;
    if (line.compare(static_cast<size_t>(path_at), 5, "/SYSV") != 0) continue;
    return static_cast<int>(inode);
  }
  return NotFound("no System V shared-memory segment is attached at this address");
}

}  // namespace

Result<uint32_t> SysvSegmentMode(const void* base) {
  KVSTASH_ASSIGN_OR_RETURN(const int shmid, SysvShmidAt(base));
  shmid_ds ds{};
  if (shmctl(shmid, IPC_STAT, &ds) != 0) {
    return Internal("shmctl(IPC_STAT) of segment " + std::to_string(shmid) + ": " + std::strerror(errno));
  }
  return static_cast<uint32_t>(ds.shm_perm.mode & 0777);
}

Status SetSysvSegmentMode(const void* base, uint32_t mode) {
  if (mode > 0777) return InvalidArgument("a segment mode has permission bits only (0..0777)");
  KVSTASH_ASSIGN_OR_RETURN(const int shmid, SysvShmidAt(base));
  shmid_ds ds{};
  if (shmctl(shmid, IPC_STAT, &ds) != 0) {
    return Internal("shmctl(IPC_STAT) of segment " + std::to_string(shmid) + ": " + std::strerror(errno));
  }
  // IPC_SET takes uid, gid and the low nine mode bits from `ds`: keep the first two as they are.
  ds.shm_perm.mode = (ds.shm_perm.mode & ~0777u) | mode;
  if (shmctl(shmid, IPC_SET, &ds) != 0) {
    return Internal("shmctl(IPC_SET) of segment " + std::to_string(shmid) + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

Result<std::unique_ptr<MemoryRegion>> MemoryRegion::Register(std::shared_ptr<UcxContext> context, void* base,
                                                             size_t length, ucs_memory_type_t memory_type) {
  if (base == nullptr || length == 0) return InvalidArgument("cannot register an empty memory range");
  ucp_mem_map_params_t params{};
  params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  params.address = base;
  params.length = length;
  if (memory_type != UCS_MEMORY_TYPE_UNKNOWN) {
    params.field_mask |= UCP_MEM_MAP_PARAM_FIELD_MEMORY_TYPE;
    params.memory_type = memory_type;
  }
  std::unique_ptr<MemoryRegion> region(new MemoryRegion());
  ucs_status_t status = ucp_mem_map(context->handle(), &params, &region->memh_);
  if (status != UCS_OK) return UcxError(StatusCode::kUnavailable, "registering memory with UCX", status);
  region->context_ = std::move(context);
  region->base_ = static_cast<std::byte*>(base);
  region->length_ = length;
  void* rkey = nullptr;
  size_t rkey_size = 0;
  status = ucp_rkey_pack(region->context_->handle(), region->memh_, &rkey, &rkey_size);
  if (status != UCS_OK) return UcxError(StatusCode::kUnavailable, "packing a UCX remote key", status);
  region->packed_rkey_.assign(static_cast<const char*>(rkey), rkey_size);
  ucp_rkey_buffer_release(rkey);
  return region;
}

Result<std::unique_ptr<MemoryRegion>> MemoryRegion::Allocate(std::shared_ptr<UcxContext> context, size_t length) {
  if (length == 0) return InvalidArgument("cannot allocate an empty memory range");
  ucp_mem_map_params_t params{};
  params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH | UCP_MEM_MAP_PARAM_FIELD_FLAGS;
  params.address = nullptr;
  params.length = length;
  params.flags = UCP_MEM_MAP_ALLOCATE;
  std::unique_ptr<MemoryRegion> region(new MemoryRegion());
  ucs_status_t status = ucp_mem_map(context->handle(), &params, &region->memh_);
  if (status != UCS_OK) return UcxError(StatusCode::kResourceExhausted, "allocating memory through UCX", status);
  ucp_mem_attr_t attr{};
  attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
  status = ucp_mem_query(region->memh_, &attr);
  region->context_ = std::move(context);
  if (status != UCS_OK) return UcxError(StatusCode::kInternal, "querying UCX-allocated memory", status);
  region->base_ = static_cast<std::byte*>(attr.address);
  region->length_ = std::min(length, attr.length);
  // Before anyone learns of the region: a System V segment becomes its owner's alone (see the
  // header). Other origins have no segment mode (NOT_FOUND).
  if (Status narrowed = SetSysvSegmentMode(region->base_, kOwnerOnlyMode);
      !narrowed.ok() && narrowed.code() != StatusCode::kNotFound) {
    return Status(StatusCode::kInternal, "making UCX's shared-memory segment private: " + narrowed.message());
  }
  void* rkey = nullptr;
  size_t rkey_size = 0;
  status = ucp_rkey_pack(region->context_->handle(), region->memh_, &rkey, &rkey_size);
  if (status != UCS_OK) return UcxError(StatusCode::kUnavailable, "packing a UCX remote key", status);
  region->packed_rkey_.assign(static_cast<const char*>(rkey), rkey_size);
  ucp_rkey_buffer_release(rkey);
  return region;
}

MemoryRegion::~MemoryRegion() {
  if (memh_ != nullptr) ucp_mem_unmap(context_->handle(), memh_);
}

}  // namespace kvstash::transfer
