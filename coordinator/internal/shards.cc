// The commit protocol's first half (commit_state.h has the state machine):
// BeginShard assigns a writer and an attempt to a shard, ShardDurable records
// a durable attempt; the report that completes a step hands it to the merge
// and decision in commit.cc, and retention runs after that returns.
#include "coordinator/internal/service.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coordinator/internal/commit_state.h"
#include "coordinator/internal/service_util.h"
#include "observability/log.h"
#include "observability/metrics.h"
#include "observability/sync_point.h"
#include "proto/layout.h"
#include "proto/rpc/auth.h"
#include "proto/rpc/rpc_util.h"
#include "storage/status_macros.h"

namespace cairn {
namespace internal {

using logging::Log;
using logging::Where;

namespace {

constexpr int kMaxShards = 100000;
// At most this many unreachable writers reported by one BeginShard.
constexpr int kMaxUnreachableReports = 64;

void CountError(const char* rpc, const absl::Status& s) {
  metrics::Counter("cairn_rpc_errors_total", "Failed coordinator calls by method and status code.",
                   {{"method", rpc}, {"code", absl::StatusCodeToString(s.code())}})
      .Add(1);
}

}  // namespace

// ----------------------------------------------------------------- saving

grpc::Status CoordinatorService::BeginShard(grpc::ServerContext*, const v1::BeginShardRequest* req,
                                            v1::BeginShardResponse* resp) {
  auto r = DoBeginShard(*req);
  if (!r.ok()) CountError("BeginShard", r.status());
  if (!r.ok()) return rpc::ToGrpc(r.status());
  *resp = std::move(r).value();
  return grpc::Status::OK;
}

absl::Status CoordinatorService::CheckStepMovesForward(const std::string& job, int64_t step) {
  ASSIGN_OR_RETURN(auto records, catalog_->ListCheckpoints(job));
  for (auto it = records.rbegin(); it != records.rend(); ++it) {
    if (it->state() != v1::COMMITTED) continue;
    if (it->step() > step) {
      return absl::FailedPreconditionError(absl::StrCat(
          "step ", step, " of job ", job, " is below its newest committed step ", it->step(),
          ": saves must move forward. To resume from an older step, first run `cairn rollback "
          "--job=", job, " --to=STEP`, which deletes the checkpoints above STEP"));
    }
    break;
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::BeginShardResponse> CoordinatorService::DoBeginShard(
    const v1::BeginShardRequest& req) {
  RETURN_IF_ERROR(ValidateJobName(req.job()));
  RETURN_IF_ERROR(ValidateStep(req.step()));
  if (req.num_shards() < 1 || req.num_shards() > kMaxShards) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard count ", req.num_shards(), " must be in [1, ", kMaxShards, "]"));
  }
  if (req.shard_index() < 0 || req.shard_index() >= req.num_shards()) {
    return absl::InvalidArgumentError(absl::StrCat("shard index ", req.shard_index(),
                                                   " is not in [0, ", req.num_shards(), ")"));
  }
  for (const auto& [name, value] : req.metrics()) {
    if (name.empty() || name.size() > 128) {
      return absl::InvalidArgumentError("metric names must be 1 to 128 characters");
    }
  }
  if (req.unreachable_writers_size() > kMaxUnreachableReports) {
    return absl::InvalidArgumentError("too many unreachable writers reported");
  }
  for (const std::string& address : req.unreachable_writers()) writers_.MarkUnreachable(address);
  const Key key{req.job(), req.step()};
  const std::string name = Name(req.job(), req.step());
  std::unique_lock<std::mutex> lock(mu_);
  auto it = live_.find(key);
  // A durable report of this shard being written: its attempt is replaced
  // only once that write has landed (the writes must not cross).
  writes_done_.wait(lock, [&] {
    it = live_.find(key);
    return it == live_.end() || it->second.writing.count(req.shard_index()) == 0;
  });
  // A step's first shard creates its record (without shards: only assigned
  // shards are written, each under its own key).
  std::optional<v1::CheckpointRecord> created;
  if (it == live_.end()) {
    auto existing = catalog_->GetCheckpoint(req.job(), req.step());
    if (!existing.ok() && !absl::IsNotFound(existing.status())) return existing.status();
    if (existing.ok() && existing->state() == v1::ABORTING) {
      return absl::UnavailableError(
          absl::StrCat("checkpoint ", name, " is being aborted; try again in a moment"));
    }
    if (existing.ok() && existing->state() != v1::ABORTED) {
      return absl::FailedPreconditionError(absl::StrCat(
          "checkpoint ", name, " is already ", StateName(existing->state()),
          "; steps cannot be overwritten"));
    }
    RETURN_IF_ERROR(CheckStepMovesForward(req.job(), req.step()));
    v1::CheckpointRecord record;
    record.set_job(req.job());
    record.set_step(req.step());
    record.set_state(v1::PENDING);
    record.set_num_shards(req.num_shards());
    record.set_created_at_micros(clock_->NowMicros());
    record.set_staging_dir(StagingDir(req.job(), req.step()));
    created = std::move(record);
  }
  const v1::CheckpointRecord& record = created ? *created : it->second.record;
#ifdef CAIRN_PLANTED_BUG
  // Testing only (cairn-coordinator-planted, for the model checker): the
  // defect this state machine exists to prevent, a retry during the merge
  // taken and acknowledged without re-merging.
  const bool planted_retry = record.state() == v1::MERGING;
#else
  constexpr bool planted_retry = false;
  if (record.state() == v1::MERGING) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint ", name, ": all its shards were durable and their merge has begun, so shard ",
        req.shard_index(), " can no longer be replaced (this retry was not saved)"));
  }
#endif
  if (record.state() != v1::PENDING && !planted_retry) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint ", name, " is ", StateName(record.state()), "; steps cannot be overwritten"));
  }
  if (record.num_shards() != req.num_shards()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint ", name, " was begun with ", record.num_shards(), " shards; shard ",
        req.shard_index(), " says ", req.num_shards()));
  }
  ASSIGN_OR_RETURN(WriterRegistry::Choice chosen, writers_.Assign());

  // Only this shard's record is copied and written, and the checkpoint's
  // record only when it is new or the metrics change it.
  v1::ShardRecord shard;
  if (created) {
    shard.set_index(req.shard_index());
  } else {
    shard = record.shards(req.shard_index());
  }
  const bool was_durable = shard.durable();
  const std::string released = !shard.token().empty() && !shard.durable() ? shard.writer_id() : "";
  if (!shard.token().empty()) {
    // A retry supersedes the earlier attempt, durable or not.
    shard.add_old_staging_prefixes(shard.staging_prefix());
  }
  shard.set_writer_id(chosen.id);
  shard.set_durable(false);
  shard.clear_files();
  shard.set_staging_prefix(absl::StrFormat("%s/shard-%05d-%s/part", record.staging_dir(),
                                           req.shard_index(), NewNonce()));
  auth::Attempt attempt{req.job(), req.step(), req.shard_index(), req.num_shards(),
                        shard.staging_prefix()};
  shard.set_token(auth::MintAttemptToken(attempt_key_, attempt));
  bool metrics_change = false;
  for (const auto& [m, v] : req.metrics()) {
    auto found = record.metrics().find(m);
    if (found == record.metrics().end() || found->second != v) metrics_change = true;
  }
  absl::Status written;
  if (created || metrics_change) {
    v1::CheckpointRecord header =
        created ? *created : CopyWithoutShards(&it->second.record);
    for (const auto& [m, v] : req.metrics()) (*header.mutable_metrics())[m] = v;
    written = catalog_->PutCheckpointAndShard(header, shard);
    if (written.ok() && created) {
      LiveCheckpoint live = MakeLive(std::move(header));
      it = live_.emplace(key, std::move(live)).first;
    } else if (written.ok()) {
      *it->second.record.mutable_metrics() = header.metrics();
    }
  } else {
    written = catalog_->PutShard(req.job(), req.step(), shard);
  }
  if (!written.ok()) {
    writers_.Release(chosen.id);
    return written;
  }
  if (!released.empty()) writers_.Release(released);
  LiveCheckpoint& live = it->second;
  if (was_durable) --live.durable;
  *live.record.mutable_shards(req.shard_index()) = shard;
  {
    Where where = At(req.job(), req.step());
    where.shard = req.shard_index();
    where.num_shards = req.num_shards();
    Log(where, absl::StrCat("shard assigned to writer ", chosen.id));
  }

  v1::BeginShardResponse resp;
  resp.set_writer_address(chosen.address);
  resp.set_token(shard.token());
  resp.set_staging_prefix(shard.staging_prefix());
  resp.set_writer_features(chosen.features);
  return resp;
}

