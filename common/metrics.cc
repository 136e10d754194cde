#include "common/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace kvstash::metrics {
namespace {

void AtomicAdd(std::atomic<double>& target, double delta) {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + delta, std::memory_order_relaxed)) {
  }
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.0f", v);
    return buf;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out.push_back(c);
  }
  return out;
}

std::string EscapeHelp(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out.push_back(c);
  }
  return out;
}

// {a="x",b="y"} plus optional extra label (for histogram "le"); "" when no labels at all.
std::string LabelSet(const std::vector<std::string>& names, const std::vector<std::string>& values,
                     std::string_view extra_name = {}, std::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) return "";
  std::string out = "{";
  bool first = true;
  for (size_t i = 0; i < names.size(); ++i) {
    if (!first) out += ",";
    first = false;
    out += names[i] + "=\"" + EscapeLabelValue(i < values.size() ? values[i] : "") + "\"";
  }
  if (!extra_name.empty()) {
    if (!first) out += ",";
    out += std::string(extra_name) + "=\"" + std::string(extra_value) + "\"";
  }
  return out + "}";
}

bool ValidName(const std::string& name, bool label) {
  // metric: [a-zA-Z_:][a-zA-Z0-9_:]*   label: [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__"
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!label && c == ':');
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return !(label && name.rfind("__", 0) == 0);
}

void CheckName(const std::string& name, bool label) {
  if (!ValidName(name, label)) {
    std::fprintf(stderr, "kvstash metrics: invalid %s name '%s'\n", label ? "label" : "metric", name.c_str());
    std::abort();
  }
}

}  // namespace

void Counter::Inc(double delta) {
  if (delta > 0) AtomicAdd(value_, delta);
}
double Counter::Value() const { return value_.load(std::memory_order_relaxed); }

void Gauge::Set(double value) { value_.store(value, std::memory_order_relaxed); }
void Gauge::Add(double delta) { AtomicAdd(value_, delta); }
double Gauge::Value() const { return value_.load(std::memory_order_relaxed); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, value);
  count_.fetch_add(1, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Snap() const {
  Snapshot s;
  s.bounds = bounds_;
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative_counts.push_back(running);
  }
  // count is taken from the buckets so that the +Inf bucket always equals _count, as promtool expects.
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> DefaultLatencyBuckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
          0.025,   0.05,   0.1,     0.25,   0.5,   1.0,    2.5,    5.0, 10.0};
}

template <typename Metric>
Family<Metric>::Family(std::string name, std::string help, std::vector<std::string> label_names,
                       std::function<std::unique_ptr<Metric>()> make)
    : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)), make_(std::move(make)) {}

template <typename Metric>
Metric& Family<Metric>::WithLabels(const std::vector<std::string>& values) {
  std::vector<std::string> key = values;
  key.resize(label_names_.size());
  std::lock_guard lock(mu_);
  auto it = children_.find(key);
  if (it == children_.end()) {
    Child child{key, make_()};
    it = children_.emplace(key, std::move(child)).first;
  }
  return *it->second.metric;
}

template <typename Metric>
Metric& Family<Metric>::WithLabels(std::initializer_list<std::string_view> values) {
  std::vector<std::string> v;
  for (auto s : values) v.emplace_back(s);
  return WithLabels(v);
}

template <typename Metric>
bool Family<Metric>::Remove(std::initializer_list<std::string_view> values) {
  std::vector<std::string> key;
  for (auto v : values) key.emplace_back(v);
  key.resize(label_names_.size());
  std::lock_guard lock(mu_);
  return children_.erase(key) > 0;
}

