// TLS on kvstash-conductor's and kvstash-node's own gRPC ports and on the links between them
// (docs/SECURITY.md, issue 16): real processes on run-time ports with deploy/make-test-certs.sh's
// PKI. Raw gRPC clients in plaintext, without a client certificate, with one of another CA or
// trusting another CA are refused (UNAVAILABLE: the handshake fails, no RPC runs); the right ones
// are served; a node registers with the conductor over mutual TLS and the front door serves a
// completion through it over mutual TLS. Then bearer tokens on the same processes: every gRPC call
// and HTTP route without a token, with an unknown one or with a role too low is refused with the
// right code and changes nothing; the right ones are served; SIGHUP reloads the tokens.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <string>
#include <vector>

#include "common/auth.h"
#include "common/tls.h"
#include "kvstash/v1/conductor.grpc.pb.h"
#include "kvstash/v1/node.grpc.pb.h"
#include "tests/support/eventually.h"

namespace kvstash {
namespace {

namespace fs = std::filesystem;

// A child whose stdout and stderr go to one pipe; Expect reads lines until one matches (bounded).
class Child {
 public:
  explicit Child(std::vector<std::string> args) {
    int fds[2];
    if (pipe(fds) != 0) return;
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    if (posix_spawn(&pid_, args[0].c_str(), &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    fd_ = fds[0];
  }
  pid_t pid() const { return pid_; }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) close(fd_);
  }
  // Group 1 of the first line of the output (from the start) matching `pattern`, waiting up to
  // 60 s for it; empty when none came.
  std::string Expect(const std::string& pattern) {
    const std::regex re(pattern);
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    for (;;) {
      size_t nl;
      while ((nl = pending_.find('\n')) != std::string::npos) {
        lines_.push_back(pending_.substr(0, nl));
        pending_.erase(0, nl + 1);
      }
      for (const std::string& line : lines_) {
        std::smatch m;
        if (std::regex_search(line, m, re)) return m.size() > 1 ? m[1].str() : m[0].str();
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - std::chrono::steady_clock::now());
      pollfd p{fd_, POLLIN, 0};
      if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) return {};
      char buf[4096];
      ssize_t n = read(fd_, buf, sizeof(buf));
      if (n <= 0) return {};
      pending_.append(buf, static_cast<size_t>(n));
    }
  }
  std::string Output() const {
    std::string all;
    for (const auto& l : lines_) all += l + "\n";
    return all + pending_;
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string pending_;
  std::vector<std::string> lines_;
};

class GrpcTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // HTTPS clients refused in a handshake write to a closed socket (OpenSSL uses write(2)).
    signal(SIGPIPE, SIG_IGN);
    char tmpl[] = "/tmp/kvstash-grpc-tls-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    const std::string certs = "bash " KVSTASH_SOURCE_ROOT "/deploy/make-test-certs.sh " + dir_.string() + " >/dev/null";
    ASSERT_EQ(std::system(certs.c_str()), 0) << certs;
    std::ofstream(Path("config.json"))
        << R"({"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "intermediate_size": 128, "vocab_size": 97, "max_position_embeddings": 1024, "rope_theta": 10000.0,
               "rms_norm_eps": 1e-5, "torch_dtype": "float32"})";
    const std::string model = std::string(NODE_PATH) + " make-model --config " + Path("config.json") +
                              " --seed 3 --out " + Path("model") + " >/dev/null";
    ASSERT_EQ(std::system(model.c_str()), 0) << model;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::string Path(const std::string& name) { return (dir_ / name).string(); }

  template <typename Service>
  static auto Connect(const std::string& address, const tls::ClientFiles& files) {
    auto credentials = tls::MakeChannelCredentials(files);
    EXPECT_TRUE(credentials.ok()) << credentials.status().ToString();
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a fresh handshake per client
    return Service::NewStub(grpc::CreateCustomChannel(address, *credentials, args));
  }
  static tls::ClientFiles Good() { return {Path("ca.pem"), Path("client.pem"), Path("client.key"), ""}; }
  // The ways in that mutual TLS must refuse.
  static std::vector<std::pair<std::string, tls::ClientFiles>> Refused() {
    return {{"plaintext", {}},
            {"no client certificate", {Path("ca.pem"), "", "", ""}},
            {"client certificate of another CA", {Path("ca.pem"), Path("other-client.pem"), Path("other-client.key"), ""}},
            {"server's CA not trusted", {Path("other-ca.pem"), Path("client.pem"), Path("client.key"), ""}}};
  }
  static std::vector<std::string> ServerTls() {
    return {"--tls-cert", Path("server.pem"), "--tls-key", Path("server.key"), "--tls-client-ca", Path("ca.pem")};
  }

  static grpc::Status Info(v1::Node::Stub& node) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::InfoResult result;
    return node.Info(&ctx, v1::InfoRequest{}, &result);
  }
  static grpc::Status Route(v1::Conductor::Stub& conductor) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::RouteRequest req;
    v1::RouteResponse resp;
    return conductor.Route(&ctx, req, &resp);
  }

  static inline fs::path dir_;
};

