// The Coordinator gRPC service: state, commit protocol, recovery, timeouts.
#ifndef CAIRN_COORDINATOR_INTERNAL_SERVICE_H_
#define CAIRN_COORDINATOR_INTERNAL_SERVICE_H_

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "coordinator/coordinator.h"
#include "coordinator/internal/catalog.h"
#include "coordinator/internal/job_locks.h"
#include "coordinator/internal/retention.h"
#include "coordinator/internal/trash.h"
#include "coordinator/internal/writer_registry.h"
#include "proto/cairn.grpc.pb.h"
#include "storage/bundle/bundle_merge.h"
#include "storage/storage.h"

namespace cairn {
namespace internal {

class CoordinatorService final : public v1::Coordinator::Service {
 public:
  CoordinatorService(const CoordinatorOptions& options, std::unique_ptr<Catalog> catalog,
                     std::unique_ptr<Storage> storage, Clock* clock);
  ~CoordinatorService() override;

  // Claims the storage root for this catalog (FailedPrecondition if it
  // belongs to another one), loads the catalog and finishes or re-arms
  // every unfinished checkpoint. Called once before serving.
  absl::Status Recover();

  // For the status page (status_json.cc documents the fields): the overview
  // (every job with counts and its newest commit, the writers, version and
  // uptime), or one job's checkpoints (all states, with the retention rules
  // keeping each, pending shard progress and abort reasons), as JSON text.
  absl::StatusOr<std::string> JobsJson();
  absl::StatusOr<std::string> JobJson(const std::string& job);
  // For /metrics, computed when scraped: seconds since each writer's last
  // heartbeat, labelled writer=ADDRESS (writers that never beat: none).
  std::vector<std::pair<std::map<std::string, std::string>, double>> WriterHeartbeatAges();
  // Starts / stops the thread that aborts timed-out checkpoints and retries
  // unfinished commits.
  void StartBackground();
  void StopBackground();

  grpc::Status RegisterWriter(grpc::ServerContext*, const v1::RegisterWriterRequest*,
                              v1::RegisterWriterResponse*) override;
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest*,
                         v1::HeartbeatResponse*) override;
  grpc::Status BeginShard(grpc::ServerContext*, const v1::BeginShardRequest*,
                          v1::BeginShardResponse*) override;
  grpc::Status ShardDurable(grpc::ServerContext*, const v1::ShardDurableRequest*,
                            v1::ShardDurableResponse*) override;
  grpc::Status List(grpc::ServerContext*, const v1::ListRequest*, v1::ListResponse*) override;
  grpc::Status Get(grpc::ServerContext*, const v1::GetRequest*, v1::GetResponse*) override;
  grpc::Status ListWriters(grpc::ServerContext*, const v1::ListWritersRequest*,
                           v1::ListWritersResponse*) override;
  grpc::Status SetPolicy(grpc::ServerContext*, const v1::SetPolicyRequest*,
                         v1::SetPolicyResponse*) override;
  grpc::Status GetPolicy(grpc::ServerContext*, const v1::GetPolicyRequest*,
                         v1::GetPolicyResponse*) override;
  grpc::Status Pin(grpc::ServerContext*, const v1::PinRequest*, v1::PinResponse*) override;
  grpc::Status Gc(grpc::ServerContext*, const v1::GcRequest*, v1::GcResponse*) override;
  grpc::Status AcquireLease(grpc::ServerContext*, const v1::AcquireLeaseRequest*,
                            v1::AcquireLeaseResponse*) override;
  grpc::Status ReleaseLease(grpc::ServerContext*, const v1::ReleaseLeaseRequest*,
                            v1::ReleaseLeaseResponse*) override;
  grpc::Status Rollback(grpc::ServerContext*, const v1::RollbackRequest*,
                        v1::RollbackResponse*) override;
  grpc::Status Delete(grpc::ServerContext*, const v1::DeleteRequest*,
                      v1::DeleteResponse*) override;
  grpc::Status ListJobs(grpc::ServerContext*, const v1::ListJobsRequest*,
                        v1::ListJobsResponse*) override;

  // Whether `job` has any record (checkpoint or job record).
  absl::StatusOr<bool> JobExists(const std::string& job);
  // Jobs with a per-job lock allocated right now (for tests).
  size_t job_locks_in_use() { return job_locks_.size(); }

  // The job a live lease is on, if it exists (for authorization).
  std::optional<std::string> LeaseJob(const std::string& lease_id);

 private:
  using Key = std::pair<std::string, int64_t>;  // (job, step)

  absl::Status ClaimStorageRoot();
  absl::StatusOr<v1::BeginShardResponse> DoBeginShard(const v1::BeginShardRequest& req);
  absl::StatusOr<v1::ShardDurableResponse> DoShardDurable(const v1::ShardDurableRequest& req);
  absl::StatusOr<v1::RollbackResponse> DoRollback(const v1::RollbackRequest& req);

  // A job as the catalog has it, for `cairn jobs` (ListJobs) and the status
  // page (JobsJson).
  struct JobTally {
    v1::JobSummary summary;       // counts, bytes, the newest committed step
    int64_t checkpoints = 0;      // records in any state
    int64_t last_commit_micros = 0;  // the latest commit time (0: none)
    int pinned = 0;
    // The newest `recent_steps` steps, ascending: (step, state name).
    std::vector<std::pair<int64_t, std::string>> recent;
  };
  // Every job with a checkpoint record or a job record (a policy), by name.
  absl::StatusOr<std::map<std::string, JobTally>> TallyJobs(size_t recent_steps);
  absl::Status DoDelete(const v1::DeleteRequest& req);
  // FailedPrecondition if `step` is below the newest committed step of
  // `job` (saves move forward; a rollback makes room for older steps).
  absl::Status CheckStepMovesForward(const std::string& job, int64_t step);

