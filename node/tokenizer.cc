#include "node/tokenizer.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <system_error>

#include "node/sentencepiece_module.h"

namespace kvstash::node {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// The length of the well-formed UTF-8 sequence at text[i], or 0 when there is none.
size_t Utf8SequenceAt(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) lo = 0xA0;  // no overlong forms
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;  // nothing past U+10FFFF
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return n;
}

// Every byte that starts no well-formed sequence becomes U+FFFD.
std::string SanitizeUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t n = Utf8SequenceAt(text, i);
    if (n == 0) {
      out += kReplacement;
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

bool EndsWithReplacement(std::string_view text) { return text.ends_with(kReplacement); }

}  // namespace

bool IsValidUtf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const size_t n = Utf8SequenceAt(text, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// ---- the SentencePiece module --------------------------------------------------------------

namespace {

struct SpmModule {
  kvstash_spm_load_fn load = nullptr;
  kvstash_spm_free_fn free = nullptr;
  kvstash_spm_info_fn info = nullptr;
  kvstash_spm_encode_fn encode = nullptr;
  kvstash_spm_decode_fn decode = nullptr;
  kvstash_spm_release_fn release = nullptr;
};

// Unused in sanitizer builds, where OpenModule refuses before looking.
[[maybe_unused]] std::vector<std::string> ModuleCandidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("KVSTASH_SENTENCEPIECE_MODULE"); env != nullptr && *env != '\0') {
    out.emplace_back(env);
  }
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) out.push_back((exe.parent_path() / "libkvstash_sentencepiece.so").string());
#ifdef KVSTASH_SENTENCEPIECE_MODULE_PATH
  out.emplace_back(KVSTASH_SENTENCEPIECE_MODULE_PATH);
#endif
  return out;
}

template <typename Fn>
bool Resolve(void* handle, const char* name, Fn* fn) {
  *fn = reinterpret_cast<Fn>(dlsym(handle, name));
  return *fn != nullptr;
}

Result<SpmModule> OpenModule() {
#if defined(__SANITIZE_ADDRESS__)
  return Unavailable("SentencePiece is not available in sanitizer builds (its module needs RTLD_DEEPBIND)");
#else
  std::string tried;
  for (const std::string& path : ModuleCandidates()) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
      tried += " " + path + " (absent)";
      continue;
    }
    // DEEPBIND: SentencePiece's references to protobuf bind to its own copy; LOCAL: nobody else's do.
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (handle == nullptr) {
      tried += " " + path + " (" + dlerror() + ")";
      continue;
    }
    SpmModule m;
    if (Resolve(handle, "kvstash_spm_load", &m.load) && Resolve(handle, "kvstash_spm_free", &m.free) &&
        Resolve(handle, "kvstash_spm_info", &m.info) && Resolve(handle, "kvstash_spm_encode", &m.encode) &&
        Resolve(handle, "kvstash_spm_decode", &m.decode) && Resolve(handle, "kvstash_spm_release", &m.release)) {
      return m;  // never closed: tokenizers live as long as the process
    }
    tried += " " + path + " (not a kvstash SentencePiece module)";
    dlclose(handle);
  }
  return Unavailable("cannot load libkvstash_sentencepiece.so; tried:" + tried);
#endif
}

// Loaded once per process.
const Result<SpmModule>& Module() {
  static const Result<SpmModule> module = OpenModule();
  return module;
}

constexpr size_t kErrorBytes = 512;

}  // namespace

struct Tokenizer::Processor {
  SpmModule m;
  void* handle = nullptr;
  ~Processor() {
    if (handle != nullptr) m.free(handle);
  }
};

Tokenizer::~Tokenizer() = default;

