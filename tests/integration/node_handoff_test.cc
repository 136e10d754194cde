// The layer-wise P/D handoff (issue 15) between two runtimes on one live kvstashd, as a prefill and a
// decode node: the decode side, started first, loads the prefill's KV slice by slice while the
// prefill computes it (chunks that end inside a page, a prefix the prefill reused included), computes
// nothing, and generates the single node's tokens; the slices are gone from the store afterwards.
// A raw client that writes the request's slice keys cannot make it decode from wrong KV: a slice
// that fails its checks, a marker before every layer arrived, an aborted marker and silence each end
// the request with an error, no token, and its pages back in the pool. ParseSlice refuses each bad
// field by name.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <thread>

#include "kvstash/client.h"
#include "node/checkpoint.h"
#include "node/cpu_engine.h"
#include "node/handoff_slices.h"
#include "node/runtime.h"
#include "tests/support/daemon_process.h"
#include "tests/support/tiny_model.h"

namespace kvstash::node {
namespace {

constexpr uint32_t kPageTokens = 16, kBlockTokens = 32;

class NodeHandoffTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = testing::TinyLlamaConfig(512);
    model_ = std::make_unique<testing::TinyModelDir>(config_, 9, "node_handoff");
    ASSERT_TRUE(model_->status().ok()) << model_->status().ToString();
    checkpoint_ = Checkpoint::Open(model_->path()).value();
    std::mt19937_64 rng(23);
    for (int i = 0; i < 100; ++i) prompt_.push_back(static_cast<uint32_t>(rng() % config_.vocab_size));
    daemon_ = std::make_unique<testing::DaemonProcess>(KVSTASHD_PATH, std::vector<std::string>{"--dram-capacity", "64MiB"});
    ASSERT_TRUE(daemon_->ok()) << daemon_->error();
    ClientOptions options;
    options.address = daemon_->grpc_address();
    options.timeout_ms = 5'000;
    client_ = Client::Connect(options).value();
  }

  std::unique_ptr<NodeRuntime> Start(uint64_t handoff_timeout_ms = 30'000, bool with_store = true) {
    NodeOptions o;
    o.block_tokens = kBlockTokens;
    o.page_tokens = kPageTokens;
    o.pool_pages = 64;
    o.max_batch_tokens = 40;  // chunks end inside pages: slices of one page overlap
    o.handoff_timeout_ms = handoff_timeout_ms;
    auto engine = CpuEngine::Load(*checkpoint_, {2});
    EXPECT_TRUE(engine.ok());
    auto runtime = NodeRuntime::Start(std::move(*engine), with_store ? client_.get() : nullptr, "handoff-test", o);
    EXPECT_TRUE(runtime.ok()) << runtime.status().ToString();
    return std::move(*runtime);
  }

  static CompletionRequest Request(std::vector<uint32_t> prompt, uint32_t max_tokens, const BlockKey& key, bool decode) {
    CompletionRequest r;
    r.prompt = std::move(prompt);
    r.sampling.max_tokens = max_tokens;
    r.handoff = CompletionRequest::Handoff{key, std::nullopt, !decode, decode};
    return r;
  }

  // Runs one layer-wise handoff: the decode side first, then the prefill; returns the decode result.
  Result<CompletionResult> Handoff(NodeRuntime& prefill, NodeRuntime& decode, const std::vector<uint32_t>& prompt,
                                   const BlockKey& key, uint32_t max_tokens, Result<CompletionResult>* prefilled) {
    auto decoding = decode.Submit(Request(prompt, max_tokens, key, true));
    if (!decoding.ok()) return decoding.status();
    *prefilled = prefill.Complete(Request(prompt, 1, key, false));
    return decoding->get();
  }

  size_t SlicesLeft(const BlockKey& key, uint32_t up_to) {
    std::vector<std::byte> buffer(SliceBufferBytes(64 * 1024));
    size_t left = 0;
    for (uint32_t i = 0; i < up_to; ++i) {
      GetItem item;
      item.key = SliceKey(key, i);
      item.buffer = buffer;
      EXPECT_TRUE(client_->Get(std::span(&item, 1)).ok());
      left += item.found ? 1 : 0;
    }
    return left;
  }

  void PutRaw(const BlockKey& key, uint32_t index, const std::vector<std::byte>& bytes) {
    PutItem item{SliceKey(key, index), std::nullopt, bytes};
    auto put = client_->Put(std::span(&item, 1));
    ASSERT_TRUE(put.ok() && put->stored == 1);
  }

