// A job's lifecycle after commit: retention (after each commit and on gc),
// pins, leases, deletion of committed checkpoints (two-phase, crash-safe)
// and rollback.
#include "coordinator/internal/service.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "coordinator/internal/commit_state.h"
#include "coordinator/internal/service_util.h"

#include "observability/log.h"
#include "observability/metrics.h"
#include "observability/sync_point.h"
#include "proto/rpc/rpc_util.h"
#include "proto/layout.h"
#include "storage/status_macros.h"

namespace cairn {
namespace internal {

using logging::Log;
using logging::Where;

void CoordinatorService::RetainAfterCommit(const std::string& job, int64_t step) {
  // Its failure does not undo the commit; the next commit or gc retries.
  JobLocks::Guard job_lock = job_locks_.Lock(job);
  int deleted = 0;
  auto retained = ApplyRetentionLocked(job, /*dry_run=*/false, &deleted, /*protect_step=*/step);
  if (!retained.ok()) Log(At(job, -1), absl::StrCat("retention: ", retained.status().message()));
}

bool CoordinatorService::Leased(const std::string& job, int64_t step) {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = clock_->NowMicros();
  for (const auto& [id, l] : leases_) {
    if (l.job() == job && l.step() == step && l.expires_at_micros() > now) return true;
  }
  return false;
}

absl::StatusOr<std::vector<Decision>> CoordinatorService::ApplyRetentionLocked(
    const std::string& job, bool dry_run, int* deleted, int64_t protect_step) {
  *deleted = 0;
  v1::RetentionPolicy policy;
  int64_t first_commit = 0;
  auto job_record = catalog_->GetJob(job);
  if (job_record.ok()) {
    policy = job_record->policy();
    first_commit = job_record->first_commit_micros();
  } else if (!absl::IsNotFound(job_record.status())) {
    return job_record.status();
  }
  ASSIGN_OR_RETURN(auto records, catalog_->ListCheckpoints(job));
  std::map<int64_t, v1::CheckpointRecord> committed;
  std::vector<RetentionCandidate> candidates;
  for (auto& r : records) {
    if (r.state() != v1::COMMITTED) continue;  // pending/aborted never count
    RetentionCandidate c;
    c.step = r.step();
    c.committed_at_micros = r.committed_at_micros();
    c.metrics.insert(r.metrics().begin(), r.metrics().end());
    c.pinned = r.pinned();
    c.leased = Leased(job, r.step());
    candidates.push_back(std::move(c));
    committed.emplace(r.step(), std::move(r));
  }
  std::vector<Decision> decisions = EvaluateRetention(policy, std::move(candidates), first_commit);
  if (dry_run) return decisions;
  std::vector<std::pair<v1::CheckpointRecord, std::string>> doomed;
  for (const Decision& d : decisions) {
    if (d.keep) continue;
    if (d.step == protect_step) {
      // Reported committed by the call that runs this: never removed by it.
      Log(At(job, d.step), absl::StrCat("retention: kept until the next pass (just committed): ",
                                        d.reason));
      continue;
    }
    doomed.emplace_back(committed.at(d.step), absl::StrCat("retention: ", d.reason));
  }
  const int n = static_cast<int>(doomed.size());
  RETURN_IF_ERROR(DeleteCommitted(job, std::move(doomed), /*by_retention=*/true));
  *deleted = n;
  return decisions;
}

absl::Status CoordinatorService::DeleteCommitted(
    const std::string& job, std::vector<std::pair<v1::CheckpointRecord, std::string>> doomed,
    bool by_retention) {
  if (doomed.empty()) return absl::OkStatus();
  for (auto& [r, why] : doomed) {
    RETURN_IF_ERROR(Transition(&r, v1::DELETING));
    RETURN_IF_ERROR(catalog_->PutCheckpoint(r));
    Log(At(job, r.step()), absl::StrCat("deleting: ", why));
  }
  CAIRN_SYNC_POINT("after_mark_deleting");
  // The state file stops naming them before any of their files go.
  RETURN_IF_ERROR(WriteStateFile(job));
  for (const auto& [r, why] : doomed) {
    RETURN_IF_ERROR(FinishDeletion(r));
    if (by_retention) {
      metrics::Counter("cairn_retention_deletions_total", "Checkpoints deleted by retention.").Add(1);
    }
  }
  return absl::OkStatus();
}

absl::Status CoordinatorService::FinishDeletion(const v1::CheckpointRecord& record) {
  // Exactly the files of the inventory: never a directory listing, so files
  // Cairn did not write survive (and keep the directory).
  if (trash_ != nullptr) {
    std::vector<std::string> paths;
    for (const auto& f : record.files()) paths.push_back(f.path());
    RETURN_IF_ERROR(trash_->Discard(paths));
    CAIRN_SYNC_POINT("mid_delete");
  } else {
    bool first = true;
    for (const auto& f : record.files()) {
      RETURN_IF_ERROR(storage_->Delete(f.path()));
      if (first) CAIRN_SYNC_POINT("mid_delete");
      first = false;
    }
  }
  storage_->RemoveDirIfEmpty(CheckpointDir(record.job(), record.step())).IgnoreError();
  return catalog_->DeleteCheckpoint(record.job(), record.step());
}

// ----------------------------------------------------------------- retention

grpc::Status CoordinatorService::SetPolicy(grpc::ServerContext*, const v1::SetPolicyRequest* req,
                                           v1::SetPolicyResponse*) {
  absl::Status s = ValidateJobName(req->job());
  if (s.ok()) s = ValidatePolicy(req->policy());
  if (!s.ok()) return rpc::ToGrpc(s);
  JobLocks::Guard job_lock = job_locks_.Lock(req->job());
  auto job = catalog_->GetJob(req->job());
  if (!job.ok() && !absl::IsNotFound(job.status())) return rpc::ToGrpc(job.status());
  v1::JobRecord record = job.ok() ? *job : v1::JobRecord();
  record.set_job(req->job());
  *record.mutable_policy() = req->policy();
  if (s = catalog_->PutJob(record); !s.ok()) return rpc::ToGrpc(s);
  Log(At(req->job(), -1), absl::StrCat("retention policy ", DescribePolicy(req->policy())));
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::GetPolicy(grpc::ServerContext*, const v1::GetPolicyRequest* req,
                                           v1::GetPolicyResponse* resp) {
  if (absl::Status s = ValidateJobName(req->job()); !s.ok()) return rpc::ToGrpc(s);
  auto job = catalog_->GetJob(req->job());
  if (job.ok()) *resp->mutable_policy() = job->policy();
  if (!job.ok() && !absl::IsNotFound(job.status())) return rpc::ToGrpc(job.status());
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::Pin(grpc::ServerContext*, const v1::PinRequest* req,
                                     v1::PinResponse*) {
  if (absl::Status s = ValidateJobName(req->job()); !s.ok()) return rpc::ToGrpc(s);
  JobLocks::Guard job_lock = job_locks_.Lock(req->job());
  auto record = catalog_->GetCheckpoint(req->job(), req->step());
  if (!record.ok() || record->state() != v1::COMMITTED) {
    return rpc::ToGrpc(absl::NotFoundError(absl::StrCat(
        "job ", req->job(), " has no committed checkpoint at step ", req->step())));
  }
  record->set_pinned(req->pinned());
  if (absl::Status s = catalog_->PutCheckpoint(*record); !s.ok()) return rpc::ToGrpc(s);
  Log(At(req->job(), req->step()), req->pinned() ? "pinned" : "unpinned");
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::Gc(grpc::ServerContext*, const v1::GcRequest* req,
                                    v1::GcResponse* resp) {
  if (absl::Status s = ValidateJobName(req->job()); !s.ok()) return rpc::ToGrpc(s);
  JobLocks::Guard job_lock = job_locks_.Lock(req->job());
  int deleted = 0;
  auto decisions = ApplyRetentionLocked(req->job(), req->dry_run(), &deleted);
  if (!decisions.ok()) return rpc::ToGrpc(decisions.status());
  for (const Decision& d : *decisions) {
    auto* out = resp->add_decisions();
    out->set_step(d.step);
    out->set_keep(d.keep);
    for (const std::string& k : d.kept_by) out->add_kept_by(k);
    out->set_reason(d.reason);
  }
  resp->set_deleted(deleted);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::AcquireLease(grpc::ServerContext*,
                                              const v1::AcquireLeaseRequest* req,
                                              v1::AcquireLeaseResponse* resp) {
  if (absl::Status s = ValidateJobName(req->job()); !s.ok()) return rpc::ToGrpc(s);
  constexpr int64_t kMaxTtlMs = 24LL * 3600 * 1000;
  if (req->ttl_ms() <= 0 || req->ttl_ms() > kMaxTtlMs) {
    return rpc::ToGrpc(absl::InvalidArgumentError("lease ttl must be in (0, 24 h]"));
  }
  // Under the job lock: retention either saw this lease or already marked
  // the checkpoint DELETING, in which case it is not found here.
  JobLocks::Guard job_lock = job_locks_.Lock(req->job());
  auto record = catalog_->GetCheckpoint(req->job(), req->step());
  if (!record.ok() || record->state() != v1::COMMITTED) {
    return rpc::ToGrpc(absl::NotFoundError(absl::StrCat(
        "job ", req->job(), " has no committed checkpoint at step ", req->step())));
  }
  v1::LeaseRecord lease;
  {
    std::lock_guard<std::mutex> lock(mu_);
    lease.set_lease_id(absl::StrCat("l-", NewNonce(), NewNonce(), NewNonce()));
  }
  lease.set_job(req->job());
  lease.set_step(req->step());
  lease.set_expires_at_micros(clock_->NowMicros() + req->ttl_ms() * 1000);
  if (absl::Status s = catalog_->PutLease(lease); !s.ok()) return rpc::ToGrpc(s);
  {
    std::lock_guard<std::mutex> lock(mu_);
    leases_[lease.lease_id()] = lease;
  }
  Log(At(req->job(), req->step()), absl::StrCat("lease ", lease.lease_id(), " for ", req->ttl_ms(), " ms"));
  resp->set_lease_id(lease.lease_id());
  resp->set_expires_at_micros(lease.expires_at_micros());
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::ReleaseLease(grpc::ServerContext*,
                                              const v1::ReleaseLeaseRequest* req,
                                              v1::ReleaseLeaseResponse*) {
  Where where;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = leases_.find(req->lease_id());
    if (it == leases_.end()) {
      return rpc::ToGrpc(absl::NotFoundError(absl::StrCat("no lease ", req->lease_id())));
    }
    where = At(it->second.job(), it->second.step());
    leases_.erase(it);
  }
  if (absl::Status s = catalog_->DeleteLease(req->lease_id()); !s.ok()) return rpc::ToGrpc(s);
  Log(where, absl::StrCat("lease ", req->lease_id(), " released"));
  return grpc::Status::OK;
}

std::optional<std::string> CoordinatorService::LeaseJob(const std::string& lease_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return std::nullopt;
  return it->second.job();
}

// ----------------------------------------------------------------- rollback

grpc::Status CoordinatorService::Rollback(grpc::ServerContext*, const v1::RollbackRequest* req,
                                          v1::RollbackResponse* resp) {
  auto r = DoRollback(*req);
  if (!r.ok()) return rpc::ToGrpc(r.status());
  *resp = std::move(r).value();
  return grpc::Status::OK;
}

absl::StatusOr<v1::RollbackResponse> CoordinatorService::DoRollback(const v1::RollbackRequest& req) {
  RETURN_IF_ERROR(ValidateJobName(req.job()));
  RETURN_IF_ERROR(ValidateStep(req.to_step()));
  const std::string& job = req.job();
  JobLocks::Guard job_lock = job_locks_.Lock(job);
  ASSIGN_OR_RETURN(auto records, catalog_->ListCheckpoints(job));
  bool target = false;
  std::vector<v1::CheckpointRecord> above;
  std::vector<std::string> blocked;
  for (auto& r : records) {
    if (r.step() == req.to_step() && r.state() == v1::COMMITTED) target = true;
    if (r.step() <= req.to_step() || r.state() != v1::COMMITTED) continue;
    if (r.pinned()) blocked.push_back(absl::StrCat("step ", r.step(), " is pinned"));
    if (Leased(job, r.step())) blocked.push_back(absl::StrCat("step ", r.step(), " is leased"));
    above.push_back(std::move(r));
  }
  if (!target) {
    return absl::NotFoundError(absl::StrCat("cannot roll back job ", job, " to step ",
                                            req.to_step(), ": it has no committed checkpoint there"));
  }
  if (!blocked.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot roll back job ", job, " to step ", req.to_step(), ": ", absl::StrJoin(blocked, ", "),
        " (unpin them, or wait for the restores holding leases to finish)"));
  }
  // Every pending step above is claimed (no merge may start on it) before
  // anything is changed, or nothing is: a step whose merge or commit is
  // under way makes the rollback wait for it.
  std::vector<Key> undecided;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, live] : live_) {
      if (key.first != job || key.second <= req.to_step()) continue;
      if (!Undecided(live.record.state()) || completing_.count(key)) {
        return absl::UnavailableError(absl::StrCat(
            "cannot roll back job ", job, " now: step ", key.second,
            " is being committed; try again once it is"));
      }
      undecided.push_back(key);
    }
    if (!req.dry_run()) {
      for (const Key& key : undecided) completing_.insert(key);
    }
  }
  v1::RollbackResponse resp;
  for (const auto& r : above) resp.add_deleted_steps(r.step());
  for (const Key& key : undecided) resp.add_aborted_steps(key.second);
  if (req.dry_run()) return resp;
  absl::Status aborted = absl::OkStatus();
  for (const Key& key : undecided) {
    if (aborted.ok()) aborted = Abort(key, absl::StrCat("rolled back to step ", req.to_step()), "rollback");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Key& key : undecided) completing_.erase(key);
  }
  RETURN_IF_ERROR(aborted);
  std::vector<std::pair<v1::CheckpointRecord, std::string>> doomed;
  for (auto& r : above) {
    doomed.emplace_back(std::move(r), absl::StrCat("rollback to step ", req.to_step()));
  }
  RETURN_IF_ERROR(DeleteCommitted(job, std::move(doomed), /*by_retention=*/false));
  // The state file names `to_step` as the newest even when nothing was above.
  RETURN_IF_ERROR(WriteStateFile(job));
  Log(At(job, req.to_step()), absl::StrCat("rolled back: ", resp.deleted_steps_size(),
                                            " checkpoints deleted, ", resp.aborted_steps_size(),
                                            " pending aborted"));
  return resp;
}