grpc::Status CoordinatorService::ShardDurable(grpc::ServerContext*,
                                              const v1::ShardDurableRequest* req,
                                              v1::ShardDurableResponse* resp) {
  auto r = DoShardDurable(*req);
  if (!r.ok()) CountError("ShardDurable", r.status());
  if (!r.ok()) return rpc::ToGrpc(r.status());
  *resp = std::move(r).value();
  return grpc::Status::OK;
}

absl::StatusOr<v1::ShardDurableResponse> CoordinatorService::DoShardDurable(
    const v1::ShardDurableRequest& req) {
  const Key key{req.job(), req.step()};
  const std::string name = Name(req.job(), req.step());
  auto current_attempt = [&req](const v1::CheckpointRecord& r) {
    return req.shard_index() >= 0 && req.shard_index() < r.num_shards() &&
           r.shards(req.shard_index()).token() == req.token();
  };
  {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {  // again after waiting for writes in flight
      auto it = live_.find(key);
      if (it != live_.end() && it->second.record.state() != v1::PENDING &&
          current_attempt(it->second.record)) {
        // A repeated report of an attempt already in the merge or commit.
        v1::ShardDurableResponse resp;
        resp.set_committed(it->second.record.state() == v1::COMMITTING);
        resp.set_state(it->second.record.state());
        return resp;
      }
      if (it == live_.end()) {
        // A report repeated after a coordinator restart: the recovery may have
        // committed the checkpoint already, with this very attempt in it.
        auto done = catalog_->GetCheckpoint(req.job(), req.step());
        if (done.ok() && done->state() == v1::COMMITTED && req.shard_index() >= 0 &&
            req.shard_index() < done->num_shards()) {
          auto shard = catalog_->GetShard(req.job(), req.step(), req.shard_index());
          if (shard.ok() && shard->token() == req.token()) {
            v1::ShardDurableResponse resp;
            resp.set_committed(true);
            resp.set_state(v1::COMMITTED);
            return resp;
          }
        }
        return absl::FailedPreconditionError(
            absl::StrCat("checkpoint ", name, " is not pending (committed, aborted or unknown)"));
      }
      LiveCheckpoint& live = it->second;
      v1::CheckpointRecord& record = live.record;
      if (req.shard_index() < 0 || req.shard_index() >= record.num_shards()) {
        return absl::InvalidArgumentError(absl::StrCat("shard index ", req.shard_index(), " of ", name));
      }
      const v1::ShardRecord& current = record.shards(req.shard_index());
      if (current.token() != req.token()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "shard ", req.shard_index(), " of ", name, ": this attempt was superseded by a retry"));
      }
      if (record.state() != v1::PENDING) {
        return absl::FailedPreconditionError(
            absl::StrCat("checkpoint ", name, " is ", StateName(record.state())));
      }
      if (current.durable()) {
        v1::ShardDurableResponse resp;
        resp.set_state(record.state());
        return resp;
      }
      if (completing_.count(key)) {
        // Claimed by an abort (pending timeout, rollback) that has not yet
        // taken the record: this report must not start a merge under it.
        return absl::FailedPreconditionError(
            absl::StrCat("checkpoint ", name, " is being aborted"));
      }
      const int in_flight = static_cast<int>(live.writing.size());
      if (live.writing.count(req.shard_index()) > 0 ||
          (in_flight > 0 && live.durable + in_flight + 1 == record.num_shards())) {
        // The same report is being written (a duplicate), or this is the
        // last shard and the others' writes have not landed: wait, look again.
        writes_done_.wait(lock);
        continue;
      }
      v1::ShardRecord shard = current;
      shard.set_durable(true);
      *shard.mutable_files() = req.files();
      shard.set_bytes(req.bytes());
      shard.set_num_tensors(req.num_tensors());
      const std::string writer_id = current.writer_id();
      // The last durable shard starts the merge in the same synced write: from
      // here on no attempt of this checkpoint can change.
      const bool complete = live.durable + 1 == record.num_shards();
      if (complete) {
        v1::CheckpointRecord header = CopyWithoutShards(&record);
        RETURN_IF_ERROR(Transition(&header, v1::MERGING));
        RETURN_IF_ERROR(catalog_->PutCheckpointAndShard(header, shard));
        record.set_state(v1::MERGING);
        *record.mutable_shards(req.shard_index()) = std::move(shard);
        ++live.durable;
        writers_.Release(writer_id);
      } else {
        // Not the last: written without the lock, beside other reports.
        live.writing.insert(req.shard_index());
        lock.unlock();
        CAIRN_SYNC_POINT("shard_durable_writing");
        absl::Status written = catalog_->PutShard(req.job(), req.step(), shard);
        lock.lock();
        // Still live: nothing ends a step with writes in flight.
        LiveCheckpoint& after = live_.at(key);
        after.writing.erase(req.shard_index());
        if (written.ok()) {
          *after.record.mutable_shards(req.shard_index()) = std::move(shard);
          ++after.durable;
          writers_.Release(writer_id);
        }
        writes_done_.notify_all();
        RETURN_IF_ERROR(written);
        v1::ShardDurableResponse resp;
        resp.set_state(v1::PENDING);
        return resp;
      }
      break;
    }
    // This thread merges; the background loop, rollback and timeouts skip
    // it. (Free: checked above under the same lock.)
    completing_.insert(key);
  }
  CAIRN_SYNC_POINT("after_all_durable");
  absl::Status s = CompleteCheckpointClaimed(key);
  {
    std::lock_guard<std::mutex> lock(mu_);
    completing_.erase(key);
  }
  RETURN_IF_ERROR(s);
  RetainAfterCommit(key.first, key.second);
  v1::ShardDurableResponse resp;
  resp.set_committed(true);
  resp.set_state(v1::COMMITTED);
  return resp;
}

}  // namespace internal
}  // namespace cairn