TEST_F(GrpcTlsTest, ConductorAndNodePortsRefuseWhatMutualTlsRefusesAndServeTheRest) {
  std::vector<std::string> conductor_args = {CONDUCTOR_PATH, "--listen", "127.0.0.1:0", "--metrics-port", "0", "--http",
                                             "127.0.0.1:0", "--block-tokens", "32", "--node-tls-ca", Path("ca.pem"),
                                             "--node-tls-cert", Path("client.pem"), "--node-tls-key", Path("client.key")};
  for (const auto& a : ServerTls()) conductor_args.push_back(a);
  Child conductor(conductor_args);
  const std::string metrics = conductor.Expect(R"(metrics on http://(\S+)/metrics)");
  const std::string front_door = conductor.Expect(R"(front door on http://(\S+)/v1/completions)");
  const std::string grpc_port = conductor.Expect(R"(listening on port (\d+))");
  ASSERT_FALSE(grpc_port.empty()) << conductor.Output();
  const std::string conductor_address = "127.0.0.1:" + grpc_port;

  // The conductor's port: every refused way in gets UNAVAILABLE (no RPC ran); the right one is served.
  for (const auto& [what, files] : Refused()) {
    EXPECT_EQ(Route(*Connect<v1::Conductor>(conductor_address, files)).error_code(), grpc::StatusCode::UNAVAILABLE) << what;
  }
  // An empty request: refused by the handler, so the call got through TLS.
  EXPECT_EQ(Route(*Connect<v1::Conductor>(conductor_address, Good())).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  std::vector<std::string> node_args = {NODE_PATH, "serve", "--model", Path("model"), "--engine", "cpu", "--listen",
                                        "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                                        "--page-tokens", "16", "--block-tokens", "32", "--pool-pages", "256",
                                        "--heartbeat-ms", "50", "--log-level", "warn", "--role", "both",
                                        "--conductor", conductor_address, "--conductor-tls-ca", Path("ca.pem"),
                                        "--conductor-tls-cert", Path("client.pem"), "--conductor-tls-key",
                                        Path("client.key")};
  for (const auto& a : ServerTls()) node_args.push_back(a);
  Child node(node_args);
  const std::string node_address = node.Expect(R"(kvstash-node ready grpc=(\S+))");
  ASSERT_FALSE(node_address.empty()) << node.Output();

  for (const auto& [what, files] : Refused()) {
    EXPECT_EQ(Info(*Connect<v1::Node>(node_address, files)).error_code(), grpc::StatusCode::UNAVAILABLE) << what;
  }
  const grpc::Status info = Info(*Connect<v1::Node>(node_address, Good()));
  EXPECT_TRUE(info.ok()) << info.error_message();

  // The node registered over mutual TLS, and the front door reaches it over mutual TLS: a completion.
  auto [host, port] = std::pair(front_door.substr(0, front_door.rfind(':')), std::stoi(front_door.substr(front_door.rfind(':') + 1)));
  int status = 0;
  std::string body;
  ASSERT_TRUE(testing::Eventually(
      [&] {
        httplib::Client http(host, port);
        http.set_read_timeout(60);
        auto res = http.Post("/v1/completions", R"({"prompt": [1, 2, 3, 4, 5], "max_tokens": 4, "temperature": 0})",
                             "application/json");
        status = res ? res->status : 0;
        body = res ? res->body : "";
        return status == 200;
      },
      std::chrono::seconds(30)))
      << "front door: " << status << " " << body << "\nconductor:\n"
      << conductor.Output() << "\nnode:\n"
      << node.Output();
  EXPECT_NE(body.find("\"completion_tokens\":4"), std::string::npos) << body;
  (void)metrics;
}

// HTTPS with client certificates on the node's HTTP API and the conductor's front door: raw HTTP
// clients in plaintext, without a client certificate, with one of another CA and trusting another
// CA get no answer (the handshake fails before any request is read); the right one is served, and a
// completion goes through the front door to the node.
TEST_F(GrpcTlsTest, NodeApiAndFrontDoorSpeakOnlyHttpsWithClientCertificates) {
  const std::vector<std::string> https = {"--http-tls-cert", Path("server.pem"), "--http-tls-key", Path("server.key"),
                                          "--http-tls-client-ca", Path("ca.pem")};
  std::vector<std::string> conductor_args = {CONDUCTOR_PATH, "--listen", "127.0.0.1:0", "--metrics-port", "-1",
                                             "--http", "127.0.0.1:0", "--block-tokens", "32"};
  conductor_args.insert(conductor_args.end(), https.begin(), https.end());
  Child conductor(conductor_args);
  const std::string front_door = conductor.Expect(R"(front door on https://(\S+)/v1/completions)");
  const std::string grpc_port = conductor.Expect(R"(listening on port (\d+))");
  ASSERT_FALSE(front_door.empty() || grpc_port.empty()) << conductor.Output();
  std::vector<std::string> node_args = {NODE_PATH, "serve", "--model", Path("model"), "--engine", "cpu", "--listen",
                                        "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                                        "--page-tokens", "16", "--block-tokens", "32", "--pool-pages", "256",
                                        "--heartbeat-ms", "50", "--log-level", "info", "--role", "both",
                                        "--conductor", "127.0.0.1:" + grpc_port};
  node_args.insert(node_args.end(), https.begin(), https.end());
  Child node(node_args);
  const std::string node_http = node.Expect(R"(kvstash-node ready grpc=\S+ http=(\S+))");
  ASSERT_FALSE(node_http.empty()) << node.Output();
  EXPECT_NE(node.Output().find("HTTP API on 127.0.0.1:0 speaks TLS with client certificates"), std::string::npos)
      << node.Output();

  auto split = [](const std::string& address) {
    return std::pair(address.substr(0, address.rfind(':')), std::stoi(address.substr(address.rfind(':') + 1)));
  };
  struct Way {
    std::string what, ca, cert, key;
    bool plaintext = false;
  };
  const std::vector<Way> refused = {{"plaintext", "", "", "", true},
                                    {"no client certificate", Path("ca.pem"), "", ""},
                                    {"client certificate of another CA", Path("ca.pem"), Path("other-client.pem"),
                                     Path("other-client.key")},
                                    {"server's CA not trusted", Path("other-ca.pem"), Path("client.pem"),
                                     Path("client.key")}};
  const Way good{"client certificate of the CA", Path("ca.pem"), Path("client.pem"), Path("client.key")};
  // The status of GET `path` (or POST a completion when `path` is empty) the way `way` goes; 0 when
  // no answer came.
  auto ask = [&](const std::string& address, const Way& way, const std::string& path, std::string* body = nullptr) {
    const auto [host, port] = split(address);
    std::unique_ptr<httplib::ClientImpl> client;
    if (way.plaintext) {
      client = std::make_unique<httplib::ClientImpl>(host, port);
    } else {
      auto ssl = std::make_unique<httplib::SSLClient>(host, port, way.cert, way.key);
      ssl->set_ca_cert_path(way.ca.c_str());
      ssl->enable_server_certificate_verification(true);
      client = std::move(ssl);
    }
    client->set_connection_timeout(10);
    client->set_read_timeout(60);
    auto res = path.empty() ? client->Post("/v1/completions", R"({"prompt": [1, 2, 3, 4, 5], "max_tokens": 4, "temperature": 0})",
                                           "application/json")
                            : client->Get(path.c_str());
    if (res && body != nullptr) *body = res->body;
    return res ? res->status : 0;
  };
  for (const std::string& address : {node_http, front_door}) {
    for (const Way& way : refused) EXPECT_EQ(ask(address, way, "/healthz"), 0) << address << ": " << way.what;
    EXPECT_EQ(ask(address, good, "/healthz"), 200) << address;
  }
  EXPECT_EQ(ask(node_http, good, "/v1/models"), 200);
  int status = 0;
  std::string body;
  ASSERT_TRUE(testing::Eventually([&] { return (status = ask(front_door, good, "", &body)) == 200; },
                                  std::chrono::seconds(30)))
      << "front door: " << status << " " << body << "\nconductor:\n" << conductor.Output() << "\nnode:\n"
      << node.Output();
  EXPECT_NE(body.find("\"completion_tokens\":4"), std::string::npos) << body;
  EXPECT_EQ(ask(front_door, refused[0], ""), 0) << "a plaintext completion was served";
}

TEST_F(GrpcTlsTest, PlaintextOffLoopbackIsLoggedLoudly) {
  Child conductor({CONDUCTOR_PATH, "--listen", "0.0.0.0:0", "--metrics-host", "0.0.0.0", "--metrics-port", "0",
                   "--block-tokens", "32"});
  ASSERT_FALSE(conductor.Expect(R"(listening on port (\d+))").empty()) << conductor.Output();
  EXPECT_NE(conductor.Output().find("kvstash-conductor gRPC listens in PLAINTEXT on 0.0.0.0:0"), std::string::npos)
      << conductor.Output();
  EXPECT_NE(conductor.Output().find("kvstash-conductor /metrics listens in PLAINTEXT on 0.0.0.0:0"), std::string::npos)
      << conductor.Output();
  // On loopback, plaintext is the development default: nothing said.
  Child quiet({CONDUCTOR_PATH, "--listen", "127.0.0.1:0", "--metrics-port", "0", "--block-tokens", "32"});
  ASSERT_FALSE(quiet.Expect(R"(listening on port (\d+))").empty()) << quiet.Output();
  EXPECT_EQ(quiet.Output().find("PLAINTEXT"), std::string::npos) << quiet.Output();
}


// Bearer tokens on kvstash-node and kvstash-conductor (plaintext on loopback, so only the tokens
// decide): raw gRPC and raw HTTP clients. Roles: nodes and the front door hold `write` tokens,
// routers and model listings `read`, /metrics `admin`. The failure budget is raised: this test
// fails on purpose more often than the default lets an address (auth_test covers the budget).
class TokensTest : public GrpcTlsTest {
 protected:
  static void WriteTokens(const std::vector<std::pair<std::string, std::string>>& token_roles) {
    std::ofstream out(Path("tokens.tmp"));
    for (const auto& [token, role] : token_roles) out << auth::Sha256Hex(token) << "  team-" << role << "  " << role << "\n";
    out.close();
    fs::rename(Path("tokens.tmp"), Path("tokens"));
  }
  static grpc::Status WithToken(const std::string& token, const std::function<grpc::Status(grpc::ClientContext&)>& call) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    return call(ctx);
  }
  // Status and body of an HTTP request with `token` (none when empty).
  static std::pair<int, std::string> Http(const std::string& address, const std::string& method, const std::string& path,
                                          const std::string& token, bool* challenged = nullptr) {
    httplib::Client http(address.substr(0, address.rfind(':')), std::stoi(address.substr(address.rfind(':') + 1)));
    http.set_read_timeout(60);
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    auto res = method == "GET" ? http.Get(path, headers)
                               : http.Post(path, headers, R"({"prompt": [1, 2, 3, 4, 5], "max_tokens": 3, "temperature": 0})",
                                           "application/json");
    if (!res) return {0, ""};
    if (challenged != nullptr) *challenged = res->get_header_value("WWW-Authenticate") == "Bearer";
    return {res->status, res->body};
  }
  static double Metric(const std::string& metrics_address, const std::string& series) {
    const auto [status, body] = Http(metrics_address, "GET", "/metrics", "admin-token");
    EXPECT_EQ(status, 200) << body;
    const size_t at = body.find("\n" + series + " ");
    return at == std::string::npos ? -1 : std::stod(body.substr(at + series.size() + 2));
  }
};

