// The checkpoint layer of kvstash-node: model configs, the safetensors reader and writer, fp16/bf16
// upcasts, Checkpoint and the seeded random model.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/tiny_model.h"
#include "node/checkpoint.h"
#include "node/float16.h"
#include "node/llama_tensors.h"
#include "node/model_config.h"
#include "node/random_model.h"
#include "node/safetensors.h"
#include "tests/unit/tier_test_support.h"

namespace kvstash::node {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using tiers::testing::TempDir;

std::string ReadFile(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFile(const fs::path& file, const std::string& bytes) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// A safetensors file from a raw header text and data; `header_len` overrides the length field.
void WriteRaw(const fs::path& file, const std::string& header, const std::string& data,
              std::optional<uint64_t> header_len = std::nullopt) {
  const uint64_t len = header_len.value_or(header.size());
  std::string bytes(reinterpret_cast<const char*>(&len), 8);
  WriteFile(file, bytes + header + data);
}

template <typename T>
TensorData MakeTensor(const std::string& name, DType dtype, std::vector<uint64_t> shape,
                      const std::vector<T>& values) {
  TensorData t{name, dtype, std::move(shape), std::vector<std::byte>(values.size() * sizeof(T))};
  if (!values.empty()) std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
  return t;
}

ModelConfig GqaConfig(DType dtype) {
  ModelConfig c = testing::TinyLlamaConfig(256);
  c.torch_dtype = dtype;
  return c;
}

bool SameBits(float a, float b) { return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); }

// binary16's value by its definition, computed independently of F16ToF32.
double HalfByDefinition(uint16_t h) {
  const int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (exp == 0x1f) return mant ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  return sign * std::ldexp(1024 + mant, exp - 25);
}

// ---- dtypes and 16-bit floats ----

TEST(NodeDTypeTest, NamesAndSizes) {
  EXPECT_EQ(DTypeName(DType::kF32), "F32");
  EXPECT_EQ(DTypeName(DType::kF16), "F16");
  EXPECT_EQ(DTypeName(DType::kBF16), "BF16");
  EXPECT_EQ(DTypeBytes(DType::kF32), 4u);
  EXPECT_EQ(DTypeBytes(DType::kF16), 2u);
  EXPECT_EQ(DTypeBytes(DType::kBF16), 2u);
  EXPECT_EQ(*DTypeFromName("BF16"), DType::kBF16);
  EXPECT_EQ(*DTypeFromTorchName("float16"), DType::kF16);
  EXPECT_FALSE(DTypeFromName("F64").ok());
}

TEST(NodeFloat16Test, F16SpecialValues) {
  EXPECT_TRUE(SameBits(F16ToF32(0x0000), 0.0f));
  EXPECT_TRUE(SameBits(F16ToF32(0x8000), -0.0f));
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));     // smallest subnormal
  EXPECT_EQ(F16ToF32(0x03ff), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(F16ToF32(0x0400), std::ldexp(1.0f, -14));     // smallest normal
  EXPECT_EQ(F16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(F16ToF32(0xc000), -2.0f);
  EXPECT_EQ(F16ToF32(0x3555), 0.333251953125f);
  EXPECT_EQ(F16ToF32(0x7bff), 65504.0f);  // largest finite
  EXPECT_EQ(F16ToF32(0x7c00), INFINITY);
  EXPECT_EQ(F16ToF32(0xfc00), -INFINITY);
  EXPECT_TRUE(std::isnan(F16ToF32(0x7e00)));
  EXPECT_EQ(std::bit_cast<uint32_t>(F16ToF32(0x7c01)), 0x7f802000u);  // signalling NaN payload kept
  EXPECT_EQ(std::bit_cast<uint32_t>(F16ToF32(0xfe00)), 0xffc00000u);
}

TEST(NodeFloat16Test, F16EveryValueMatchesDefinitionAndRoundTrips) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = static_cast<uint16_t>(i);
    const float f = F16ToF32(h);
    const double want = HalfByDefinition(h);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << i;
    } else {
      ASSERT_TRUE(SameBits(f, static_cast<float>(want))) << std::hex << i;
    }
    // Exact values come back unchanged; a NaN comes back quiet with its sign and payload.
    ASSERT_EQ(F32ToF16(f), std::isnan(f) ? (h | 0x0200) : h) << std::hex << i;
  }
}

