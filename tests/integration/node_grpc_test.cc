// kvstash-node's gRPC service, kvstash.v1.Node (issue 14), against a real `kvstash-node serve`
// process on a live kvstashd, through the generated gRPC client: streamed tokens equal the HTTP API's for
// the same request, a text prompt (SentencePiece, trained here) gives the tokens of its ids, bad
// requests are INVALID_ARGUMENT naming the field and change nothing, a cancelled stream frees its
// request, Prefill leaves the prompt's blocks in the store, and a draining node answers
// UNAVAILABLE while its last stream runs to the end.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "kvstash/v1/node.grpc.pb.h"
#include "node/tokenizer.h"
#include "tests/support/daemon_process.h"
#include "tests/support/eventually.h"
#include "tests/support/tiny_model.h"
#include "tests/support/tiny_tokenizer.h"

extern char** environ;

namespace kvstash::node {
namespace {

using nlohmann::json;
constexpr uint32_t kBlockTokens = 32, kContext = 4608;

// A `kvstash-node serve` child on run-time ports; its ready line's fields (grpc=, http=, metrics=).
class NodeProcess {
 public:
  NodeProcess(const std::string& model_dir, const std::string& store) {
    std::vector<std::string> args = {KVSTASH_NODE_PATH, "serve", "--model", model_dir, "--engine", "cpu",
                                     "--threads", "1", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                                     "--metrics-listen", "127.0.0.1:0", "--page-tokens", "16", "--pool-pages", "1024",
                                     "--block-tokens", std::to_string(kBlockTokens), "--log-level", "warn"};
    if (!store.empty()) args.insert(args.end(), {"--store", store});
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int fds[2];
    if (pipe(fds) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    posix_spawn_file_actions_addclose(&actions, fds[1]);
    const int rc = posix_spawn(&pid_, args[0].c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    fd_ = fds[0];
    if (rc != 0) {
      pid_ = -1;
      return;
    }
    std::string line;
    while (line.find('\n') == std::string::npos) {
      pollfd pfd{fd_, POLLIN, 0};
      if (poll(&pfd, 1, 60'000) <= 0) return;
      char buf[256];
      const ssize_t n = read(fd_, buf, sizeof buf);
      if (n <= 0) return;
      line.append(buf, static_cast<size_t>(n));
    }
    ready_line_ = line.substr(0, line.find('\n'));
    std::istringstream words(ready_line_);
    std::string word;
    while (words >> word) {
      if (const size_t eq = word.find('='); eq != std::string::npos) fields_[word.substr(0, eq)] = word.substr(eq + 1);
    }
  }
  ~NodeProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) close(fd_);
  }
  bool ok() const { return pid_ > 0 && ready_line_.rfind("kvstash-node ready grpc=", 0) == 0 && fields_.size() == 3; }
  const std::string& ready_line() const { return ready_line_; }
  std::string field(const std::string& k) const { return fields_.count(k) ? fields_.at(k) : ""; }
  void Signal(int sig) { kill(pid_, sig); }
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string ready_line_;
  std::map<std::string, std::string> fields_;
};

std::unique_ptr<v1::Node::Stub> Connect(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(64 << 20);
  return v1::Node::NewStub(grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
}

struct Streamed {
  grpc::Status status;
  std::vector<uint32_t> ids;
  std::vector<std::string> texts;
  std::optional<v1::GenerateFinished> finished;
  bool indices_in_order = true;
};

Streamed Generate(v1::Node::Stub& client, const v1::GenerateRequest& req) {
  Streamed out;
  grpc::ClientContext ctx;
  auto reader = client.Generate(&ctx, req);
  v1::GenerateEvent event;
  while (reader->Read(&event)) {
    if (event.has_token()) {
      out.indices_in_order &= event.token().index() == out.ids.size() && !out.finished;
      out.ids.push_back(event.token().id());
      out.texts.push_back(event.token().text());
    } else if (event.has_finished()) {
      out.finished = event.finished();
    }
  }
  out.status = reader->Finish();
  return out;
}

std::vector<uint32_t> RandomPrompt(size_t n, uint32_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint32_t> p(n);
  for (auto& t : p) t = static_cast<uint32_t>(rng() % vocab);
  return p;
}

// ignore_eos: the tests count on lengths; EosEndsACompletionUnlessIgnored covers the default.
v1::GenerateRequest IdsRequest(const std::vector<uint32_t>& prompt, uint32_t max_tokens) {
  v1::GenerateRequest req;
  req.mutable_prompt_token_ids()->Add(prompt.begin(), prompt.end());
  req.mutable_sampling()->set_max_tokens(max_tokens);
  req.mutable_sampling()->set_ignore_eos(true);
  return req;
}

v1::PrefillRequest AsPrefill(const v1::GenerateRequest& g) {
  v1::PrefillRequest p;
  *p.mutable_prompt_token_ids() = g.prompt_token_ids();
  p.set_prompt_text(g.prompt_text());
  if (g.has_sampling()) *p.mutable_sampling() = g.sampling();
  return p;
}

class NodeGrpcTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    s_ = new Shared();
    ModelConfig config = testing::TinyLlamaConfig(kContext);
    config.vocab_size = testing::kTinyTokenizerPieces;  // every id the tokenizer makes is the model's
    s_->model = std::make_unique<testing::TinyModelDir>(config, 3, "node_grpc");
    ASSERT_TRUE(s_->model->status().ok()) << s_->model->status().ToString();
    const Status trained = testing::TrainTinyTokenizer(SPM_TRAIN_PATH, s_->model->path());
    ASSERT_TRUE(trained.ok()) << trained.ToString();
    auto tokenizer = Tokenizer::LoadFromModelDir(s_->model->path());
    ASSERT_TRUE(tokenizer.ok() && *tokenizer) << tokenizer.status().ToString();
    s_->tokenizer = std::move(*tokenizer);
    s_->daemon = std::make_unique<testing::DaemonProcess>(KVSTASHD_PATH, std::vector<std::string>{"--dram-capacity", "64MiB"});
    ASSERT_TRUE(s_->daemon->ok()) << s_->daemon->error();
    s_->node = std::make_unique<NodeProcess>(s_->model->path().string(), s_->daemon->grpc_address());
    ASSERT_TRUE(s_->node->ok()) << "ready line: " << s_->node->ready_line();
    s_->client = Connect(s_->node->field("grpc"));
  }
  static void TearDownTestSuite() {
    delete s_;
    s_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(s_, nullptr); ASSERT_NE(s_->client, nullptr); }

  static v1::InfoResult Info(v1::Node::Stub& client) {
    grpc::ClientContext ctx;
    v1::InfoResult info;
    EXPECT_TRUE(client.Info(&ctx, v1::InfoRequest(), &info).ok());
    return info;
  }
  // The counters once no sequence runs: they are as of the runtime's last step, and a request's
  // answer can reach its client before the step that finished it has ended.
  static v1::NodeStats Idle(v1::Node::Stub& client) {
    v1::NodeStats stats;
    EXPECT_TRUE(testing::Eventually(
        [&] {
          stats = Info(client).stats();
          return stats.running() == 0 && stats.waiting() == 0;
        },
        std::chrono::seconds(30)));
    return stats;
  }
  static json Http(const std::string& address, const json& body, int* status = nullptr) {
    const size_t colon = address.rfind(':');
    httplib::Client client(address.substr(0, colon), std::stoi(address.substr(colon + 1)));
    client.set_read_timeout(60, 0);
    auto res = client.Post("/v1/completions", body.dump(), "application/json");
    EXPECT_TRUE(res);
    if (!res) return json();
    if (status != nullptr) *status = res->status;
    return json::parse(res->body);
  }

  struct Shared {
    std::unique_ptr<testing::TinyModelDir> model;
    std::unique_ptr<Tokenizer> tokenizer;
    std::unique_ptr<testing::DaemonProcess> daemon;
    std::unique_ptr<NodeProcess> node;
    std::unique_ptr<v1::Node::Stub> client;
  };
  static Shared* s_;
};
NodeGrpcTest::Shared* NodeGrpcTest::s_ = nullptr;

TEST_F(NodeGrpcTest, ReadyLineAndInfo) {
  EXPECT_FALSE(s_->node->field("http").empty());
  EXPECT_FALSE(s_->node->field("metrics").empty());
  const v1::InfoResult info = Info(*s_->client);
  EXPECT_EQ(info.engine(), "cpu");
  EXPECT_EQ(info.vocab_size(), testing::kTinyTokenizerPieces);
  EXPECT_EQ(info.context_tokens(), kContext);
  EXPECT_EQ(info.page_tokens(), 16u);
  EXPECT_EQ(info.block_tokens(), kBlockTokens);
  EXPECT_FALSE(info.namespace_id().empty());
  EXPECT_FALSE(info.model_name().empty());
  EXPECT_TRUE(info.has_tokenizer());
  EXPECT_EQ(info.tokenizer_vocab_size(), testing::kTinyTokenizerPieces);
  EXPECT_EQ(info.bos_token_id(), *s_->tokenizer->bos_id());
  EXPECT_TRUE(info.store_connected());
  EXPECT_FALSE(info.draining());
  EXPECT_EQ(info.stats().pool_pages(), 1024u);
}

TEST_F(NodeGrpcTest, StreamedTokensEqualTheHttpApis) {
  struct Case {
    double temperature, top_p;
    uint64_t seed;
  };
  const std::vector<uint32_t> prompt = RandomPrompt(60, testing::kTinyTokenizerPieces, 11);
  for (const Case c : {Case{0.0, 1.0, 0}, Case{0.8, 0.9, 7}, Case{1.3, 0.5, 99}}) {
    v1::GenerateRequest req = IdsRequest(prompt, 24);
    req.mutable_sampling()->set_temperature(c.temperature);
    req.mutable_sampling()->set_top_p(c.top_p);
    req.mutable_sampling()->set_seed(c.seed);
    const Streamed got = Generate(*s_->client, req);
    ASSERT_TRUE(got.status.ok()) << got.status.error_message();
    ASSERT_TRUE(got.finished.has_value());
    EXPECT_TRUE(got.indices_in_order);
    ASSERT_EQ(got.ids.size(), 24u);
    EXPECT_EQ(std::vector<uint32_t>(got.finished->token_ids().begin(), got.finished->token_ids().end()), got.ids);
    EXPECT_EQ(got.finished->finish_reason(), v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(got.finished->usage().prompt_tokens(), 60u);
    EXPECT_EQ(got.finished->usage().completion_tokens(), 24u);
    const v1::PromptSources& src = got.finished->usage().prompt();
    EXPECT_EQ(src.local() + src.store() + src.computed(), 60u);
    EXPECT_EQ(got.finished->usage().cached_tokens(), src.local() + src.store());
    std::string joined;
    for (const auto& t : got.texts) joined += t;
    EXPECT_EQ(joined, got.finished->text());

    const json answer = Http(s_->node->field("http"), {{"prompt", prompt},
                                                       {"ignore_eos", true},
                                                       {"max_tokens", 24},
                                                       {"temperature", c.temperature},
                                                       {"top_p", c.top_p},
                                                       {"seed", c.seed}});
    ASSERT_TRUE(answer.contains("choices")) << answer.dump();
    EXPECT_EQ(answer["choices"][0]["token_ids"].get<std::vector<uint32_t>>(), got.ids) << "temperature " << c.temperature;
    EXPECT_EQ(answer["choices"][0]["text"].get<std::string>(), got.finished->text());
  }
}

TEST_F(NodeGrpcTest, ATextPromptGivesTheTokensOfItsIds) {
  const std::string text = "héllo wörld, the cat sat on the mat 😀 Ωμέγα";
  auto ids = s_->tokenizer->Encode(text);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->front(), *s_->tokenizer->bos_id());
  v1::GenerateRequest by_text;
  by_text.set_prompt_text(text);
  by_text.mutable_sampling()->set_max_tokens(20);
  by_text.mutable_sampling()->set_ignore_eos(true);
  by_text.set_request_id(42);  // a conductor's id: its TTFT would be reported there (none here)
  const Streamed a = Generate(*s_->client, by_text);
  const Streamed b = Generate(*s_->client, IdsRequest(*ids, 20));
  ASSERT_TRUE(a.status.ok()) << a.status.error_message();
  ASSERT_TRUE(b.status.ok()) << b.status.error_message();
  EXPECT_EQ(a.ids, b.ids);
  ASSERT_TRUE(a.finished && b.finished);
  EXPECT_EQ(a.finished->text(), b.finished->text());
  EXPECT_EQ(std::vector<uint32_t>(a.finished->prompt_token_ids().begin(), a.finished->prompt_token_ids().end()), *ids);
  EXPECT_EQ(b.finished->prompt_token_ids_size(), 0);  // sent as ids: not echoed

  // The HTTP API takes the same text.
  const json answer = Http(s_->node->field("http"), {{"prompt", text}, {"max_tokens", 20}, {"temperature", 0}, {"ignore_eos", true}});
  ASSERT_TRUE(answer.contains("choices")) << answer.dump();
  EXPECT_EQ(answer["choices"][0]["token_ids"].get<std::vector<uint32_t>>(), a.ids);
  EXPECT_EQ(answer["choices"][0]["text"].get<std::string>(), a.finished->text());
  EXPECT_EQ(answer["usage"]["prompt_tokens"].get<size_t>(), ids->size());
}

TEST_F(NodeGrpcTest, StreamedTextPiecesAreWholeCharacters) {
  const std::vector<uint32_t> prompt = RandomPrompt(40, testing::kTinyTokenizerPieces, 23);
  v1::GenerateRequest req = IdsRequest(prompt, 300);
  req.mutable_sampling()->set_temperature(1.0);  // wander over the byte pieces too
  req.mutable_sampling()->set_seed(5);
  const Streamed got = Generate(*s_->client, req);
  ASSERT_TRUE(got.status.ok()) << got.status.error_message();
  ASSERT_TRUE(got.finished.has_value());
  IncrementalDecoder local(*s_->tokenizer, prompt);
  std::string joined;
  for (size_t i = 0; i < got.ids.size(); ++i) {
    EXPECT_TRUE(IsValidUtf8(got.texts[i])) << "piece " << i;
    EXPECT_EQ(got.texts[i], local.Push(got.ids[i])) << "piece " << i;
    joined += got.texts[i];
  }
  local.Finish();
  EXPECT_EQ(local.text(), got.finished->text());
  EXPECT_TRUE(got.finished->text().starts_with(joined));

  // The same through server-sent events: each chunk's text, then the rest in the last chunk.
  const std::string http = s_->node->field("http");
  httplib::Client client(http.substr(0, http.rfind(':')), std::stoi(http.substr(http.rfind(':') + 1)));
  const json body = {{"prompt", prompt}, {"max_tokens", 300}, {"temperature", 1.0},
                     {"seed", 5},      {"stream", true},     {"ignore_eos", true}};
  auto res = client.Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(res);
  std::string sse_text;
  std::vector<uint32_t> sse_ids;
  std::istringstream lines(res->body);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("data: {")) continue;
    const json chunk = json::parse(line.substr(6));
    const std::string piece = chunk["choices"][0]["text"];
    EXPECT_TRUE(IsValidUtf8(piece));
    sse_text += piece;
    for (uint32_t id : chunk["choices"][0]["token_ids"]) sse_ids.push_back(id);
  }
  EXPECT_EQ(sse_ids, got.ids);
  EXPECT_EQ(sse_text, got.finished->text());
}

// With a tokenizer its EOS ends a completion (finish_reason stop), in both APIs, unless ignore_eos.
TEST_F(NodeGrpcTest, EosEndsACompletionUnlessIgnored) {
  const uint32_t eos = *s_->tokenizer->eos_id();
  const std::vector<uint32_t> prompt = RandomPrompt(30, testing::kTinyTokenizerPieces, 81);
  // A seed whose sampled run meets EOS (1 id in 320: within 300 tokens most seeds do).
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    v1::GenerateRequest req = IdsRequest(prompt, 300);
    req.mutable_sampling()->set_temperature(1.0);
    req.mutable_sampling()->set_seed(seed);
    const Streamed ignoring = Generate(*s_->client, req);
    ASSERT_TRUE(ignoring.status.ok());
    const auto at = std::find(ignoring.ids.begin(), ignoring.ids.end(), eos);
    if (at == ignoring.ids.end()) continue;
    EXPECT_EQ(ignoring.ids.size(), 300u);  // ignored: it ran on
    req.mutable_sampling()->clear_ignore_eos();
    const Streamed stopping = Generate(*s_->client, req);
    ASSERT_TRUE(stopping.status.ok() && stopping.finished);
    EXPECT_EQ(stopping.ids, std::vector<uint32_t>(ignoring.ids.begin(), at + 1));  // EOS is the last token
    EXPECT_EQ(stopping.finished->finish_reason(), v1::FINISH_REASON_STOP);
    const json answer = Http(s_->node->field("http"),
                             {{"prompt", prompt}, {"max_tokens", 300}, {"temperature", 1.0}, {"seed", seed}});
    ASSERT_TRUE(answer.contains("choices")) << answer.dump();
    EXPECT_EQ(answer["choices"][0]["token_ids"].get<std::vector<uint32_t>>(), stopping.ids);
    EXPECT_EQ(answer["choices"][0]["finish_reason"], "stop");
    return;
  }
  FAIL() << "no seed in 1..40 met EOS in 300 tokens";
}

