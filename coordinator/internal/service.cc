#include "coordinator/internal/service.h"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "coordinator/internal/commit_state.h"
#include "storage/checkpoint_state.h"
#include "proto/auth.h"
#include <nlohmann/json.hpp>

#include "observability/log.h"
#include "observability/metrics.h"
#include "observability/sync_point.h"
#include "proto/rpc_util.h"
#include "storage/layout.h"
#include "storage/status_macros.h"
#include "storage/tensor.h"

namespace cairn {
namespace internal {
namespace {

constexpr int kMaxShards = 100000;
// At most this many unreachable writers reported by one BeginShard.
constexpr int kMaxUnreachableReports = 64;
// The file at the storage root naming the catalog that owns the root.
constexpr char kRootMarker[] = ".cairn-catalog";

std::string Name(const std::string& job, int64_t step) { return absl::StrCat(job, "/", step); }

using logging::Log;
using logging::Where;

Where At(const std::string& job, int64_t step) {
  Where w;
  w.job = job;
  w.step = step;
  return w;
}

// Merge failures that no retry can fix: the checkpoint is aborted.
bool PermanentMergeFailure(const absl::Status& s) {
  return absl::IsInvalidArgument(s) || absl::IsDataLoss(s) || absl::IsNotFound(s) ||
         absl::IsFailedPrecondition(s);
}

}  // namespace

CoordinatorService::CoordinatorService(const CoordinatorOptions& options,
                                       std::unique_ptr<Catalog> catalog,
                                       std::unique_ptr<Storage> storage, Clock* clock)
    : options_(options),
      catalog_(std::move(catalog)),
      storage_(std::move(storage)),
      clock_(clock),
      writers_(clock, options.writer_timeout_ms),
      rng_(std::random_device{}()) {}

CoordinatorService::~CoordinatorService() { StopBackground(); }

// Every series exists from the start (at zero), so scrapers see them before
// the first event.
static void RegisterMetrics() {
  metrics::Counter("cairn_commits_total", "Checkpoints committed.");
  metrics::Counter("cairn_committed_bytes_total", "Bytes of committed checkpoints.");
  metrics::Counter("cairn_retention_deletions_total", "Checkpoints deleted by retention.");
  metrics::Counter("cairn_local_merges_total",
                   "Merges the coordinator did itself because no writer could.");
  metrics::LatencyHistogram("cairn_commit_seconds",
                            "Time from all shards durable to committed (merge, publish, catalog).");
  metrics::Gauge("cairn_checkpoints_pending", "Checkpoints not yet committed.");
  metrics::Gauge("cairn_writers_live", "Shard writers heartbeating.");
}

std::string CoordinatorService::NewNonce() {
  return absl::StrFormat("%016x", rng_()).substr(0, 12);
}

// ----------------------------------------------------------------- recovery

absl::Status CoordinatorService::ClaimStorageRoot() {
  std::string id;
  if (auto stored = catalog_->GetMeta("catalog_id"); stored.ok()) {
    id = *stored;
  } else if (absl::IsNotFound(stored.status())) {
    id = absl::StrFormat("%016x%016x", std::random_device{}(), rng_());
    RETURN_IF_ERROR(catalog_->PutMeta("catalog_id", id));
  } else {
    return stored.status();
  }
  if (auto key = catalog_->GetMeta("attempt_key"); key.ok()) {
    attempt_key_ = *key;
  } else if (absl::IsNotFound(key.status())) {
    attempt_key_ = auth::RandomKey();
    RETURN_IF_ERROR(catalog_->PutMeta("attempt_key", attempt_key_));
  } else {
    return key.status();
  }
  ASSIGN_OR_RETURN(bool marked, storage_->Exists(kRootMarker));
  if (marked) {
    ASSIGN_OR_RETURN(auto file, storage_->NewReadableFile(kRootMarker));
    std::string owner(std::min<uint64_t>(file->Size(), 256), '\0');
    RETURN_IF_ERROR(file->ReadAt(0, owner.size(), owner.data()));
    while (!owner.empty() && (owner.back() == '\n' || owner.back() == ' ')) owner.pop_back();
    if (owner != id) {
      return absl::FailedPreconditionError(absl::StrCat(
          "storage root ", storage_->uri(), " belongs to another catalog (", kRootMarker, " names ",
          owner, "; this catalog is ", id,
          "): two catalogs over one root would overwrite each other's checkpoints. Use the "
          "coordinator (--db / --catalog) that owns this root, or another --storage"));
    }
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(auto file, storage_->NewWritableFile(kRootMarker));
  RETURN_IF_ERROR(file->Append(absl::StrCat(id, "\n")));
  return file->Close();
}

absl::Status CoordinatorService::Recover() {
  RETURN_IF_ERROR(ClaimStorageRoot());
  ASSIGN_OR_RETURN(auto writers, catalog_->ListWriters());
  for (const auto& w : writers) writers_.Recover(w.writer_id(), w.address());
  ASSIGN_OR_RETURN(auto leases, catalog_->ListLeases());
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& l : leases) leases_[l.lease_id()] = std::move(l);
  }
  ASSIGN_OR_RETURN(auto records, catalog_->ListCheckpoints(""));
  std::vector<Key> to_complete, to_finish;
  std::set<std::string> deleted_in;
  for (auto& r : records) {
    const Key key{r.job(), r.step()};
    switch (r.state()) {
      case v1::DELETING:
        Log(At(r.job(), r.step()), "recovery: finishing the deletion");
        RETURN_IF_ERROR(FinishDeletion(r));
        deleted_in.insert(r.job());
        continue;
      case v1::ABORTING:
        Log(At(r.job(), r.step()), "recovery: finishing the abort");
        RETURN_IF_ERROR(FinishAbort(r));
        continue;
      case v1::PENDING:
        if (AllShardsDurable(r)) {
          // Written by a version that merged straight from PENDING.
          RETURN_IF_ERROR(Transition(&r, v1::MERGING));
          RETURN_IF_ERROR(catalog_->PutCheckpoint(r));
        }
        break;
      case v1::MERGING:
      case v1::COMMITTING:
        break;
      default:
        continue;
    }
    if (r.state() == v1::MERGING) to_complete.push_back(key);
    if (r.state() == v1::COMMITTING) to_finish.push_back(key);
    std::lock_guard<std::mutex> lock(mu_);
    live_[key] = std::move(r);
  }
  // A deletion interrupted after its records were marked may have left the
  // state file naming steps whose files are gone.
  for (const std::string& job : deleted_in) RETURN_IF_ERROR(WriteStateFile(job));
  for (const Key& key : to_finish) {
    Log(At(key.first, key.second), "recovery: finishing the decided commit");
    absl::Status s = FinishCommit(key);
    if (s.ok()) {
      RetainAfterCommit(key.first, key.second);
    } else {
      Log(At(key.first, key.second), absl::StrCat("recovery: ", s.message(), " (will retry)"));
    }
  }
  for (const Key& key : to_complete) {
    Log(At(key.first, key.second), "recovery: all shards are durable; committing");
    absl::Status s = CompleteCheckpoint(key);
    if (s.ok()) {
      RetainAfterCommit(key.first, key.second);
    } else {
      Log(At(key.first, key.second), absl::StrCat("recovery: ", s.message()));
    }
  }
  return absl::OkStatus();
}

// ----------------------------------------------------------------- writers

grpc::Status CoordinatorService::RegisterWriter(grpc::ServerContext*,
                                                const v1::RegisterWriterRequest* req,
                                                v1::RegisterWriterResponse* resp) {
  if (req->address().empty() || req->address().size() > 256) {
    return rpc::ToGrpc(absl::InvalidArgumentError("writer address must be HOST:PORT"));
  }
  std::string new_id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    new_id = absl::StrCat("w-", NewNonce());
  }
  v1::WriterInfo info;
  info.set_writer_id(writers_.Register(req->address(), new_id));
  info.set_address(req->address());
  if (absl::Status s = catalog_->PutWriter(info); !s.ok()) return rpc::ToGrpc(s);
  Log(absl::StrCat("writer ", info.writer_id(), " registered at ", info.address()));
  resp->set_writer_id(info.writer_id());
  resp->set_storage_uri(storage_->uri());
  resp->set_heartbeat_interval_ms(options_.heartbeat_interval_ms);
  resp->set_attempt_key(attempt_key_);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* req,
                                           v1::HeartbeatResponse* resp) {
  resp->set_known(writers_.Heartbeat(req->writer_id()));
  if (resp->known()) resp->set_attempt_key(attempt_key_);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::ListWriters(grpc::ServerContext*, const v1::ListWritersRequest*,
                                             v1::ListWritersResponse* resp) {
  for (const auto& w : writers_.Snapshot()) {
    auto* info = resp->add_writers();
    info->set_writer_id(w.id);
    info->set_address(w.address);
    info->set_live(w.live);
    info->set_active_shards(w.active_shards);
  }
  return grpc::Status::OK;
}

// ----------------------------------------------------------------- saving

static void CountError(const char* rpc, const absl::Status& s) {
  metrics::Counter("cairn_rpc_errors_total", "Failed coordinator calls by method and status code.",
                   {{"method", rpc}, {"code", absl::StatusCodeToString(s.code())}})
      .Add(1);
}

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
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(key);
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
    for (int i = 0; i < req.num_shards(); ++i) record.add_shards()->set_index(i);
    created = std::move(record);
  }
  const v1::CheckpointRecord& record = created ? *created : it->second;
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

  v1::CheckpointRecord updated = record;
  v1::ShardRecord* shard = updated.mutable_shards(req.shard_index());
  const std::string released = !shard->token().empty() && !shard->durable() ? shard->writer_id() : "";
  if (!shard->token().empty()) {
    // A retry supersedes the earlier attempt, durable or not.
    shard->add_old_staging_prefixes(shard->staging_prefix());
  }
  shard->set_writer_id(chosen.id);
  shard->set_durable(false);
  shard->clear_files();
  shard->set_staging_prefix(absl::StrFormat("%s/shard-%05d-%s/part", updated.staging_dir(),
                                            req.shard_index(), NewNonce()));
  auth::Attempt attempt{req.job(), req.step(), req.shard_index(), req.num_shards(),
                        shard->staging_prefix()};
  shard->set_token(auth::MintAttemptToken(attempt_key_, attempt));
  for (const auto& [m, v] : req.metrics()) (*updated.mutable_metrics())[m] = v;
  if (absl::Status s = catalog_->PutCheckpoint(updated); !s.ok()) {
    writers_.Release(chosen.id);
    return s;
  }
  if (!released.empty()) writers_.Release(released);
  live_[key] = updated;
  {
    Where where = At(req.job(), req.step());
    where.shard = req.shard_index();
    where.num_shards = req.num_shards();
    Log(where, absl::StrCat("shard assigned to writer ", chosen.id));
  }

  v1::BeginShardResponse resp;
  resp.set_writer_address(chosen.address);
  resp.set_token(updated.shards(req.shard_index()).token());
  resp.set_staging_prefix(updated.shards(req.shard_index()).staging_prefix());
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
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(key);
    if (it != live_.end() && it->second.state() != v1::PENDING && current_attempt(it->second)) {
      // A repeated report of an attempt already in the merge or commit.
      v1::ShardDurableResponse resp;
      resp.set_committed(it->second.state() == v1::COMMITTING);
      resp.set_state(it->second.state());
      return resp;
    }
    if (it == live_.end()) {
      // A report repeated after a coordinator restart: the recovery may have
      // committed the checkpoint already, with this very attempt in it.
      auto done = catalog_->GetCheckpoint(req.job(), req.step());
      if (done.ok() && done->state() == v1::COMMITTED && current_attempt(*done)) {
        v1::ShardDurableResponse resp;
        resp.set_committed(true);
        resp.set_state(v1::COMMITTED);
        return resp;
      }
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint ", name, " is not pending (committed, aborted or unknown)"));
    }
    v1::CheckpointRecord& record = it->second;
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
    v1::CheckpointRecord updated = record;
    v1::ShardRecord* shard = updated.mutable_shards(req.shard_index());
    shard->set_durable(true);
    *shard->mutable_files() = req.files();
    shard->set_bytes(req.bytes());
    shard->set_num_tensors(req.num_tensors());
    // The last durable shard starts the merge in the same synced write: from
    // here on no attempt of this checkpoint can change.
    const bool complete = AllShardsDurable(updated);
    if (complete) RETURN_IF_ERROR(Transition(&updated, v1::MERGING));
    RETURN_IF_ERROR(catalog_->PutCheckpoint(updated));
    const std::string writer_id = current.writer_id();
    record = std::move(updated);
    writers_.Release(writer_id);
    if (!complete) {
      v1::ShardDurableResponse resp;
      resp.set_state(v1::PENDING);
      return resp;
    }
    completing_.insert(key);  // this thread merges; the background loop skips it
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

