// A small SentencePiece tokenizer trained in the test with `spm_train` (Debian package
// `sentencepiece`): BPE over a generated corpus of ASCII, accented, CJK and emoji words, with
// byte_fallback so that any text encodes (characters it never saw become byte pieces), and Llama's
// normaliser settings (identity, whitespace kept) so that text round-trips byte for byte. 320 pieces
// (259 of them are BOS/EOS/UNK and the 256 bytes). Written as DIR/tokenizer.model.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "kvstash/status.h"

extern char** environ;

namespace kvstash::testing {

inline constexpr uint32_t kTinyTokenizerPieces = 320;

inline Status TrainTinyTokenizer(const std::string& spm_train, const std::filesystem::path& dir) {
  const std::vector<std::string> words = {"the",  "cat",   "sat",    "on",    "mat",   "héllo", "wörld", "日本語",
                                          "naïve", "café", "😀",     "kv",    "cache", "store", "block", "prefix",
                                          "token", "node", "ünïcödé", "ça",   "va",    "über",  "prompt", "model"};
  const std::filesystem::path corpus = dir / "spm_corpus.txt", prefix = dir / "spm_tiny";
  {
    std::ofstream out(corpus);
    std::mt19937 rng(1);
    for (int line = 0; line < 400; ++line) {
      for (int w = 0; w < 12; ++w) out << (w ? " " : "") << words[rng() % words.size()];
      out << "\n";
    }
    if (!out) return Status(StatusCode::kInternal, "cannot write " + corpus.string());
  }
  std::vector<std::string> args = {spm_train,
                                   "--input=" + corpus.string(),
                                   "--model_prefix=" + prefix.string(),
                                   "--vocab_size=" + std::to_string(kTinyTokenizerPieces),
                                   "--model_type=bpe",
                                   "--byte_fallback=true",
                                   "--character_coverage=1.0",
                                   // As Llama's: no Unicode normalisation, whitespace kept as it is.
                                   "--normalization_rule_name=identity",
                                   "--remove_extra_whitespaces=false",
                                   "--minloglevel=2"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, spm_train.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return Status(StatusCode::kFailedPrecondition, "cannot run " + spm_train);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return Status(StatusCode::kInternal, spm_train + " failed");
  std::error_code ec;
  std::filesystem::rename(prefix.string() + ".model", dir / "tokenizer.model", ec);
  std::filesystem::remove(prefix.string() + ".vocab", ec);
  std::filesystem::remove(corpus, ec);
  if (!std::filesystem::exists(dir / "tokenizer.model")) return Status(StatusCode::kInternal, "no tokenizer.model");
  return Status::Ok();
}

}  // namespace kvstash::testing
