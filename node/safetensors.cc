// The safetensors reader: maps the file, then checks every header entry against the data before
// any tensor is handed out.
#include "node/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

namespace kvstash::node {
namespace {

using nlohmann::json;
static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

std::string Quoted(std::string_view name) { return "tensor \"" + std::string(name) + "\""; }

std::string RangeText(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

// Product of `shape` times `elem_size`; false on overflow.
bool ByteLength(const std::vector<uint64_t>& shape, uint64_t elem_size, uint64_t* out) {
  uint64_t n = elem_size;
  for (uint64_t d : shape)
    if (__builtin_mul_overflow(n, d, &n)) return false;
  *out = n;
  return true;
}

Result<std::vector<uint64_t>> ReadUnsignedArray(const json& entry, const char* field,
                                                const std::string& who) {
  auto it = entry.find(field);
  if (it == entry.end()) return InvalidArgument(who + ": no \"" + field + "\"");
  if (!it->is_array())
    return InvalidArgument(who + ": \"" + field + "\" is not an array: " + it->dump());
  std::vector<uint64_t> out;
  for (const json& v : *it) {
    if (!v.is_number_unsigned())
      return InvalidArgument(who + ": \"" + field +
                             "\" holds a non-integer or negative value: " + it->dump());
    out.push_back(v.get<uint64_t>());
  }
  return out;
}

// One header entry -> a TensorView whose bytes lie inside `data`.
Result<TensorView> ParseEntry(const std::string& name, const json& entry,
                              std::span<const std::byte> data) {
  const std::string who = Quoted(name);
  if (!entry.is_object()) return InvalidArgument(who + ": entry is not an object: " + entry.dump());
  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string())
    return InvalidArgument(who + ": no string \"dtype\"");
  auto dtype = DTypeFromName(dtype_it->get<std::string>());
  if (!dtype.ok()) return InvalidArgument(who + ": " + dtype.status().message());
  KVSTASH_ASSIGN_OR_RETURN(std::vector<uint64_t> shape, ReadUnsignedArray(entry, "shape", who));
  KVSTASH_ASSIGN_OR_RETURN(std::vector<uint64_t> offsets,
                           ReadUnsignedArray(entry, "data_offsets", who));
  if (offsets.size() != 2 || offsets[0] > offsets[1])
    return InvalidArgument(who + ": data_offsets must be [begin, end] with begin <= end, got " +
                           entry["data_offsets"].dump());
  const uint64_t begin = offsets[0], end = offsets[1];
  uint64_t expected = 0;
  if (!ByteLength(shape, DTypeBytes(*dtype), &expected))
    return InvalidArgument(who + ": shape " + entry["shape"].dump() + " overflows");
  if (expected != end - begin)
    return InvalidArgument(who + ": shape " + entry["shape"].dump() + " of " +
                           std::string(DTypeName(*dtype)) + " needs " + std::to_string(expected) +
                           " bytes but data_offsets " + RangeText(begin, end) + " hold " +
                           std::to_string(end - begin));
  if (end > data.size())
    return InvalidArgument(who + ": data_offsets " + RangeText(begin, end) +
                           " lie outside the data (" + std::to_string(data.size()) +
                           " bytes; truncated file?)");
  return TensorView{name, *dtype, std::move(shape), data.subspan(begin, end - begin)};
}

// Parses the header, refusing a name seen twice (nlohmann would keep only the last).
Result<json> ParseHeader(std::string_view text) {
  std::set<std::string> seen;
  std::string duplicate;
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key &&
        !seen.insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  json header;
  try {
    header = json::parse(text.begin(), text.end(), on_event);
  } catch (const json::exception& e) {
    return InvalidArgument(std::string("header is not JSON: ") + e.what());
  }
  if (!duplicate.empty())
    return InvalidArgument(Quoted(duplicate) + ": duplicate name in the header");
  if (!header.is_object()) return InvalidArgument("header is not a JSON object");
  return header;
}

// Every pair of non-empty byte ranges must be disjoint. REQUIRES: views sorted by data position.
Status CheckNoOverlap(const std::vector<TensorView>& views) {
  const TensorView* last = nullptr;  // the non-empty view reaching furthest so far
  for (const TensorView& v : views) {
    if (v.bytes.empty()) continue;
    if (last != nullptr && v.bytes.data() < last->bytes.data() + last->bytes.size())
      return InvalidArgument(Quoted(v.name) + ": data overlaps " + Quoted(last->name));
    if (last == nullptr ||
        v.bytes.data() + v.bytes.size() > last->bytes.data() + last->bytes.size())
      last = &v;
  }
  return Status::Ok();
}

}  // namespace

uint64_t TensorView::elements() const {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n;
}

Result<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::filesystem::path& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NotFound(file.string() + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return InvalidArgument(file.string() + ": not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return InvalidArgument(file.string() + ": truncated: " + std::to_string(size) +
                           " bytes, shorter than the 8-byte header length");
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (map == MAP_FAILED)
    return Internal(file.string() + ": mmap failed: " + std::strerror(map_errno));
  std::unique_ptr<SafetensorsFile> f(
      new SafetensorsFile(file, static_cast<const std::byte*>(map), size));
  if (Status s = f->Parse(); !s.ok()) return Status(s.code(), file.string() + ": " + s.message());
  return f;
}

SafetensorsFile::~SafetensorsFile() { ::munmap(const_cast<std::byte*>(map_), size_); }

Status SafetensorsFile::Parse() {
  uint64_t header_len = 0;
  std::memcpy(&header_len, map_, 8);
  if (header_len > size_ - 8)
    return InvalidArgument("header length " + std::to_string(header_len) +
                           " past the end of the file (" + std::to_string(size_) + " bytes)");
  const std::string_view text(reinterpret_cast<const char*>(map_ + 8), header_len);
  KVSTASH_ASSIGN_OR_RETURN(json header, ParseHeader(text));
  const std::span<const std::byte> data(map_ + 8 + header_len, size_ - 8 - header_len);
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return InvalidArgument("__metadata__ is not an object");
      continue;
    }
    KVSTASH_ASSIGN_OR_RETURN(TensorView view, ParseEntry(name, entry, data));
    tensors_.push_back(std::move(view));
  }
  std::sort(tensors_.begin(), tensors_.end(), [](const TensorView& a, const TensorView& b) {
    return a.bytes.data() != b.bytes.data() ? a.bytes.data() < b.bytes.data()
                                            : a.bytes.size() < b.bytes.size();
  });
  KVSTASH_RETURN_IF_ERROR(CheckNoOverlap(tensors_));
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  return Status::Ok();
}

const TensorView* SafetensorsFile::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace kvstash::node