// ----------------------------------------------------------------- commit

absl::StatusOr<std::vector<MergedFile>> CoordinatorService::Merge(
    const Key& key, const std::vector<std::string>& parts, const std::string& output) {
  v1::MergeRequest req;
  for (const std::string& p : parts) req.add_part_prefixes(p);
  req.set_output_prefix(output);
  for (const std::string& address : writers_.LiveAddresses()) {
    auto channel = rpc::NewChannel(address, options_.tls);
    if (!channel.ok()) {
      Log(At(key.first, key.second), absl::StrCat("merge on writer ", address, ": ", channel.status().message()));
      continue;
    }
    auto stub = v1::ShardWriter::NewStub(*channel);
    // A writer that hangs must not hold the step past its pending timeout.
    auto ctx = rpc::Context(std::chrono::milliseconds(
        std::clamp<int64_t>(options_.pending_timeout_ms / 2, 1000, 10 * 60 * 1000)));
    if (!options_.auth_key.empty()) {
      rpc::SetBearerToken(ctx.get(), auth::MintClusterToken(options_.auth_key));
    }
    v1::MergeResponse resp;
    absl::Status s = rpc::FromGrpc(stub->Merge(ctx.get(), req, &resp), absl::StrCat("writer ", address));
    if (s.ok()) {
      std::vector<MergedFile> files;
      for (const auto& f : resp.files()) files.push_back({f.path(), f.size(), f.crc32c(), f.sha256()});
      return files;
    }
    if (PermanentMergeFailure(s)) return s;
    Log(At(key.first, key.second), absl::StrCat("WARNING: merge on writer ", address, " failed: ", s.message()));
  }
  // No writer could do it: the coordinator reaches the same storage.
  Log(At(key.first, key.second),
      "WARNING: no writer could merge the index parts; merging them in the coordinator");
  metrics::Counter("cairn_local_merges_total",
                   "Merges the coordinator did itself because no writer could.")
      .Add(1);
  return MergeBundleParts(storage_.get(), parts, output);
}

