// The Prometheus text rendering of metrics.
#include "observability/metrics.h"

#include <cmath>
#include <limits>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace cairn {
namespace metrics {
namespace {

// Numbers were printed with %.17g, so bucket bounds read
// le="0.0040000000000000001" and a query for le="0.004" matched nothing.
// They are printed as Prometheus prints them: the shortest form that reads
// back as the same double.
TEST(MetricsRenderTest, NumbersAreTheShortestThatReadBackExactly) {
  auto& h = LatencyHistogram("test_render_seconds", "A test histogram.");
  h.Observe(0.003);
  h.Observe(0.1);
  Counter("test_render_total", "A test counter.").Add(3);
  Gauge("test_render_ratio", "A test gauge.").Set(0.1 + 0.2);
  Gauge("test_render_inf", "A test gauge.").Set(std::numeric_limits<double>::infinity());
  const std::string text = Render();
  EXPECT_TRUE(absl::StrContains(text, "test_render_seconds_bucket{le=\"0.001\"} 0\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "test_render_seconds_bucket{le=\"0.004\"} 1\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "test_render_seconds_bucket{le=\"0.256\"} 2\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "test_render_seconds_bucket{le=\"+Inf\"} 2\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "test_render_seconds_sum 0.10300000000000001\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "test_render_total 3\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "test_render_ratio 0.30000000000000004\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "test_render_inf +Inf\n")) << text;
  EXPECT_FALSE(absl::StrContains(text, "0000000001\"")) << text;
}

// Ages (a writer's heartbeat age) are computed when scraped, from the
// collector's state at that moment; a removed collector's samples go away.
TEST(MetricsRenderTest, GaugeCollectorsRunAtScrapeTime) {
  double age = 1.5;
  const int64_t id = AddGaugeCollector("test_collected_age_seconds", "A test age.", [&age] {
    return Samples{{{{"writer", "w1"}}, age}, {{{"writer", "w0"}}, 2 * age}};
  });
  std::string text = Render();
  EXPECT_TRUE(absl::StrContains(text, "# TYPE test_collected_age_seconds gauge\n"
                                      "test_collected_age_seconds{writer=\"w0\"} 3\n"
                                      "test_collected_age_seconds{writer=\"w1\"} 1.5\n"))
      << text;
  age = 4;
  text = Render();
  EXPECT_TRUE(absl::StrContains(text, "test_collected_age_seconds{writer=\"w1\"} 4\n")) << text;
  RemoveGaugeCollector(id);
  text = Render();
  EXPECT_FALSE(absl::StrContains(text, "test_collected_age_seconds{")) << text;
  EXPECT_TRUE(absl::StrContains(text, "\nprocess_start_time_seconds 1")) << text;
}

}  // namespace
}  // namespace metrics
}  // namespace cairn