  ModelConfig config_;
  std::unique_ptr<testing::TinyModelDir> model_;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::vector<uint32_t> prompt_;
  std::unique_ptr<testing::DaemonProcess> daemon_;
  std::unique_ptr<Client> client_;
};

TEST_F(NodeHandoffTest, DecodeNodeLoadsTheLayersAndGeneratesTheSingleNodesTokens) {
  CompletionRequest alone;
  alone.prompt = prompt_;
  alone.sampling.max_tokens = 12;
  auto single = Start(30'000, /*with_store=*/false);  // its blocks must not reach the prefill node
  auto expected = single->Complete(alone);
  ASSERT_TRUE(expected.ok()) << expected.status().ToString();

  auto prefill = Start();
  auto decode = Start();
  const BlockKey key = BlockKey::FromParts(0x1234, 0x5678);
  Result<CompletionResult> prefilled = Internal("not run");
  auto got = Handoff(*prefill, *decode, prompt_, key, 12, &prefilled);
  ASSERT_TRUE(prefilled.ok()) << prefilled.status().ToString();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->tokens, expected->tokens);
  EXPECT_EQ(prefilled->tokens.front(), expected->tokens.front());
  EXPECT_EQ(got->prompt.store, 100u);
  EXPECT_EQ(got->prompt.computed, 0u);
  // 3 chunks × 2 layers (one per slice at this model's size) and the marker.
  const RuntimeStats sent = prefill->Stats(), received = decode->Stats();
  EXPECT_EQ(sent.handoff_slices_sent, 7u);
  EXPECT_EQ(received.handoff_slices_received, 7u);
  EXPECT_EQ(SlicesLeft(key, 8), 0u) << "the decode node removes the slices it loaded";

  // A second prompt sharing the first 64 tokens: the prefill node takes that prefix from its own
  // cache and sends it at admission, then the rest as it computes it.
  std::vector<uint32_t> longer(prompt_.begin(), prompt_.begin() + 64);
  for (uint32_t i = 0; i < 50; ++i) longer.push_back((i * 7) % config_.vocab_size);
  alone.prompt = longer;
  expected = single->Complete(alone);
  ASSERT_TRUE(expected.ok());
  const BlockKey key2 = BlockKey::FromParts(0x9abc, 0xdef0);
  got = Handoff(*prefill, *decode, longer, key2, 12, &prefilled);
  ASSERT_TRUE(prefilled.ok() && got.ok()) << prefilled.status().ToString() << " " << got.status().ToString();
  EXPECT_EQ(prefilled->prompt.local, 64u);
  EXPECT_EQ(got->tokens, expected->tokens);
  // The prefix in one slice at admission, 2 chunks × 2 layers, the marker.
  EXPECT_EQ(prefill->Stats().handoff_slices_sent, 7u + 6u);
  EXPECT_EQ(got->prompt.store, longer.size());
}