absl::Status CoordinatorService::CompleteCheckpoint(const Key& key) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!completing_.insert(key).second) {
      return absl::UnavailableError(
          absl::StrCat("checkpoint ", Name(key.first, key.second), " is being committed"));
    }
  }
  absl::Status s = CompleteCheckpointClaimed(key);
  std::lock_guard<std::mutex> lock(mu_);
  completing_.erase(key);
  return s;
}

absl::Status CoordinatorService::CompleteCheckpointClaimed(const Key& key) {
  const std::string name = Name(key.first, key.second);
  v1::CheckpointRecord record;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(key);
    if (it == live_.end() || it->second.state() == v1::COMMITTING) {
      return absl::OkStatus();  // finished (or being finished) already
    }
    if (it->second.state() != v1::MERGING) {
      return absl::InternalError(absl::StrCat("checkpoint ", name, " is ",
                                              StateName(it->second.state()), ", not merging"));
    }
    record = it->second;
  }
  int64_t tensors = 0;
  for (const auto& shard : record.shards()) tensors += shard.num_tensors();
  if (tensors == 0) {
    const std::string why = absl::StrCat("checkpoint ", name,
                                         " holds no tensors: an empty save cannot be committed");
    RETURN_IF_ERROR(Abort(key, why));
    return absl::FailedPreconditionError(absl::StrCat(why, "; it was aborted"));
  }
  std::vector<std::string> parts;
  for (const auto& shard : record.shards()) parts.push_back(shard.staging_prefix());
  const std::string merged_prefix = absl::StrCat(record.staging_dir(), "/merged/variables");
  const auto commit_start = std::chrono::steady_clock::now();
  struct ObserveOnExit {
    std::chrono::steady_clock::time_point start;
    ~ObserveOnExit() {
      static auto& h = metrics::LatencyHistogram(
          "cairn_commit_seconds", "Time from all shards durable to committed (merge, publish, catalog).");
      h.Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
  } observe{commit_start};
  CAIRN_SYNC_POINT("before_merge");
  auto merged = Merge(key, parts, merged_prefix);
  if (!merged.ok()) {
    if (PermanentMergeFailure(merged.status())) {
      const std::string why = absl::StrCat("checkpoint ", name, " cannot be committed: ",
                                           merged.status().message());
      RETURN_IF_ERROR(Abort(key, why));
      return absl::FailedPreconditionError(absl::StrCat(why, "; it was aborted"));
    }
    return merged.status();
  }
  CAIRN_SYNC_POINT("after_merge");

  // The decision: from here on the checkpoint will be committed, whatever
  // crashes. Only if nothing changed while the parts were merged.
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(key);
    if (it == live_.end() || it->second.state() != v1::MERGING) {
      return absl::AbortedError(
          absl::StrCat("checkpoint ", name, " was aborted while its parts were merged"));
    }
    for (int i = 0; i < record.num_shards(); ++i) {
#ifdef CAIRN_PLANTED_BUG
      break;
#endif
      if (it->second.shards(i).token() != record.shards(i).token()) {
        return absl::InternalError(absl::StrCat("checkpoint ", name, ": shard ", i,
                                                " changed during its merge (a bug); not committed"));
      }
    }
    v1::CheckpointRecord updated = it->second;
    RETURN_IF_ERROR(Transition(&updated, v1::COMMITTING));
    updated.clear_files();
    uint64_t bytes = 0;
    for (size_t i = 0; i < merged->size(); ++i) {
      const MergedFile& f = (*merged)[i];
      auto* info = updated.add_files();
      info->set_path(f.path);
      info->set_size(f.size);
      info->set_crc32c(f.crc32c);
      info->set_sha256(f.sha256);
      // Data files keep the CRCs their writers computed.
      if (i < static_cast<size_t>(updated.num_shards())) {
        for (const auto& sf : updated.shards(static_cast<int>(i)).files()) {
          if (absl::EndsWith(sf.path(), ".data-00000-of-00001")) {
            info->set_crc32c(sf.crc32c());
            info->set_sha256(sf.sha256());
          }
        }
      }
      bytes += f.size;
    }
    updated.set_bytes(bytes);
    RETURN_IF_ERROR(catalog_->PutCheckpoint(updated));
    it->second = std::move(updated);
  }
  CAIRN_SYNC_POINT("after_decide");
  return FinishCommit(key);
}

