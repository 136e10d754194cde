#include "node/checkpoint.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "node/float16.h"

namespace kvstash::node {
namespace {

std::string ShapeText(std::span<const uint64_t> shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

Result<std::vector<std::filesystem::path>> SafetensorsFiles(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
    if (entry.path().extension() == ".safetensors") files.push_back(entry.path());
  if (ec) return NotFound(dir.string() + ": cannot list: " + ec.message());
  if (files.empty()) return NotFound(dir.string() + ": no *.safetensors files");
  std::sort(files.begin(), files.end());
  return files;
}

// Upcasts 16-bit values with `convert`, copying each through memcpy (the data may be unaligned).
template <typename Convert>
std::vector<float> Upcast16(std::span<const std::byte> bytes, Convert convert) {
  std::vector<float> out(bytes.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    uint16_t h;
    std::memcpy(&h, bytes.data() + 2 * i, 2);
    out[i] = convert(h);
  }
  return out;
}

void HashU64(XXH3_state_t* state, uint64_t v) { XXH3_128bits_update(state, &v, sizeof v); }

void HashString(XXH3_state_t* state, std::string_view s) {
  HashU64(state, s.size());
  XXH3_128bits_update(state, s.data(), s.size());
}

}  // namespace

std::vector<float> UpcastToF32(const TensorView& view) {
  switch (view.dtype) {
    case DType::kF16:
      return Upcast16(view.bytes, F16ToF32);
    case DType::kBF16:
      return Upcast16(view.bytes, Bf16ToF32);
    case DType::kF32:
      break;
  }
  std::vector<float> out(view.bytes.size() / 4);
  if (!out.empty()) std::memcpy(out.data(), view.bytes.data(), out.size() * 4);
  return out;
}

Result<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::filesystem::path& dir) {
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  ckpt->dir_ = dir;
  KVSTASH_ASSIGN_OR_RETURN(ckpt->config_, LoadModelConfig(dir / "config.json"));
  KVSTASH_ASSIGN_OR_RETURN(std::vector<std::filesystem::path> paths, SafetensorsFiles(dir));
  for (const auto& path : paths) {
    KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
    KVSTASH_RETURN_IF_ERROR(ckpt->AddFile(std::move(file)));
  }
  ckpt->ComputeIdentity();
  return ckpt;
}

Status Checkpoint::AddFile(std::unique_ptr<SafetensorsFile> file) {
  for (const TensorView& t : file->tensors()) {
    auto [it, inserted] = tensors_.emplace(t.name, &t);
    if (!inserted) {
      const std::string other =
          (*std::find_if(files_.begin(), files_.end(),
                         [&](const auto& f) { return f->Find(t.name) != nullptr; }))
              ->path()
              .string();
      return InvalidArgument("tensor \"" + t.name + "\" is in both " + other + " and " +
                             file->path().string());
    }
  }
  files_.push_back(std::move(file));
  return Status::Ok();
}

void Checkpoint::ComputeIdentity() {
  XXH3_state_t* state = XXH3_createState();
  XXH3_128bits_reset(state);
  HashString(state, config_.ToJson());
  for (const auto& [name, view] : tensors_) {  // std::map: name order
    HashString(state, name);
    HashU64(state, static_cast<uint64_t>(view->dtype));
    HashU64(state, view->shape.size());
    for (uint64_t d : view->shape) HashU64(state, d);
  }
  XXH128_canonical_t canonical;
  XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(state));
  XXH3_freeState(state);
  std::memcpy(identity_.data(), canonical.digest, identity_.size());
}

const TensorView* Checkpoint::Find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : it->second;
}

Result<std::vector<float>> Checkpoint::LoadF32(std::string_view name,
                                               std::span<const uint64_t> shape) const {
  const TensorView* view = Find(name);
  if (view == nullptr)
    return NotFound("tensor \"" + std::string(name) + "\" is not in " + dir_.string());
  if (!std::equal(view->shape.begin(), view->shape.end(), shape.begin(), shape.end()))
    return InvalidArgument("tensor \"" + std::string(name) + "\" has shape " +
                           ShapeText(view->shape) + ", expected " + ShapeText(shape) + " (" +
                           dir_.string() + ")");
  return UpcastToF32(*view);
}

}  // namespace kvstash::node
