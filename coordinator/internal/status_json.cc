// The status page's JSON: every job with counts, or one job's checkpoints.
#include "coordinator/internal/service.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "coordinator/internal/commit_state.h"
#include "coordinator/internal/service_util.h"
#include <nlohmann/json.hpp>

#include "observability/log.h"
#include "observability/metrics.h"
#include "proto/layout.h"
#include "storage/status_macros.h"

namespace cairn {
namespace internal {

using logging::Log;
using logging::Where;

// ----------------------------------------------------------------- status


absl::StatusOr<std::string> CoordinatorService::JobsJson() {
  ASSIGN_OR_RETURN(auto records, catalog_->ListCheckpoints(""));
  std::map<std::string, nlohmann::json> jobs;
  for (const auto& r : records) {
    auto& j = jobs[r.job()];
    if (j.is_null()) j = {{"job", r.job()}, {"committed", 0}, {"pending", 0}, {"aborted", 0},
                          {"bytes", 0}, {"newest_step", nullptr}};
    const std::string state = StateName(r.state());
    if (state == "committed") {
      j["committed"] = j["committed"].get<int>() + 1;
      j["bytes"] = j["bytes"].get<uint64_t>() + r.bytes();
      j["newest_step"] = r.step();
    } else if (state == "aborted" || state == "aborting") {
      j["aborted"] = j["aborted"].get<int>() + 1;
    } else {
      j["pending"] = j["pending"].get<int>() + 1;
    }
  }
  nlohmann::json out = {{"jobs", nlohmann::json::array()}};
  for (auto& [name, j] : jobs) out["jobs"].push_back(j);
  return out.dump();
}

absl::StatusOr<bool> CoordinatorService::JobExists(const std::string& job) {
  ASSIGN_OR_RETURN(auto records, catalog_->ListCheckpoints(job));
  if (!records.empty()) return true;
  auto record = catalog_->GetJob(job);
  if (record.ok()) return true;
  if (absl::IsNotFound(record.status())) return false;
  return record.status();
}

absl::StatusOr<std::string> CoordinatorService::JobJson(const std::string& job) {
  RETURN_IF_ERROR(ValidateJobName(job));
  ASSIGN_OR_RETURN(bool exists, JobExists(job));
  if (!exists) return absl::NotFoundError(absl::StrCat("no job named ", job));
  ASSIGN_OR_RETURN(auto kept_by, KeptBy(job, /*lock_job=*/true));
  ASSIGN_OR_RETURN(auto records, catalog_->ListCheckpoints(job));
  v1::RetentionPolicy policy;
  if (auto j = catalog_->GetJob(job); j.ok()) policy = j->policy();
  nlohmann::json out = {{"job", job}, {"policy", DescribePolicy(policy)},
                        {"checkpoints", nlohmann::json::array()}};
  for (const auto& r : records) {
    nlohmann::json c = {{"step", r.step()},
                        {"state", StateName(r.state())},
                        {"created_at", r.created_at_micros() / 1e6},
                        {"committed_at", r.committed_at_micros() / 1e6},
                        {"bytes", r.bytes()},
                        {"num_shards", r.num_shards()},
                        {"pinned", r.pinned()},
                        {"kept_by", kept_by[r.step()]},
                        {"abort_reason", r.abort_reason()},
                        {"metrics", nlohmann::json::object()}};
    for (const auto& [m, v] : r.metrics()) c["metrics"][m] = v;
    out["checkpoints"].push_back(std::move(c));
  }
  return out.dump();
}

}  // namespace internal
}  // namespace cairn