absl::Status CoordinatorService::FinishCommit(const Key& key) {
  JobLocks::Guard job_lock = job_locks_.Lock(key.first);
  v1::CheckpointRecord record;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(key);
    if (it == live_.end() || it->second.state() != v1::COMMITTING) return absl::OkStatus();
    record = it->second;
  }
  // Publish: data files first, the index last; each rename is atomic and
  // durable, and a rename already done is skipped when this runs again.
  const std::string merged_dir = absl::StrCat(record.staging_dir(), "/merged/");
  const std::string final_prefix = CheckpointPrefix(record.job(), record.step());
  v1::CheckpointRecord updated = record;
  for (int pass = 0; pass < 2; ++pass) {
    for (auto& f : *updated.mutable_files()) {
      const bool is_index = absl::EndsWith(f.path(), ".index");
      if ((pass == 0) == is_index) continue;
      if (!absl::StartsWith(f.path(), merged_dir)) continue;  // published already
      const std::string dst =
          absl::StrCat(final_prefix, f.path().substr(merged_dir.size() + std::string("variables").size()));
      ASSIGN_OR_RETURN(bool src_exists, storage_->Exists(f.path()));
      if (src_exists) {
        RETURN_IF_ERROR(storage_->Rename(f.path(), dst));
      } else {
        ASSIGN_OR_RETURN(bool dst_exists, storage_->Exists(dst));
        if (!dst_exists) {
          return absl::DataLossError(absl::StrCat("commit of ", Name(key.first, key.second),
                                                  ": staged file ", f.path(), " is missing"));
        }
      }
      f.set_path(dst);
    }
  }
  CAIRN_SYNC_POINT("after_publish");
  RETURN_IF_ERROR(Transition(&updated, v1::COMMITTED));
  updated.set_committed_at_micros(clock_->NowMicros());
  {
    // The state file lists this checkpoint as committed.
    std::lock_guard<std::mutex> lock(mu_);
    live_.at(key) = updated;
  }
  RETURN_IF_ERROR(WriteStateFile(record.job()));
  CAIRN_SYNC_POINT("after_state_file");
  RETURN_IF_ERROR(catalog_->PutCheckpoint(updated));
  {
    std::lock_guard<std::mutex> lock(mu_);
    live_.erase(key);
  }
  Log(At(key.first, key.second), absl::StrCat("committed: ", updated.num_shards(), " shards, ",
                                              updated.bytes(), " bytes"));
  metrics::Counter("cairn_commits_total", "Checkpoints committed.").Add(1);
  metrics::Counter("cairn_committed_bytes_total", "Bytes of committed checkpoints.")
      .Add(static_cast<double>(updated.bytes()));
  RemoveStaging(record);
  auto job = catalog_->GetJob(record.job());
  if (!job.ok() || job->first_commit_micros() == 0) {
    v1::JobRecord j = job.ok() ? *job : v1::JobRecord();
    j.set_job(record.job());
    j.set_first_commit_micros(updated.committed_at_micros());
    RETURN_IF_ERROR(catalog_->PutJob(j));
  }
  return absl::OkStatus();
}

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
  bool first = true;
  for (const auto& f : record.files()) {
    RETURN_IF_ERROR(storage_->Delete(f.path()));
    if (first) CAIRN_SYNC_POINT("mid_delete");
    first = false;
  }
  storage_->RemoveDirIfEmpty(CheckpointDir(record.job(), record.step())).IgnoreError();
  return catalog_->DeleteCheckpoint(record.job(), record.step());
}

