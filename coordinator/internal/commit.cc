// The commit protocol's second half (commit_state.h has the state machine):
// the merge, the decision, publishing, aborts, and the TensorFlow
// `checkpoint` state file. The shard reports that lead here are in
// shards.cc.
#include "coordinator/internal/service.h"

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coordinator/internal/commit_state.h"
#include "coordinator/internal/service_util.h"
#include "storage/bundle/checkpoint_state.h"
#include "proto/rpc/auth.h"

#include "observability/log.h"
#include "observability/metrics.h"
#include "observability/sync_point.h"
#include "proto/rpc/rpc_util.h"
#include "proto/layout.h"
#include "storage/status_macros.h"
#include "storage/bundle/tensor.h"

namespace cairn {
namespace internal {

using logging::Log;
using logging::Where;

namespace {

// Merge failures that no retry can fix: the checkpoint is aborted.
bool PermanentMergeFailure(const absl::Status& s) {
  return absl::IsInvalidArgument(s) || absl::IsDataLoss(s) || absl::IsNotFound(s) ||
         absl::IsFailedPrecondition(s);
}

// Where the parts of this incarnation of a step are merged. One directory
// per incarnation (its creation time): a merge abandoned by an earlier,
// aborted incarnation can never leave files this one takes.
std::string MergedPrefix(const v1::CheckpointRecord& record) {
  return absl::StrCat(record.staging_dir(), "/merged-", record.created_at_micros(), "/variables");
}

}  // namespace

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
    if (absl::IsDeadlineExceeded(s)) {
      // The writer may still be merging: a second merge now would race it.
      // The step stays MERGING; the background loop tries again.
      return absl::UnavailableError(absl::StrCat("merge on writer ", address, " timed out: ", s.message()));
    }
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

absl::StatusOr<bool> CoordinatorService::PartsStillWhole(const v1::CheckpointRecord& record,
                                                          const std::string& merged_prefix) {
  ASSIGN_OR_RETURN(bool merged_index, storage_->Exists(IndexFileName(merged_prefix)));
  const int n = record.num_shards();
  for (int i = 0; i < n; ++i) {
    const std::string& part = record.shards(i).staging_prefix();
    ASSIGN_OR_RETURN(bool data, storage_->Exists(DataFileName(part, 0, 1)));
    if (!data) {
      ASSIGN_OR_RETURN(data, storage_->Exists(DataFileName(merged_prefix, i, n)));
    }
    if (!data) return false;
    if (!merged_index) {
      ASSIGN_OR_RETURN(bool index, storage_->Exists(IndexFileName(part)));
      if (!index) return false;
    }
  }
  return true;
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
    std::unique_lock<std::mutex> lock(mu_);
    auto it = live_.find(key);
    if (it == live_.end()) {
      // Finished by another thread meanwhile: say how, from the catalog.
      ASSIGN_OR_RETURN(v1::CheckpointRecord done, catalog_->GetCheckpoint(key.first, key.second));
      if (done.state() == v1::COMMITTED) return absl::OkStatus();
      return absl::AbortedError(absl::StrCat("checkpoint ", name, " was ", StateName(done.state()),
                                             (done.abort_reason().empty() ? "" : ": "),
                                             done.abort_reason()));
    }
    if (it->second.record.state() == v1::COMMITTING) {
      lock.unlock();
      return FinishCommit(key);
    }
    if (it->second.record.state() != v1::MERGING) {
      return absl::InternalError(absl::StrCat("checkpoint ", name, " is ",
                                              StateName(it->second.record.state()), ", not merging"));
    }
    record = it->second.record;
  }
  int64_t tensors = 0;
  for (const auto& shard : record.shards()) tensors += shard.num_tensors();
  if (tensors == 0) {
    return AbortRefused(key, absl::StrCat("checkpoint ", name,
                                          " holds no tensors: an empty save cannot be committed"));
  }
  std::vector<std::string> parts;
  for (const auto& shard : record.shards()) parts.push_back(shard.staging_prefix());
  const std::string merged_prefix = MergedPrefix(record);
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
    const bool lost = PermanentMergeFailure(merged.status());
    if (absl::IsNotFound(merged.status())) {
      // A file gone: lost for good, or moved by another merge of the same
      // parts still running (after a timed-out call)? Only a loss aborts.
      ASSIGN_OR_RETURN(bool whole, PartsStillWhole(record, merged_prefix));
      if (whole) {
        return absl::UnavailableError(absl::StrCat("checkpoint ", name, ": merge raced another (",
                                                   merged.status().message(), "); retrying"));
      }
    }
    if (!lost) return merged.status();
    return AbortRefused(key, absl::StrCat("checkpoint ", name, " cannot be committed: ",
                                          merged.status().message()));
  }
  if (record.num_shards() == 1) {
    // A one-part merge publishes the part's index as its writer wrote it
    // (no entry is decoded, so no block checksum is checked): it must still
    // be the bytes that writer reported.
    const MergedFile& index = merged->back();
    for (const auto& reported : record.shards(0).files()) {
      if (absl::EndsWith(reported.path(), ".index") && reported.crc32c() != index.crc32c) {
        return AbortRefused(key, absl::StrCat("checkpoint ", name, " cannot be committed: its index ",
                                              reported.path(), " changed on storage after its writer "
                                              "reported it (CRC32C ", reported.crc32c(), ", now ",
                                              index.crc32c, ")"));
      }
    }
  }
  CAIRN_SYNC_POINT("after_merge");