TEST_F(NodeHandoffTest, ARawClientsSlicesNeverBecomeKv) {
  auto decode = Start(/*handoff_timeout_ms=*/300);
  const size_t free_before = decode->Stats().pool_free_pages;
  const uint32_t prompt_tokens = static_cast<uint32_t>(prompt_.size());
  const size_t plane_bytes = KvPagePool(config_, kPageTokens, 1).plane_bytes();
  auto run = [&](const BlockKey& key) {
    std::vector<uint32_t> emitted;
    auto decoding = decode->Submit(Request(prompt_, 8, key, true), [&](uint32_t t) { emitted.push_back(t); });
    EXPECT_TRUE(decoding.ok());
    Result<CompletionResult> r = decoding->get();
    EXPECT_TRUE(emitted.empty()) << "no token from a failed handoff";
    return r.status();
  };
  SliceHeader data;
  data.prompt_tokens = prompt_tokens;
  data.pages = 1;
  data.layers = 1;
  std::vector<std::byte> one_page_layer(2 * plane_bytes, std::byte{0x7f});

  // A payload of the wrong size.
  BlockKey key = BlockKey::FromParts(1, 1);
  PutRaw(key, 0, EncodeSlice(data, std::span(one_page_layer).first(plane_bytes)));
  Status st = run(key);
  EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.ToString();
  EXPECT_NE(st.message().find("payload"), std::string::npos) << st.ToString();
  // Pages beyond the prompt.
  key = BlockKey::FromParts(1, 2);
  SliceHeader far = data;
  far.first_page = 7;
  PutRaw(key, 0, EncodeSlice(far, one_page_layer));
  st = run(key);
  EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.ToString();
  EXPECT_NE(st.message().find("pages"), std::string::npos) << st.ToString();
  // A done marker after one slice of one page: the rest of the KV never came.
  key = BlockKey::FromParts(1, 3);
  PutRaw(key, 0, EncodeSlice(data, one_page_layer));
  SliceHeader done;
  done.kind = SliceKind::kDone;
  done.index = 1;
  done.prompt_tokens = prompt_tokens;
  PutRaw(key, 1, EncodeSlice(done, {}));
  st = run(key);
  EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.ToString();
  EXPECT_NE(st.message().find("without the KV"), std::string::npos) << st.ToString();
  // An aborted marker; then nothing at all.
  key = BlockKey::FromParts(1, 4);
  SliceHeader aborted;
  aborted.kind = SliceKind::kAborted;
  aborted.prompt_tokens = prompt_tokens;
  PutRaw(key, 0, EncodeSlice(aborted, {}));
  EXPECT_EQ(run(key).code(), StatusCode::kUnavailable);
  EXPECT_EQ(run(BlockKey::FromParts(1, 5)).code(), StatusCode::kDeadlineExceeded);
  // Not a slice at all.
  key = BlockKey::FromParts(1, 6);
  PutRaw(key, 0, std::vector<std::byte>(64, std::byte{1}));
  EXPECT_EQ(run(key).code(), StatusCode::kDataLoss);

  EXPECT_EQ(decode->Stats().pool_free_pages, free_before) << "a failed handoff's pages go back to the pool";
  EXPECT_EQ(decode->Stats().requests_failed, 6u);
}

TEST_F(NodeHandoffTest, ACancelledDecodeEndsItsWait) {
  auto decode = Start();
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  CompletionRequest r = Request(prompt_, 8, BlockKey::FromParts(2, 1), true);
  r.cancel = cancel;
  auto decoding = decode->Submit(std::move(r));
  ASSERT_TRUE(decoding.ok());
  cancel->store(true);
  EXPECT_EQ(decoding->get().status().code(), StatusCode::kCancelled);
}

TEST(HandoffSliceTest, ParseRefusesEachBadField) {
  SliceLimits limits{0, 100, 7, 2, 512, 97};
  SliceHeader h;
  h.prompt_tokens = 100;
  h.pages = 2;
  h.layers = 1;
  std::vector<std::byte> payload(2 * 512);
  auto parse = [&](const SliceHeader& header, size_t payload_bytes) {
    auto bytes = EncodeSlice(header, std::span(payload).first(payload_bytes));
    return ParseSlice(bytes, limits);
  };
  EXPECT_TRUE(parse(h, payload.size()).ok());
  auto refused = [&](SliceHeader header, size_t payload_bytes, const char* field) {
    Result<ParsedSlice> r = parse(header, payload_bytes);
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(r.status().message().find(field), std::string::npos) << r.status().ToString();
  };
  SliceHeader bad = h;
  bad.index = 3;
  refused(bad, payload.size(), "index");
  bad = h;
  bad.prompt_tokens = 99;
  refused(bad, payload.size(), "prompt of 99");
  bad = h;
  bad.first_page = 6;
  refused(bad, payload.size(), "pages");
  bad = h;
  bad.first_page = 0xffffffffu;  // would wrap a careless first + pages
  refused(bad, payload.size(), "pages");
  bad = h;
  bad.first_layer = 1;
  bad.layers = 2;
  refused(bad, payload.size(), "layers");
  refused(h, payload.size() - 1, "payload");
  bad = h;
  bad.kind = SliceKind::kDone;
  bad.first_token = 97;
  refused(bad, 0, "vocabulary");
  refused(bad, payload.size(), "marker with a payload");
  std::vector<std::byte> junk = EncodeSlice(h, payload);
  junk[0] = std::byte{0};
  EXPECT_EQ(ParseSlice(junk, limits).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(ParseSlice(std::span(junk).first(10), limits).status().code(), StatusCode::kDataLoss);
  // Keys: per index, per handoff, never the handoff key itself.
  const BlockKey k = BlockKey::FromParts(5, 6);
  EXPECT_NE(SliceKey(k, 0), SliceKey(k, 1));
  EXPECT_NE(SliceKey(k, 0), SliceKey(BlockKey::FromParts(5, 7), 0));
  EXPECT_NE(SliceKey(k, 0), k);
}

}  // namespace
}  // namespace kvstash::node