absl::Status CoordinatorService::WriteStateFile(const std::string& job) {
  ASSIGN_OR_RETURN(auto records, catalog_->ListCheckpoints(job));
  std::map<int64_t, double> committed;  // step → commit time (s)
  for (const auto& r : records) {
    if (r.state() == v1::COMMITTED) committed[r.step()] = r.committed_at_micros() / 1e6;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, r] : live_) {
      if (key.first == job && r.state() == v1::COMMITTED) committed[key.second] = r.committed_at_micros() / 1e6;
    }
  }
  if (committed.empty()) return storage_->Delete(StateFilePath(job));
  CheckpointStateFile state;
  state.model_checkpoint_path = StateFileEntry(committed.rbegin()->first);
  for (const auto& [step, t] : committed) {
    state.all_model_checkpoint_paths.push_back(StateFileEntry(step));
    state.all_model_checkpoint_timestamps.push_back(t);
  }
  ASSIGN_OR_RETURN(auto file, storage_->NewWritableFile(StateFilePath(job)));
  RETURN_IF_ERROR(file->Append(FormatStateFile(state)));
  return file->Close();
}

absl::Status CoordinatorService::Abort(const Key& key, const std::string& why) {
  v1::CheckpointRecord record;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(key);
    if (it == live_.end() || !Undecided(it->second.state())) return absl::OkStatus();
    record = it->second;
    RETURN_IF_ERROR(Transition(&record, v1::ABORTING));
    record.set_abort_reason(why);
    RETURN_IF_ERROR(catalog_->PutCheckpoint(record));
    for (const auto& shard : record.shards()) {
      if (!shard.durable() && !shard.token().empty()) writers_.Release(shard.writer_id());
    }
    live_.erase(it);
  }
  Log(At(key.first, key.second), absl::StrCat("aborted: ", why));
  metrics::Counter("cairn_aborts_total", "Checkpoints aborted.").Add(1);
  return FinishAbort(std::move(record));
}

