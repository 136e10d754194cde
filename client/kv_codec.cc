#include "client/kv_codec.h"

#include <cstring>
#include <string>

namespace kvstash {

Result<KvCodec> KvCodec::ForNamespace(std::string_view ns, uint32_t layers, uint32_t tokens, uint32_t heads,
                                      uint32_t head_dim) {
  KVSTASH_ASSIGN_OR_RETURN(gpu::NamespaceCodec nc, gpu::CodecOfNamespace(ns));
  KvCodec c;
  if (nc.codec == gpu::BlockCodec::kNone) return c;
  KVSTASH_ASSIGN_OR_RETURN(gpu::KvDType dtype, gpu::ParseKvDType(nc.dtype));
  gpu::BlockShape shape{layers, tokens, heads, head_dim, dtype};
  KVSTASH_ASSIGN_OR_RETURN(c.geometry_, gpu::CodecGeometry::Make(shape, nc.codec));
  c.codec_ = nc.codec;
  return c;
}

void KvCodec::Encode(std::span<const std::byte> raw, std::span<std::byte> stored) const {
  gpu::EncodeBlockHost(geometry_, raw.data(), stored.data());
}

Status KvCodec::Decode(std::span<const std::byte> stored, std::span<std::byte> raw) const {
  if (stored.size() != geometry_.encoded_bytes) {
    return DataLoss("encoded block is " + std::to_string(stored.size()) + " bytes; this codec's are " +
                    std::to_string(geometry_.encoded_bytes));
  }
  return gpu::DecodeBlockHost(geometry_, stored.data(), raw.data());
}

Result<PutResult> KvCodec::PutBlocks(Client& client, std::span<const PutItem> raw_items,
                                     const PutOptions& options) const {
  if (!enabled()) return client.Put(raw_items, options);
  for (size_t i = 0; i < raw_items.size(); ++i) {
    if (raw_items[i].data.size() != geometry_.raw_bytes) {
      return InvalidArgument("block " + std::to_string(i) + " is " + std::to_string(raw_items[i].data.size()) +
                             " bytes; a raw block of this codec's shape is " + std::to_string(geometry_.raw_bytes));
    }
  }
  std::vector<std::byte> scratch(raw_items.size() * geometry_.encoded_bytes);
  std::vector<PutItem> encoded(raw_items.begin(), raw_items.end());
  for (size_t i = 0; i < raw_items.size(); ++i) {
    std::span<std::byte> out(scratch.data() + i * geometry_.encoded_bytes, geometry_.encoded_bytes);
    Encode(raw_items[i].data, out);
    encoded[i].data = out;
  }
  return client.Put(encoded, options);
}

Status KvCodec::GetBlocks(Client& client, std::span<GetItem> raw_items) const {
  if (!enabled()) return client.Get(raw_items);
  std::vector<std::byte> scratch(raw_items.size() * geometry_.encoded_bytes);
  std::vector<GetItem> encoded(raw_items.begin(), raw_items.end());
  for (size_t i = 0; i < raw_items.size(); ++i) {
    encoded[i].buffer = std::span<std::byte>(scratch.data() + i * geometry_.encoded_bytes, geometry_.encoded_bytes);
    encoded[i].located = raw_items[i].located;
  }
  KVSTASH_RETURN_IF_ERROR(client.Get(encoded));
  for (size_t i = 0; i < raw_items.size(); ++i) {
    GetItem& item = raw_items[i];
    item.found = false;
    item.size = 0;
    item.status = encoded[i].status;
    if (!encoded[i].found) continue;
    if (item.buffer.size() < geometry_.raw_bytes) {
      item.status = OutOfRange("buffer of " + std::to_string(item.buffer.size()) + " bytes; a decoded block is " +
                               std::to_string(geometry_.raw_bytes));
      continue;
    }
    const Status decoded =
        Decode(std::span<const std::byte>(encoded[i].buffer.data(), encoded[i].size), item.buffer);
    if (!decoded.ok()) {
      item.status = decoded;  // a foreign or damaged block reads as a miss
      continue;
    }
    item.found = true;
    item.size = geometry_.raw_bytes;
    item.status = Status::Ok();
  }
  return Status::Ok();
}

}  // namespace kvstash
