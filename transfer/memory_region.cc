#include "transfer/memory_region.h"

#include <algorithm>

namespace kvstash::transfer {

Result<std::unique_ptr<MemoryRegion>> MemoryRegion::Register(std::shared_ptr<UcxContext> context, void* base,
                                                             size_t length) {
  if (base == nullptr || length == 0) return InvalidArgument("cannot register an empty memory range");
  ucp_mem_map_params_t params{};
  params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  params.address = base;
  params.length = length;
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