absl::Status CoordinatorService::FinishAbort(v1::CheckpointRecord record) {
  CAIRN_SYNC_POINT("abort_before_cleanup");
  RemoveStaging(record);
  RETURN_IF_ERROR(Transition(&record, v1::ABORTED));
  return catalog_->PutCheckpoint(record);
}

// Removes a staging directory. Only Cairn's own staging area (a directory
// the catalog names) is ever cleared by listing; committed checkpoints are
// deleted file by file from their inventory.
void CoordinatorService::RemoveStaging(const v1::CheckpointRecord& record) {
  const std::string& dir = record.staging_dir();
  auto files = storage_->List(dir);
  if (!files.ok()) {
    Log(At(record.job(), record.step()), absl::StrCat("cleanup of ", dir, ": ", files.status().message()));
    return;
  }
  // Directories the record knows (they may be empty by now), deepest first.
  std::set<std::string, std::greater<std::string>> dirs;
  auto add_parent = [&](const std::string& path) {
    const size_t slash = path.rfind('/');
    if (slash != std::string::npos && slash > dir.size()) dirs.insert(path.substr(0, slash));
  };
  add_parent(absl::StrCat(dir, "/merged/variables"));
  for (const auto& shard : record.shards()) {
    if (!shard.staging_prefix().empty()) add_parent(shard.staging_prefix());
    for (const auto& old : shard.old_staging_prefixes()) add_parent(old);
  }
  for (const std::string& f : *files) {
    storage_->Delete(f).IgnoreError();
    for (size_t slash = f.rfind('/'); slash != std::string::npos && slash > dir.size();
         slash = f.rfind('/', slash - 1)) {
      dirs.insert(f.substr(0, slash));
    }
  }
  for (const std::string& d : dirs) storage_->RemoveDirIfEmpty(d).IgnoreError();
  storage_->RemoveDirIfEmpty(dir).IgnoreError();
  const size_t slash = dir.rfind('/');
  if (slash != std::string::npos) storage_->RemoveDirIfEmpty(dir.substr(0, slash)).IgnoreError();
}

