#include <gtest/gtest.h>
#include <httplib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/auth.h"
#include "common/metrics.h"
#include "common/metrics_http.h"

namespace kvstash::metrics {
namespace {


// Runs `promtool check metrics` on `text`; returns its exit status and output.
std::pair<int, std::string> Promtool(const std::string& text) {
  const auto dir = std::filesystem::temp_directory_path();
  const auto in = dir / ("kvstash_metrics_" + std::to_string(::getpid()) + ".txt");
  const auto out = dir / ("kvstash_promtool_" + std::to_string(::getpid()) + ".txt");
  std::ofstream(in) << text;
  const std::string cmd = std::string(PROMTOOL_PATH) + " check metrics < " + in.string() + " > " + out.string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream f(out);
  std::string output((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::filesystem::remove(in);
  std::filesystem::remove(out);
  return {rc, output};
}

TEST(MetricsTest, RendersCountersGaugesHistograms) {
  Registry reg;
  auto& ops = reg.AddCounter("kvstash_test_ops_total", "Requests by op and result.", {"op", "result"});
  ops.WithLabels({"get", "ok"}).Inc();
  ops.WithLabels({"get", "ok"}).Inc(2);
  ops.WithLabels({"put", "error"}).Inc();
  ops.WithLabels({"put", "error"}).Inc(-5);  // ignored: counters only go up
  auto& used = reg.AddGauge("kvstash_test_used_bytes", "Bytes in use.", {"tier"});
  used.WithLabels({"dram"}).Set(4096);
  used.WithLabels({"dram"}).Add(-96);
  auto& lat = reg.AddHistogram("kvstash_test_duration_seconds", "Latency.", {"op"}, {0.001, 0.01, 0.1});
  lat.WithLabels({"get"}).Observe(0.0005);
  lat.WithLabels({"get"}).Observe(0.05);
  lat.WithLabels({"get"}).Observe(5);

  const std::string text = reg.Render();
  EXPECT_NE(text.find("# TYPE kvstash_test_ops_total counter"), std::string::npos);
  EXPECT_NE(text.find("kvstash_test_ops_total{op=\"get\",result=\"ok\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("kvstash_test_ops_total{op=\"put\",result=\"error\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("kvstash_test_used_bytes{tier=\"dram\"} 4000\n"), std::string::npos);
  EXPECT_NE(text.find("kvstash_test_duration_seconds_bucket{op=\"get\",le=\"0.001\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("kvstash_test_duration_seconds_bucket{op=\"get\",le=\"0.10000000000000001\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("kvstash_test_duration_seconds_bucket{op=\"get\",le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("kvstash_test_duration_seconds_count{op=\"get\"} 3\n"), std::string::npos);
}

TEST(MetricsTest, RemovedSeriesLeaveThePage) {
  metrics::Registry r;
  auto& g = r.AddGauge("quota_bytes", "A quota.", {"tenant"});
  g.WithLabels({"a"}).Set(5);
  g.WithLabels({"b"}).Set(7);
  EXPECT_TRUE(g.Remove({"a"}));
  EXPECT_FALSE(g.Remove({"a"}));
  EXPECT_FALSE(g.Remove({"nobody"}));
  const std::string page = r.Render();
  EXPECT_EQ(page.find("quota_bytes{tenant=\"a\"}"), std::string::npos) << page;
  EXPECT_NE(page.find("quota_bytes{tenant=\"b\"} 7"), std::string::npos) << page;
  g.WithLabels({"a"}).Set(1);  // and may come back
  EXPECT_NE(r.Render().find("quota_bytes{tenant=\"a\"} 1"), std::string::npos);
}

TEST(MetricsTest, EscapesLabelValues) {
  Registry reg;
  auto& c = reg.AddCounter("kvstash_test_escapes_total", "Help with a \\ backslash\nand newline.", {"path"});
  c.WithLabels({"a\"b\\c\nd"}).Inc();
  const std::string text = reg.Render();
  EXPECT_NE(text.find("path=\"a\\\"b\\\\c\\nd\""), std::string::npos);
  EXPECT_NE(text.find("Help with a \\\\ backslash\\nand newline."), std::string::npos);
}

TEST(MetricsTest, CollectorsRunBeforeRender) {
  Registry reg;
  auto& g = reg.AddGauge("kvstash_test_refreshed", "Refreshed by a collector.");
  int calls = 0;
  reg.AddCollector([&] { g.WithLabels({}).Set(++calls); });
  EXPECT_NE(reg.Render().find("kvstash_test_refreshed 1\n"), std::string::npos);
  EXPECT_NE(reg.Render().find("kvstash_test_refreshed 2\n"), std::string::npos);
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  Registry reg;
  auto& c = reg.AddCounter("kvstash_test_concurrent_total", "Concurrent increments.");
  auto& h = reg.AddHistogram("kvstash_test_concurrent_seconds", "Concurrent observations.", {}, {0.5});
  Counter& child = c.WithLabels({});
  Histogram& hist = h.WithLabels({});
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        child.Inc();
        hist.Observe(i % 2 ? 0.1 : 1.0);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(child.Value(), 80000);
  const auto snap = hist.Snap();
  EXPECT_EQ(snap.count, 80000u);
  EXPECT_EQ(snap.cumulative_counts[0], 40000u);
}

TEST(MetricsTest, PromtoolAcceptsOutput) {
  Registry reg;
  reg.AddCounter("kvstash_test_ops_total", "Requests by op and result.", {"op", "result"})
      .WithLabels({"lookup", "ok"})
      .Inc(7);
  reg.AddGauge("kvstash_test_tier_used_bytes", "Used bytes per tier.", {"tier"}).WithLabels({"dram"}).Set(1e9);
  auto& lat = reg.AddHistogram("kvstash_test_op_duration_seconds", "Op latency.", {"op"}, DefaultLatencyBuckets());
  lat.WithLabels({"get"}).Observe(0.0003);
  lat.WithLabels({"put"}).Observe(0.2);
  reg.AddCounter("kvstash_test_label_free_total", "No labels at all.").WithLabels({}).Inc();
  const auto [rc, output] = Promtool(reg.Render());
  EXPECT_EQ(rc, 0) << output << "\n" << reg.Render();
}

TEST(MetricsTest, PromtoolRejectsBrokenExposition) {
  // Proves the promtool check above can fail: a counter without the _total suffix and a sample
  // of an undeclared type is reported.
  const auto [rc, output] = Promtool("# HELP x_bytes b\n# TYPE x_bytes counter\nx_bytes{a=\"1\"} 1\nbad line here\n");
  EXPECT_NE(rc, 0) << output;
}

TEST(MetricsHttpServerTest, ServesMetricsOnPickedPort) {
  Registry reg;
  reg.AddCounter("kvstash_test_http_total", "Served over HTTP.").WithLabels({}).Inc(42);
  MetricsHttpServer server(&reg);
  auto port = server.Start("127.0.0.1", 0);
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  httplib::Client cli("127.0.0.1", *port);
  auto res = cli.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->body.find("kvstash_test_http_total 42"), std::string::npos);
  EXPECT_NE(res->get_header_value("Content-Type").find("text/plain"), std::string::npos);
  auto health = cli.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  server.Stop();
  EXPECT_FALSE(cli.Get("/metrics"));
}

// Failed basic-auth attempts spend the client address's budget; once it is spent even the right
// password is refused unchecked, until the budget refills (docs/SECURITY.md "The metrics endpoint").
TEST(MetricsHttpServerTest, FailedBasicAuthIsRateLimitedPerAddress) {
  const auto file = std::filesystem::temp_directory_path() / ("kvstash_basic_" + std::to_string(::getpid()));
  std::ofstream(file) << "scraper " << auth::Sha256Hex("right-password") << "\n";
  ManualClock clock;
  Registry reg;
  MetricsHttpOptions options;
  options.auth.basic_auth_file = file.string();
  options.auth.basic_failure_burst = 3;
  options.auth.basic_failure_refill_per_s = 1;
  options.auth.clock = &clock;
  MetricsHttpServer server(&reg, options);
  auto port = server.Start("127.0.0.1", 0);
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  httplib::Client cli("127.0.0.1", *port);
  auto get = [&](const std::string& password) {
    cli.set_basic_auth("scraper", password);
    auto res = cli.Get("/metrics");
    return res ? std::make_pair(res->status, res->body) : std::make_pair(-1, std::string());
  };
  EXPECT_EQ(get("right-password").first, 200);  // successes cost nothing
  for (int i = 0; i < 3; ++i) {
    const auto refused = get("wrong-" + std::to_string(i));
    EXPECT_EQ(refused.first, 401);
    EXPECT_NE(refused.second.find("unknown user or wrong password"), std::string::npos) << refused.second;
  }
  const auto limited = get("right-password");
  EXPECT_EQ(limited.first, 401);
  EXPECT_NE(limited.second.find("too many failed attempts"), std::string::npos) << limited.second;
  EXPECT_EQ(cli.Get("/healthz")->status, 200);  // health never needs credentials
  clock.AdvanceMs(1'000);  // one failure regained
  EXPECT_EQ(get("right-password").first, 200);
  server.Stop();
  std::filesystem::remove(file);
}

}  // namespace
}  // namespace kvstash::metrics