TEST(NodeFloat16Test, F16RoundsToNearestEven) {
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie -> even (down)
  EXPECT_EQ(F32ToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie -> even (up)
  EXPECT_EQ(F32ToF16(65519.0f), 0x7bff);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00);  // halfway to 65536: rounds to infinity
  EXPECT_EQ(F32ToF16(-1e10f), 0xfc00);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000);  // half the smallest subnormal: tie -> 0
  EXPECT_EQ(F32ToF16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(F32ToF16(std::ldexp(3.0f, -25)), 0x0002);     // 1.5 units: tie -> even
  EXPECT_EQ(F32ToF16(std::ldexp(1023.5f, -24)), 0x0400);  // subnormal rounds up into the normals
  EXPECT_EQ(F32ToF16(1e-30f), 0x0000);
  EXPECT_EQ(F32ToF16(-1e-30f), 0x8000);
}

TEST(NodeFloat16Test, Bf16SpecialValuesAndRounding) {
  EXPECT_EQ(Bf16ToF32(0x3f80), 1.0f);
  EXPECT_TRUE(SameBits(Bf16ToF32(0x8000), -0.0f));
  EXPECT_EQ(Bf16ToF32(0x0001), std::ldexp(1.0f, -133));  // smallest subnormal
  EXPECT_EQ(Bf16ToF32(0x7f7f), std::bit_cast<float>(0x7f7f0000u));
  EXPECT_EQ(Bf16ToF32(0x7f80), INFINITY);
  EXPECT_EQ(Bf16ToF32(0xff80), -INFINITY);
  EXPECT_TRUE(std::isnan(Bf16ToF32(0x7fc0)));
  EXPECT_EQ(std::bit_cast<uint32_t>(Bf16ToF32(0xff81)), 0xff810000u);
  for (uint32_t i = 0; i < 65536; ++i) {
    const float f = Bf16ToF32(static_cast<uint16_t>(i));
    ASSERT_EQ(std::bit_cast<uint32_t>(f), i << 16);
    if (!std::isnan(f)) {
      ASSERT_EQ(F32ToBf16(f), i) << std::hex << i;
    }
  }
  EXPECT_EQ(F32ToBf16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // tie -> even (down)
  EXPECT_EQ(F32ToBf16(std::bit_cast<float>(0x3f818000u)), 0x3f82);  // tie -> even (up)
  EXPECT_EQ(F32ToBf16(std::bit_cast<float>(0x3f808001u)), 0x3f81);
  EXPECT_EQ(F32ToBf16(std::bit_cast<float>(0x7f7fffffu)), 0x7f80);  // max float rounds to infinity
  EXPECT_TRUE(
      std::isnan(Bf16ToF32(F32ToBf16(std::bit_cast<float>(0x7f800001u)))));  // NaN stays NaN
}

// ---- safetensors ----

TEST(NodeSafetensorsTest, RoundTripsEveryDType) {
  TempDir dir("node-st");
  const fs::path file = fs::path(dir.path()) / "t.safetensors";
  const std::vector<float> f32 = {1.5f, -2.25f, 0.0f, 1e-20f, 3e30f, -0.0f};
  const std::vector<uint16_t> f16 = {0x3c00, 0x0001, 0x7c00, 0xfbff};
  const std::vector<uint16_t> bf16 = {0x3f80, 0xc040, 0x0080};
  std::vector<TensorData> tensors = {MakeTensor("a.f32", DType::kF32, {2, 3}, f32),
                                     MakeTensor("b.f16", DType::kF16, {4}, f16),
                                     MakeTensor("c.bf16", DType::kBF16, {1, 3, 1}, bf16),
                                     MakeTensor<float>("d.empty", DType::kF32, {0, 5}, {}),
                                     MakeTensor<float>("e.scalar", DType::kF32, {}, {7.0f})};
  ASSERT_TRUE(WriteSafetensors(file, tensors).ok());

  const std::string raw = ReadFile(file);
  uint64_t header_len = 0;
  std::memcpy(&header_len, raw.data(), 8);
  EXPECT_EQ((8 + header_len) % 8, 0u);
  EXPECT_THAT(raw.substr(8, header_len), HasSubstr(R"("__metadata__":{"format":"pt"})"));
  EXPECT_EQ(raw.size(), 8 + header_len + 24 + 8 + 6 + 0 + 4);  // data contiguous, no holes
  EXPECT_FALSE(fs::exists(file.string() + ".tmp"));

  auto opened = SafetensorsFile::Open(file);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  const SafetensorsFile& st = **opened;
  ASSERT_EQ(st.tensors().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorView& v = st.tensors()[i];  // file order = write order
    EXPECT_EQ(v.name, tensors[i].name);
    EXPECT_EQ(v.dtype, tensors[i].dtype);
    EXPECT_EQ(v.shape, tensors[i].shape);
    ASSERT_EQ(v.bytes.size(), tensors[i].bytes.size());
    EXPECT_TRUE(std::equal(v.bytes.begin(), v.bytes.end(), tensors[i].bytes.begin()));
    EXPECT_EQ(st.Find(v.name), &v);
  }
  EXPECT_EQ(st.Find("nope"), nullptr);
  EXPECT_EQ(st.Find("e.scalar")->elements(), 1u);
  EXPECT_EQ(UpcastToF32(*st.Find("a.f32")), f32);
  EXPECT_EQ(UpcastToF32(*st.Find("c.bf16")),
            (std::vector<float>{1.0f, -3.0f, std::ldexp(1.0f, -126)}));
  const std::vector<float> halves = UpcastToF32(*st.Find("b.f16"));
  EXPECT_EQ(halves, (std::vector<float>{1.0f, std::ldexp(1.0f, -24), INFINITY, -65504.0f}));
}

TEST(NodeSafetensorsTest, WriterRefusesInconsistentTensors) {
  TempDir dir("node-st");
  const fs::path file = fs::path(dir.path()) / "t.safetensors";
  Status s = WriteSafetensors(file, {MakeTensor<float>("x", DType::kF32, {3}, {1, 2})});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("tensor \"x\""));
  s = WriteSafetensors(file, {MakeTensor<float>("x", DType::kF32, {1}, {1}),
                              MakeTensor<float>("x", DType::kF32, {1}, {1})});
  EXPECT_THAT(s.message(), HasSubstr("duplicate"));
  EXPECT_FALSE(fs::exists(file));
}

