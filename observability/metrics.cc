#include "observability/metrics.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace cairn {
namespace metrics {
namespace {

enum class Kind { kCounter, kGauge, kHistogram };

struct Family {
  std::string help;
  Kind kind;
  std::map<Labels, std::unique_ptr<CounterMetric>> counters;
  std::map<Labels, std::unique_ptr<GaugeMetric>> gauges;
  std::map<Labels, std::unique_ptr<HistogramMetric>> histograms;
  std::map<int64_t, std::function<Samples()>> collectors;  // by id
};

struct Registry {
  // Held while collectors run (so RemoveGaugeCollector waits for a running
  // one); taken before `mu`, never after.
  std::mutex collect_mu;
  std::mutex mu;
  std::map<std::string, Family> families;
  int64_t next_collector_id = 1;
};

// When this process started (static initialization): the value of
// process_start_time_seconds.
const double kProcessStartSeconds =
    std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();

Registry& Get() {
  static Registry* registry = new Registry();  // never destroyed: used until exit
  return *registry;
}

Family& FamilyFor(Registry& r, const std::string& name, const std::string& help, Kind kind) {
  Family& f = r.families[name];
  if (f.help.empty()) {
    f.help = help;
    f.kind = kind;
  }
  return f;
}

std::string Escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

std::string LabelText(const Labels& labels, const std::string& extra = "") {
  std::string out;
  for (const auto& [k, v] : labels) absl::StrAppend(&out, out.empty() ? "" : ",", k, "=\"", Escape(v), "\"");
  if (!extra.empty()) absl::StrAppend(&out, out.empty() ? "" : ",", extra);
  return out.empty() ? "" : absl::StrCat("{", out, "}");
}

// As Prometheus prints numbers: the shortest form that reads back as the
// same double ("0.004", not %.17g's "0.0040000000000000001"), +Inf, -Inf,
// NaN.
std::string Number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

}  // namespace

HistogramMetric::HistogramMetric(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(bounds_.size() + 1) {}

void HistogramMetric::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  buckets_[i].fetch_add(1);
  AtomicAdd(sum_, v);
}

std::vector<uint64_t> HistogramMetric::counts() const {
  std::vector<uint64_t> out;
  uint64_t total = 0;
  for (const auto& b : buckets_) {
    total += b.load();
    out.push_back(total);
  }
  return out;
}

CounterMetric& Counter(const std::string& name, const std::string& help, const Labels& labels) {
  Registry& r = Get();
  std::lock_guard<std::mutex> lock(r.mu);
  auto& slot = FamilyFor(r, name, help, Kind::kCounter).counters[labels];
  if (!slot) slot = std::make_unique<CounterMetric>();
  return *slot;
}

GaugeMetric& Gauge(const std::string& name, const std::string& help, const Labels& labels) {
  Registry& r = Get();
  std::lock_guard<std::mutex> lock(r.mu);
  auto& slot = FamilyFor(r, name, help, Kind::kGauge).gauges[labels];
  if (!slot) slot = std::make_unique<GaugeMetric>();
  return *slot;
}

HistogramMetric& LatencyHistogram(const std::string& name, const std::string& help,
                                  const Labels& labels) {
  Registry& r = Get();
  std::lock_guard<std::mutex> lock(r.mu);
  auto& slot = FamilyFor(r, name, help, Kind::kHistogram).histograms[labels];
  if (!slot) {
    std::vector<double> bounds;
    for (double b = 0.001; b < 1100; b *= 4) bounds.push_back(b);
    slot = std::make_unique<HistogramMetric>(bounds);
  }
  return *slot;
}

int64_t AddGaugeCollector(const std::string& name, const std::string& help,
                          std::function<Samples()> collect) {
  Registry& r = Get();
  std::lock_guard<std::mutex> collect_lock(r.collect_mu);
  std::lock_guard<std::mutex> lock(r.mu);
  const int64_t id = r.next_collector_id++;
  FamilyFor(r, name, help, Kind::kGauge).collectors[id] = std::move(collect);
  return id;
}

void RemoveGaugeCollector(int64_t id) {
  Registry& r = Get();
  std::lock_guard<std::mutex> collect_lock(r.collect_mu);
  std::lock_guard<std::mutex> lock(r.mu);
  for (auto& [name, f] : r.families) f.collectors.erase(id);
}

std::string Render() {
  Registry& r = Get();
  std::lock_guard<std::mutex> collect_lock(r.collect_mu);
  // Run the collectors first, without `mu` (they take their own locks).
  std::vector<std::pair<std::string, std::function<Samples()>*>> to_run;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    for (auto& [name, f] : r.families) {
      for (auto& [id, collect] : f.collectors) to_run.emplace_back(name, &collect);
    }
  }
  std::map<std::string, std::map<Labels, double>> collected;
  for (const auto& [name, collect] : to_run) {
    for (auto& [labels, value] : (*collect)()) collected[name][labels] = value;
  }
  std::lock_guard<std::mutex> lock(r.mu);
  std::string out = absl::StrCat(
      "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
      "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds ",
      Number(kProcessStartSeconds), "\n");
  for (const auto& [name, f] : r.families) {
    const char* type = f.kind == Kind::kCounter ? "counter" : f.kind == Kind::kGauge ? "gauge" : "histogram";
    absl::StrAppend(&out, "# HELP ", name, " ", f.help, "\n# TYPE ", name, " ", type, "\n");
    for (const auto& [labels, c] : f.counters) absl::StrAppend(&out, name, LabelText(labels), " ", Number(c->value()), "\n");
    for (const auto& [labels, g] : f.gauges) absl::StrAppend(&out, name, LabelText(labels), " ", Number(g->value()), "\n");
    if (auto it = collected.find(name); it != collected.end()) {
      for (const auto& [labels, v] : it->second) {
        if (f.gauges.count(labels) == 0) absl::StrAppend(&out, name, LabelText(labels), " ", Number(v), "\n");
      }
    }
    for (const auto& [labels, h] : f.histograms) {
      const auto counts = h->counts();
      for (size_t i = 0; i < counts.size(); ++i) {
        const std::string le = i < h->bounds().size() ? Number(h->bounds()[i]) : "+Inf";
        absl::StrAppend(&out, name, "_bucket", LabelText(labels, absl::StrCat("le=\"", le, "\"")), " ",
                        counts[i], "\n");
      }
      absl::StrAppend(&out, name, "_sum", LabelText(labels), " ", Number(h->sum()), "\n");
      absl::StrAppend(&out, name, "_count", LabelText(labels), " ", counts.back(), "\n");
    }
  }
  return out;
}

}  // namespace metrics
}  // namespace cairn
