// The coordinator service: start-up (the storage root's owner, recovery),
// the writer registry's RPCs, queries and the background loop. The commit
// protocol is in commit.cc, retention and rollback in lifecycle.cc, the
// status page's JSON in status_json.cc.
#include "coordinator/internal/service.h"

#include <algorithm>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coordinator/internal/commit_state.h"
#include "coordinator/internal/service_util.h"
#include "proto/rpc/auth.h"

#include "observability/log.h"
#include "observability/metrics.h"
#include "observability/version.h"
#include "proto/rpc/rpc_util.h"
#include "proto/layout.h"
#include "storage/status_macros.h"

namespace cairn {
namespace internal {

using logging::Log;
using logging::Where;

namespace {

// The file at the storage root naming the catalog that owns the root.
constexpr char kRootMarker[] = ".cairn-catalog";

// A root on local disk (file://): written through temporary names and
// renames, unlike an object store's whole-object uploads.
bool IsLocalRoot(const Storage& storage) { return absl::StartsWith(storage.uri(), "file://"); }

}  // namespace

CoordinatorService::CoordinatorService(const CoordinatorOptions& options,
                                       std::unique_ptr<Catalog> catalog,
                                       std::unique_ptr<Storage> storage, Clock* clock)
    : options_(options),
      catalog_(std::move(catalog)),
      storage_(std::move(storage)),
      clock_(clock),
      writers_(clock, options.writer_timeout_ms),
      rng_(std::random_device{}()) {
  if (IsLocalRoot(*storage_)) trash_ = std::make_unique<Trash>(storage_.get());
}

CoordinatorService::~CoordinatorService() { StopBackground(); }

// Every series exists from the start (at zero), so scrapers see them before
// the first event.
static void RegisterMetrics() {
  metrics::Gauge("cairn_build_info", "Always 1; the labels say which Cairn this is.",
                 {{"version", CAIRN_VERSION}, {"component", "coordinator"}})
      .Set(1);
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
    id = absl::BytesToHexString(auth::RandomKey().substr(0, 16));
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
          "coordinator (--db) that owns this root, or another --storage"));
    }
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(auto file, storage_->NewWritableFile(kRootMarker));
  RETURN_IF_ERROR(file->Append(absl::StrCat(id, "\n")));
  return file->Close();
}

absl::Status CoordinatorService::SweepInterruptedStateFile(const std::string& job) {
  // Only a local root writes through temporary names; an object store's
  // upload appears whole or not at all (and listing it would cost requests).
  if (!IsLocalRoot(*storage_)) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::vector<std::string> files, storage_->List(job));
  const std::string state = StateFilePath(job);
  for (const std::string& f : files) {
    if (!IsTemporaryNameOf(f, state)) continue;
    Log(logging::Where{job}, absl::StrCat("recovery: removing ", f, ", left by an interrupted write"));
    RETURN_IF_ERROR(storage_->Delete(f));
  }
  return absl::OkStatus();
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
  for (const auto& r : records) {
    if (r.state() != v1::COMMITTED) continue;
    auto& last = LastCommitGauge(r.job());
    last.Set(std::max(last.value(), static_cast<double>(r.committed_at_micros()) / 1e6));
  }
  // What a deletion before a crash had moved to the trash but not unlinked.
  if (trash_ != nullptr) {
    if (absl::Status s = trash_->Empty(); !s.ok()) {
      Log(absl::StrCat("recovery: emptying ", kTrashDir, ": ", s.message()));
    }
  }
  std::set<std::string> jobs;  // (the loop below moves records into live_)
  for (const auto& r : records) jobs.insert(r.job());
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
        RETURN_IF_ERROR(catalog_->LoadShards(&r));
        RETURN_IF_ERROR(FinishAbort(r));
        continue;
      case v1::PENDING:
        RETURN_IF_ERROR(catalog_->LoadShards(&r));
        // Shards kept inside the record by an older version move to their
        // own keys before anything writes the record without them.
        RETURN_IF_ERROR(catalog_->MigrateInlineShards(r));
        if (AllShardsDurable(r)) {
          // Written by a version that merged straight from PENDING.
          RETURN_IF_ERROR(Transition(&r, v1::MERGING));
          RETURN_IF_ERROR(catalog_->PutCheckpoint(r));
        }
        break;
      case v1::MERGING:
      case v1::COMMITTING:
        RETURN_IF_ERROR(catalog_->LoadShards(&r));
        RETURN_IF_ERROR(catalog_->MigrateInlineShards(r));
        break;
      default:
        continue;
    }
    if (r.state() == v1::MERGING) to_complete.push_back(key);
    if (r.state() == v1::COMMITTING) to_finish.push_back(key);
    std::lock_guard<std::mutex> lock(mu_);
    live_[key] = MakeLive(std::move(r));
  }
  // A deletion interrupted after its records were marked may have left the
  // state file naming steps whose files are gone.
  for (const std::string& job : deleted_in) RETURN_IF_ERROR(WriteStateFile(job));
  // A coordinator killed while it rewrote a state file left the temporary
  // copy; this one (holding the root, or the lease) is the only writer now.
  for (const std::string& job : jobs) {
    // Untidy, not unsafe: a leftover never stops the coordinator starting.
    if (absl::Status s = SweepInterruptedStateFile(job); !s.ok()) {
      Log(logging::Where{job}, absl::StrCat("recovery: sweeping the state file's leftovers: ", s.message()));
    }
  }
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
  resp->set_known(writers_.Heartbeat(
      req->writer_id(),
      WriterRegistry::Load{req->active_streams(), req->bytes_written(), req->features()}));
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

