// libkvstash_sentencepiece.so: SentencePiece behind plain C functions (node/sentencepiece_module.h
// says why). Loaded only by node/tokenizer.cc.
#include "node/sentencepiece_module.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#define KVSTASH_SPM_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using sentencepiece::SentencePieceProcessor;

void SetError(const std::string& message, char* err, size_t err_len) {
  if (err == nullptr || err_len == 0) return;
  const size_t n = std::min(message.size(), err_len - 1);
  std::memcpy(err, message.data(), n);
  err[n] = '\0';
}

}  // namespace

KVSTASH_SPM_EXPORT void* kvstash_spm_load(const char* path, char* err, size_t err_len) {
  auto* sp = new SentencePieceProcessor();
  const auto status = sp->Load(path);
  if (!status.ok()) {
    SetError(status.ToString(), err, err_len);
    delete sp;
    return nullptr;
  }
  return sp;
}

KVSTASH_SPM_EXPORT void kvstash_spm_free(void* processor) { delete static_cast<SentencePieceProcessor*>(processor); }

KVSTASH_SPM_EXPORT int32_t kvstash_spm_info(void* processor, int32_t* vocab_size, int32_t* bos, int32_t* eos) {
  const auto* sp = static_cast<const SentencePieceProcessor*>(processor);
  *vocab_size = sp->GetPieceSize();
  *bos = sp->bos_id();
  *eos = sp->eos_id();
  return 0;
}

KVSTASH_SPM_EXPORT int32_t kvstash_spm_encode(void* processor, const char* text, size_t len, int32_t** ids, size_t* n,
                                              char* err, size_t err_len) {
  std::vector<int> pieces;
  const auto status = static_cast<const SentencePieceProcessor*>(processor)->Encode(std::string_view(text, len), &pieces);
  if (!status.ok()) {
    SetError(status.ToString(), err, err_len);
    return -1;
  }
  *n = pieces.size();
  *ids = static_cast<int32_t*>(std::malloc(std::max<size_t>(1, pieces.size()) * sizeof(int32_t)));
  if (*ids == nullptr) {
    SetError("out of memory", err, err_len);
    return -1;
  }
  for (size_t i = 0; i < pieces.size(); ++i) (*ids)[i] = pieces[i];
  return 0;
}

KVSTASH_SPM_EXPORT int32_t kvstash_spm_decode(void* processor, const int32_t* ids, size_t n, char** text, size_t* len,
                                              char* err, size_t err_len) {
  const std::vector<int> pieces(ids, ids + n);
  std::string out;
  const auto status = static_cast<const SentencePieceProcessor*>(processor)->Decode(pieces, &out);
  if (!status.ok()) {
    SetError(status.ToString(), err, err_len);
    return -1;
  }
  *len = out.size();
  *text = static_cast<char*>(std::malloc(std::max<size_t>(1, out.size())));
  if (*text == nullptr) {
    SetError("out of memory", err, err_len);
    return -1;
  }
  std::memcpy(*text, out.data(), out.size());
  return 0;
}

KVSTASH_SPM_EXPORT void kvstash_spm_release(void* buffer) { std::free(buffer); }