struct BadFile {
  const char* what;
  std::string header, data;
  std::optional<uint64_t> header_len;
  const char* expect;  // substring of the error (besides the file name)
};

TEST(NodeSafetensorsTest, MalformedFilesGiveClearErrors) {
  TempDir dir("node-st");
  const std::string ok_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string eight(8, '\0');
  const std::vector<BadFile> cases = {
      {"header length past the end", "{" + ok_entry + "}", eight, 1000,
       "header length 1000 past the end of the file"},
      {"header not JSON", R"({"w": {"dtype": "F32",)", eight, {}, "header is not JSON"},
      {"header not an object", "[1,2]", "", {}, "header is not a JSON object"},
      {"offsets outside the data",
       R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
       eight,
       {},
       "tensor \"w\": data_offsets [0, 16] lie outside the data (8 bytes"},
      {"overlap",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       eight,
       {},
       "tensor \"b\": data overlaps tensor \"a\""},
      {"unknown dtype",
       R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})",
       eight,
       {},
       "tensor \"w\": unknown dtype \"F64\""},
      {"shape disagrees with length",
       R"({"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}})",
       eight,
       {},
       "tensor \"w\": shape [3] of BF16 needs 6 bytes but data_offsets [0, 8] hold 8"},
      {"duplicate name",
       "{" + ok_entry + "," + ok_entry + "}",
       eight,
       {},
       "tensor \"w\": duplicate name"},
      {"begin after end",
       R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})",
       eight,
       {},
       "tensor \"w\": data_offsets must be [begin, end] with begin <= end"},
      {"negative shape",
       R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
       eight,
       {},
       "tensor \"w\": \"shape\" holds a non-integer or negative value"},
      {"no dtype",
       R"({"w":{"shape":[2],"data_offsets":[0,8]}})",
       eight,
       {},
       "tensor \"w\": no string \"dtype\""},
      {"shape overflows",
       R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
       eight,
       {},
       "tensor \"w\": shape [4294967296,4294967296] overflows"},
  };
  for (const BadFile& c : cases) {
    const fs::path file = fs::path(dir.path()) / "bad.safetensors";
    WriteRaw(file, c.header, c.data, c.header_len);
    auto opened = SafetensorsFile::Open(file);
    ASSERT_FALSE(opened.ok()) << c.what;
    EXPECT_EQ(opened.status().code(), StatusCode::kInvalidArgument) << c.what;
    EXPECT_THAT(opened.status().message(), HasSubstr(file.string() + ": ")) << c.what;
    EXPECT_THAT(opened.status().message(), HasSubstr(c.expect)) << c.what;
  }
}

