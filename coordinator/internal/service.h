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
#include "coordinator/internal/retention.h"
#include "proto/cairn.grpc.pb.h"
#include "storage/bundle_merge.h"
#include "storage/storage.h"

namespace cairn {
namespace internal {

class CoordinatorService final : public v1::Coordinator::Service {
 public:
  CoordinatorService(const CoordinatorOptions& options, std::unique_ptr<Catalog> catalog,
                     std::unique_ptr<Storage> storage, Clock* clock);
  ~CoordinatorService() override;

  // Loads the catalog and finishes or re-arms every unfinished checkpoint.
  // Called once before serving.
  absl::Status Recover();

  // For the status page: every job with counts, or one job's checkpoints
  // (all states, with the retention rules keeping each), as JSON text.
  absl::StatusOr<std::string> JobsJson();
  absl::StatusOr<std::string> JobJson(const std::string& job);
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

  // The job a live lease is on, if it exists (for authorization).
  std::optional<std::string> LeaseJob(const std::string& lease_id);

 private:
  using Key = std::pair<std::string, int64_t>;  // (job, step)

  struct Writer {
    std::string address;
    int64_t last_heartbeat_micros = 0;
    int active_shards = 0;
  };

  absl::StatusOr<v1::BeginShardResponse> DoBeginShard(const v1::BeginShardRequest& req);
  absl::StatusOr<v1::ShardDurableResponse> DoShardDurable(const v1::ShardDurableRequest& req);

  // Phase 1 (record PENDING, all shards durable): merge the parts in the
  // staging area, then decide (COMMITTING) and finish. Aborts the checkpoint
  // if the parts cannot be merged (e.g. two shards saved one tensor).
  absl::Status CompleteCheckpoint(const Key& key);
  absl::Status CompleteCheckpointLocked(const Key& key);
  // Phase 2 (record COMMITTING): publish, state file, COMMITTED. Idempotent.
  absl::Status FinishCommit(const Key& key);
  // Marks ABORTED, then removes every staged file of the checkpoint.
  absl::Status Abort(const Key& key, const std::string& why);

  // Retention for `job`: evaluates the policy over its committed
  // checkpoints and (unless dry_run) deletes what no rule keeps: marks them
  // DELETING (synced), rewrites the state file without them, deletes exactly
  // the files of their inventory, then drops their records.
  // REQUIRES: JobLock(job) held.
  absl::StatusOr<std::vector<Decision>> ApplyRetentionLocked(const std::string& job, bool dry_run,
                                                             int* deleted);
  // Deletes a DELETING checkpoint's files (idempotent) and then its record.
  absl::Status FinishDeletion(const v1::CheckpointRecord& record);
  bool Leased(const std::string& job, int64_t step);

  absl::StatusOr<std::vector<MergedFile>> Merge(const Key& key, const std::vector<std::string>& parts,
                                                const std::string& output);
  absl::Status WriteStateFile(const std::string& job);
  // Removes the staging area of a checkpoint (every attempt's files).
  void RemoveStaging(const v1::CheckpointRecord& record);
  void CrashPoint(const char* name);
  void BackgroundLoop();
  std::string NewToken() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<std::string> LiveWriterIds() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FillInfo(const v1::CheckpointRecord& r, v1::CheckpointInfo* info) const;
  std::mutex& JobLock(const std::string& job);

  const CoordinatorOptions options_;
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<Storage> storage_;
  Clock* clock_;

  std::mutex mu_;
  std::map<std::string, Writer> writers_ ABSL_GUARDED_BY(mu_);
  // Checkpoints not yet committed or aborted (PENDING / COMMITTING).
  std::map<Key, v1::CheckpointRecord> live_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<std::mutex>> job_locks_ ABSL_GUARDED_BY(mu_);
  // Checkpoints some thread is merging right now (CompleteCheckpoint).
  std::set<Key> completing_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::LeaseRecord> leases_ ABSL_GUARDED_BY(mu_);
  int next_writer_ ABSL_GUARDED_BY(mu_) = 0;

  std::mutex bg_mu_;
  std::condition_variable bg_cv_;
  bool bg_stop_ = false;
  std::thread bg_thread_;
};

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_COORDINATOR_INTERNAL_SERVICE_H_