  // MERGING → merge the parts in the staging area → COMMITTING → finish.
  // Aborts the checkpoint if its parts can never be merged (two shards
  // saved one tensor, a staged part is gone, no tensors at all). Returns
  // OK once committed; the step then needs RetainAfterCommit.
  absl::Status CompleteCheckpoint(const Key& key);
  // REQUIRES: `key` claimed in completing_ by this thread.
  absl::Status CompleteCheckpointClaimed(const Key& key);
  // After a merge said NotFound: whether every part's data file (at the
  // part, or moved into `merged_prefix`) and index (or the merged index)
  // still exist, i.e. nothing was lost and another merge moved them.
  absl::StatusOr<bool> PartsStillWhole(const v1::CheckpointRecord& record,
                                       const std::string& merged_prefix);
  // COMMITTING → publish, state file → COMMITTED. Idempotent.
  absl::Status FinishCommit(const Key& key);
  // Applies retention after `step` committed; never deletes that step.
  void RetainAfterCommit(const std::string& job, int64_t step);
  // PENDING/MERGING → ABORTING (synced, with the reason) → staged files
  // removed → ABORTED. OK if the checkpoint is no longer undecided.
  // `kind` labels cairn_aborts_total: "timeout", "rollback" or "refused".
  absl::Status Abort(const Key& key, const std::string& why, const char* kind);
  // Aborts a checkpoint that can never commit; returns the refusal for the
  // caller: FailedPrecondition "WHY; it was aborted".
  absl::Status AbortRefused(const Key& key, const std::string& why);
  // ABORTING → remove staging → ABORTED. Idempotent.
  absl::Status FinishAbort(v1::CheckpointRecord record);

  // Retention for `job`: evaluates the policy over its committed
  // checkpoints and (unless dry_run) deletes what no rule keeps, except
  // `protect_step` (the step whose commit called it).
  // REQUIRES: the job's lock held, unless dry_run: a dry run only reads the
  // catalog (and the leases, under mu_), reporting it as of the call.
  absl::StatusOr<std::vector<Decision>> ApplyRetentionLocked(const std::string& job, bool dry_run,
                                                             int* deleted,
                                                             int64_t protect_step = -1);
  // The retention rules keeping each committed checkpoint of `job` (a dry
  // run of its policy): what List and Get report as kept_by. List takes
  // the job's lock for it (lock_job); Get does not, so it never waits for
  // a commit in progress (every restore begins with a Get).
  absl::StatusOr<std::map<int64_t, std::vector<std::string>>> KeptBy(const std::string& job,
                                                                     bool lock_job);
  // Deletes committed checkpoints: marks each DELETING (synced), rewrites
  // the state file without them, deletes exactly their inventory files,
  // then drops their records. REQUIRES: the job's lock held.
  absl::Status DeleteCommitted(const std::string& job,
                               std::vector<std::pair<v1::CheckpointRecord, std::string>> doomed,
                               bool by_retention);
  // Deletes a DELETING checkpoint's files (idempotent) and then its record.
  absl::Status FinishDeletion(const v1::CheckpointRecord& record);
  bool Leased(const std::string& job, int64_t step);

  absl::StatusOr<std::vector<MergedFile>> Merge(const Key& key, const std::vector<std::string>& parts,
                                                const std::string& output);
  // Rewrites JOB/checkpoint from the catalog's COMMITTED records, plus
  // `committing` (a commit about to be recorded) if given.
  absl::Status WriteStateFile(const std::string& job,
                              const v1::CheckpointRecord* committing = nullptr);
  // Deletes what an interrupted WriteStateFile left behind in JOB/.
  absl::Status SweepInterruptedStateFile(const std::string& job);
  // Removes the staging area of a checkpoint (every attempt's files).
  void RemoveStaging(const v1::CheckpointRecord& record);
  void BackgroundLoop();
  std::string NewNonce() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FillInfo(const v1::CheckpointRecord& r, v1::CheckpointInfo* info);

  const CoordinatorOptions options_;
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<Storage> storage_;
  // A local root's deleted files are unlinked off the caller's path; null
  // for object stores. (Declared after storage_: stopped before it goes.)
  std::unique_ptr<Trash> trash_;
  Clock* clock_;
  WriterRegistry writers_;
  JobLocks job_locks_;
  // Key of attempt tokens (catalog meta "attempt_key"); set by Recover.
  std::string attempt_key_;

  // A checkpoint not yet decided or not yet finished (PENDING, MERGING,
  // COMMITTING), with all its shards, and how many are durable (so a shard
  // report costs the same whatever the step's size).
  struct LiveCheckpoint {
    v1::CheckpointRecord record;
    int durable = 0;
    // Shards whose durable report is being written to the catalog without
    // mu_ held: reports of one step are written concurrently, so the store
    // syncs many in one batch (RocksDB's group commit, etcd's batched Raft
    // proposals). A step with writes in flight is not completed, aborted or
    // given a retry of one of these shards until they land (writes_done_).
    std::set<int> writing;
  };
  static LiveCheckpoint MakeLive(v1::CheckpointRecord record);

  std::mutex mu_;
  std::map<Key, LiveCheckpoint> live_ ABSL_GUARDED_BY(mu_);
  // Notified (with mu_) whenever a write of LiveCheckpoint::writing lands.
  std::condition_variable writes_done_;
  // MERGING checkpoints some thread is merging right now.
  std::set<Key> completing_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::LeaseRecord> leases_ ABSL_GUARDED_BY(mu_);

  std::mutex bg_mu_;
  std::condition_variable bg_cv_;
  bool bg_stop_ = false;
  std::thread bg_thread_;
};

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_COORDINATOR_INTERNAL_SERVICE_H_
