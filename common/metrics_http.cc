#include <httplib.h>

#include <chrono>
#include <thread>

#include "common/metrics.h"

namespace kvstash::metrics {

struct MetricsHttpServer::Impl {
  const Registry* registry;
  httplib::Server server;
  std::thread thread;
};

MetricsHttpServer::MetricsHttpServer(const Registry* registry) : impl_(std::make_unique<Impl>()) {
  impl_->registry = registry;
  impl_->server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(impl_->registry->Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  impl_->server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

Result<int> MetricsHttpServer::Start(const std::string& host, int port) {
  if (impl_->thread.joinable()) return FailedPrecondition("metrics server already started");
  int bound = -1;
  if (port == 0) {
    bound = impl_->server.bind_to_any_port(host);
  } else if (impl_->server.bind_to_port(host, port)) {
    bound = port;
  }
  if (bound <= 0) {
    return Unavailable("cannot listen for /metrics on " + host + ":" + std::to_string(port));
  }
  impl_->thread = std::thread([this] { impl_->server.listen_after_bind(); });
  // httplib's stop() is a no-op until the accept loop runs: wait for it, so that a Stop() right
  // after Start() (a daemon failing later in its start) cannot leave the loop running forever.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!impl_->server.is_running() && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
  return bound;
}

void MetricsHttpServer::Stop() {
  if (impl_->thread.joinable()) {
    impl_->server.stop();
    impl_->thread.join();
  }
}

}  // namespace kvstash::metrics