TEST(NodeSafetensorsTest, TruncatedFilesGiveClearErrors) {
  TempDir dir("node-st");
  const fs::path file = fs::path(dir.path()) / "t.safetensors";
  ASSERT_TRUE(WriteSafetensors(file, {MakeTensor<float>("a", DType::kF32, {4}, {1, 2, 3, 4}),
                                      MakeTensor<float>("b", DType::kF32, {2}, {5, 6})})
                  .ok());
  const std::string whole = ReadFile(file);
  WriteFile(file, whole.substr(0, whole.size() - 4));  // b's last element gone
  auto opened = SafetensorsFile::Open(file);
  ASSERT_FALSE(opened.ok());
  EXPECT_THAT(opened.status().message(),
              HasSubstr("tensor \"b\": data_offsets [16, 24] lie outside the data"));
  EXPECT_THAT(opened.status().message(), HasSubstr("truncated"));

  WriteFile(file, whole.substr(0, 20));  // inside the header
  opened = SafetensorsFile::Open(file);
  EXPECT_THAT(opened.status().message(), HasSubstr("past the end of the file (20 bytes)"));

  WriteFile(file, whole.substr(0, 5));
  opened = SafetensorsFile::Open(file);
  EXPECT_THAT(opened.status().message(), HasSubstr("truncated: 5 bytes"));

  opened = SafetensorsFile::Open(fs::path(dir.path()) / "absent.safetensors");
  EXPECT_EQ(opened.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(opened.status().message(), HasSubstr("absent.safetensors: cannot open"));
}

// Any single corrupted byte gives a clean error or a file whose views stay inside the data.
TEST(NodeSafetensorsTest, CorruptedBytesNeverEscapeTheFile) {
  TempDir dir("node-st");
  const fs::path file = fs::path(dir.path()) / "t.safetensors";
  ASSERT_TRUE(WriteSafetensors(file, {MakeTensor<float>("a", DType::kF32, {2, 2}, {1, 2, 3, 4}),
                                      MakeTensor<uint16_t>("b", DType::kBF16, {3}, {1, 2, 3})})
                  .ok());
  const std::string whole = ReadFile(file);
  std::mt19937_64 rng(1);
  for (int i = 0; i < 300; ++i) {
    std::string bytes = whole;
    bytes[rng() % bytes.size()] = static_cast<char>(rng());
    WriteFile(file, bytes);
    auto opened = SafetensorsFile::Open(file);
    if (!opened.ok()) {
      EXPECT_THAT(opened.status().message(), HasSubstr(file.string()));
      continue;
    }
    for (const TensorView& v : (*opened)->tensors())
      EXPECT_EQ(v.bytes.size(), v.elements() * DTypeBytes(v.dtype)) << v.name;
  }
}

// Every f16 and bf16 bit pattern through a file and LoadF32: the upcast is exact.
TEST(NodeCheckpointTest, LoadF32UpcastsEveryHalfExactly) {
  TempDir dir("node-ckpt");
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  ASSERT_TRUE(WriteSafetensors(fs::path(dir.path()) / "model.safetensors",
                               {MakeTensor("h", DType::kF16, {256, 256}, all),
                                MakeTensor("b", DType::kBF16, {65536}, all)})
                  .ok());
  WriteFile(fs::path(dir.path()) / "config.json", GqaConfig(DType::kF16).ToJson());
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  const std::vector<uint64_t> square = {256, 256}, flat = {65536};
  auto h = (*ckpt)->LoadF32("h", square);
  auto b = (*ckpt)->LoadF32("b", flat);
  ASSERT_TRUE(h.ok() && b.ok());
  for (uint32_t i = 0; i < 65536; ++i) {
    const double want = HalfByDefinition(static_cast<uint16_t>(i));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan((*h)[i])) << i;
    } else {
      ASSERT_TRUE(SameBits((*h)[i], static_cast<float>(want))) << i;
    }
    ASSERT_EQ(std::bit_cast<uint32_t>((*b)[i]), i << 16);
  }
}

