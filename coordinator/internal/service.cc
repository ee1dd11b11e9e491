#include "coordinator/internal/service.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "storage/checkpoint_state.h"
#include "proto/auth.h"
#include <nlohmann/json.hpp>

#include "observability/log.h"
#include "observability/metrics.h"
#include "proto/rpc_util.h"
#include "storage/layout.h"
#include "storage/status_macros.h"
#include "storage/tensor.h"

namespace cairn {
namespace internal {
namespace {

constexpr int kMaxShards = 100000;

std::string Name(const std::string& job, int64_t step) { return absl::StrCat(job, "/", step); }

using logging::Log;
using logging::Where;

Where At(const std::string& job, int64_t step) {
  Where w;
  w.job = job;
  w.step = step;
  return w;
}

bool AllDurable(const v1::CheckpointRecord& r) {
  return std::all_of(r.shards().begin(), r.shards().end(),
                     [](const v1::ShardRecord& s) { return s.durable(); });
}

}  // namespace

CoordinatorService::CoordinatorService(const CoordinatorOptions& options,
                                       std::unique_ptr<Catalog> catalog,
                                       std::unique_ptr<Storage> storage, Clock* clock)
    : options_(options),
      catalog_(std::move(catalog)),
      storage_(std::move(storage)),
      clock_(clock),
      rng_(std::random_device{}()) {}

CoordinatorService::~CoordinatorService() { StopBackground(); }

// Every series exists from the start (at zero), so scrapers see them before
// the first event.
static void RegisterMetrics() {
  metrics::Counter("cairn_commits_total", "Checkpoints committed.");
  metrics::Counter("cairn_committed_bytes_total", "Bytes of committed checkpoints.");
  metrics::Counter("cairn_retention_deletions_total", "Checkpoints deleted by retention.");
  metrics::LatencyHistogram("cairn_commit_seconds",
                            "Time from all shards durable to committed (merge, publish, catalog).");
  metrics::Gauge("cairn_checkpoints_pending", "Checkpoints not yet committed.");
  metrics::Gauge("cairn_writers_live", "Shard writers heartbeating.");
}

void CoordinatorService::CrashPoint(const char* name) {
  if (options_.crash_point == name) {
    Log(absl::StrCat("crash point ", name, " reached: exiting abruptly (testing)"));
    ::_exit(86);
  }
}

std::string CoordinatorService::NewToken() {
  return absl::StrFormat("%016x%016x", rng_(), rng_());
}

std::mutex& CoordinatorService::JobLock(const std::string& job) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = job_locks_[job];
  if (!slot) slot = std::make_unique<std::mutex>();
  return *slot;
}

std::vector<std::string> CoordinatorService::LiveWriterIds() {
  const int64_t now = clock_->NowMicros();
  std::vector<std::string> out;
  for (const auto& [id, w] : writers_) {
    if (now - w.last_heartbeat_micros <= options_.writer_timeout_ms * 1000) out.push_back(id);
  }
  return out;
}

// ----------------------------------------------------------------- recovery

absl::Status CoordinatorService::Recover() {
  ASSIGN_OR_RETURN(auto writers, catalog_->ListWriters());
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Writers known before a restart get one timeout's grace to heartbeat.
    for (const auto& w : writers) {
      writers_[w.writer_id()] = Writer{w.address(), clock_->NowMicros(), 0};
    }
  }
  ASSIGN_OR_RETURN(auto leases, catalog_->ListLeases());
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& l : leases) leases_[l.lease_id()] = std::move(l);
  }
  ASSIGN_OR_RETURN(auto records, catalog_->ListCheckpoints(""));
  std::vector<Key> to_complete, to_finish, to_abort;
  for (auto& r : records) {
    const Key key{r.job(), r.step()};
    if (r.state() == v1::DELETING) {
      Log(At(r.job(), r.step()), "recovery: finishing the deletion");
      RETURN_IF_ERROR(FinishDeletion(r));
      continue;
    }
    switch (r.state()) {
      case v1::PENDING:
        if (AllDurable(r)) to_complete.push_back(key);
        break;
      case v1::COMMITTING:
        to_finish.push_back(key);
        break;
      default:
        continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    live_[key] = std::move(r);
  }
  for (const Key& key : to_finish) {
    Log(At(key.first, key.second), "recovery: finishing the decided commit");
    absl::Status s = FinishCommit(key);
    if (!s.ok()) Log(At(key.first, key.second), absl::StrCat("recovery: ", s.message(), " (will retry)"));
  }
  for (const Key& key : to_complete) {
    Log(At(key.first, key.second), "recovery: all shards are durable; committing");
    absl::Status s = CompleteCheckpoint(key);
    if (!s.ok()) Log(At(key.first, key.second), absl::StrCat("recovery: ", s.message()));
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
  v1::WriterInfo info;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A writer re-registering from the same address keeps its id.
    std::string id;
    for (const auto& [wid, w] : writers_) {
      if (w.address == req->address()) id = wid;
    }
    if (id.empty()) id = absl::StrCat("w-", NewToken().substr(0, 12));
    writers_[id].address = req->address();
    writers_[id].last_heartbeat_micros = clock_->NowMicros();
    info.set_writer_id(id);
    info.set_address(req->address());
  }
  if (absl::Status s = catalog_->PutWriter(info); !s.ok()) return rpc::ToGrpc(s);
  Log(absl::StrCat("writer ", info.writer_id(), " registered at ", info.address()));
  resp->set_writer_id(info.writer_id());
  resp->set_storage_uri(storage_->uri());
  resp->set_heartbeat_interval_ms(options_.heartbeat_interval_ms);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* req,
                                           v1::HeartbeatResponse* resp) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = writers_.find(req->writer_id());
  resp->set_known(it != writers_.end());
  if (it != writers_.end()) it->second.last_heartbeat_micros = clock_->NowMicros();
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::ListWriters(grpc::ServerContext*, const v1::ListWritersRequest*,
                                             v1::ListWritersResponse* resp) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::vector<std::string> live = LiveWriterIds();
  for (const auto& [id, w] : writers_) {
    auto* info = resp->add_writers();
    info->set_writer_id(id);
    info->set_address(w.address);
    info->set_live(std::find(live.begin(), live.end(), id) != live.end());
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
  const Key key{req.job(), req.step()};
  const std::string name = Name(req.job(), req.step());
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(key);
  if (it == live_.end()) {
    auto existing = catalog_->GetCheckpoint(req.job(), req.step());
    if (existing.ok() && existing->state() != v1::ABORTED) {
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint ", name, " is already committed; steps cannot be overwritten"));
    }
    if (!existing.ok() && !absl::IsNotFound(existing.status())) return existing.status();
    v1::CheckpointRecord record;
    record.set_job(req.job());
    record.set_step(req.step());
    record.set_state(v1::PENDING);
    record.set_num_shards(req.num_shards());
    record.set_created_at_micros(clock_->NowMicros());
    record.set_staging_dir(StagingDir(req.job(), req.step()));
    for (int i = 0; i < req.num_shards(); ++i) record.add_shards()->set_index(i);
    it = live_.emplace(key, std::move(record)).first;
  }
  v1::CheckpointRecord& record = it->second;
  if (record.state() != v1::PENDING) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint ", name, " is being committed; steps cannot be overwritten"));
  }
  if (record.num_shards() != req.num_shards()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint ", name, " was begun with ", record.num_shards(), " shards; shard ",
        req.shard_index(), " says ", req.num_shards()));
  }
  std::vector<std::string> live = LiveWriterIds();
  if (live.empty()) return absl::UnavailableError("no live shard writers are registered");
  // Least loaded live writer; ties go round-robin.
  std::string chosen;
  for (size_t k = 0; k < live.size(); ++k) {
    const std::string& id = live[(next_writer_ + k) % live.size()];
    if (chosen.empty() || writers_[id].active_shards < writers_[chosen].active_shards) chosen = id;
  }
  next_writer_ = static_cast<int>((next_writer_ + 1) % live.size());

  v1::CheckpointRecord updated = record;
  v1::ShardRecord* shard = updated.mutable_shards(req.shard_index());
  if (!shard->token().empty()) {
    // A retry replaces the earlier attempt, durable or not.
    shard->add_old_staging_prefixes(shard->staging_prefix());
    if (!shard->durable() && writers_.count(shard->writer_id())) {
      --writers_[shard->writer_id()].active_shards;
    }
  }
  const std::string token = NewToken();
  shard->set_token(token);
  shard->set_writer_id(chosen);
  shard->set_durable(false);
  shard->clear_files();
  shard->set_staging_prefix(absl::StrFormat("%s/shard-%05d-%s/part", updated.staging_dir(),
                                            req.shard_index(), token.substr(0, 12)));
  for (const auto& [m, v] : req.metrics()) (*updated.mutable_metrics())[m] = v;
  RETURN_IF_ERROR(catalog_->PutCheckpoint(updated));
  record = std::move(updated);
  ++writers_[chosen].active_shards;
  {
    Where where = At(req.job(), req.step());
    where.shard = req.shard_index();
    where.num_shards = req.num_shards();
    Log(where, absl::StrCat("shard assigned to writer ", chosen));
  }

  v1::BeginShardResponse resp;
  resp.set_writer_address(writers_[chosen].address);
  resp.set_token(token);
  resp.set_staging_prefix(record.shards(req.shard_index()).staging_prefix());
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
  bool complete = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(key);
    if (it != live_.end() && it->second.state() == v1::COMMITTING &&
        req.shard_index() >= 0 && req.shard_index() < it->second.num_shards() &&
        it->second.shards(req.shard_index()).token() == req.token()) {
      v1::ShardDurableResponse resp;  // decided: the commit will complete
      resp.set_committed(true);
      resp.set_state(v1::COMMITTING);
      return resp;
    }
    if (it == live_.end() || it->second.state() != v1::PENDING) {
      // A report repeated after a coordinator restart: the recovery may have
      // committed the checkpoint already, with this very attempt in it.
      auto done = catalog_->GetCheckpoint(req.job(), req.step());
      if (done.ok() && done->state() == v1::COMMITTED && req.shard_index() >= 0 &&
          req.shard_index() < done->num_shards() &&
          done->shards(req.shard_index()).token() == req.token()) {
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
    RETURN_IF_ERROR(catalog_->PutCheckpoint(updated));
    record = std::move(updated);
    auto w = writers_.find(current.writer_id());
    if (w != writers_.end()) --w->second.active_shards;
    complete = AllDurable(record);
    // Claimed here, under the same lock, so the background retry never
    // races this thread for the commit.
    if (complete) complete = completing_.insert(key).second;
  }
  v1::ShardDurableResponse resp;
  if (!complete) {
    resp.set_state(v1::PENDING);
    return resp;
  }
  CrashPoint("after_all_durable");
  absl::Status s = CompleteCheckpointLocked(key);
  {
    std::lock_guard<std::mutex> lock(mu_);
    completing_.erase(key);
  }
  RETURN_IF_ERROR(s);
  resp.set_committed(true);
  resp.set_state(v1::COMMITTED);
  return resp;
}