// ----------------------------------------------------------------- delete

grpc::Status CoordinatorService::Delete(grpc::ServerContext*, const v1::DeleteRequest* req,
                                        v1::DeleteResponse*) {
  return rpc::ToGrpc(DoDelete(*req));
}

absl::Status CoordinatorService::DoDelete(const v1::DeleteRequest& req) {
  RETURN_IF_ERROR(ValidateJobName(req.job()));
  RETURN_IF_ERROR(ValidateStep(req.step()));
  const std::string& job = req.job();
  JobLocks::Guard job_lock = job_locks_.Lock(job);
  ASSIGN_OR_RETURN(auto records, catalog_->ListCheckpoints(job));
  std::optional<v1::CheckpointRecord> target;
  int64_t newest = -1;
  for (auto& r : records) {
    if (r.state() == v1::COMMITTED) newest = std::max(newest, r.step());
    if (r.step() != req.step()) continue;
    if (r.state() != v1::COMMITTED) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot delete step ", req.step(), " of job ", job, ": it is ", StateName(r.state()),
          ", not committed", Undecided(r.state()) ? " (it will commit or abort on its own)" : ""));
    }
    target = std::move(r);
  }
  if (!target) {
    return absl::NotFoundError(
        absl::StrCat("job ", job, " has no committed checkpoint at step ", req.step()));
  }
  if (!req.force()) {
    std::vector<std::string> why;
    if (target->step() == newest) why.push_back("it is the job's newest");
    if (target->pinned()) why.push_back("it is pinned");
    if (Leased(job, target->step())) why.push_back("a restore holds a lease on it");
    if (!why.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "refusing to delete step ", req.step(), " of job ", job, ": ", absl::StrJoin(why, ", "),
          " (--force deletes it anyway)"));
    }
  }
  std::vector<std::pair<v1::CheckpointRecord, std::string>> doomed;
  doomed.emplace_back(std::move(*target), req.force() ? "deleted on request (forced)"
                                                      : "deleted on request");
  RETURN_IF_ERROR(DeleteCommitted(job, std::move(doomed), /*by_retention=*/false));
  return absl::OkStatus();
}