// ---- configs ----

constexpr const char* kHfConfig = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "head_dim": 64, "hidden_act": "silu",
  "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 131072,
  "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16,
  "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null,
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0", "use_cache": true, "vocab_size": 128256
})";

TEST(NodeModelConfigTest, ParsesHuggingFaceConfigWithExtraKeys) {
  auto c = ModelConfig::FromJson(kHfConfig, "hf.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->hidden_size, 2048u);
  EXPECT_EQ(c->num_hidden_layers, 16u);
  EXPECT_EQ(c->num_attention_heads, 32u);
  EXPECT_EQ(c->num_key_value_heads, 8u);
  EXPECT_EQ(c->intermediate_size, 8192u);
  EXPECT_EQ(c->vocab_size, 128256u);
  EXPECT_EQ(c->max_position_embeddings, 131072u);
  EXPECT_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->torch_dtype, DType::kBF16);
  EXPECT_EQ(c->head_dim(), 64u);
}

TEST(NodeModelConfigTest, DefaultsAndRoundTrip) {
  auto c =
      ModelConfig::FromJson(R"({"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
      "intermediate_size": 128, "vocab_size": 97, "max_position_embeddings": 64, "dtype": "float16"})",
                            "min.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->num_key_value_heads, 4u);  // defaults to num_attention_heads
  EXPECT_EQ(c->rope_theta, 10000.0);
  EXPECT_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->torch_dtype, DType::kF16);  // the newer "dtype" key

  const std::string text = GqaConfig(DType::kBF16).ToJson();
  EXPECT_THAT(text, HasSubstr(R"("architectures": [)"));
  EXPECT_THAT(text, HasSubstr(R"("LlamaForCausalLM")"));
  EXPECT_THAT(text, HasSubstr(R"("model_type": "llama")"));
  EXPECT_THAT(text, HasSubstr(R"("torch_dtype": "bfloat16")"));
  auto back = ModelConfig::FromJson(text, "round");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->ToJson(), text);
  EXPECT_EQ(back->num_key_value_heads, 2u);
}

TEST(NodeModelConfigTest, BadConfigsNameTheField) {
  const std::string base = R"("hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
      "vocab_size": 97, "max_position_embeddings": 64)";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"num_attention_heads": 0, )" + base + "}", "num_attention_heads: must be > 0"},
      {R"({"num_attention_heads": 5, )" + base + "}",
       "num_attention_heads: 5 does not divide hidden_size 64"},
      {R"({"num_attention_heads": 4, "num_key_value_heads": 3, )" + base + "}",
       "num_key_value_heads: 3 does not divide num_attention_heads 4"},
      {R"({"num_attention_heads": 64, )" + base + "}", "num_attention_heads: head_dim 1 is odd"},
      {R"({"num_attention_heads": 4, "rms_norm_eps": 0, )" + base + "}",
       "rms_norm_eps: must be a finite number > 0"},
      {R"({"num_attention_heads": 4, "rope_theta": -1, )" + base + "}",
       "rope_theta: must be a finite number > 0"},
      {R"({"num_attention_heads": 4, "torch_dtype": "int8", )" + base + "}",
       "torch_dtype: unknown dtype \"int8\""},
      {R"({"num_attention_heads": 4, "tie_word_embeddings": 1, )" + base + "}",
       "tie_word_embeddings: expected true"},
      {R"({"num_attention_heads": 4, "head_dim": 128, )" + base + "}", "head_dim: 128 differs"},
      {R"({"num_attention_heads": 4, "rope_scaling": {"rope_type": "llama3"}, )" + base + "}",
       "rope_scaling: is unsupported"},
      {R"({"num_attention_heads": 4, "hidden_act": "gelu", )" + base + "}",
       "hidden_act: \"gelu\" is unsupported"},
      {R"({"num_attention_heads": 4, "attention_bias": true, )" + base + "}",
       "attention_bias: true is unsupported"},
      {R"({"num_attention_heads": 4.5, )" + base + "}",
       "num_attention_heads: expected an unsigned integer, got 4.5"},
      {R"({"num_attention_heads": -4, )" + base + "}",
       "num_attention_heads: expected an unsigned integer, got -4"},
      {R"({"hidden_size": 64})", "num_hidden_layers: missing"},
      {R"({"num_attention_heads": 4, "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
          "vocab_size": 4294967295, "max_position_embeddings": 64})",
       "vocab_size: 4294967295 exceeds the limit"},
      {R"({"num_attention_heads": 4, "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
          "vocab_size": 4294967296, "max_position_embeddings": 64})",
       "vocab_size: 4294967296 is too large"},
      {"[1]", "expected a JSON object"},
      {"{\"hidden_size\": ", "not JSON"},
  };
  for (const auto& [text, expect] : cases) {
    auto c = ModelConfig::FromJson(text, "cfg.json");
    ASSERT_FALSE(c.ok()) << text;
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(c.status().message(), HasSubstr("cfg.json: ")) << text;
    EXPECT_THAT(c.status().message(), HasSubstr(expect)) << text;
  }
}

