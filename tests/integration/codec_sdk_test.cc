// The block codec through the SDK (client/kv_codec.h) against a real kvstashd: raw blocks put with
// a namespace's codec are stored encoded (half the bytes), come back decoded exactly as the CPU
// reference decodes them, within the codec's error bound of the original; a stored block that is
// not this codec's format is a miss; a namespace without a codec passes blocks through untouched.
// With CUDA and a device: raw blocks in GPU memory are encoded and decoded on the GPU
// (kv_codec_device.h), stored bytes equal to the CPU encoder's, decoded bits equal to the CPU
// reference decode, mixed host/device batches, and foreign bytes a miss with the device buffer
// untouched.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "client/kv_codec.h"
#ifdef KVSTASH_HAVE_CUDA
#include "client/kv_codec_device.h"
#include "gpu/cuda_util.h"
#endif
#include "gpu/kv_sample.h"
#include "kvstash/prefix_hasher.h"
#include "tests/support/daemon_process.h"

namespace kvstash {
namespace {

using testing::DaemonProcess;

constexpr uint32_t kLayers = 4, kTokens = 16, kHeads = 8, kHeadDim = 128;

class CodecSdkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<DaemonProcess>(KVSTASHD_PATH, std::vector<std::string>{"--dram-capacity", "128MiB"});
    ASSERT_TRUE(daemon_->ok()) << daemon_->error();
    ClientOptions o;
    o.address = daemon_->grpc_address();
    auto c = Client::Connect(o);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(*c);
  }
  void TearDown() override {
    client_.reset();
    if (daemon_ && daemon_->pid() > 0) {
      EXPECT_EQ(daemon_->Stop(), 0);
    }
  }
  std::vector<BlockKey> Chain(const std::string& ns, size_t blocks, uint32_t salt) {
    PrefixHasher h(ns, kTokens);
    std::vector<uint32_t> tokens(blocks * kTokens);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(i * 7 + salt);
    return h.Chain(tokens);
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<Client> client_;
};

TEST_F(CodecSdkTest, EncodedOnPutDecodedOnGet) {
  for (const char* ns : {"m|vllm-per-layer|bf16:fp8-e4m3|tp0", "m|vllm-per-layer|fp16:int8|tp0"}) {
    SCOPED_TRACE(ns);
    auto codec = KvCodec::ForNamespace(ns, kLayers, kTokens, kHeads, kHeadDim);
    ASSERT_TRUE(codec.ok()) << codec.status().ToString();
    ASSERT_TRUE(codec->enabled());
    const gpu::CodecGeometry& g = codec->geometry();
    EXPECT_LT(g.encoded_bytes, g.raw_bytes / 2 + g.raw_bytes / 50);  // about half

    const std::vector<BlockKey> keys = Chain(ns, 6, 1);
    std::vector<std::vector<std::byte>> raw(keys.size(), std::vector<std::byte>(g.raw_bytes));
    std::vector<PutItem> items(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      gpu::FillRealisticKv(g.shape, 100 + i, raw[i].data());
      items[i].key = keys[i];
      if (i > 0) items[i].parent = keys[i - 1];
      items[i].data = raw[i];
    }
    auto put = codec->PutBlocks(*client_, items);
    ASSERT_TRUE(put.ok()) << put.status().ToString();
    EXPECT_EQ(put->stored, keys.size());
    auto stat = client_->Stat(keys);
    ASSERT_TRUE(stat.ok());
    EXPECT_EQ((*stat)[0]->size, g.encoded_bytes);  // the daemon holds the encoded form

    std::vector<std::vector<std::byte>> out(keys.size(), std::vector<std::byte>(g.raw_bytes, std::byte{0x7f}));
    std::vector<GetItem> gets(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      gets[i].key = keys[i];
      gets[i].buffer = out[i];
    }
    ASSERT_TRUE(codec->GetBlocks(*client_, gets).ok());
    gpu::CodecError error;
    std::vector<std::byte> enc(g.encoded_bytes), ref(g.raw_bytes);
    for (size_t i = 0; i < keys.size(); ++i) {
      ASSERT_TRUE(gets[i].found) << gets[i].status.ToString();
      EXPECT_EQ(gets[i].size, g.raw_bytes);
      gpu::EncodeBlockHost(g, raw[i].data(), enc.data());
      ASSERT_TRUE(gpu::DecodeBlockHost(g, enc.data(), ref.data()).ok());
      EXPECT_EQ(std::memcmp(out[i].data(), ref.data(), g.raw_bytes), 0) << "block " << i;
      error.Merge(gpu::MeasureCodecError(g, raw[i].data(), out[i].data()));
    }
    // Bounds of docs/GPU.md: half a quantisation step of the group's amax, plus the final rounding
    // into the dtype (at most 2^-9 of a value near amax for bf16, 2^-11 for fp16: 2^-8 covers both).
    const double step_bound = g.codec == gpu::BlockCodec::kInt8 ? 0.5 / 127 : 16.0 / 448;
    EXPECT_LE(error.max_abs_over_amax, step_bound + 1.0 / 256);
    EXPECT_LT(error.rel_l2, 0.05);
    std::printf("[ codec    ] %s: %llu elements, max |err|/amax %.4f, rel L2 %.4f, max rel %.4f\n", ns,
                static_cast<unsigned long long>(error.elements), error.max_abs_over_amax, error.rel_l2, error.max_rel);
  }
}

TEST_F(CodecSdkTest, ForeignBytesUnderAKeyAreAMiss) {
  const std::string ns = "m|vllm-per-layer|bf16:fp8|tp0";
  auto codec = KvCodec::ForNamespace(ns, kLayers, kTokens, kHeads, kHeadDim);
  ASSERT_TRUE(codec.ok());
  const std::vector<BlockKey> keys = Chain(ns, 2, 9);
  // Block 0: the right size, no codec header. Block 1: another geometry's (wrong size).
  std::vector<std::byte> junk(codec->stored_bytes(), std::byte{0x5a});
  std::vector<std::byte> small(4096, std::byte{0x11});
  std::vector<PutItem> raw_puts(2);
  raw_puts[0] = {keys[0], std::nullopt, junk};
  raw_puts[1] = {keys[1], keys[0], small};
  ASSERT_TRUE(client_->Put(raw_puts).ok());
  std::vector<std::byte> out0(codec->raw_bytes(), std::byte{0x33}), out1(codec->raw_bytes(), std::byte{0x33});
  std::vector<GetItem> gets(2);
  gets[0].key = keys[0];
  gets[0].buffer = out0;
  gets[1].key = keys[1];
  gets[1].buffer = out1;
  ASSERT_TRUE(codec->GetBlocks(*client_, gets).ok());
  for (const GetItem& g : gets) {
    EXPECT_FALSE(g.found);
    EXPECT_EQ(g.status.code(), StatusCode::kDataLoss) << g.status.ToString();
  }
  EXPECT_TRUE(std::all_of(out0.begin(), out0.end(), [](std::byte b) { return b == std::byte{0x33}; }));
  // And a raw block of the wrong size is refused before anything is stored.
  std::vector<PutItem> wrong(1);
  wrong[0] = {Chain(ns, 3, 77)[2], std::nullopt, small};
  EXPECT_EQ(codec->PutBlocks(*client_, wrong).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(CodecSdkTest, NoCodecPassesThrough) {
  auto codec = KvCodec::ForNamespace("m|vllm-per-layer|bf16|tp0", kLayers, kTokens, kHeads, kHeadDim);
  ASSERT_TRUE(codec.ok());
  EXPECT_FALSE(codec->enabled());
  EXPECT_EQ(KvCodec::ForNamespace("m|vllm|bf16:zstd|tp0", 1, 1, 1, 1).status().code(), StatusCode::kInvalidArgument);
  const std::vector<BlockKey> keys = Chain("m|vllm-per-layer|bf16|tp0", 1, 3);
  std::vector<std::byte> block(1000);
  for (size_t i = 0; i < block.size(); ++i) block[i] = std::byte(i * 13 + 1);
  std::vector<PutItem> items{{keys[0], std::nullopt, block}};
  ASSERT_TRUE(codec->PutBlocks(*client_, items).ok());
  std::vector<std::byte> out(1000);
  std::vector<GetItem> gets(1);
  gets[0].key = keys[0];
  gets[0].buffer = out;
  ASSERT_TRUE(codec->GetBlocks(*client_, gets).ok());
  ASSERT_TRUE(gets[0].found);
  EXPECT_EQ(out, block);
}

#ifdef KVSTASH_HAVE_CUDA
TEST_F(CodecSdkTest, DeviceBlocksEncodedAndDecodedOnTheGpu) {
  const gpu::DeviceSummary devices = gpu::ProbeDevices();
  if (devices.count == 0) GTEST_SKIP() << "no CUDA device on this host: " << devices.reason;
  for (const char* ns : {"d|vllm-per-layer|bf16:fp8-e4m3|tp0", "d|vllm-per-layer|fp16:int8|tp0"}) {
    SCOPED_TRACE(ns);
    auto codec = KvCodec::ForNamespace(ns, kLayers, kTokens, kHeads, kHeadDim);
    ASSERT_TRUE(codec.ok()) << codec.status().ToString();
    const gpu::CodecGeometry& g = codec->geometry();
    const size_t n = 7;
    const std::vector<BlockKey> keys = Chain(ns, n, 3);
    // Fresh realistic blocks; even items on the GPU, odd ones in host memory.
    std::vector<std::vector<std::byte>> raw(n, std::vector<std::byte>(g.raw_bytes));
    auto dev = gpu::DeviceBuffer::Allocate(n * g.raw_bytes);
    ASSERT_TRUE(dev.ok()) << dev.status().ToString();
    std::vector<PutItem> items(n);
    bool on_device[n];
    for (size_t i = 0; i < n; ++i) {
      gpu::FillRealisticKv(g.shape, 500 + i + (g.codec == gpu::BlockCodec::kInt8 ? 50 : 0), raw[i].data());
      on_device[i] = i % 2 == 0;
      std::byte* d = dev->data() + i * g.raw_bytes;
      ASSERT_EQ(cudaMemcpy(d, raw[i].data(), g.raw_bytes, cudaMemcpyHostToDevice), cudaSuccess);
      items[i].key = keys[i];
      if (i > 0) items[i].parent = keys[i - 1];
      items[i].data = on_device[i] ? std::span<const std::byte>(d, g.raw_bytes) : std::span<const std::byte>(raw[i]);
    }
    auto put = PutBlocksFromDevice(*codec, *client_, items, std::span<const bool>(on_device, n), {}, nullptr);
    ASSERT_TRUE(put.ok()) << put.status().ToString();
    EXPECT_EQ(put->stored, n);

    // The stored bytes are the CPU encoder's, byte for byte, whichever side encoded them.
    std::vector<std::vector<std::byte>> stored(n, std::vector<std::byte>(g.encoded_bytes));
    std::vector<GetItem> plain(n);
    for (size_t i = 0; i < n; ++i) {
      plain[i].key = keys[i];
      plain[i].buffer = stored[i];
    }
    ASSERT_TRUE(client_->Get(plain).ok());
    std::vector<std::vector<std::byte>> ref(n, std::vector<std::byte>(g.raw_bytes));
    std::vector<std::byte> enc(g.encoded_bytes);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_TRUE(plain[i].found);
      ASSERT_EQ(plain[i].size, g.encoded_bytes);
      gpu::EncodeBlockHost(g, raw[i].data(), enc.data());
      EXPECT_TRUE(enc == stored[i]) << "stored block " << i << " differs from the CPU encoding";
      ASSERT_TRUE(gpu::DecodeBlockHost(g, enc.data(), ref[i].data()).ok());
    }

    // Get into poisoned buffers: the flags swapped, so blocks encoded on the GPU are decoded on the
    // CPU and the other way round; both must equal the CPU reference decode bit for bit.
    auto out = gpu::DeviceBuffer::Allocate(n * g.raw_bytes);
    ASSERT_TRUE(out.ok());
    ASSERT_EQ(cudaMemset(out->data(), 0xA5, out->size()), cudaSuccess);
    std::vector<std::vector<std::byte>> host_out(n, std::vector<std::byte>(g.raw_bytes, std::byte{0xA5}));
    std::vector<GetItem> gets(n);
    bool get_on_device[n];
    for (size_t i = 0; i < n; ++i) {
      get_on_device[i] = !on_device[i];
      gets[i].key = keys[i];
      gets[i].buffer = get_on_device[i] ? std::span<std::byte>(out->data() + i * g.raw_bytes, g.raw_bytes)
                                        : std::span<std::byte>(host_out[i]);
    }
    ASSERT_TRUE(GetBlocksToDevice(*codec, *client_, gets, std::span<const bool>(get_on_device, n), nullptr).ok());
    std::vector<std::byte> got(g.raw_bytes);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_TRUE(gets[i].found) << gets[i].status.ToString();
      EXPECT_EQ(gets[i].size, g.raw_bytes);
      if (get_on_device[i]) {
        ASSERT_EQ(cudaMemcpy(got.data(), out->data() + i * g.raw_bytes, g.raw_bytes, cudaMemcpyDeviceToHost),
                  cudaSuccess);
      } else {
        got = host_out[i];
      }
      EXPECT_TRUE(got == ref[i]) << "block " << i << " decoded differently from the CPU reference";
    }

    // Foreign bytes under a key of this namespace: a miss, the device buffer left as it was.
    const std::vector<BlockKey> foreign = Chain(ns, 1, 99);
    std::vector<std::byte> junk(g.encoded_bytes, std::byte{0x5A});
    PutItem junk_item;
    junk_item.key = foreign[0];
    junk_item.data = junk;
    ASSERT_TRUE(client_->Put(std::span<const PutItem>(&junk_item, 1)).ok());
    ASSERT_EQ(cudaMemset(out->data(), 0xA5, g.raw_bytes), cudaSuccess);
    GetItem miss;
    miss.key = foreign[0];
    miss.buffer = std::span<std::byte>(out->data(), g.raw_bytes);
    const bool yes = true;
    ASSERT_TRUE(GetBlocksToDevice(*codec, *client_, std::span<GetItem>(&miss, 1), std::span<const bool>(&yes, 1),
                                  nullptr)
                    .ok());
    EXPECT_FALSE(miss.found);
    EXPECT_EQ(miss.status.code(), StatusCode::kDataLoss);
    ASSERT_EQ(cudaMemcpy(got.data(), out->data(), g.raw_bytes, cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_TRUE(std::all_of(got.begin(), got.end(), [](std::byte b) { return b == std::byte{0xA5}; }));
  }
}
#endif

}  // namespace
}  // namespace kvstash
