// Process-wide metrics in the Prometheus text exposition format (version
// 0.0.4): counters, gauges and histograms, each optionally with labels.
//
//   static auto& bytes = cairn::metrics::Counter("cairn_writer_bytes_received_total",
//                                                 "Tensor bytes received from clients.");
//   bytes.Add(n);
//   cairn::metrics::Counter("cairn_rpc_errors_total", "...", {{"code", "NOT_FOUND"}}).Add(1);
//   std::string text = cairn::metrics::Render();
//
// Metric objects live for the whole process; lookups by name and labels are
// thread-safe, and updates are lock-free.
#ifndef CAIRN_OBSERVABILITY_METRICS_H_
#define CAIRN_OBSERVABILITY_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace cairn {
namespace metrics {

using Labels = std::map<std::string, std::string>;

// atomic<double>::fetch_add is C++20; a compare-exchange loop does the same.
inline void AtomicAdd(std::atomic<double>& a, double v) {
  double old = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(old, old + v, std::memory_order_relaxed)) {
  }
}

class CounterMetric {
 public:
  void Add(double v) { AtomicAdd(value_, v); }
  double value() const { return value_.load(); }

 private:
  std::atomic<double> value_{0};
};

class GaugeMetric {
 public:
  void Set(double v) { value_.store(v); }
  void Add(double v) { AtomicAdd(value_, v); }
  double value() const { return value_.load(); }

 private:
  std::atomic<double> value_{0};
};

class HistogramMetric {
 public:
  explicit HistogramMetric(std::vector<double> bounds);
  void Observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  // Cumulative counts per bound, then +Inf; and the sum.
  std::vector<uint64_t> counts() const;
  double sum() const { return sum_.load(); }

 private:
  std::vector<double> bounds_;
  std::vector<std::atomic<uint64_t>> buckets_;  // non-cumulative, last = +Inf
  std::atomic<double> sum_{0};
};

CounterMetric& Counter(const std::string& name, const std::string& help, const Labels& labels = {});
GaugeMetric& Gauge(const std::string& name, const std::string& help, const Labels& labels = {});
// Buckets in seconds from 1 ms to about 17 minutes.
HistogramMetric& LatencyHistogram(const std::string& name, const std::string& help,
                                  const Labels& labels = {});

// A gauge family whose samples are computed when /metrics is scraped (an
// age is "now minus a timestamp", stale the moment a background loop would
// have stored it). Returns an id for RemoveGaugeCollector. `collect` is
// called without the registry's lock (it may take its own locks, but must
// not call AddGaugeCollector / RemoveGaugeCollector / Render), and must stay
// callable until RemoveGaugeCollector(id) returns.
using Samples = std::vector<std::pair<Labels, double>>;
int64_t AddGaugeCollector(const std::string& name, const std::string& help,
                          std::function<Samples()> collect);
void RemoveGaugeCollector(int64_t id);

// Every metric of the process, in the Prometheus text format, plus
// process_start_time_seconds (Unix time at which the process started, as
// Prometheus' client libraries export it).
std::string Render();

}  // namespace metrics
}  // namespace cairn

#endif  // CAIRN_OBSERVABILITY_METRICS_H_
