// The block codec on the GPU: the device counterpart of EncodeBlockHost / DecodeBlockHost
// (block_codec.h), producing the same encoded bytes and the same decoded bits.
//
// Pipeline: put = DeviceGather (kv_copy_device.h) into raw block buffers, EncodeBlocksDevice into
// encoded buffers, store those; get = fetch encoded buffers, DecodeBlocksDevice into raw buffers,
// DeviceScatter. Raw and encoded buffers may be device memory or pinned host memory (unified
// addressing); device memory is the fast case. Any number of blocks per call (launches of up to
// kMaxCodecBlocksPerLaunch blocks on the same stream).
//
// Encode: one warp per (block, layer, K/V, head): a pass for the group's amax, a second pass that
// quantises from registers (groups of up to 2048 elements; larger ones re-read the rest from L1/L2);
// 16-byte loads and 8-byte stores when head_dim % 8 == 0 and the raw buffers are 16-byte aligned,
// element by element otherwise.
// Decode: one thread per 8 elements (or per element), each checks the block's header; blocks whose
// header does not match the geometry are left unwritten and counted in `*bad_blocks`.
//
// Asynchronous on `stream`: the host spans may be reused when the call returns; the outputs are
// valid once the stream reaches that point.
//
// Thread-safety: concurrent calls are safe when they write disjoint memory.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "gpu/block_codec.h"

namespace kvstash::gpu {

inline constexpr size_t kMaxCodecBlocksPerLaunch = 256;

// INVALID_ARGUMENT for a span-size mismatch, a null buffer, an encoded buffer not 16-byte aligned or
// a raw buffer not aligned to its element size (nothing launched); INTERNAL when a launch fails.
Status EncodeBlocksDevice(const CodecGeometry& g, std::span<const std::byte* const> raw,
                          std::span<std::byte* const> encoded, cudaStream_t stream);
// `bad_blocks`: device (or pinned host) memory holding a uint32 counter that the kernel increments
// once per block whose header does not match `g`; the caller zeroes it and reads it after the
// stream reaches this point. nullptr: mismatching blocks are skipped without being counted.
Status DecodeBlocksDevice(const CodecGeometry& g, std::span<const std::byte* const> encoded,
                          std::span<std::byte* const> raw, uint32_t* bad_blocks, cudaStream_t stream);

}  // namespace kvstash::gpu