// ---- checkpoints and the random model ----

TEST(NodeRandomModelTest, DeterministicPerSeed) {
  TempDir dir("node-rand");
  const fs::path a = fs::path(dir.path()) / "a", b = fs::path(dir.path()) / "b",
                 c = fs::path(dir.path()) / "c";
  const ModelConfig config = GqaConfig(DType::kBF16);
  ASSERT_TRUE(MakeRandomModel(config, 7, a).ok());
  ASSERT_TRUE(MakeRandomModel(config, 7, b).ok());
  ASSERT_TRUE(MakeRandomModel(config, 8, c).ok());
  EXPECT_EQ(ReadFile(a / "model.safetensors"), ReadFile(b / "model.safetensors"));
  EXPECT_EQ(ReadFile(a / "config.json"), ReadFile(b / "config.json"));
  EXPECT_EQ(ReadFile(a / "config.json"), config.ToJson());
  const std::string wa = ReadFile(a / "model.safetensors"), wc = ReadFile(c / "model.safetensors");
  EXPECT_EQ(wa.size(), wc.size());
  EXPECT_NE(wa, wc);
  // Rewriting in place gives the same bytes again.
  ASSERT_TRUE(MakeRandomModel(config, 7, a).ok());
  EXPECT_EQ(ReadFile(a / "model.safetensors"), wa);
}

TEST(NodeRandomModelTest, RefusesBadConfigAndForeignShards) {
  TempDir dir("node-rand");
  ModelConfig bad = GqaConfig(DType::kF32);
  bad.num_key_value_heads = 3;
  Status s = MakeRandomModel(bad, 1, dir.path());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("num_key_value_heads"));
  WriteFile(fs::path(dir.path()) / "model-00001-of-00002.safetensors", "");
  s = MakeRandomModel(GqaConfig(DType::kF32), 1, dir.path());
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists);
  EXPECT_THAT(s.message(), HasSubstr("model-00001-of-00002.safetensors"));
}

// Loads every standard tensor; returns them by name.
std::map<std::string, std::vector<float>> LoadAll(const Checkpoint& ckpt) {
  std::map<std::string, std::vector<float>> out;
  for (const TensorSpec& spec : LlamaTensors(ckpt.config())) {
    auto t = ckpt.LoadF32(spec.name, spec.shape);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    if (t.ok()) out[spec.name] = std::move(*t);
  }
  return out;
}

