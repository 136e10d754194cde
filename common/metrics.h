// A small Prometheus metrics registry: counters, gauges and histograms with labels, rendered in
// the text exposition format (version 0.0.4) that `promtool check metrics` accepts.
// prometheus-cpp is not packaged for Debian 12, hence this.
//
// Usage:
//   Registry reg;
//   auto& ops = reg.AddCounter("kvstash_ops_total", "Requests by op and result", {"op", "result"});
//   ops.WithLabels({"get", "ok"}).Inc();
//
// Families and children live as long as the registry; references to them stay valid, so hot
// paths look a child up once and keep the reference.
//
// Thread-safety: all methods are safe for concurrent use. Inc/Set/Add/Observe are lock-free;
// WithLabels takes the family's mutex (look children up once, not per request).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "kvstash/result.h"

namespace kvstash::metrics {

class Counter {
 public:
  void Inc(double delta = 1.0);  // REQUIRES: delta >= 0 (negative deltas are ignored)
  double Value() const;

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double value);
  void Add(double delta);
  double Value() const;

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // `bounds` are the finite upper bounds, strictly increasing; +Inf is implicit.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative_counts;  // one per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Snap() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket (not cumulative), +Inf last
  std::atomic<double> sum_{0};
  std::atomic<uint64_t> count_{0};
};

// Latency buckets in seconds from 50 µs to 10 s.
std::vector<double> DefaultLatencyBuckets();

template <typename Metric>
class Family {
 public:
  // The child for these label values, in the order of the family's label names; created on first
  // use. Values that do not match the label count are truncated or padded with "".
  Metric& WithLabels(std::initializer_list<std::string_view> values);
  Metric& WithLabels(const std::vector<std::string>& values);
  // Drops the child with these label values (the series leaves the page); false when absent. A
  // reference WithLabels returned for it dangles afterwards: only a family's single updater (a
  // collector that re-derives every series each time) may remove.
  bool Remove(std::initializer_list<std::string_view> values);

  // Implementation detail used by Registry.
  struct Child {
    std::vector<std::string> label_values;
    std::unique_ptr<Metric> metric;
  };
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::function<std::unique_ptr<Metric>()> make);
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  // Calls fn(child) for every child, in label-value order, under the family mutex.
  void ForEach(const std::function<void(const Child&)>& fn) const;

 private:
  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  std::function<std::unique_ptr<Metric>()> make_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, Child> children_;
};

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Names must match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* and not start
  // with "__"; a name may be registered once. Violations are programming errors: they abort.
  Family<Counter>& AddCounter(std::string name, std::string help, std::vector<std::string> label_names = {});
  Family<Gauge>& AddGauge(std::string name, std::string help, std::vector<std::string> label_names = {});
  Family<Histogram>& AddHistogram(std::string name, std::string help, std::vector<std::string> label_names,
                                  std::vector<double> bounds);

  // Called (in registration order) at the start of every Render(), to refresh gauges that mirror
  // state owned elsewhere (tier usage, lease counts).
  void AddCollector(std::function<void()> collector);

  // The whole registry in the text exposition format, families in registration order.
  std::string Render() const;

 private:
  struct Entry;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_;
  std::vector<std::function<void()>> collectors_;
};

}  // namespace kvstash::metrics

// MetricsHttpServer, the /metrics and /healthz endpoint.
#include "common/metrics_http.h"  // IWYU pragma: export