template <typename Metric>
void Family<Metric>::ForEach(const std::function<void(const Child&)>& fn) const {
  std::lock_guard lock(mu_);
  for (const auto& [key, child] : children_) fn(child);
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

struct Registry::Entry {
  std::unique_ptr<Family<Counter>> counter;
  std::unique_ptr<Family<Gauge>> gauge;
  std::unique_ptr<Family<Histogram>> histogram;
};

Registry::Registry() = default;
Registry::~Registry() = default;

Family<Counter>& Registry::AddCounter(std::string name, std::string help, std::vector<std::string> label_names) {
  CheckName(name, false);
  for (const auto& l : label_names) CheckName(l, true);
  auto entry = std::make_unique<Entry>();
  entry->counter = std::make_unique<Family<Counter>>(std::move(name), std::move(help), std::move(label_names),
                                                     [] { return std::make_unique<Counter>(); });
  std::lock_guard lock(mu_);
  entries_.push_back(std::move(entry));
  return *entries_.back()->counter;
}

Family<Gauge>& Registry::AddGauge(std::string name, std::string help, std::vector<std::string> label_names) {
  CheckName(name, false);
  for (const auto& l : label_names) CheckName(l, true);
  auto entry = std::make_unique<Entry>();
  entry->gauge = std::make_unique<Family<Gauge>>(std::move(name), std::move(help), std::move(label_names),
                                                 [] { return std::make_unique<Gauge>(); });
  std::lock_guard lock(mu_);
  entries_.push_back(std::move(entry));
  return *entries_.back()->gauge;
}

Family<Histogram>& Registry::AddHistogram(std::string name, std::string help, std::vector<std::string> label_names,
                                          std::vector<double> bounds) {
  CheckName(name, false);
  for (const auto& l : label_names) {
    CheckName(l, true);
    if (l == "le") std::abort();
  }
  for (size_t i = 1; i < bounds.size(); ++i) {
    if (!(bounds[i] > bounds[i - 1])) std::abort();
  }
  auto entry = std::make_unique<Entry>();
  entry->histogram = std::make_unique<Family<Histogram>>(
      std::move(name), std::move(help), std::move(label_names),
      [bounds = std::move(bounds)] { return std::make_unique<Histogram>(bounds); });
  std::lock_guard lock(mu_);
  entries_.push_back(std::move(entry));
  return *entries_.back()->histogram;
}

void Registry::AddCollector(std::function<void()> collector) {
  std::lock_guard lock(mu_);
  collectors_.push_back(std::move(collector));
}

std::string Registry::Render() const {
  std::vector<std::function<void()>> collectors;
  {
    std::lock_guard lock(mu_);
    collectors = collectors_;
  }
  for (const auto& c : collectors) c();

  std::ostringstream out;
  std::lock_guard lock(mu_);
  for (const auto& e : entries_) {
    if (e->counter) {
      const auto& f = *e->counter;
      out << "# HELP " << f.name() << " " << EscapeHelp(f.help()) << "\n# TYPE " << f.name() << " counter\n";
      f.ForEach([&](const auto& child) {
        out << f.name() << LabelSet(f.label_names(), child.label_values) << " "
            << FormatValue(child.metric->Value()) << "\n";
      });
    } else if (e->gauge) {
      const auto& f = *e->gauge;
      out << "# HELP " << f.name() << " " << EscapeHelp(f.help()) << "\n# TYPE " << f.name() << " gauge\n";
      f.ForEach([&](const auto& child) {
        out << f.name() << LabelSet(f.label_names(), child.label_values) << " "
            << FormatValue(child.metric->Value()) << "\n";
      });
    } else if (e->histogram) {
      const auto& f = *e->histogram;
      out << "# HELP " << f.name() << " " << EscapeHelp(f.help()) << "\n# TYPE " << f.name() << " histogram\n";
      f.ForEach([&](const auto& child) {
        const auto snap = child.metric->Snap();
        for (size_t i = 0; i <= snap.bounds.size(); ++i) {
          const std::string le = i < snap.bounds.size() ? FormatValue(snap.bounds[i]) : "+Inf";
          out << f.name() << "_bucket" << LabelSet(f.label_names(), child.label_values, "le", le) << " "
              << snap.cumulative_counts[i] << "\n";
        }
        out << f.name() << "_sum" << LabelSet(f.label_names(), child.label_values) << " " << FormatValue(snap.sum)
            << "\n";
        out << f.name() << "_count" << LabelSet(f.label_names(), child.label_values) << " " << snap.count << "\n";
      });
    }
  }
  return out.str();
}

}  // namespace kvstash::metrics