  // The decision: from here on the checkpoint will be committed, whatever
  // crashes. Only if nothing changed while the parts were merged.
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(key);
    if (it == live_.end() || it->second.record.state() != v1::MERGING) {
      return absl::AbortedError(
          absl::StrCat("checkpoint ", name, " was aborted while its parts were merged"));
    }
    for (int i = 0; i < record.num_shards(); ++i) {
#ifdef CAIRN_PLANTED_BUG
      break;
#endif
      if (it->second.record.shards(i).token() != record.shards(i).token()) {
        return absl::InternalError(absl::StrCat("checkpoint ", name, ": shard ", i,
                                                " changed during its merge (a bug); not committed"));
      }
    }
    v1::CheckpointRecord& live = it->second.record;
    v1::CheckpointRecord updated = CopyWithoutShards(&live);
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
        for (const auto& sf : live.shards(static_cast<int>(i)).files()) {
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
    updated.mutable_shards()->Swap(live.mutable_shards());
    live = std::move(updated);
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
    if (it == live_.end() || it->second.record.state() != v1::COMMITTING) return absl::OkStatus();
    record = CopyWithoutShards(&it->second.record);  // publishing needs only the files
  }
  // Publish: data files first, the index last; each rename is atomic and
  // durable, and a rename already done is skipped when this runs again.
  // Where the merge put the files: the index's directory (merged-T/, or
  // merged/ for a commit decided by an older version).
  std::string merged_dir = absl::StrCat(record.staging_dir(), "/merged/");
  for (const auto& f : record.files()) {
    if (absl::EndsWith(f.path(), ".index") && absl::StartsWith(f.path(), record.staging_dir() + "/")) {
      merged_dir = f.path().substr(0, f.path().rfind('/') + 1);
    }
  }
  const std::string final_prefix = CheckpointPrefix(record.job(), record.step());
  v1::CheckpointRecord updated = record;
  for (int pass = 0; pass < 2; ++pass) {
    // One batch per pass: a local root syncs its directories once per batch.
    std::vector<std::pair<std::string, std::string>> moves;
    for (auto& f : *updated.mutable_files()) {
      const bool is_index = absl::EndsWith(f.path(), ".index");
      if ((pass == 0) == is_index) continue;
      if (!absl::StartsWith(f.path(), merged_dir)) continue;  // published already
      const std::string dst =
          absl::StrCat(final_prefix, f.path().substr(merged_dir.size() + std::string("variables").size()));
      ASSIGN_OR_RETURN(bool src_exists, storage_->Exists(f.path()));
      if (src_exists) {
        moves.emplace_back(f.path(), dst);
      } else {
        ASSIGN_OR_RETURN(bool dst_exists, storage_->Exists(dst));
        if (!dst_exists) {
          return absl::DataLossError(absl::StrCat("commit of ", Name(key.first, key.second),
                                                  ": staged file ", f.path(), " is missing"));
        }
      }
      f.set_path(dst);
    }
    RETURN_IF_ERROR(storage_->RenameMany(moves));
  }
  CAIRN_SYNC_POINT("after_publish");
  RETURN_IF_ERROR(Transition(&updated, v1::COMMITTED));
  updated.set_committed_at_micros(clock_->NowMicros());
  // live_ keeps the record COMMITTING until the catalog says COMMITTED: if
  // either write below fails, the background loop finishes the commit.
  RETURN_IF_ERROR(WriteStateFile(record.job(), &updated));
  CAIRN_SYNC_POINT("after_state_file");
  RETURN_IF_ERROR(catalog_->PutCheckpoint(updated));
  LiveCheckpoint done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(key);
    if (it != live_.end()) {
      done = std::move(it->second);
      live_.erase(it);
    }
  }
  LastCommitGauge(key.first).Set(static_cast<double>(updated.committed_at_micros()) / 1e6);
  Log(At(key.first, key.second), absl::StrCat("committed: ", updated.num_shards(), " shards, ",
                                              updated.bytes(), " bytes"));
  metrics::Counter("cairn_commits_total", "Checkpoints committed.").Add(1);
  metrics::Counter("cairn_committed_bytes_total", "Bytes of committed checkpoints.")
      .Add(static_cast<double>(updated.bytes()));
  RemoveStaging(done.record.shards_size() > 0 ? done.record : record);
  auto job = catalog_->GetJob(record.job());
  if (!job.ok() || job->first_commit_micros() == 0) {
    v1::JobRecord j = job.ok() ? *job : v1::JobRecord();
    j.set_job(record.job());
    j.set_first_commit_micros(updated.committed_at_micros());
    RETURN_IF_ERROR(catalog_->PutJob(j));
  }
  return absl::OkStatus();
}

