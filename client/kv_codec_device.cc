#include "client/kv_codec_device.h"

#include <string>
#include <vector>

#include "gpu/block_codec_device.h"
#include "gpu/cuda_util.h"

namespace kvstash {

namespace {

Status CheckArgs(const KvCodec& codec, size_t items, size_t flags) {
  if (!codec.enabled()) return InvalidArgument("device codec path: this namespace has no codec");
  if (items != flags) {
    return InvalidArgument("device codec path: " + std::to_string(flags) + " on_device flags for " +
                           std::to_string(items) + " items");
  }
  return Status::Ok();
}

}  // namespace

Result<PutResult> PutBlocksFromDevice(const KvCodec& codec, Client& client, std::span<const PutItem> raw_items,
                                      std::span<const bool> on_device, const PutOptions& options,
                                      cudaStream_t stream) {
  KVSTASH_RETURN_IF_ERROR(CheckArgs(codec, raw_items.size(), on_device.size()));
  const gpu::CodecGeometry& g = codec.geometry();
  for (size_t i = 0; i < raw_items.size(); ++i) {
    if (raw_items[i].data.size() != g.raw_bytes) {
      return InvalidArgument("block " + std::to_string(i) + " is " + std::to_string(raw_items[i].data.size()) +
                             " bytes; a raw block of this codec's shape is " + std::to_string(g.raw_bytes));
    }
  }
  if (raw_items.empty()) return client.Put(raw_items, options);
  const size_t n = raw_items.size();
  KVSTASH_ASSIGN_OR_RETURN(gpu::PinnedBuffer host, gpu::PinnedBuffer::Allocate(n * g.encoded_bytes));
  std::vector<const std::byte*> dev_raw;
  std::vector<std::byte*> dev_enc;
  std::vector<size_t> dev_index;
  for (size_t i = 0; i < n; ++i) {
    if (on_device[i]) {
      dev_raw.push_back(raw_items[i].data.data());
      dev_index.push_back(i);
    }
  }
  gpu::DeviceBuffer scratch;
  if (!dev_raw.empty()) {
    KVSTASH_ASSIGN_OR_RETURN(scratch, gpu::DeviceBuffer::Allocate(dev_raw.size() * g.encoded_bytes));
    for (size_t k = 0; k < dev_raw.size(); ++k) dev_enc.push_back(scratch.data() + k * g.encoded_bytes);
    KVSTASH_RETURN_IF_ERROR(gpu::EncodeBlocksDevice(g, dev_raw, dev_enc, stream));
    // Device blocks are encoded into consecutive scratch slots; each goes to its item's host slot.
    for (size_t k = 0; k < dev_index.size(); ++k) {
      KVSTASH_RETURN_IF_ERROR(gpu::CudaStatus(
          cudaMemcpyAsync(host.data() + dev_index[k] * g.encoded_bytes, dev_enc[k], g.encoded_bytes,
                          cudaMemcpyDeviceToHost, stream),
          "copying encoded blocks to the host"));
    }
  }
  std::vector<PutItem> encoded(raw_items.begin(), raw_items.end());
  for (size_t i = 0; i < n; ++i) {
    std::span<std::byte> out(host.data() + i * g.encoded_bytes, g.encoded_bytes);
    if (!on_device[i]) codec.Encode(raw_items[i].data, out);  // the CPU overlaps the device's work
    encoded[i].data = out;
  }
  if (!dev_raw.empty()) {
    KVSTASH_RETURN_IF_ERROR(gpu::CudaStatus(cudaStreamSynchronize(stream), "encoding blocks on the GPU"));
  }
  return client.Put(encoded, options);
}

Status GetBlocksToDevice(const KvCodec& codec, Client& client, std::span<GetItem> raw_items,
                         std::span<const bool> on_device, cudaStream_t stream) {
  KVSTASH_RETURN_IF_ERROR(CheckArgs(codec, raw_items.size(), on_device.size()));
  const gpu::CodecGeometry& g = codec.geometry();
  const size_t n = raw_items.size();
  if (n == 0) return Status::Ok();
  KVSTASH_ASSIGN_OR_RETURN(gpu::PinnedBuffer host, gpu::PinnedBuffer::Allocate(n * g.encoded_bytes));
  std::vector<GetItem> encoded(raw_items.begin(), raw_items.end());
  for (size_t i = 0; i < n; ++i) {
    encoded[i].buffer = std::span<std::byte>(host.data() + i * g.encoded_bytes, g.encoded_bytes);
  }
  KVSTASH_RETURN_IF_ERROR(client.Get(encoded));
  std::vector<const std::byte*> dev_enc;
  std::vector<std::byte*> dev_raw;
  std::vector<size_t> dev_index;
  for (size_t i = 0; i < n; ++i) {
    GetItem& item = raw_items[i];
    item.found = false;
    item.size = 0;
    item.status = encoded[i].status;
    if (!encoded[i].found) continue;
    if (item.buffer.size() < g.raw_bytes) {
      item.status = OutOfRange("buffer of " + std::to_string(item.buffer.size()) + " bytes; a decoded block is " +
                               std::to_string(g.raw_bytes));
      continue;
    }
    const std::span<const std::byte> stored(encoded[i].buffer.data(), encoded[i].size);
    if (on_device[i]) {
      // Checked here so that a foreign block is a miss of its own item; the kernel re-checks.
      Status ok = stored.size() == g.encoded_bytes
                      ? gpu::CheckCodecHeader(g, stored.data())
                      : DataLoss("encoded block is " + std::to_string(stored.size()) + " bytes; this codec's are " +
                                 std::to_string(g.encoded_bytes));
      if (!ok.ok()) {
        item.status = ok;
        continue;
      }
      dev_enc.push_back(stored.data());
      dev_raw.push_back(item.buffer.data());
      dev_index.push_back(i);
    } else {
      const Status decoded = codec.Decode(stored, item.buffer);
      if (!decoded.ok()) {
        item.status = decoded;
        continue;
      }
    }
    item.found = true;
    item.size = g.raw_bytes;
    item.status = Status::Ok();
  }
  if (dev_enc.empty()) return Status::Ok();
  // One upload of the good encoded blocks (packed), one decode launch into the caller's buffers.
  KVSTASH_ASSIGN_OR_RETURN(gpu::DeviceBuffer scratch, gpu::DeviceBuffer::Allocate(dev_enc.size() * g.encoded_bytes));
  KVSTASH_ASSIGN_OR_RETURN(gpu::PinnedBuffer bad, gpu::PinnedBuffer::Allocate(sizeof(uint32_t)));
  *reinterpret_cast<uint32_t*>(bad.data()) = 0;
  std::vector<const std::byte*> dev_src;
  for (size_t k = 0; k < dev_enc.size(); ++k) {
    std::byte* dst = scratch.data() + k * g.encoded_bytes;
    KVSTASH_RETURN_IF_ERROR(gpu::CudaStatus(
        cudaMemcpyAsync(dst, dev_enc[k], g.encoded_bytes, cudaMemcpyHostToDevice, stream),
        "copying encoded blocks to the GPU"));
    dev_src.push_back(dst);
  }
  Status st = gpu::DecodeBlocksDevice(g, dev_src, dev_raw, reinterpret_cast<uint32_t*>(bad.data()), stream);
  const Status synced = gpu::CudaStatus(cudaStreamSynchronize(stream), "decoding blocks on the GPU");
  if (st.ok()) st = synced;
  if (st.ok() && *reinterpret_cast<volatile uint32_t*>(bad.data()) != 0) {
    st = Internal("the GPU decoder refused " + std::to_string(*reinterpret_cast<uint32_t*>(bad.data())) +
                  " blocks whose headers the host had accepted");
  }
  if (!st.ok()) {
    // What the device wrote is unknown: report those items as failed rather than found.
    for (size_t i : dev_index) {
      raw_items[i].found = false;
      raw_items[i].size = 0;
      raw_items[i].status = st;
    }
    return st;
  }
  return Status::Ok();
}

}  // namespace kvstash
