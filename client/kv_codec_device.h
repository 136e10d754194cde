// KvCodec for raw blocks that live in GPU memory: the codec runs on the GPU
// (gpu::EncodeBlocksDevice / DecodeBlocksDevice), so only encoded bytes cross PCIe. Built only with
// CUDA (library kvstash_kv_codec_device).
//
//   put: device raw blocks -> EncodeBlocksDevice into device scratch -> one copy of the encoded
//        bytes into pinned host memory -> Client::Put of the encoded blocks
//   get: Client::Get of encoded blocks into pinned host memory -> size and header checked on the host
//        (a foreign or damaged block is a miss, its buffer untouched) -> one upload of the good ones
//        -> DecodeBlocksDevice into the caller's device buffers
//
// Any item may instead be in host memory (on_device[i] = false): it is encoded or decoded on the CPU
// (KvCodec::Encode / Decode) and travels in the same Put or Get. Device and host paths produce the
// same stored bytes and decode to the same bits (block_codec.h).
//
// Device work runs on `stream` and the calls return after it has finished, so the caller's blocks
// are read (put) or written (get) by then. Pass the stream that produced the raw blocks (a put) or
// that will consume them (a get), or the legacy default stream (nullptr), which torch's default
// stream is ordered with.
//
// Thread-safety: as KvCodec::PutBlocks / GetBlocks (each call has its own scratch memory).
#pragma once

#include <cuda_runtime_api.h>

#include <span>

#include "client/kv_codec.h"

namespace kvstash {

// KvCodec::PutBlocks where raw_items[i].data is device memory when on_device[i] (one flag per
// item). INVALID_ARGUMENT (nothing stored) when the codec is not enabled, a block is not
// codec.raw_bytes() long, or the flags do not match the items; INTERNAL for a CUDA failure.
Result<PutResult> PutBlocksFromDevice(const KvCodec& codec, Client& client, std::span<const PutItem> raw_items,
                                      std::span<const bool> on_device, const PutOptions& options,
                                      cudaStream_t stream);

// KvCodec::GetBlocks where raw_items[i].buffer is device memory when on_device[i]: found, size
// (= raw_bytes) and status per item as there; a miss leaves the buffer untouched. Non-OK only as
// Client::Get, or INVALID_ARGUMENT / INTERNAL as above.
Status GetBlocksToDevice(const KvCodec& codec, Client& client, std::span<GetItem> raw_items,
                         std::span<const bool> on_device, cudaStream_t stream);

}  // namespace kvstash