// ----------------------------------------------------------------- queries

void CoordinatorService::FillInfo(const v1::CheckpointRecord& r, v1::CheckpointInfo* info) const {
  info->set_job(r.job());
  info->set_step(r.step());
  info->set_state(r.state());
  info->set_num_shards(r.num_shards());
  info->set_created_at_micros(r.created_at_micros());
  info->set_committed_at_micros(r.committed_at_micros());
  info->set_bytes(r.bytes());
  *info->mutable_metrics() = r.metrics();
  info->set_pinned(r.pinned());
  info->set_prefix_uri(JoinPath(storage_->uri(), CheckpointPrefix(r.job(), r.step())));
  *info->mutable_files() = r.files();
  int durable = 0;
  for (const auto& s : r.shards()) durable += s.durable() ? 1 : 0;
  info->set_shards_durable(durable);
}

grpc::Status CoordinatorService::List(grpc::ServerContext*, const v1::ListRequest* req,
                                      v1::ListResponse* resp) {
  if (absl::Status s = ValidateJobName(req->job()); !s.ok()) return rpc::ToGrpc(s);
  std::map<int64_t, std::vector<std::string>> kept_by;
  {
    JobLocks::Guard job_lock = job_locks_.Lock(req->job());
    int deleted;
    auto decisions = ApplyRetentionLocked(req->job(), /*dry_run=*/true, &deleted);
    if (!decisions.ok()) return rpc::ToGrpc(decisions.status());
    for (const Decision& d : *decisions) kept_by[d.step] = d.kept_by;
  }
  auto records = catalog_->ListCheckpoints(req->job());
  if (!records.ok()) return rpc::ToGrpc(records.status());
  for (const auto& r : *records) {
    if (r.state() != v1::COMMITTED && !req->include_uncommitted()) continue;
    auto* info = resp->add_checkpoints();
    FillInfo(r, info);
    for (const std::string& rule : kept_by[r.step()]) info->add_kept_by(rule);
  }
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::Get(grpc::ServerContext*, const v1::GetRequest* req,
                                     v1::GetResponse* resp) {
  if (absl::Status s = ValidateJobName(req->job()); !s.ok()) return rpc::ToGrpc(s);
  if (req->latest()) {
    auto records = catalog_->ListCheckpoints(req->job());
    if (!records.ok()) return rpc::ToGrpc(records.status());
    for (auto it = records->rbegin(); it != records->rend(); ++it) {
      if (it->state() == v1::COMMITTED) {
        FillInfo(*it, resp->mutable_checkpoint());
        return grpc::Status::OK;
      }
    }
    return rpc::ToGrpc(absl::NotFoundError(
        absl::StrCat("job ", req->job(), " has no committed checkpoint")));
  }
  auto record = catalog_->GetCheckpoint(req->job(), req->step());
  if (!record.ok() || record->state() != v1::COMMITTED) {
    return rpc::ToGrpc(absl::NotFoundError(absl::StrCat(
        "job ", req->job(), " has no committed checkpoint at step ", req->step())));
  }
  FillInfo(*record, resp->mutable_checkpoint());
  return grpc::Status::OK;
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
  std::vector<Key> undecided;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, r] : live_) {
      if (key.first != job || key.second <= req.to_step()) continue;
      if (!Undecided(r.state()) || completing_.count(key)) {
        return absl::UnavailableError(absl::StrCat(
            "cannot roll back job ", job, " now: step ", key.second,
            " is being committed; try again once it is"));
      }
      undecided.push_back(key);
    }
  }
  v1::RollbackResponse resp;
  for (const auto& r : above) resp.add_deleted_steps(r.step());
  for (const Key& key : undecided) resp.add_aborted_steps(key.second);
  if (req.dry_run()) return resp;
  for (const Key& key : undecided) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!completing_.insert(key).second) continue;  // its merge just began: decided soon
    }
    absl::Status s = Abort(key, absl::StrCat("rolled back to step ", req.to_step()));
    std::lock_guard<std::mutex> lock(mu_);
    completing_.erase(key);
    RETURN_IF_ERROR(s);
  }
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
  std::map<int64_t, std::vector<std::string>> kept_by;
  {
    JobLocks::Guard job_lock = job_locks_.Lock(job);
    int deleted;
    ASSIGN_OR_RETURN(auto decisions, ApplyRetentionLocked(job, /*dry_run=*/true, &deleted));
    for (const Decision& d : decisions) kept_by[d.step] = d.kept_by;
  }
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