// ----------------------------------------------------------------- commit

absl::StatusOr<std::vector<MergedFile>> CoordinatorService::Merge(
    const Key& key, const std::vector<std::string>& parts, const std::string& output) {
  std::vector<std::string> addresses;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& id : LiveWriterIds()) addresses.push_back(writers_[id].address);
  }
  v1::MergeRequest req;
  for (const std::string& p : parts) req.add_part_prefixes(p);
  req.set_output_prefix(output);
  for (const std::string& address : addresses) {
    auto channel = rpc::NewChannel(address, options_.tls);
    if (!channel.ok()) {
      Log(At(key.first, key.second), absl::StrCat("merge on writer ", address, ": ", channel.status().message()));
      continue;
    }
    auto stub = v1::ShardWriter::NewStub(*channel);
    auto ctx = rpc::Context(std::chrono::minutes(10));
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
    if (absl::IsInvalidArgument(s) || absl::IsDataLoss(s)) return s;
    Log(At(key.first, key.second), absl::StrCat("merge on writer ", address, " failed: ", s.message()));
  }
  // No writer could do it: the coordinator reaches the same storage.
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
  absl::Status s = CompleteCheckpointLocked(key);
  std::lock_guard<std::mutex> lock(mu_);
  completing_.erase(key);
  return s;
}

