// The client library training code links: save this worker's shard of a
// step, list checkpoints, and restore any step — whole tensors, a subset, or
// any slice of a partitioned tensor (a job saved by 4 workers can be
// restored by 2 or by 8). Restores read the checkpoint files directly from
// storage, in parallel, checking every CRC; the coordinator only says where.
//
//   ASSIGN_OR_RETURN(auto client, cairn::Client::Connect({"127.0.0.1:7070"}));
//   std::vector<cairn::SaveTensor> mine = {
//       {"dense/kernel", cairn::DataType::kFloat, {64, 32}, std::nullopt, kernel_bytes},
//       {"emb", cairn::DataType::kFloat, {1000, 64}, cairn::TensorSlice({{250, 250}, {}}), rows},
//   };
//   ASSIGN_OR_RETURN(auto saved, client->SaveShard({"job", 100, /*shard=*/1, /*of=*/4}, mine));
//   ASSIGN_OR_RETURN(auto tensors, client->Restore("job", std::nullopt, {}));
//
// A Client is thread-safe.
#ifndef CAIRN_CLIENT_CLIENT_H_
#define CAIRN_CLIENT_CLIENT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/progress.h"
#include "proto/rpc/tls_options.h"
#include "storage/bundle/dtype.h"
#include "storage/bundle/tensor.h"
#include "storage/bundle/tensor_slice.h"
#include "storage/storage.h"