absl::Status CoordinatorService::WriteStateFile(const std::string& job,
                                                const v1::CheckpointRecord* committing) {
  ASSIGN_OR_RETURN(auto records, catalog_->ListCheckpoints(job));
  std::map<int64_t, double> committed;  // step → commit time (s)
  for (const auto& r : records) {
    if (r.state() == v1::COMMITTED) committed[r.step()] = r.committed_at_micros() / 1e6;
  }
  if (committing != nullptr) committed[committing->step()] = committing->committed_at_micros() / 1e6;
  if (committed.empty()) return storage_->Delete(StateFilePath(job));
  CheckpointStateFile state;
  state.model_checkpoint_path = StateFileEntry(committed.rbegin()->first);
  for (const auto& [step, t] : committed) {
    state.all_model_checkpoint_paths.push_back(StateFileEntry(step));
    state.all_model_checkpoint_timestamps.push_back(t);
  }
  ASSIGN_OR_RETURN(auto file, storage_->NewWritableFile(StateFilePath(job)));
  RETURN_IF_ERROR(file->Append(FormatStateFile(state)));
  CAIRN_SYNC_POINT("state_file_staged");
  return file->Close();
}

absl::Status CoordinatorService::Abort(const Key& key, const std::string& why, const char* kind) {
  v1::CheckpointRecord record;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = live_.find(key);
    // Shard writes in flight land first (none starts: the abort's caller
    // has claimed the step in completing_).
    writes_done_.wait(lock, [&] {
      it = live_.find(key);
      return it == live_.end() || it->second.writing.empty();
    });
    if (it == live_.end() || !Undecided(it->second.record.state())) return absl::OkStatus();
    record = it->second.record;
    RETURN_IF_ERROR(Transition(&record, v1::ABORTING));
    record.set_abort_reason(why);
    RETURN_IF_ERROR(catalog_->PutCheckpoint(record));
    for (const auto& shard : record.shards()) {
      if (!shard.durable() && !shard.token().empty()) writers_.Release(shard.writer_id());
    }
    live_.erase(it);
  }
  Log(At(key.first, key.second), absl::StrCat("aborted: ", why));
  metrics::Counter("cairn_aborts_total",
                   "Checkpoints aborted, by reason: timeout (shards missing or a merge failing past "
                   "the pending timeout), rollback, refused (can never commit: empty, duplicate "
                   "tensors, a lost part).",
                   {{"reason", kind}})
      .Add(1);
  return FinishAbort(std::move(record));
}

absl::Status CoordinatorService::AbortRefused(const Key& key, const std::string& why) {
  RETURN_IF_ERROR(Abort(key, why, "refused"));
  return absl::FailedPreconditionError(absl::StrCat(why, "; it was aborted"));
}

absl::Status CoordinatorService::FinishAbort(v1::CheckpointRecord record) {
  CAIRN_SYNC_POINT("abort_before_cleanup");
  RemoveStaging(record);
  RETURN_IF_ERROR(Transition(&record, v1::ABORTED));
  return catalog_->PutCheckpointDroppingShards(record);
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
  add_parent(MergedPrefix(record));
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

}  // namespace internal
}  // namespace cairn