absl::Status CoordinatorService::CompleteCheckpointLocked(const Key& key) {
  v1::CheckpointRecord record;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(key);
    if (it == live_.end() || it->second.state() != v1::PENDING || !AllDurable(it->second)) {
      return absl::OkStatus();  // committed or aborted meanwhile
    }
    record = it->second;
  }
  const std::string name = Name(key.first, key.second);
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
  auto merged = Merge(key, parts, merged_prefix);
  if (!merged.ok()) {
    if (absl::IsInvalidArgument(merged.status()) || absl::IsDataLoss(merged.status())) {
      const std::string why = absl::StrCat("checkpoint ", name, " cannot be committed: ",
                                           merged.status().message());
      RETURN_IF_ERROR(Abort(key, why));
      return absl::FailedPreconditionError(absl::StrCat(why, "; it was aborted"));
    }
    return merged.status();
  }
  CrashPoint("after_merge");

  // The decision: from here on the checkpoint will be committed, whatever
  // crashes. Data files keep the CRCs their writers computed.
  {
    std::lock_guard<std::mutex> lock(mu_);
    v1::CheckpointRecord& live = live_.at(key);
    v1::CheckpointRecord updated = live;
    updated.set_state(v1::COMMITTING);
    updated.clear_files();
    uint64_t bytes = 0;
    for (size_t i = 0; i < merged->size(); ++i) {
      const MergedFile& f = (*merged)[i];
      auto* info = updated.add_files();
      info->set_path(f.path);
      info->set_size(f.size);
      info->set_crc32c(f.crc32c);
      info->set_sha256(f.sha256);
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
    live = std::move(updated);
  }
  CrashPoint("after_decide");
  return FinishCommit(key);
}

