// The status page's JSON (coordinator/internal/status_page.cc draws it).
//
// GET /api/jobs:
//   {"version": "0.9.0", "now": UNIX_SECONDS, "started_at": UNIX_SECONDS,
//    "uptime_seconds": S, "storage": URI,
//    "jobs": [{"job", "committed", "pending", "aborted", "bytes" (committed),
//              "newest_step" (committed; null if none),
//              "last_commit_at" (UNIX_SECONDS; null if none), "pinned",
//              "recent": [{"step", "state"}] (the newest kRecentSteps steps)}],
//    "writers": [{"id", "address", "live",
//                 "heartbeat_age_seconds" (null: never beat),
//                 "active_streams", "bytes_written" (as of its last beat),
//                 "assigned_shards" (given out by this coordinator)}]}
// GET /api/jobs/JOB:
//   {"job", "policy", "now",
//    "checkpoints": [{"step", "state", "created_at", "committed_at" (0 if not),
//                     "bytes", "num_shards", "shards_durable",
//                     "durable_shards": [INDEX...] (undecided steps only),
//                     "pinned", "kept_by": [RULE...], "abort_reason", "metrics"}]}
// Times are Unix seconds with microseconds, on the coordinator's clock, so a
// browser computes ages against "now" whatever its own clock says.
#include "coordinator/internal/service.h"

#include <algorithm>
#include <chrono>
#include <set>

#include "absl/strings/str_cat.h"
#include "coordinator/internal/commit_state.h"
#include "coordinator/internal/service_util.h"
#include <nlohmann/json.hpp>

#include "observability/log.h"
#include "observability/metrics.h"
#include "observability/version.h"
#include "proto/layout.h"
#include "storage/status_macros.h"

namespace cairn {
namespace internal {

using logging::Log;
using logging::Where;

namespace {

double WallSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// When this process started (static initialization), for the uptime.
const double kStartedAt = WallSeconds();

// How many of a job's newest steps the overview shows as a strip.
constexpr size_t kRecentSteps = 40;

}  // namespace

// ----------------------------------------------------------------- status

std::vector<std::pair<std::map<std::string, std::string>, double>>
CoordinatorService::WriterHeartbeatAges() {
  const int64_t now = clock_->NowMicros();
  std::vector<std::pair<std::map<std::string, std::string>, double>> out;
  for (const auto& w : writers_.Snapshot()) {
    if (w.last_heartbeat_micros == 0) continue;
    out.push_back({{{"writer", w.address}},
                   std::max<int64_t>(0, now - w.last_heartbeat_micros) / 1e6});
  }
  return out;
}

absl::StatusOr<std::string> CoordinatorService::JobsJson() {
  ASSIGN_OR_RETURN(auto tallies, TallyJobs(kRecentSteps));
  const int64_t now = clock_->NowMicros();
  nlohmann::json out = {{"version", CAIRN_VERSION},
                        {"now", now / 1e6},
                        {"started_at", kStartedAt},
                        {"uptime_seconds", std::max(0.0, WallSeconds() - kStartedAt)},
                        {"storage", storage_->uri()},
                        {"jobs", nlohmann::json::array()},
                        {"writers", nlohmann::json::array()}};
  for (const auto& [name, t] : tallies) {
    if (t.checkpoints == 0) continue;  // a policy only: nothing to show yet
    const v1::JobSummary& s = t.summary;
    nlohmann::json recent = nlohmann::json::array();
    for (const auto& [step, state] : t.recent) recent.push_back({{"step", step}, {"state", state}});
    out["jobs"].push_back(
        {{"job", name},
         {"committed", s.committed()},
         {"pending", s.pending()},
         {"aborted", s.aborted()},
         {"bytes", s.bytes()},
         {"newest_step", s.newest_step() >= 0 ? nlohmann::json(s.newest_step()) : nlohmann::json()},
         {"last_commit_at",
          t.last_commit_micros > 0 ? nlohmann::json(t.last_commit_micros / 1e6) : nlohmann::json()},
         {"pinned", t.pinned},
         {"recent", std::move(recent)}});
  }
  for (const auto& w : writers_.Snapshot()) {
    nlohmann::json age = nullptr;
    if (w.last_heartbeat_micros != 0) age = std::max<int64_t>(0, now - w.last_heartbeat_micros) / 1e6;
    out["writers"].push_back({{"id", w.id},
                              {"address", w.address},
                              {"live", w.live},
                              {"heartbeat_age_seconds", age},
                              {"active_streams", w.load.active_streams},
                              {"bytes_written", w.load.bytes_written},
                              {"assigned_shards", w.active_shards}});
  }
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
  nlohmann::json out = {{"job", job},
                        {"policy", DescribePolicy(policy)},
                        {"now", clock_->NowMicros() / 1e6},
                        {"checkpoints", nlohmann::json::array()}};
  for (const auto& r : records) {
    nlohmann::json c = {{"step", r.step()},
                        {"state", StateName(r.state())},
                        {"created_at", r.created_at_micros() / 1e6},
                        {"committed_at", r.committed_at_micros() / 1e6},
                        {"bytes", r.bytes()},
                        {"num_shards", r.num_shards()},
                        {"shards_durable", r.state() == v1::COMMITTED ? r.num_shards() : 0},
                        {"pinned", r.pinned()},
                        {"kept_by", kept_by[r.step()]},
                        {"abort_reason", r.abort_reason()},
                        {"metrics", nlohmann::json::object()}};
    for (const auto& [m, v] : r.metrics()) c["metrics"][m] = v;
    if (r.state() != v1::COMMITTED) {
      // A step in the works: which shards are durable (the catalog's record
      // has none; the live copy does).
      std::lock_guard<std::mutex> lock(mu_);
      auto it = live_.find({r.job(), r.step()});
      if (it != live_.end()) {
        nlohmann::json durable = nlohmann::json::array();
        uint64_t bytes = 0;
        for (const auto& shard : it->second.record.shards()) {
          if (!shard.durable()) continue;
          durable.push_back(shard.index());
          bytes += shard.bytes();
        }
        c["shards_durable"] = it->second.durable;
        c["durable_shards"] = std::move(durable);
        if (r.bytes() == 0) c["bytes"] = bytes;
      }
    }
    out["checkpoints"].push_back(std::move(c));
  }
  return out.dump();
}

}  // namespace internal
}  // namespace cairn