namespace cairn {

struct ClientOptions {
  std::string coordinator;          // HOST:PORT of the coordinator, or HOST:PORT,HOST:PORT...
  int64_t rpc_timeout_ms = 60000;   // per unary call
  // With several coordinators: how long a call that is safe to repeat
  // (list, get, policies, pin, gc, leasing) is tried again while none
  // answers, as during a failover (the old leader's lease TTL, then the new
  // leader's recovery). At most rpc_timeout_ms. With one coordinator, an
  // unreachable one fails the call at once.
  int64_t failover_wait_ms = 30000;
  int64_t save_timeout_ms = 3600000;  // a whole SaveShard stream, incl. commit
  int restore_threads = 4;          // parallel tensor reads on restore
  // TLS: tls.ca_file (or a client certificate) makes every channel TLS,
  // verifying servers against ca_file; cert_file/key_file are presented
  // for mutual TLS.
  TlsOptions tls;
  // Authorization token from `cairn token` (sent as "authorization: Bearer
  // TOKEN" on every call); empty when the coordinator runs without auth.
  std::string token;
  StorageOptions storage;           // how restores reach the storage (S3 credentials, ...)
};

// One tensor, or one slice of a partitioned tensor, that a worker saves.
// `data` is borrowed: it must stay valid until SaveShard returns.
struct SaveTensor {
  std::string name;
  DataType dtype = DataType::kInvalid;
  std::vector<int64_t> shape;         // the full tensor's shape
  std::optional<TensorSlice> slice;   // set for a slice of a partitioned tensor
  absl::string_view data;             // row-major little-endian bytes (of the slice)
  std::vector<std::string> strings;   // the values of a DT_STRING tensor
};

struct SaveShardOptions {
  std::string job;
  int64_t step = 0;
  int shard_index = 0;
  int num_shards = 1;
  std::map<std::string, double> metrics;  // e.g. {"loss": 0.25}, for retention
  // Bytes of tensor data sent to the shard writer, of all the tensors'
  // `data` (client/progress.h). Called on the thread that streams: the
  // caller's for SaveShard, the background one for SaveShardAsync. After
  // the last byte the save still waits for the shard to be durable (and,
  // for the last shard, the commit). Default: none.
  ProgressFn progress = nullptr;
};

struct SaveShardResult {
  bool committed = false;  // this shard completed the checkpoint, now committed
  uint64_t bytes = 0;
  int64_t num_tensors = 0;
};

// One file of a committed checkpoint, as recorded in the catalog at commit.
struct CheckpointFile {
  std::string path;    // relative to the storage root
  uint64_t size = 0;
  uint32_t crc32c = 0;
  std::string sha256;  // 32 raw bytes (empty if not recorded)
};

// Where a checkpoint is in its life (the coordinator's commit protocol).
enum class CheckpointState {
  kUnspecified,
  kPending,     // shards arriving
  kMerging,     // every shard durable; the index parts being merged
  kCommitting,  // commit decided; being published
  kCommitted,   // restorable
  kAborting,    // abort decided; staged files being removed
  kAborted,
  kDeleting,    // chosen by retention, rollback or delete; files being removed
};

// "pending", "merging", "committing", "committed", "aborting", "aborted",
// "deleting" ("unspecified" otherwise): as the CLI, Python and the status
// page print it.
absl::string_view CheckpointStateName(CheckpointState state);

struct CheckpointSummary {
  std::string job;
  int64_t step = 0;
  CheckpointState state = CheckpointState::kUnspecified;
  int num_shards = 0;
  int64_t created_at_micros = 0;
  int64_t committed_at_micros = 0;
  uint64_t bytes = 0;
  std::map<std::string, double> metrics;
  bool pinned = false;
  std::vector<std::string> kept_by;  // retention rules keeping it
  std::string prefix_uri;            // ROOT/JOB/ckpt-STEP/variables as a URI
  std::vector<CheckpointFile> files;  // the inventory
  int shards_durable = 0;            // of num_shards (all of them once committed)
  std::string abort_reason;          // aborting / aborted: why
};

struct ListOptions {
  // Also the steps not committed: pending (with shards_durable), aborted
  // (with abort_reason), being deleted.
  bool include_uncommitted = false;
  // NotFound "no job named JOB" if the catalog does not know the job at
  // all (rather than an empty list): for people, whose typo it may be.
  bool require_job = false;
};

// A job as `ListJobs` reports it.
struct JobSummary {
  std::string job;
  std::optional<int64_t> newest_step;  // none until something commits
  int64_t newest_committed_at_micros = 0;
  int committed = 0;
  int pending = 0;
  int aborted = 0;
  uint64_t bytes = 0;  // of the committed checkpoints
};

// What to restore: every tensor (empty `tensors`), or the named ones; a
// tensor listed in `slices` is restored as that slice of its full shape.
struct RestoreRequest {
  std::vector<std::string> tensors;
  std::map<std::string, TensorSlice> slices;
  // Optional: the full shape the caller expects of a tensor (e.g. the one
  // it gave with a slice). InvalidArgument naming both shapes if the
  // checkpoint's differs, checked from the index before any data is read.
  // Names must also be selected (all tensors, `tensors` or `slices`).
  std::map<std::string, std::vector<int64_t>> full_shapes;
  // Local checkpoints only (other storage is read as usual): whole tensors
  // come back as copy-on-write views of the files' pages instead of copies
  // (BundleReaderOptions::map_files), every checksum still verified. The
  // fastest restore; the files must not be rewritten in place meanwhile.
  bool map_files = false;
  // Tensors restored into the caller's memory instead of new buffers (say,
  // a model's existing parameters, as PyTorch's load_state_dict does): name
  // -> exactly the bytes of what is restored for that name (its slice, if
  // one is asked). Every size is checked before anything is read or
  // written; the RestoredTensor's data then views that memory. Fixed-size
  // dtypes only. If the restore fails midway (a corrupt tensor), some
  // destinations may hold new data.
  std::map<std::string, absl::Span<char>> into;
  // Optional, for names in `into`: the destination's shape, and the dtypes
  // it may hold. InvalidArgument (naming both) unless what is restored for
  // the name (its slice, if one is asked) has exactly that shape and one of
  // those dtypes, checked with the sizes: a size check alone fills an
  // [8, 16] array from a [16, 8] tensor, or floats with ints' bits.
  std::map<std::string, std::vector<int64_t>> into_shapes;
  std::map<std::string, std::vector<DataType>> into_dtypes;
};

struct RestoredTensor {
  Tensor tensor;                      // the data (of the slice, if one was asked)
  std::vector<int64_t> full_shape;    // the whole tensor's shape
  std::optional<TensorSlice> slice;   // the slice restored, if any
};

using RestoredTensors = std::map<std::string, RestoredTensor>;

// A job's retention policy (see `cairn policy`): rules combine as a union;
// zero / empty = the rule is off; all off = keep everything.
struct RetentionPolicy {
  int64_t keep_last = 0;
  int64_t keep_every_steps = 0;
  double keep_every_hours = 0;
  int64_t keep_best = 0;
  std::string metric;     // required with keep_best
  bool maximize = false;  // keep_best keeps the largest values (default: smallest)
};

// A policy's rules: counts (keep_last, keep_every_steps, keep_best) >= 0;
// keep_every_hours finite and >= 0; keep_best > 0 needs a metric name, and a
// metric name needs keep_best > 0. InvalidArgument naming `job` and the rule.
// (SetPolicy checks it too; callers may check first, e.g. to report a usage
// error.)
absl::Status ValidateRetentionPolicy(absl::string_view job, const RetentionPolicy& policy);

struct RetentionDecision {
  int64_t step = 0;
  bool keep = true;
  std::vector<std::string> kept_by;  // "keep-last", "pinned", "newest", ...
  std::string reason;                // human-readable
};

struct GcResult {
  std::vector<RetentionDecision> decisions;  // ascending step
  int deleted = 0;
};

struct RollbackResult {
  std::vector<int64_t> deleted_steps;  // committed checkpoints above the step, removed
  std::vector<int64_t> aborted_steps;  // pending ones above it, aborted
};

class Client;
namespace internal {
class TensorFeed;
}  // namespace internal

// A save running in the background (Client::SaveShardAsync). Wait() returns
// its result once the shard is durable (or the checkpoint committed, for the
// last shard). Destroying a handle does not cancel the save; a failure that
// nobody waited for is reported by the client's next SaveShardAsync (and on
// stderr), never dropped.
class SaveHandle {
 public:
  ~SaveHandle();
  // Blocks until the save finishes. May be called more than once.
  absl::StatusOr<SaveShardResult> Wait();
  // True once Wait() would not block.
  bool Done() const;
  // Microseconds from the SaveShardAsync call until the shard was durable
  // (valid once Done()).
  int64_t durable_after_micros() const;