// ----------------------------------------------------------------- background

void CoordinatorService::StartBackground() {
  RegisterMetrics();
  bg_thread_ = std::thread([this] { BackgroundLoop(); });
}

void CoordinatorService::StopBackground() {
  {
    std::lock_guard<std::mutex> lock(bg_mu_);
    bg_stop_ = true;
  }
  bg_cv_.notify_all();
  if (bg_thread_.joinable()) bg_thread_.join();
}

void CoordinatorService::BackgroundLoop() {
  const auto period = std::chrono::milliseconds(
      std::clamp<int64_t>(options_.pending_timeout_ms / 10, 50, 1000));
  std::unique_lock<std::mutex> bg_lock(bg_mu_);
  while (!bg_cv_.wait_for(bg_lock, period, [this] { return bg_stop_; })) {
    bg_lock.unlock();
    std::vector<Key> expired, unfinished, uncompleted;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const int64_t now = clock_->NowMicros();
      for (const auto& [key, r] : live_) {
        if (completing_.count(key)) continue;  // a merge is running; decided after it
        const bool timed_out = now - r.created_at_micros() > options_.pending_timeout_ms * 1000;
        if (Undecided(r.state()) && timed_out) {
          expired.push_back(key);  // shards missing, or a merge that keeps failing
        } else if (r.state() == v1::MERGING) {
          uncompleted.push_back(key);  // an earlier merge attempt failed
        } else if (r.state() == v1::COMMITTING) {
          unfinished.push_back(key);
        }
      }
      static auto& pending = metrics::Gauge("cairn_checkpoints_pending", "Checkpoints not yet committed.");
      pending.Set(static_cast<double>(live_.size()));
    }
    static auto& live_writers = metrics::Gauge("cairn_writers_live", "Shard writers heartbeating.");
    live_writers.Set(static_cast<double>(writers_.LiveAddresses().size()));
    for (const Key& key : uncompleted) {
      if (CompleteCheckpoint(key).ok()) RetainAfterCommit(key.first, key.second);
    }
    std::vector<std::string> expired_leases;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const int64_t now = clock_->NowMicros();
      for (auto it = leases_.begin(); it != leases_.end();) {
        if (it->second.expires_at_micros() <= now) {
          expired_leases.push_back(it->first);
          it = leases_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (const std::string& id : expired_leases) catalog_->DeleteLease(id).IgnoreError();
    for (const Key& key : expired) {
      {
        // Claim it, so no merge starts while it is being aborted.
        std::lock_guard<std::mutex> lock(mu_);
        if (!completing_.insert(key).second) continue;
      }
      Abort(key, absl::StrCat("not committed within the pending timeout of ",
                              options_.pending_timeout_ms, " ms (shards missing or merge failing)"))
          .IgnoreError();
      std::lock_guard<std::mutex> lock(mu_);
      completing_.erase(key);
    }
    for (const Key& key : unfinished) {
      if (FinishCommit(key).ok()) RetainAfterCommit(key.first, key.second);
    }
    bg_lock.lock();
  }
}

}  // namespace internal
}  // namespace cairn