Result<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::filesystem::path& model_file) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(model_file, ec)) return NotFound(model_file.string() + ": no such file");
  const Result<SpmModule>& module = Module();
  if (!module.ok()) return module.status();
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  t->sp_ = std::make_unique<Processor>();
  t->sp_->m = *module;
  char err[kErrorBytes] = {0};
  t->sp_->handle = module->load(model_file.c_str(), err, sizeof err);
  if (t->sp_->handle == nullptr) {
    return InvalidArgument(model_file.string() + " is not a SentencePiece model: " + err);
  }
  int32_t size = 0, bos = -1, eos = -1;
  module->info(t->sp_->handle, &size, &bos, &eos);
  if (size <= 0) return InvalidArgument(model_file.string() + ": the tokenizer has no pieces");
  t->vocab_size_ = static_cast<uint32_t>(size);
  // SentencePiece answers -1 for a special token the model does not define.
  if (bos >= 0 && bos < size) t->bos_ = static_cast<uint32_t>(bos);
  if (eos >= 0 && eos < size) t->eos_ = static_cast<uint32_t>(eos);
  return t;
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::LoadFromModelDir(const std::filesystem::path& model_dir) {
  const std::filesystem::path file = model_dir / "tokenizer.model";
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return std::unique_ptr<Tokenizer>();
  return Load(file);
}

Result<std::vector<uint32_t>> Tokenizer::Encode(std::string_view text) const {
  if (!IsValidUtf8(text)) return InvalidArgument("the text is not valid UTF-8");
  int32_t* pieces = nullptr;
  size_t n = 0;
  char err[kErrorBytes] = {0};
  if (sp_->m.encode(sp_->handle, text.data(), text.size(), &pieces, &n, err, sizeof err) != 0) {
    return InvalidArgument(std::string("the tokenizer cannot encode the text: ") + err);
  }
  std::vector<uint32_t> ids;
  ids.reserve(n + 1);
  if (bos_) ids.push_back(*bos_);
  for (size_t i = 0; i < n; ++i) ids.push_back(static_cast<uint32_t>(pieces[i]));
  sp_->m.release(pieces);
  return ids;
}

std::string Tokenizer::Decode(std::span<const uint32_t> ids) const {
  std::vector<int32_t> known;
  known.reserve(ids.size());
  for (uint32_t id : ids) {
    if (id < vocab_size_) known.push_back(static_cast<int32_t>(id));
  }
  char* text = nullptr;
  size_t len = 0;
  char err[kErrorBytes] = {0};
  // Only out-of-range ids fail, and none are left.
  if (sp_->m.decode(sp_->handle, known.data(), known.size(), &text, &len, err, sizeof err) != 0) return std::string();
  std::string out(text, len);
  sp_->m.release(text);
  // SentencePiece replaces bad byte runs itself; this keeps the promise whatever its version does.
  return IsValidUtf8(out) ? out : SanitizeUtf8(out);
}

// ---- IncrementalDecoder ---------------------------------------------------------------------

namespace {
// Prompt tokens kept as context for the first piece: enough for a leading space or a character
// split across the prompt's last tokens.
constexpr size_t kContextTokens = 6;
}  // namespace

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer, std::span<const uint32_t> prompt)
    : tokenizer_(tokenizer) {
  const size_t keep = std::min(prompt.size(), kContextTokens);
  ids_.assign(prompt.end() - static_cast<long>(keep), prompt.end());
  read_ = ids_.size();
}

std::string IncrementalDecoder::Pending() const {
  const std::span<const uint32_t> all(ids_);
  const std::string before = tokenizer_.Decode(all.subspan(prefix_, read_ - prefix_));
  const std::string now = tokenizer_.Decode(all.subspan(prefix_));
  if (now.size() > before.size() && now.starts_with(before)) return now.substr(before.size());
  // The context itself ended inside a character that the new ids complete (or the decoder
  // rewrote it): the new ids alone.
  if (!now.starts_with(before)) return tokenizer_.Decode(all.subspan(read_));
  return std::string();
}

std::string IncrementalDecoder::Push(uint32_t id) {
  ids_.push_back(id);
  std::string piece = Pending();
  if (piece.empty() || EndsWithReplacement(piece)) return std::string();  // wait for the rest of a character
  prefix_ = read_;
  read_ = ids_.size();
  text_ += piece;
  return piece;
}

std::string IncrementalDecoder::Finish() {
  std::string piece = Pending();
  prefix_ = read_ = ids_.size();
  text_ += piece;
  return piece;
}

}  // namespace kvstash::node
