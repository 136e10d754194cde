// WriteSafetensors: the header in the caller's tensor order, then every tensor's bytes back to
// back.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>

#include "node/safetensors.h"

namespace kvstash::node {
namespace {

// The JSON header padded with spaces so that 8 + its length is a multiple of 8.
Result<std::string> BuildHeader(const std::vector<TensorData>& tensors) {
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  std::set<std::string_view> names;
  uint64_t offset = 0;
  for (const TensorData& t : tensors) {
    const std::string who = "tensor \"" + t.name + "\"";
    if (t.name == "__metadata__") return InvalidArgument(who + ": reserved name");
    if (!names.insert(t.name).second) return InvalidArgument(who + ": duplicate name");
    uint64_t expected = DTypeBytes(t.dtype);
    bool overflow = false;
    for (uint64_t d : t.shape) overflow |= __builtin_mul_overflow(expected, d, &expected);
    if (overflow || expected != t.bytes.size())
      return InvalidArgument(who + ": " + std::to_string(t.bytes.size()) + " bytes, shape needs " +
                             std::to_string(expected));
    header[t.name] = {{"dtype", DTypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + expected}}};
    offset += expected;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

Status WriteAll(const std::filesystem::path& file, const std::string& header,
                const std::vector<TensorData>& tensors) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  if (!out) return Internal(file.string() + ": cannot create");
  const uint64_t len = header.size();  // little-endian host (checked in safetensors.cc)
  out.write(reinterpret_cast<const char*>(&len), sizeof len);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const TensorData& t : tensors)
    out.write(reinterpret_cast<const char*>(t.bytes.data()),
              static_cast<std::streamsize>(t.bytes.size()));
  out.close();
  if (!out) return Internal(file.string() + ": write failed");
  return Status::Ok();
}

}  // namespace

Status WriteSafetensors(const std::filesystem::path& file, const std::vector<TensorData>& tensors) {
  KVSTASH_ASSIGN_OR_RETURN(std::string header, BuildHeader(tensors));
  std::filesystem::path tmp = file;
  tmp += ".tmp";
  if (Status s = WriteAll(tmp, header, tensors); !s.ok()) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    return s;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, file, ec);
  if (ec)
    return Internal(file.string() + ": rename from " + tmp.string() + " failed: " + ec.message());
  return Status::Ok();
}

}  // namespace kvstash::node