TEST(NodeRandomModelTest, GqaCheckpointLoadsInF32AndBf16) {
  TempDir dir("node-rand");
  const fs::path f32_dir = fs::path(dir.path()) / "f32", bf16_dir = fs::path(dir.path()) / "bf16";
  ASSERT_TRUE(MakeRandomModel(GqaConfig(DType::kF32), 42, f32_dir).ok());
  ASSERT_TRUE(MakeRandomModel(GqaConfig(DType::kBF16), 42, bf16_dir).ok());
  auto f32 = Checkpoint::Open(f32_dir);
  auto bf16 = Checkpoint::Open(bf16_dir);
  ASSERT_TRUE(f32.ok()) << f32.status().ToString();
  ASSERT_TRUE(bf16.ok()) << bf16.status().ToString();
  EXPECT_EQ((*bf16)->config().torch_dtype, DType::kBF16);
  EXPECT_EQ((*f32)->Find("model.layers.1.self_attn.k_proj.weight")->shape,
            (std::vector<uint64_t>{32, 64}));
  EXPECT_EQ((*f32)->Find("model.layers.0.mlp.down_proj.weight")->shape,
            (std::vector<uint64_t>{64, 128}));
  EXPECT_EQ(LlamaTensors((*f32)->config()).size(), 1 + 2 * 9 + 2u);

  const auto a = LoadAll(**f32), b = LoadAll(**bf16);
  ASSERT_EQ(a.size(), 21u);
  ASSERT_EQ(b.size(), 21u);
  for (const auto& [name, values] : a) {
    // The BF16 model holds the F32 model's values rounded: the same draws, stored narrower.
    const std::vector<float>& narrow = b.at(name);
    ASSERT_EQ(narrow.size(), values.size());
    for (size_t i = 0; i < values.size(); ++i)
      ASSERT_EQ(narrow[i], Bf16ToF32(F32ToBf16(values[i]))) << name << i;
    double sum = 0, sq = 0;
    for (float v : values) sum += v, sq += double{v} * v;
    const double mean = sum / values.size(), std = std::sqrt(sq / values.size() - mean * mean);
    if (name.ends_with("norm.weight")) {
      EXPECT_NEAR(mean, 1.0, 0.05) << name;
      EXPECT_NEAR(std, 0.1, 0.04) << name;
    } else {
      const double scale =
          name.find("embed") != std::string::npos || name == "lm_head.weight"
              ? 2.0 / 8.0
              : 1.0 / std::sqrt(name.find("down_proj") != std::string::npos ? 128.0 : 64.0);
      EXPECT_NEAR(mean, 0.0, 0.1 * scale) << name;
      EXPECT_NEAR(std, scale, 0.1 * scale) << name;
    }
  }
}

TEST(NodeRandomModelTest, TiedEmbeddingsHaveNoLmHead) {
  TempDir dir("node-rand");
  ModelConfig c = GqaConfig(DType::kF16);
  c.tie_word_embeddings = true;
  ASSERT_TRUE(MakeRandomModel(c, 3, dir.path()).ok());
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_EQ((*ckpt)->Find("lm_head.weight"), nullptr);
  EXPECT_EQ(LoadAll(**ckpt).size(), 20u);
}

