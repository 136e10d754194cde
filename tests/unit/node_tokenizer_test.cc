// kvstash-node's SentencePiece tokenizer (node/tokenizer.h) on a tiny model trained here with
// spm_train: round trips through Encode/Decode (BOS first), refusals, and streamed text that never
// splits a UTF-8 character. The tokenizer runs inside its dlopened module while this binary links
// the system's protobuf (through kvstash_common's dependencies): the two copies must not meet.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "kvstash/v1/store.pb.h"
#include "node/tokenizer.h"
#include "tests/support/tiny_tokenizer.h"

namespace kvstash::node {
namespace {

class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::filesystem::path(std::filesystem::temp_directory_path() /
                                     ("kvstash_tokenizer_" + std::to_string(getpid())));
    std::filesystem::create_directories(*dir_);
    const Status trained = testing::TrainTinyTokenizer(SPM_TRAIN_PATH, *dir_);
    ASSERT_TRUE(trained.ok()) << trained.ToString();
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  void SetUp() override {
    auto t = Tokenizer::LoadFromModelDir(*dir_);
    if (!t.ok() && t.status().code() == StatusCode::kUnavailable) GTEST_SKIP() << t.status().ToString();
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    ASSERT_NE(*t, nullptr);
    tok_ = std::move(*t);
  }

  static std::filesystem::path* dir_;
  std::unique_ptr<Tokenizer> tok_;
};
std::filesystem::path* TokenizerTest::dir_ = nullptr;

TEST_F(TokenizerTest, LoadsTheModelAndItsSpecialTokens) {
  EXPECT_EQ(tok_->vocab_size(), testing::kTinyTokenizerPieces);
  ASSERT_TRUE(tok_->bos_id().has_value());
  ASSERT_TRUE(tok_->eos_id().has_value());
  EXPECT_EQ(*tok_->bos_id(), 1u);  // spm_train's defaults: unk 0, bos 1, eos 2
  EXPECT_EQ(*tok_->eos_id(), 2u);
}

// Debian's libsentencepiece carries protobuf 3.14; linked beside the system's 3.21 the process
// aborts at start. Here both are in use at once.
TEST_F(TokenizerTest, CoexistsWithTheSystemProtobuf) {
  v1::ListRequest request;
  request.set_limit(7);
  ASSERT_TRUE(tok_->Encode("héllo").ok());
  v1::ListRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(request.SerializeAsString()));
  EXPECT_EQ(parsed.limit(), 7u);
  EXPECT_EQ(tok_->Decode(*tok_->Encode("héllo")), "héllo");
}

TEST_F(TokenizerTest, AbsentOrBrokenModelFiles) {
  const auto none = Tokenizer::LoadFromModelDir(std::filesystem::temp_directory_path() / "kvstash_no_such_dir");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, nullptr);  // no tokenizer.model: not an error, just token ids
  EXPECT_EQ(Tokenizer::Load(*dir_ / "missing.model").status().code(), StatusCode::kNotFound);
  const auto garbage = *dir_ / "garbage.model";
  std::ofstream(garbage) << "this is not a protobuf";
  EXPECT_EQ(Tokenizer::Load(garbage).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(TokenizerTest, EncodeDecodeRoundTripsWithBosFirst) {
  for (const std::string text : {"the cat sat on the mat", "héllo wörld, naïve café", "日本語 😀 über",
                                 "Ωμέγα ✓ never seen in training", "  two  spaces", "a\nnewline"}) {
    auto ids = tok_->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status().ToString();
    ASSERT_GE(ids->size(), 2u);
    EXPECT_EQ(ids->front(), *tok_->bos_id()) << text;
    for (uint32_t id : *ids) EXPECT_LT(id, tok_->vocab_size());
    EXPECT_EQ(tok_->Decode(*ids), text);
  }
}

TEST_F(TokenizerTest, RefusesTextThatIsNotUtf8) {
  EXPECT_EQ(tok_->Encode("ab\xC3").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(tok_->Encode("\xED\xA0\x80").status().code(), StatusCode::kInvalidArgument);  // a surrogate
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));  // overlong
  EXPECT_TRUE(IsValidUtf8("plain é 日 😀"));
}

TEST_F(TokenizerTest, IdsOutsideTheTokenizerDecodeToNothing) {
  auto ids = tok_->Encode("the cat");
  ASSERT_TRUE(ids.ok());
  std::vector<uint32_t> with_unknown = *ids;
  with_unknown.insert(with_unknown.begin() + 2, tok_->vocab_size() + 5);  // a model vocabulary may be larger
  EXPECT_EQ(tok_->Decode(with_unknown), "the cat");
}

// Feeds `ids` one by one; every piece is whole UTF-8 and the pieces make the text.
std::string Stream(const Tokenizer& tok, std::span<const uint32_t> prompt, std::span<const uint32_t> ids,
                   size_t* empty_pieces = nullptr) {
  IncrementalDecoder decoder(tok, prompt);
  std::string joined;
  for (uint32_t id : ids) {
    const std::string piece = decoder.Push(id);
    EXPECT_TRUE(IsValidUtf8(piece));
    if (piece.empty() && empty_pieces != nullptr) ++*empty_pieces;
    joined += piece;
  }
  joined += decoder.Finish();
  EXPECT_EQ(joined, decoder.text());
  return joined;
}

TEST_F(TokenizerTest, StreamedPiecesNeverSplitACharacter) {
  // Characters the tokenizer never saw are byte pieces: 2 to 4 ids per character.
  const std::string text = "Ωμέγα ✓ the cat 🙂 héllo";
  auto ids = tok_->Encode(text);
  ASSERT_TRUE(ids.ok());
  std::span<const uint32_t> all(*ids);
  size_t held_back = 0;
  EXPECT_EQ(Stream(*tok_, all.first(1), all.subspan(1), &held_back), text);
  EXPECT_GT(held_back, 5u);  // the byte pieces of Ω, μ, ... waited for their last byte
}

TEST_F(TokenizerTest, TheFirstPieceKeepsItsLeadingSpace) {
  auto prompt = tok_->Encode("the cat");
  auto whole = tok_->Encode("the cat sat on the mat");
  ASSERT_TRUE(prompt.ok() && whole.ok());
  ASSERT_TRUE(std::equal(prompt->begin(), prompt->end(), whole->begin()));
  const std::span<const uint32_t> rest = std::span<const uint32_t>(*whole).subspan(prompt->size());
  EXPECT_EQ(Stream(*tok_, *prompt, rest), " sat on the mat");
}

TEST_F(TokenizerTest, RandomIdsStreamAsWholeCharacters) {
  // What a random model generates: any ids, byte pieces in any order (invalid runs become U+FFFD).
  std::mt19937 rng(5);
  for (int round = 0; round < 50; ++round) {
    std::vector<uint32_t> ids(40);
    for (auto& id : ids) id = rng() % (tok_->vocab_size() + 8);  // a few beyond the tokenizer too
    const std::string text = Stream(*tok_, {}, ids);
    EXPECT_TRUE(IsValidUtf8(text));
    EXPECT_EQ(text, tok_->Decode(ids)) << "round " << round;
  }
}

}  // namespace
}  // namespace kvstash::node
