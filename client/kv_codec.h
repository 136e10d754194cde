// KvCodec: a namespace's block codec (gpu/block_codec.h) applied at the SDK's edge. The engine
// hands raw KV blocks ([layers, 2, tokens, heads, head_dim] of the namespace's dtype, as
// gpu::HostGather / DeviceGather produce them); PutBlocks stores them encoded, GetBlocks fetches the
// encoded bytes and decodes them into the caller's raw buffers. With no codec in the namespace
// ("...|bf16|..." rather than "...|bf16:fp8-e4m3|...") both are plain Client::Put / Client::Get.
//
// Stored bytes are opaque to the daemon; the namespace seeds every key, so encoded and raw blocks
// never share a key. A fetched block whose header does not match this geometry (wrong codec, shape
// or a foreign writer), or whose size is not encoded_bytes, is a miss: found = false, status
// DATA_LOSS, the caller's buffer untouched.
//
// The C++ SDK has no paged-KV gather of its own (that is gpu/kv_copy_*.h), so this helper takes
// contiguous raw blocks; the Python module (client/python) uses it for kvstash.Client put/get with
// a codec. Encoding and decoding here run on the CPU (the reference implementation); for raw blocks
// in GPU memory, kv_codec_device.h runs the codec on the GPU and moves only encoded bytes.
//
// Thread-safety: a KvCodec is immutable; PutBlocks/GetBlocks may run concurrently (each call has its
// own scratch memory), with the Client's own rules.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "gpu/block_codec.h"
#include "kvstash/client.h"

namespace kvstash {

class KvCodec {
 public:
  // The codec the namespace names for blocks of `layers, tokens, heads, head_dim` elements of the
  // namespace's dtype (fp16, bf16 or fp32 when a codec is named). INVALID_ARGUMENT for a namespace
  // without the dtype field, an unknown codec or dtype, or a zero dimension.
  static Result<KvCodec> ForNamespace(std::string_view ns, uint32_t layers, uint32_t tokens, uint32_t heads,
                                      uint32_t head_dim);
  // No codec: blocks pass through raw (raw_bytes() is 0 = any size).
  static KvCodec None() { return KvCodec(); }

  bool enabled() const { return codec_ != gpu::BlockCodec::kNone; }
  gpu::BlockCodec codec() const { return codec_; }
  const gpu::CodecGeometry& geometry() const { return geometry_; }  // REQUIRES: enabled()
  uint64_t raw_bytes() const { return enabled() ? geometry_.raw_bytes : 0; }
  uint64_t stored_bytes() const { return enabled() ? geometry_.encoded_bytes : 0; }

  // CPU encode/decode of one block (REQUIRES: enabled(); sizes as geometry()). Decode: DATA_LOSS
  // when the header does not match, `raw` untouched.
  void Encode(std::span<const std::byte> raw, std::span<std::byte> stored) const;
  Status Decode(std::span<const std::byte> stored, std::span<std::byte> raw) const;

  // Client::Put of raw blocks, each encoded first. INVALID_ARGUMENT (nothing stored) when a block is
  // not raw_bytes() long.
  Result<PutResult> PutBlocks(Client& client, std::span<const PutItem> raw_items, const PutOptions& options = {}) const;
  // Client::Get into raw buffers (each at least raw_bytes()); found/size/status per item as
  // Client::Get, size = raw_bytes() when found. Returns non-OK only as Client::Get does.
  Status GetBlocks(Client& client, std::span<GetItem> raw_items) const;

 private:
  KvCodec() = default;
  gpu::BlockCodec codec_ = gpu::BlockCodec::kNone;
  gpu::CodecGeometry geometry_{};
};

}  // namespace kvstash