bool SameStats(const v1::NodeStats& a, const v1::NodeStats& b) {
  return a.requests_done() == b.requests_done() && a.requests_failed() == b.requests_failed() &&
         a.requests_cancelled() == b.requests_cancelled() && a.prompt_tokens().SerializeAsString() ==
         b.prompt_tokens().SerializeAsString() && a.running() == b.running() && a.waiting() == b.waiting() &&
         a.pool_free_pages() == b.pool_free_pages() && a.cached_blocks() == b.cached_blocks() &&
         a.kv_bytes_fetched() == b.kv_bytes_fetched();
}

TEST_F(NodeGrpcTest, BadRequestsAreRefusedByNameAndChangeNothing) {
  const std::vector<uint32_t> prompt = RandomPrompt(20, testing::kTinyTokenizerPieces, 31);
  struct Case {
    std::string name;
    v1::GenerateRequest req;
    std::string says;
  };
  std::vector<Case> cases;
  cases.push_back({"no prompt", v1::GenerateRequest(), "prompt is empty"});
  {
    auto r = IdsRequest(prompt, 4);
    r.set_prompt_token_ids(3, testing::kTinyTokenizerPieces);
    cases.push_back({"id out of vocab", r, "prompt_token_ids[3]"});
  }
  cases.push_back({"prompt + max_tokens past the context",
                   IdsRequest(RandomPrompt(kContext - 10, testing::kTinyTokenizerPieces, 1), 11), "exceeds the context"});
  cases.push_back({"prompt longer than the context",
                   IdsRequest(RandomPrompt(kContext + 1, testing::kTinyTokenizerPieces, 1), 1), "prompt_token_ids has"});
  {
    auto r = IdsRequest(prompt, 4);
    r.mutable_sampling()->set_temperature(std::numeric_limits<double>::quiet_NaN());
    cases.push_back({"NaN temperature", r, "sampling.temperature"});
  }
  {
    auto r = IdsRequest(prompt, 4);
    r.mutable_sampling()->set_temperature(-1);
    cases.push_back({"negative temperature", r, "sampling.temperature"});
  }
  for (double top_p : {0.0, 1.5, -0.1, std::numeric_limits<double>::quiet_NaN()}) {
    auto r = IdsRequest(prompt, 4);
    r.mutable_sampling()->set_top_p(top_p);
    cases.push_back({"top_p " + std::to_string(top_p), r, "sampling.top_p"});
  }
  cases.push_back({"huge max_tokens", IdsRequest(prompt, 1'000'000'000), "sampling.max_tokens"});
  cases.push_back({"zero max_tokens", IdsRequest(prompt, 0), "sampling.max_tokens"});
  {
    auto r = IdsRequest(prompt, 4);
    r.set_prompt_text("the cat");
    cases.push_back({"both text and ids", r, "both set"});
  }
  {
    auto r = IdsRequest(prompt, 4);
    r.mutable_sampling()->add_stop_token_ids(testing::kTinyTokenizerPieces + 1);
    cases.push_back({"stop token out of vocab", r, "sampling.stop_token_ids[0]"});
  }
  {
    auto r = IdsRequest(prompt, 4);
    for (int i = 0; i < 65; ++i) r.mutable_sampling()->add_stop_token_ids(1);
    cases.push_back({"too many stop tokens", r, "sampling.stop_token_ids has 65"});
  }
  {
    v1::GenerateRequest r;
    r.set_prompt_text("the cat \xC3");
    cases.push_back({"text that is not UTF-8", r, "UTF-8"});
  }
  {
    v1::GenerateRequest r;
    r.set_prompt_text(std::string(2 << 20, 'a'));  // over the node's 1 MiB, under gRPC's 4 MiB
    cases.push_back({"oversized request", r, "the request is"});
  }
  {
    v1::GenerateRequest r;
    r.set_prompt_text(std::string(2000, 'a') + " the cat");  // within limits, but too many tokens?
    r.mutable_sampling()->set_max_tokens(4096);
    cases.push_back({"text past the context", r, "exceeds the context"});
  }

  const v1::NodeStats before = Idle(*s_->client);
  for (const Case& c : cases) {
    const Streamed got = Generate(*s_->client, c.req);
    EXPECT_EQ(got.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name << ": " << got.status.error_message();
    EXPECT_NE(got.status.error_message().find(c.says), std::string::npos) << c.name << ": " << got.status.error_message();
    EXPECT_TRUE(got.ids.empty() && !got.finished) << c.name;
    grpc::ClientContext ctx;
    v1::PrefillResult result;
    const grpc::Status prefill = s_->client->Prefill(&ctx, AsPrefill(c.req), &result);
    EXPECT_EQ(prefill.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name << " (Prefill)";
    EXPECT_NE(prefill.error_message().find(c.says), std::string::npos) << c.name << ": " << prefill.error_message();
  }
  {
    v1::PrefillRequest r = AsPrefill(IdsRequest(prompt, 4));
    r.set_store_wait_ms(60'001);
    grpc::ClientContext ctx;
    v1::PrefillResult result;
    const grpc::Status st = s_->client->Prefill(&ctx, r, &result);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("store_wait_ms"), std::string::npos) << st.error_message();
  }
  {
    // Handoff fields: a key that is not 16 bytes, a first token outside the vocabulary, a decode
    // handoff without its first token, a prefill handoff with one.
    struct Handoff {
      std::string key;
      std::optional<uint32_t> first;
      bool prefill;
      std::string says;
    };
    for (const Handoff& h : {Handoff{"short", 1, false, "handoff.tail_key"},
                             Handoff{std::string(16, 'k'), testing::kTinyTokenizerPieces + 5, false, "handoff.first_token"},
                             Handoff{std::string(16, 'k'), std::nullopt, false, "handoff.first_token"},
                             Handoff{std::string(16, 'k'), 1, true, "handoff.first_token"},
                             Handoff{std::string(17, 'k'), std::nullopt, true, "handoff.tail_key"}}) {
      grpc::Status st;
      if (h.prefill) {
        v1::PrefillRequest r = AsPrefill(IdsRequest(prompt, 4));
        r.mutable_handoff()->set_tail_key(h.key);
        if (h.first) r.mutable_handoff()->set_first_token(*h.first);
        grpc::ClientContext ctx;
        v1::PrefillResult result;
        st = s_->client->Prefill(&ctx, r, &result);
      } else {
        v1::GenerateRequest r = IdsRequest(prompt, 4);
        r.mutable_handoff()->set_tail_key(h.key);
        if (h.first) r.mutable_handoff()->set_first_token(*h.first);
        st = Generate(*s_->client, r).status;
      }
      EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << h.says;
      EXPECT_NE(st.error_message().find(h.says), std::string::npos) << st.error_message();
    }
  }
  {
    // Past gRPC's own receive limit (4x the node's): refused by gRPC before the node sees it.
    v1::GenerateRequest r;
    r.set_prompt_text(std::string(5 << 20, 'a'));
    EXPECT_EQ(Generate(*s_->client, r).status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  EXPECT_TRUE(SameStats(before, Info(*s_->client).stats())) << before.DebugString() << "\nvs\n"
                                                           << Info(*s_->client).stats().DebugString();
}

TEST_F(NodeGrpcTest, CancellingAStreamFreesItsRequest) {
  const v1::NodeStats before = Idle(*s_->client);
  const std::vector<uint32_t> prompt = RandomPrompt(50, testing::kTinyTokenizerPieces, 41);
  grpc::ClientContext ctx;
  auto reader = s_->client->Generate(&ctx, IdsRequest(prompt, 4096));
  v1::GenerateEvent event;
  size_t received = 0;
  while (received < 3 && reader->Read(&event)) received += event.has_token();
  ASSERT_EQ(received, 3u);
  ctx.TryCancel();
  while (reader->Read(&event)) received += event.has_token();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_LT(received, 4096u);
  v1::NodeStats after;
  EXPECT_TRUE(testing::Eventually(
      [&] {
        after = Info(*s_->client).stats();
        return after.requests_cancelled() == before.requests_cancelled() + 1 && after.running() == 0 &&
               after.waiting() == 0;
      },
      std::chrono::seconds(30)))
      << after.DebugString();
  EXPECT_EQ(after.requests_done(), before.requests_done());
  EXPECT_GE(after.pool_free_pages(), before.pool_free_pages());  // its pages went back
}

TEST_F(NodeGrpcTest, PrefillLeavesThePromptsBlocksInTheStore) {
  const std::vector<uint32_t> prompt = RandomPrompt(100, testing::kTinyTokenizerPieces, 53);
  v1::PrefillRequest req = AsPrefill(IdsRequest(prompt, 16));
  grpc::ClientContext ctx;
  v1::PrefillResult first;
  ASSERT_TRUE(s_->client->Prefill(&ctx, req, &first).ok());
  EXPECT_EQ(first.prompt_tokens(), 100u);
  EXPECT_EQ(first.prompt().computed(), 100u);  // a prompt nobody has seen
  EXPECT_FALSE(first.finished());
  EXPECT_TRUE(first.store_connected());
  ASSERT_EQ(first.block_keys_size(), 3);  // 100 tokens: 3 full blocks of 32
  for (const auto& key : first.block_keys()) EXPECT_EQ(key.size(), 16u);
  EXPECT_EQ(first.blocks_in_store(), 3u);
  EXPECT_EQ(first.first_token().index(), 0u);

  // Generate continues from the node's cache and chooses the same first token.
  const Streamed gen = Generate(*s_->client, IdsRequest(prompt, 16));
  ASSERT_TRUE(gen.status.ok());
  ASSERT_FALSE(gen.ids.empty());
  EXPECT_EQ(gen.ids.front(), first.first_token().id());
  EXPECT_EQ(gen.texts.front(), first.first_token().text());
  EXPECT_EQ(gen.finished->usage().prompt().local(), 96u);

  // max_tokens 1: nothing left to decode. A text prompt comes back encoded.
  v1::PrefillRequest text;
  text.set_prompt_text("the cat sat on the mat, naïve café");
  text.mutable_sampling()->set_max_tokens(1);
  grpc::ClientContext ctx2;
  v1::PrefillResult second;
  ASSERT_TRUE(s_->client->Prefill(&ctx2, text, &second).ok());
  EXPECT_TRUE(second.finished());
  auto ids = s_->tokenizer->Encode(text.prompt_text());
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(std::vector<uint32_t>(second.prompt_token_ids().begin(), second.prompt_token_ids().end()), *ids);
}

// A port nothing listens on (bound, read, closed).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  close(fd);
  return ntohs(addr.sin_port);
}

// A node whose store is down at start finds it later; Prefill then confirms its blocks there.
TEST_F(NodeGrpcTest, PrefillUsesAStoreThatCameUpAfterStart) {
  testing::TinyModelDir model(testing::TinyLlamaConfig(kContext), 6, "node_grpc_late");
  ASSERT_TRUE(model.status().ok());
  const std::string dead = "127.0.0.1:" + std::to_string(FreePort());
  NodeProcess node(model.path().string(), dead);
  ASSERT_TRUE(node.ok()) << node.ready_line();
  auto client = Connect(node.field("grpc"));
  EXPECT_FALSE(Info(*client).store_connected());
  const std::vector<uint32_t> prompt = RandomPrompt(70, 97, 71);
  {
    grpc::ClientContext ctx;
    v1::PrefillResult result;
    v1::PrefillRequest req = AsPrefill(IdsRequest(prompt, 4));
    ASSERT_TRUE(client->Prefill(&ctx, req, &result).ok());
    EXPECT_FALSE(result.store_connected());
    EXPECT_EQ(result.block_keys_size(), 2);
    EXPECT_EQ(result.blocks_in_store(), 0u);
  }
  testing::DaemonProcess late(KVSTASHD_PATH, {"--listen", dead, "--dram-capacity", "64MiB"});
  ASSERT_TRUE(late.ok()) << late.error();
  EXPECT_TRUE(testing::Eventually([&] { return Info(*client).store_connected(); }, std::chrono::seconds(30)));
  const std::vector<uint32_t> fresh = RandomPrompt(70, 97, 72);  // not in the node's cache
  grpc::ClientContext ctx;
  v1::PrefillResult result;
  ASSERT_TRUE(client->Prefill(&ctx, AsPrefill(IdsRequest(fresh, 4)), &result).ok());
  EXPECT_TRUE(result.store_connected());
  EXPECT_EQ(result.prompt().computed(), 70u);
  EXPECT_EQ(result.blocks_in_store(), 2u);
}

// A node of its own (no tokenizer, no store), stopped by the test.
TEST_F(NodeGrpcTest, WithoutATokenizerTextIsRefusedAndADrainingNodeAnswersUnavailable) {
  testing::TinyModelDir model(testing::TinyLlamaConfig(kContext), 4, "node_grpc_drain");
  ASSERT_TRUE(model.status().ok());
  NodeProcess node(model.path().string(), "");
  ASSERT_TRUE(node.ok()) << node.ready_line();
  auto client = Connect(node.field("grpc"));
  EXPECT_FALSE(Info(*client).has_tokenizer());
  EXPECT_FALSE(Info(*client).store_connected());

  v1::GenerateRequest text;
  text.set_prompt_text("the cat");
  const Streamed refused = Generate(*client, text);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused.status.error_message().find("no tokenizer"), std::string::npos) << refused.status.error_message();
  int http_status = 0;
  const json answer = Http(node.field("http"), {{"prompt", "the cat"}, {"max_tokens", 4}}, &http_status);
  EXPECT_EQ(http_status, 400);
  EXPECT_NE(answer.dump().find("no tokenizer"), std::string::npos) << answer.dump();

  // A long stream in flight across SIGTERM: new requests are refused, the stream runs to its end.
  const std::vector<uint32_t> prompt = RandomPrompt(30, 97, 61);
  grpc::ClientContext ctx;
  auto reader = client->Generate(&ctx, IdsRequest(prompt, 4096));
  v1::GenerateEvent event;
  ASSERT_TRUE(reader->Read(&event));
  node.Signal(SIGTERM);
  EXPECT_TRUE(testing::Eventually([&] { return Info(*client).draining(); }, std::chrono::seconds(30)));
  EXPECT_EQ(Generate(*client, IdsRequest(prompt, 4)).status.error_code(), grpc::StatusCode::UNAVAILABLE);
  grpc::ClientContext pctx;
  v1::PrefillResult presult;
  EXPECT_EQ(client->Prefill(&pctx, AsPrefill(IdsRequest(prompt, 4)), &presult).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  size_t tokens = event.has_token() ? 1 : 0;
  std::optional<v1::GenerateFinished> finished;
  while (reader->Read(&event)) {
    if (event.has_token()) ++tokens;
    if (event.has_finished()) finished = event.finished();
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(tokens, 4096u);
  ASSERT_TRUE(finished.has_value());
  EXPECT_EQ(finished->finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(node.Wait(), 0);
}

}  // namespace
}  // namespace kvstash::node
