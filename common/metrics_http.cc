#include <httplib.h>

#include <thread>

#include "common/http_serve.h"
#include "common/metrics.h"

namespace kvstash::metrics {

struct MetricsHttpServer::Impl {
  const Registry* registry;
  HttpServer server;
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
  return ServeInBackground(impl_->server, host, port, impl_->thread, "/metrics");
}

void MetricsHttpServer::Stop() { StopServing(impl_->server, impl_->thread); }

}  // namespace kvstash::metrics