absl::Status CoordinatorService::FinishCommit(const Key& key) {
  std::lock_guard<std::mutex> job_lock(JobLock(key.first));
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
  CrashPoint("after_publish");
  updated.set_state(v1::COMMITTED);
  updated.set_committed_at_micros(clock_->NowMicros());
  {
    // The state file lists this checkpoint as committed.
    std::lock_guard<std::mutex> lock(mu_);
    live_.at(key) = updated;
  }
  RETURN_IF_ERROR(WriteStateFile(record.job()));
  CrashPoint("after_state_file");
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
  // Retention runs right after each commit. Its failure does not undo the
  // commit; the next commit or gc retries.
  int deleted = 0;
  auto retained = ApplyRetentionLocked(record.job(), /*dry_run=*/false, &deleted);
  if (!retained.ok()) {
    Log(At(record.job(), -1), absl::StrCat("retention: ", retained.status().message()));
  }
  return absl::OkStatus();
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
    const std::string& job, bool dry_run, int* deleted) {
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
  std::vector<v1::CheckpointRecord> doomed;
  for (const Decision& d : decisions) {
    if (d.keep) continue;
    v1::CheckpointRecord r = committed.at(d.step);
    r.set_state(v1::DELETING);
    RETURN_IF_ERROR(catalog_->PutCheckpoint(r));
    Log(At(job, d.step), absl::StrCat("retention: deleting: ", d.reason));
    doomed.push_back(std::move(r));
  }
  if (doomed.empty()) return decisions;
  CrashPoint("after_mark_deleting");
  // The state file stops naming them before any of their files go.
  RETURN_IF_ERROR(WriteStateFile(job));
  for (const auto& r : doomed) {
    RETURN_IF_ERROR(FinishDeletion(r));
    ++*deleted;
    metrics::Counter("cairn_retention_deletions_total", "Checkpoints deleted by retention.").Add(1);
  }
  return decisions;
}