TEST_F(TokensTest, NodeAndConductorRefuseCallsWithoutTheRoleTheyNeed) {
  WriteTokens({{"write-token", "write"}, {"read-token", "read"}, {"admin-token", "admin"}});
  std::ofstream(Path("write-token")) << "write-token\n";
  Child conductor({CONDUCTOR_PATH, "--listen", "127.0.0.1:0", "--metrics-port", "0", "--http", "127.0.0.1:0",
                   "--block-tokens", "32", "--tokens-file", Path("tokens"), "--node-token-file", Path("write-token"),
                   "--auth-failure-burst", "1000"});
  const std::string conductor_metrics = conductor.Expect(R"(metrics on http://(\S+)/metrics)");
  const std::string front_door = conductor.Expect(R"(front door on http://(\S+)/v1/completions)");
  const std::string grpc_port = conductor.Expect(R"(listening on port (\d+))");
  ASSERT_FALSE(grpc_port.empty()) << conductor.Output();
  const std::string conductor_address = "127.0.0.1:" + grpc_port;
  auto to_conductor = Connect<v1::Conductor>(conductor_address, {});

  // The conductor's gRPC port. A node's calls need `write`: refused ones register nothing.
  v1::RegisterInstanceRequest intruder;
  intruder.set_instance_id("intruder");
  intruder.set_role(v1::INSTANCE_ROLE_PREFILL);
  intruder.set_address("127.0.0.1:1");
  for (const auto& [token, code] : std::vector<std::pair<std::string, grpc::StatusCode>>{
           {"", grpc::StatusCode::UNAUTHENTICATED},
           {"not-a-token", grpc::StatusCode::UNAUTHENTICATED},
           {"read-token", grpc::StatusCode::PERMISSION_DENIED}}) {
    v1::RegisterInstanceResponse resp;
    EXPECT_EQ(WithToken(token, [&](auto& ctx) { return to_conductor->RegisterInstance(&ctx, intruder, &resp); }).error_code(),
              code) << "'" << token << "'";
    v1::HeartbeatRequest beat;
    beat.set_instance_id("intruder");
    v1::HeartbeatResponse beat_resp;
    EXPECT_EQ(WithToken(token, [&](auto& ctx) { return to_conductor->Heartbeat(&ctx, beat, &beat_resp); }).error_code(),
              code);
    v1::ReportTtftRequest ttft;
    v1::ReportTtftResponse ttft_resp;
    EXPECT_EQ(WithToken(token, [&](auto& ctx) { return to_conductor->ReportTtft(&ctx, ttft, &ttft_resp); }).error_code(),
              code);
    v1::KvEventsSummary summary;
    EXPECT_EQ(WithToken(token, [&](auto& ctx) {
                auto writer = to_conductor->StreamKvEvents(&ctx, &summary);
                writer->WritesDone();
                return writer->Finish();
              }).error_code(),
              code);
  }
  EXPECT_EQ(Metric(conductor_metrics, "kvstash_conductor_instances{role=\"prefill\"}"), 0) << "a refused call registered";
  // Route needs `read`: without a token or with an unknown one it is refused; with one, the empty
  // request reaches the handler (INVALID_ARGUMENT).
  v1::RouteRequest route;
  v1::RouteResponse routed;
  EXPECT_EQ(WithToken("", [&](auto& ctx) { return to_conductor->Route(&ctx, route, &routed); }).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(WithToken("read-token", [&](auto& ctx) { return to_conductor->Route(&ctx, route, &routed); }).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // A node that presents its write token registers; its own ports ask for tokens too.
  Child node({NODE_PATH, "serve", "--model", Path("model"), "--engine", "cpu", "--listen", "127.0.0.1:0",
              "--http-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--page-tokens", "16", "--block-tokens",
              "32", "--pool-pages", "256", "--heartbeat-ms", "50", "--log-level", "warn", "--role", "both",
              "--conductor", conductor_address, "--conductor-token-file", Path("write-token"), "--tokens-file",
              Path("tokens"), "--auth-failure-burst", "1000"});
  const std::string ready = node.Expect(R"(kvstash-node ready (grpc=\S+ http=\S+ metrics=\S+))");
  ASSERT_FALSE(ready.empty()) << node.Output();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(ready, m, std::regex(R"(grpc=(\S+) http=(\S+) metrics=(\S+))")));
  const std::string node_grpc = m[1], node_http = m[2], node_metrics = m[3];
  ASSERT_TRUE(testing::Eventually(
      [&] { return Metric(conductor_metrics, "kvstash_conductor_instances{role=\"prefill\"}") == 1; },
      std::chrono::seconds(30)))
      << node.Output() << conductor.Output();

  auto to_node = Connect<v1::Node>(node_grpc, {});
  v1::InfoResult info;
  EXPECT_EQ(WithToken("", [&](auto& ctx) { return to_node->Info(&ctx, v1::InfoRequest{}, &info); }).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(WithToken("not-a-token", [&](auto& ctx) { return to_node->Info(&ctx, v1::InfoRequest{}, &info); }).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(WithToken("read-token", [&](auto& ctx) { return to_node->Info(&ctx, v1::InfoRequest{}, &info); }).ok());
  v1::GenerateRequest generate;
  generate.add_prompt_token_ids(1);
  generate.mutable_sampling()->set_max_tokens(2);
  for (const auto& [token, code] : std::vector<std::pair<std::string, grpc::StatusCode>>{
           {"", grpc::StatusCode::UNAUTHENTICATED}, {"read-token", grpc::StatusCode::PERMISSION_DENIED}}) {
    EXPECT_EQ(WithToken(token, [&](auto& ctx) {
                auto stream = to_node->Generate(&ctx, generate);
                v1::GenerateEvent event;
                while (stream->Read(&event)) {
                }
                return stream->Finish();
              }).error_code(),
              code);
    v1::PrefillRequest prefill;
    prefill.add_prompt_token_ids(1);
    v1::PrefillResult prefilled;
    EXPECT_EQ(WithToken(token, [&](auto& ctx) { return to_node->Prefill(&ctx, prefill, &prefilled); }).error_code(), code);
  }
  EXPECT_EQ(Metric(node_metrics, "kvstash_node_completion_tokens_total"), 0) << "a refused call generated";

  // The node's HTTP API: 401 with a challenge, 403 for a read token's completion; /healthz open.
  bool challenged = false;
  EXPECT_EQ(Http(node_http, "POST", "/v1/completions", "", &challenged).first, 401);
  EXPECT_TRUE(challenged);
  EXPECT_EQ(Http(node_http, "POST", "/v1/completions", "not-a-token").first, 401);
  const auto [forbidden, why] = Http(node_http, "POST", "/v1/completions", "read-token");
  EXPECT_EQ(forbidden, 403);
  EXPECT_NE(why.find("permission_error"), std::string::npos) << why;
  EXPECT_EQ(Http(node_http, "GET", "/v1/models", "").first, 401);
  EXPECT_EQ(Http(node_http, "GET", "/v1/models", "read-token").first, 200);
  EXPECT_EQ(Http(node_http, "GET", "/healthz", "").first, 200);
  EXPECT_EQ(Http(node_metrics, "GET", "/metrics", "").first, 401);
  EXPECT_EQ(Http(node_metrics, "GET", "/metrics", "write-token").first, 403);
  EXPECT_EQ(Metric(node_metrics, "kvstash_node_completion_tokens_total"), 0) << "a refused request generated";
  const auto [served, answer] = Http(node_http, "POST", "/v1/completions", "write-token");
  EXPECT_EQ(served, 200) << answer;

  // The front door: the same rules; with a write token it routes to the node, presenting the node
  // its own write token (--node-token-file).
  EXPECT_EQ(Http(front_door, "POST", "/v1/completions", "").first, 401);
  EXPECT_EQ(Http(front_door, "POST", "/v1/completions", "read-token").first, 403);
  EXPECT_EQ(Http(front_door, "GET", "/healthz", "").first, 200);
  EXPECT_EQ(Http(conductor_metrics, "GET", "/metrics", "read-token").first, 403);
  const auto [routed_status, routed_body] = Http(front_door, "POST", "/v1/completions", "write-token");
  EXPECT_EQ(routed_status, 200) << routed_body << node.Output();
  EXPECT_NE(routed_body.find("\"completion_tokens\":3"), std::string::npos) << routed_body;

  // SIGHUP reloads: the read token withdrawn is refused from then on, on both processes.
  WriteTokens({{"write-token", "write"}, {"admin-token", "admin"}});
  ASSERT_EQ(kill(node.pid(), SIGHUP), 0);
  ASSERT_EQ(kill(conductor.pid(), SIGHUP), 0);
  EXPECT_TRUE(testing::Eventually(
      [&] {
        return WithToken("read-token", [&](auto& ctx) { return to_node->Info(&ctx, v1::InfoRequest{}, &info); })
                   .error_code() == grpc::StatusCode::UNAUTHENTICATED;
      },
      std::chrono::seconds(20)));
  EXPECT_TRUE(testing::Eventually(
      [&] {
        return WithToken("read-token", [&](auto& ctx) { return to_conductor->Route(&ctx, route, &routed); })
                   .error_code() == grpc::StatusCode::UNAUTHENTICATED;
      },
      std::chrono::seconds(20)));
  EXPECT_EQ(Http(front_door, "POST", "/v1/completions", "write-token").first, 200);
}

}  // namespace
}  // namespace kvstash