 private:
  friend class Client;
  struct Rep;
  explicit SaveHandle(std::shared_ptr<Rep> rep);
  std::shared_ptr<Rep> rep_;
};

// One shard's save, fed while it streams (Client::BeginSaveShard): what
// SaveShard does, but the tensors given to Add go to the shard writer while
// the caller prepares the next ones (a state of 10,000 small tensors costs
// its preparation once, not before the transfer). Each tensor's data must
// stay valid until Finish returns or the stream is destroyed, and the
// stream must not outlive its Client. A stream destroyed before Finish is
// abandoned: the shard writer discards what it received, and nothing is
// committed.
class SaveStream {
 public:
  ~SaveStream();
  SaveStream(const SaveStream&) = delete;
  SaveStream& operator=(const SaveStream&) = delete;

  // Checks each tensor as SaveShard does and queues it. The first invalid
  // tensor, or a failure of the stream already seen, fails the save: this
  // call and every later one (Finish included) return that error.
  absl::Status Add(std::vector<SaveTensor> tensors);
  // No more tensors: returns as SaveShard would. Called once.
  absl::StatusOr<SaveShardResult> Finish();

 private:
  friend class Client;
  struct Rep;
  explicit SaveStream(std::unique_ptr<Rep> rep);
  std::unique_ptr<Rep> rep_;
};

class Client {
 public:
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const ClientOptions& options);
  ~Client();

  // Streams this worker's tensors as shard `shard_index` of `num_shards` of
  // `step`. Returns once the shard is durable; the call that completes the
  // last shard returns once the checkpoint is committed. Saving a shard again
  // (a retry) replaces the earlier attempt while the step is pending; once
  // all its shards are durable and the merge has begun, a retry is refused
  // (FailedPrecondition). A step below the job's newest committed step is
  // refused (see Rollback), and so is a checkpoint with no tensors at all.
  // If the assigned writer cannot be reached, the shard is begun again on
  // another (a few attempts) before the call fails.
  absl::StatusOr<SaveShardResult> SaveShard(const SaveShardOptions& options,
                                            const std::vector<SaveTensor>& tensors);

  // Like SaveShard, but returns as soon as the tensors are copied into
  // staging buffers (one memcpy of the state, into huge-page-backed memory):
  // training may modify its tensors right away while the copy streams in the
  // background. At most one async save per Client runs at a time: a new one
  // first waits for the previous to finish, and fails with
  // FailedPrecondition carrying the previous one's error if that failed and
  // nobody called Wait() on it. Validation errors are returned here. The
  // staging buffers are kept between saves and reused when the tensor sizes
  // repeat, so the client holds one extra copy of the state.
  absl::StatusOr<std::unique_ptr<SaveHandle>> SaveShardAsync(const SaveShardOptions& options,
                                                             const std::vector<SaveTensor>& tensors);
  // SaveShard with the tensors given while it streams (SaveStream). The
  // options are checked here (options.progress is not supported: the total
  // is not known up front); the coordinator is asked for a writer on the
  // stream's own thread.
  absl::StatusOr<std::unique_ptr<SaveStream>> BeginSaveShard(const SaveShardOptions& options);