// ----------------------------------------------------------------- queries

CoordinatorService::LiveCheckpoint CoordinatorService::MakeLive(v1::CheckpointRecord record) {
  LiveCheckpoint live;
  live.record = std::move(record);
  v1::CheckpointRecord& r = live.record;
  if (r.shards_size() != r.num_shards()) {
    r.clear_shards();
    r.mutable_shards()->Reserve(r.num_shards());
    for (int i = 0; i < r.num_shards(); ++i) r.add_shards()->set_index(i);
  }
  for (const auto& shard : r.shards()) live.durable += shard.durable() ? 1 : 0;
  return live;
}

void CoordinatorService::FillInfo(const v1::CheckpointRecord& r, v1::CheckpointInfo* info) {
  info->set_job(r.job());
  info->set_step(r.step());
  info->set_state(r.state());
  info->set_num_shards(r.num_shards());
  info->set_created_at_micros(r.created_at_micros());
  info->set_committed_at_micros(r.committed_at_micros());
  info->set_bytes(r.bytes());
  *info->mutable_metrics() = r.metrics();
  info->set_pinned(r.pinned());
  info->set_abort_reason(r.abort_reason());
  info->set_prefix_uri(JoinPath(storage_->uri(), CheckpointPrefix(r.job(), r.step())));
  *info->mutable_files() = r.files();
  // Durable shards of a step still in the works (the catalog's record has
  // none: they are under their own keys).
  int durable = 0;
  if (r.state() == v1::COMMITTED) {
    durable = r.num_shards();
  } else {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find({r.job(), r.step()});
    if (it != live_.end()) durable = it->second.durable;
  }
  info->set_shards_durable(durable);
}

grpc::Status CoordinatorService::List(grpc::ServerContext*, const v1::ListRequest* req,
                                      v1::ListResponse* resp) {
  if (absl::Status s = ValidateJobName(req->job()); !s.ok()) return rpc::ToGrpc(s);
  auto kept = KeptBy(req->job(), /*lock_job=*/true);
  if (!kept.ok()) return rpc::ToGrpc(kept.status());
  std::map<int64_t, std::vector<std::string>>& kept_by = *kept;
  auto records = catalog_->ListCheckpoints(req->job());
  if (!records.ok()) return rpc::ToGrpc(records.status());
  for (const auto& r : *records) {
    if (r.state() != v1::COMMITTED && !req->include_uncommitted()) continue;
    auto* info = resp->add_checkpoints();
    FillInfo(r, info);
    for (const std::string& rule : kept_by[r.step()]) info->add_kept_by(rule);
  }
  if (!records->empty()) {
    resp->set_job_exists(true);
  } else {
    auto exists = JobExists(req->job());
    if (!exists.ok()) return rpc::ToGrpc(exists.status());
    resp->set_job_exists(*exists);
  }
  return grpc::Status::OK;
}

absl::StatusOr<std::map<int64_t, std::vector<std::string>>> CoordinatorService::KeptBy(
    const std::string& job, bool lock_job) {
  std::optional<JobLocks::Guard> job_lock;
  if (lock_job) job_lock.emplace(job_locks_.Lock(job));
  int deleted;
  auto decisions = ApplyRetentionLocked(job, /*dry_run=*/true, &deleted);
  if (!decisions.ok()) return decisions.status();
  std::map<int64_t, std::vector<std::string>> kept_by;
  for (const Decision& d : *decisions) kept_by[d.step] = d.kept_by;
  return kept_by;
}

grpc::Status CoordinatorService::Get(grpc::ServerContext*, const v1::GetRequest* req,
                                     v1::GetResponse* resp) {
  if (absl::Status s = ValidateJobName(req->job()); !s.ok()) return rpc::ToGrpc(s);
  // kept_by as List reports it (the same dry run of the job's policy).
  auto fill = [&](const v1::CheckpointRecord& r) {
    auto kept = KeptBy(req->job(), /*lock_job=*/false);
    if (!kept.ok()) return rpc::ToGrpc(kept.status());
    v1::CheckpointInfo* info = resp->mutable_checkpoint();
    FillInfo(r, info);
    for (const std::string& rule : (*kept)[r.step()]) info->add_kept_by(rule);
    return grpc::Status::OK;
  };
  if (req->latest()) {
    auto records = catalog_->ListCheckpoints(req->job());
    if (!records.ok()) return rpc::ToGrpc(records.status());
    for (auto it = records->rbegin(); it != records->rend(); ++it) {
      if (it->state() == v1::COMMITTED) return fill(*it);
    }
    return rpc::ToGrpc(absl::NotFoundError(
        absl::StrCat("job ", req->job(), " has no committed checkpoint")));
  }
  auto record = catalog_->GetCheckpoint(req->job(), req->step());
  if (!record.ok() && !absl::IsNotFound(record.status())) return rpc::ToGrpc(record.status());
  if (record.ok() && req->any_state()) return fill(*record);
  if (!record.ok() || record->state() != v1::COMMITTED) {
    return rpc::ToGrpc(absl::NotFoundError(absl::StrCat(
        "job ", req->job(), " has no committed checkpoint at step ", req->step())));
  }
  return fill(*record);
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
      for (const auto& [key, live] : live_) {
        const v1::CheckpointRecord& r = live.record;
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
      Abort(key,
            absl::StrCat("not committed within the pending timeout of ", options_.pending_timeout_ms,
                         " ms (shards missing or merge failing)"),
            "timeout")
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