absl::Status CoordinatorService::FinishDeletion(const v1::CheckpointRecord& record) {
  // Exactly the files of the inventory: never a directory listing, so files
  // Cairn did not write survive (and keep the directory).
  bool first = true;
  for (const auto& f : record.files()) {
    RETURN_IF_ERROR(storage_->Delete(f.path()));
    if (first) CrashPoint("mid_delete");
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
    if (it == live_.end() || it->second.state() != v1::PENDING) return absl::OkStatus();
    record = it->second;
    record.set_state(v1::ABORTED);
    RETURN_IF_ERROR(catalog_->PutCheckpoint(record));
    for (const auto& shard : record.shards()) {
      auto w = writers_.find(shard.writer_id());
      if (!shard.durable() && !shard.token().empty() && w != writers_.end()) --w->second.active_shards;
    }
    live_.erase(it);
  }
  Log(At(key.first, key.second), absl::StrCat("aborted: ", why));
  RemoveStaging(record);
  return absl::OkStatus();
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
    std::lock_guard<std::mutex> job_lock(JobLock(req->job()));
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
  std::lock_guard<std::mutex> job_lock(JobLock(req->job()));
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
  std::lock_guard<std::mutex> job_lock(JobLock(req->job()));
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
  std::lock_guard<std::mutex> job_lock(JobLock(req->job()));
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
  std::lock_guard<std::mutex> job_lock(JobLock(req->job()));
  auto record = catalog_->GetCheckpoint(req->job(), req->step());
  if (!record.ok() || record->state() != v1::COMMITTED) {
    return rpc::ToGrpc(absl::NotFoundError(absl::StrCat(
        "job ", req->job(), " has no committed checkpoint at step ", req->step())));
  }
  v1::LeaseRecord lease;
  {
    std::lock_guard<std::mutex> lock(mu_);
    lease.set_lease_id(absl::StrCat("l-", NewToken()));
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

// ----------------------------------------------------------------- status

namespace {
const char* StateText(v1::CheckpointState s) {
  switch (s) {
    case v1::PENDING: return "pending";
    case v1::COMMITTING: return "committing";
    case v1::COMMITTED: return "committed";
    case v1::ABORTED: return "aborted";
    case v1::DELETING: return "deleting";
    default: return "unknown";
  }
}
}  // namespace

absl::StatusOr<std::string> CoordinatorService::JobsJson() {
  ASSIGN_OR_RETURN(auto records, catalog_->ListCheckpoints(""));
  std::map<std::string, nlohmann::json> jobs;
  for (const auto& r : records) {
    auto& j = jobs[r.job()];
    if (j.is_null()) j = {{"job", r.job()}, {"committed", 0}, {"pending", 0}, {"aborted", 0},
                          {"bytes", 0}, {"newest_step", nullptr}};
    const std::string state = StateText(r.state());
    if (state == "committed") {
      j["committed"] = j["committed"].get<int>() + 1;
      j["bytes"] = j["bytes"].get<uint64_t>() + r.bytes();
      j["newest_step"] = r.step();
    } else if (state == "aborted") {
      j["aborted"] = j["aborted"].get<int>() + 1;
    } else {
      j["pending"] = j["pending"].get<int>() + 1;
    }
  }
  nlohmann::json out = {{"jobs", nlohmann::json::array()}};
  for (auto& [name, j] : jobs) out["jobs"].push_back(j);
  return out.dump();
}

absl::StatusOr<std::string> CoordinatorService::JobJson(const std::string& job) {
  RETURN_IF_ERROR(ValidateJobName(job));
  std::map<int64_t, std::vector<std::string>> kept_by;
  {
    std::lock_guard<std::mutex> job_lock(JobLock(job));
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
                        {"state", StateText(r.state())},
                        {"created_at", r.created_at_micros() / 1e6},
                        {"committed_at", r.committed_at_micros() / 1e6},
                        {"bytes", r.bytes()},
                        {"num_shards", r.num_shards()},
                        {"pinned", r.pinned()},
                        {"kept_by", kept_by[r.step()]},
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
        if (r.state() == v1::PENDING && !AllDurable(r) &&
            now - r.created_at_micros() > options_.pending_timeout_ms * 1000) {
          expired.push_back(key);
        } else if (r.state() == v1::PENDING && AllDurable(r) && !completing_.count(key)) {
          uncompleted.push_back(key);  // an earlier commit attempt failed
        } else if (r.state() == v1::COMMITTING) {
          unfinished.push_back(key);
        }
      }
    }
    for (const Key& key : uncompleted) CompleteCheckpoint(key).IgnoreError();
    {
      std::lock_guard<std::mutex> lock(mu_);
      static auto& pending = metrics::Gauge("cairn_checkpoints_pending", "Checkpoints not yet committed.");
      pending.Set(static_cast<double>(live_.size()));
      static auto& live_writers = metrics::Gauge("cairn_writers_live", "Shard writers heartbeating.");
      live_writers.Set(static_cast<double>(LiveWriterIds().size()));
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
      Abort(key, absl::StrCat("not all shards arrived within ", options_.pending_timeout_ms,
                              " ms"))
          .IgnoreError();
    }
    for (const Key& key : unfinished) FinishCommit(key).IgnoreError();
    bg_lock.lock();
  }
}

}  // namespace internal
}  // namespace cairn