  // Committed checkpoints of `job` (and more, as `options` say), ascending
  // by step.
  absl::StatusOr<std::vector<CheckpointSummary>> List(const std::string& job,
                                                      const ListOptions& options = {});
  // Every job the catalog knows, by name.
  absl::StatusOr<std::vector<JobSummary>> ListJobs();
  // Waits until `step` of `job` is decided: returns its summary once
  // committed; FailedPrecondition with the reason once aborted; NotFound if
  // the coordinator has no such step; DeadlineExceeded after `timeout_ms`.
  absl::StatusOr<CheckpointSummary> WaitUntilDecided(const std::string& job, int64_t step,
                                                     int64_t timeout_ms);
  // One committed checkpoint; std::nullopt = the newest. NotFound if none.
  absl::StatusOr<CheckpointSummary> Get(const std::string& job, std::optional<int64_t> step);

  // Restores from a committed checkpoint (std::nullopt = the newest). Holds
  // a lease on the checkpoint while reading, so retention cannot delete it
  // mid-restore, and first checks every file's size against the catalog's
  // inventory (DataLoss if the storage holds other files than were
  // committed). `progress` as for RestoreFromPrefix.
  // `restored_from`, if given, receives the checkpoint read (its step when
  // `step` was std::nullopt).
  absl::StatusOr<RestoredTensors> Restore(const std::string& job, std::optional<int64_t> step,
                                          const RestoreRequest& request,
                                          const ProgressFn& progress = nullptr,
                                          CheckpointSummary* restored_from = nullptr);

  // Runs `fn` on a committed checkpoint (std::nullopt = the newest) with
  // the same guarantees as Restore — a lease held while `fn` runs, every
  // file's size checked against the inventory first — for callers that
  // read the files themselves (the CLI's streaming restore to a file).
  // Returns fn's status; `read_from`, if given, receives the checkpoint.
  absl::Status ReadCommitted(const std::string& job, std::optional<int64_t> step,
                             const std::function<absl::Status(const CheckpointSummary&)>& fn,
                             CheckpointSummary* read_from = nullptr);

  // Retention (see RetentionPolicy). SetPolicy takes effect at the next
  // commit or Gc.
  absl::Status SetPolicy(const std::string& job, const RetentionPolicy& policy);
  absl::StatusOr<RetentionPolicy> GetPolicy(const std::string& job);
  // A pinned checkpoint is never deleted by retention.
  absl::Status Pin(const std::string& job, int64_t step, bool pinned);
  // Applies retention now (or, with dry_run, only reports what it would do).
  absl::StatusOr<GcResult> Gc(const std::string& job, bool dry_run);

  // Makes `to_step` (a committed checkpoint) the newest of `job`: deletes
  // every committed checkpoint above it and aborts every pending one,
  // rewriting the `checkpoint` state file; refused (FailedPrecondition,
  // naming them) if any above is pinned or leased. Saves move forward: a
  // step below the newest committed one is refused until a rollback makes
  // room. With dry_run, only reports what it would do.
  absl::StatusOr<RollbackResult> Rollback(const std::string& job, int64_t to_step, bool dry_run);

  // Deletes one committed checkpoint as retention would (two-phase: marked,
  // the state file rewritten, then its files removed). Refused
  // (FailedPrecondition, saying why) if it is the job's newest, pinned, or
  // leased by a restore, unless `force`. NotFound if not committed.
  absl::Status Delete(const std::string& job, int64_t step, bool force);

  // Leases: while held (until released or `ttl_ms` passes), retention keeps
  // the checkpoint. Returns the lease id.
  absl::StatusOr<std::string> AcquireLease(const std::string& job, int64_t step, int64_t ttl_ms);
  absl::Status ReleaseLease(const std::string& lease_id);

 private:
  struct Rep;
  explicit Client(std::unique_ptr<Rep> rep);
  // SaveShard's work, reading the tensors from `feed` (client/internal/tensor_feed.h).
  absl::StatusOr<SaveShardResult> SaveFromFeed(const SaveShardOptions& options,
                                               internal::TensorFeed* feed);
  std::unique_ptr<Rep> rep_;
};

// Restores straight from a checkpoint prefix URI (no coordinator), e.g.
// "/data/job/ckpt-100/variables" or "file:///...". `progress` (see
// client/progress.h) counts the bytes of the tensors (or slices) restored,
// one tensor at a time as each is read and checked; it is called from the
// reader threads. A string tensor counts one byte per element.
absl::StatusOr<RestoredTensors> RestoreFromPrefix(absl::string_view prefix_uri,
                                                  const RestoreRequest& request, int threads = 4,
                                                  const ProgressFn& progress = nullptr,
                                                  const StorageOptions& storage = {});

}  // namespace cairn

#endif  // CAIRN_CLIENT_CLIENT_H_
