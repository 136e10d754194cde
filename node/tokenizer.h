// Tokenizer: text <-> token ids through SentencePiece (Debian libsentencepiece), for models whose
// directory holds `tokenizer.model` (Llama's format). SentencePiece runs inside
// libkvstash_sentencepiece.so, loaded on first use (node/sentencepiece_module.h says why): from
// $KVSTASH_SENTENCEPIECE_MODULE, else next to the executable, else where the build put it.
//
// Encode prepends BOS when the model defines one, as Llama's tokenizer does; Decode drops control
// tokens (BOS, EOS) and renders ids the tokenizer does not know (a model's vocabulary may be
// larger than its tokenizer's) as nothing. IncrementalDecoder turns a stream of generated ids into
// text pieces that never split a UTF-8 character.
//
// Thread-safety: a loaded Tokenizer is immutable; Encode and Decode may be called from any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvstash/result.h"

namespace kvstash::node {

class Tokenizer {
 public:
  // Loads a SentencePiece model file. NOT_FOUND when it does not exist, INVALID_ARGUMENT when it
  // is not a SentencePiece model, UNAVAILABLE when the module cannot be loaded (sanitizer builds:
  // RTLD_DEEPBIND is refused there).
  static Result<std::unique_ptr<Tokenizer>> Load(const std::filesystem::path& model_file);
  // MODEL_DIR/tokenizer.model, or null (no error) when the directory has none.
  static Result<std::unique_ptr<Tokenizer>> LoadFromModelDir(const std::filesystem::path& model_dir);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // BOS (when defined) then the text's pieces. INVALID_ARGUMENT for text that is not UTF-8.
  Result<std::vector<uint32_t>> Encode(std::string_view text) const;
  // UTF-8 text; a byte sequence the ids leave incomplete or invalid becomes U+FFFD.
  std::string Decode(std::span<const uint32_t> ids) const;

  uint32_t vocab_size() const { return vocab_size_; }
  std::optional<uint32_t> bos_id() const { return bos_; }
  std::optional<uint32_t> eos_id() const { return eos_; }

 private:
  struct Processor;
  Tokenizer() = default;
  std::unique_ptr<Processor> sp_;
  uint32_t vocab_size_ = 0;
  std::optional<uint32_t> bos_, eos_;
};

// A request's stop tokens as served: its own, plus the tokenizer's EOS (when there is a tokenizer
// that defines one) unless the request set ignore_eos — a model's completion ends at its EOS, as in
// OpenAI-compatible servers.
inline void AddEosStop(const Tokenizer* tokenizer, bool ignore_eos, std::vector<uint32_t>& stop_tokens) {
  if (tokenizer == nullptr || ignore_eos || !tokenizer->eos_id()) return;
  for (uint32_t t : stop_tokens) {
    if (t == *tokenizer->eos_id()) return;
  }
  stop_tokens.push_back(*tokenizer->eos_id());
}

// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool IsValidUtf8(std::string_view text);

// Generated ids to text, one piece per id, never splitting a character: a piece is held back
// while the decoded text ends in U+FFFD (a character whose bytes are still arriving) and released
// with the id that completes it. The prompt's last tokens give the first generated piece its
// context, so a leading space is kept ("Hello" + " world", not "world"). The pieces plus Finish()
// concatenate to the decoded completion.
//
// Cost per id: decoding the ids since the last released piece plus a few tokens of context.
class IncrementalDecoder {
 public:
  // `tokenizer` is not owned and must outlive this.
  IncrementalDecoder(const Tokenizer& tokenizer, std::span<const uint32_t> prompt);
  // The text that `id` completes (possibly empty).
  std::string Push(uint32_t id);
  // What is still held back (an incomplete character at the very end shows as U+FFFD).
  std::string Finish();
  // Every piece returned so far, Finish() included.
  const std::string& text() const { return text_; }

 private:
  std::string Pending() const;

  const Tokenizer& tokenizer_;
  std::vector<uint32_t> ids_;  // context tokens, then generated ones
  size_t prefix_ = 0;          // ids_[prefix_, read_) were decoded into released text already
  size_t read_ = 0;
  std::string text_;
};

}  // namespace kvstash::node