// ----------------------------------------------------------------- jobs

absl::StatusOr<std::map<std::string, CoordinatorService::JobTally>> CoordinatorService::TallyJobs(
    size_t recent_steps) {
  ASSIGN_OR_RETURN(auto records, catalog_->ListCheckpoints(""));
  std::map<std::string, JobTally> jobs;
  auto tally = [&](const std::string& job) -> JobTally& {
    JobTally& t = jobs[job];
    if (t.summary.job().empty()) {
      t.summary.set_job(job);
      t.summary.set_newest_step(-1);
    }
    return t;
  };
  for (const auto& r : records) {  // ascending by (job, step)
    JobTally& t = tally(r.job());
    v1::JobSummary& j = t.summary;
    ++t.checkpoints;
    if (recent_steps > 0) {
      t.recent.emplace_back(r.step(), StateName(r.state()));
      if (t.recent.size() > recent_steps) t.recent.erase(t.recent.begin());
    }
    switch (r.state()) {
      case v1::COMMITTED:
        j.set_committed(j.committed() + 1);
        j.set_bytes(j.bytes() + r.bytes());
        j.set_newest_step(r.step());
        j.set_newest_committed_at_micros(r.committed_at_micros());
        t.last_commit_micros = std::max(t.last_commit_micros, r.committed_at_micros());
        if (r.pinned()) ++t.pinned;
        break;
      case v1::ABORTED:
      case v1::ABORTING:
        j.set_aborted(j.aborted() + 1);
        break;
      case v1::DELETING:
        break;
      default:  // pending, merging, committing: not decided as seen from outside
        j.set_pending(j.pending() + 1);
    }
  }
  // Jobs with a policy but no checkpoint yet are jobs too.
  ASSIGN_OR_RETURN(auto job_records, catalog_->ListJobs());
  for (const v1::JobRecord& j : job_records) tally(j.job());
  return jobs;
}

grpc::Status CoordinatorService::ListJobs(grpc::ServerContext*, const v1::ListJobsRequest*,
                                          v1::ListJobsResponse* resp) {
  auto jobs = TallyJobs(/*recent_steps=*/0);
  if (!jobs.ok()) return rpc::ToGrpc(jobs.status());
  for (auto& [name, t] : *jobs) *resp->add_jobs() = std::move(t.summary);
  return grpc::Status::OK;
}

}  // namespace internal
}  // namespace cairn
