// Small helpers shared by the coordinator service's files (service.cc,
// commit.cc, lifecycle.cc, status_json.cc): one class, split by
// responsibility.
#ifndef CAIRN_COORDINATOR_INTERNAL_SERVICE_UTIL_H_
#define CAIRN_COORDINATOR_INTERNAL_SERVICE_UTIL_H_

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "observability/log.h"
#include "observability/metrics.h"

namespace cairn {
namespace internal {

// "job/step", for messages.
inline std::string Name(const std::string& job, int64_t step) { return absl::StrCat(job, "/", step); }

// The log columns of a checkpoint.
inline logging::Where At(const std::string& job, int64_t step) {
  logging::Where w;
  w.job = job;
  w.step = step;
  return w;
}

// cairn_job_last_commit_timestamp_seconds{job}: when the job's newest
// checkpoint was committed (what "no checkpoint for N hours" alerts read).
inline metrics::GaugeMetric& LastCommitGauge(const std::string& job) {
  return metrics::Gauge("cairn_job_last_commit_timestamp_seconds",
                        "When the job's newest checkpoint was committed (Unix time): alert when "
                        "it is too old.",
                        {{"job", job}});
}

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_COORDINATOR_INTERNAL_SERVICE_UTIL_H_