TEST(NodeCheckpointTest, ErrorsNameTheTensorOrFile) {
  TempDir dir("node-ckpt");
  const fs::path d = dir.path();
  auto ckpt = Checkpoint::Open(d);
  EXPECT_EQ(ckpt.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(ckpt.status().message(), HasSubstr("config.json"));

  ASSERT_TRUE(MakeRandomModel(GqaConfig(DType::kF32), 1, d).ok());
  ckpt = Checkpoint::Open(d);
  ASSERT_TRUE(ckpt.ok());
  const std::vector<uint64_t> wrong = {64, 32};
  auto t = (*ckpt)->LoadF32("model.layers.0.self_attn.k_proj.weight", wrong);
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr("tensor \"model.layers.0.self_attn.k_proj.weight\" "
                                              "has shape [32, 64], expected [64, 32]"));
  t = (*ckpt)->LoadF32("model.layers.2.mlp.up_proj.weight", wrong);
  EXPECT_EQ(t.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(),
              HasSubstr("tensor \"model.layers.2.mlp.up_proj.weight\" is not in"));

  // One tensor in two shards.
  ASSERT_TRUE(WriteSafetensors(d / "extra.safetensors",
                               {MakeTensor<float>("model.norm.weight", DType::kF32, {1}, {1})})
                  .ok());
  ckpt = Checkpoint::Open(d);
  EXPECT_EQ(ckpt.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(ckpt.status().message(), HasSubstr("tensor \"model.norm.weight\" is in both"));
  EXPECT_THAT(ckpt.status().message(), HasSubstr("extra.safetensors"));

  // A malformed shard.
  WriteRaw(d / "extra.safetensors", "{not json", "");
  ckpt = Checkpoint::Open(d);
  EXPECT_THAT(ckpt.status().message(), HasSubstr("extra.safetensors: header is not JSON"));
  fs::remove(d / "extra.safetensors");

  // A config that does not validate.
  WriteFile(d / "config.json", R"({"hidden_size": 64})");
  ckpt = Checkpoint::Open(d);
  EXPECT_EQ(ckpt.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(ckpt.status().message(), HasSubstr("config.json: num_hidden_layers: missing"));

  // No weights at all.
  WriteFile(d / "config.json", GqaConfig(DType::kF32).ToJson());
  fs::remove(d / "model.safetensors");
  ckpt = Checkpoint::Open(d);
  EXPECT_EQ(ckpt.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(ckpt.status().message(), HasSubstr("no *.safetensors files"));
}

TEST(NodeCheckpointTest, IdentityFollowsConfigAndTensorLayout) {
  TempDir dir("node-ckpt");
  const fs::path d = dir.path();
  auto identity = [&](const ModelConfig& c, uint64_t seed, const std::string& sub) {
    EXPECT_TRUE(MakeRandomModel(c, seed, d / sub).ok());
    auto ckpt = Checkpoint::Open(d / sub);
    EXPECT_TRUE(ckpt.ok()) << ckpt.status().ToString();
    return ckpt.ok() ? (*ckpt)->Identity() : std::array<uint8_t, 16>{};
  };
  const ModelConfig base = GqaConfig(DType::kF32);
  ModelConfig other_vocab = base, other_dtype = base, tied = base, other_theta = base;
  other_vocab.vocab_size = 101;
  other_dtype.torch_dtype = DType::kBF16;
  tied.tie_word_embeddings = true;
  other_theta.rope_theta = 500000.0;
  const auto id = identity(base, 1, "a");
  EXPECT_EQ(identity(base, 1, "b"), id);
  EXPECT_EQ(identity(base, 2, "c"), id);  // weights' values are not hashed
  EXPECT_NE(identity(other_vocab, 1, "d"), id);
  EXPECT_NE(identity(other_dtype, 1, "e"), id);
  EXPECT_NE(identity(tied, 1, "f"), id);
  EXPECT_NE(identity(other_theta, 1, "g"), id);
  EXPECT_NE(id, (std::array<uint8_t, 16>{}));
}

// An independent reader: Python's struct and json parse the file our writer produced, and its
// half-precision unpacking ('e') agrees with our upcast on every f16 value.
TEST(NodeSafetensorsTest, PythonReadsWhatWeWrite) {
  if (std::system("python3 -c pass >/dev/null 2>&1") != 0) GTEST_SKIP() << "no python3";
  TempDir dir("node-py");
  const fs::path file = fs::path(dir.path()) / "t.safetensors",
                 out = fs::path(dir.path()) / "out.f32";
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  ASSERT_TRUE(WriteSafetensors(file, {MakeTensor<float>("x", DType::kF32, {2}, {1.5f, -3.0f}),
                                      MakeTensor("h", DType::kF16, {65536}, all)})
                  .ok());
  const std::string script =
      "import json,struct,sys\n"
      "b=open(sys.argv[1],'rb').read(); n=struct.unpack('<Q',b[:8])[0]; h=json.loads(b[8:8+n]); "
      "d=b[8+n:]\n"
      "assert h['__metadata__']=={'format':'pt'} and (8+n)%8==0\n"
      "x=h['x']; assert x['dtype']=='F32' and x['shape']==[2] and x['data_offsets']==[0,8]\n"
      "assert struct.unpack('<2f',d[0:8])==(1.5,-3.0)\n"
      "t=h['h']; s,e=t['data_offsets']; assert t['dtype']=='F16' and (s,e)==(8,8+2*65536) and "
      "e==len(d)\n"
      "v=struct.unpack('<65536e',d[s:e]); "
      "open(sys.argv[2],'wb').write(struct.pack('<65536f',*v))\n";
  WriteFile(fs::path(dir.path()) / "check.py", script);
  const std::string cmd = "python3 " + (fs::path(dir.path()) / "check.py").string() + " " +
                          file.string() + " " + out.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const std::string floats = ReadFile(out);
  ASSERT_EQ(floats.size(), 65536u * 4);
  for (uint32_t i = 0; i < 65536; ++i) {
    float py;
    std::memcpy(&py, floats.data() + 4 * i, 4);
    const float ours = F16ToF32(static_cast<uint16_t>(i));
    if (std::isnan(ours)) {
      ASSERT_TRUE(std::isnan(py)) << i;
    } else {
      ASSERT_TRUE(SameBits(py, ours)) << i;
    }
  }
}

}  // namespace
}  // namespace kvstash::node
