// The Cairn client library: SaveShard streams tensors to the shard writer the
// coordinator assigns; List/Get ask the coordinator; restores read the
// checkpoint files straight from storage with a pool of threads.
#include "client/client.h"

#include <algorithm>
#include <iostream>
#include <cstring>
#include <condition_variable>
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/internal/lease.h"
#include "client/internal/progress.h"
#include "client/internal/shard_stream.h"
#include "client/internal/validate.h"
#include "proto/layout.h"
#include "proto/cairn.grpc.pb.h"
#include "proto/rpc/rpc_util.h"
#include "storage/bundle/bundle_reader.h"
#include "storage/status_macros.h"
#include "storage/storage.h"

namespace cairn {
namespace {

namespace v1 = ::cairn::v1;

std::string StateName(v1::CheckpointState state) {
  switch (state) {
    case v1::PENDING:
      return "pending";
    case v1::COMMITTING:
      return "committing";
    case v1::COMMITTED:
      return "committed";
    case v1::ABORTED:
      return "aborted";
    case v1::DELETING:
      return "deleting";
    default:
      return "unspecified";
  }
}

CheckpointSummary ToSummary(const v1::CheckpointInfo& info) {
  CheckpointSummary out;
  out.job = info.job();
  out.step = info.step();
  out.state = StateName(info.state());
  out.num_shards = info.num_shards();
  out.created_at_micros = info.created_at_micros();
  out.committed_at_micros = info.committed_at_micros();
  out.bytes = info.bytes();
  out.metrics.insert(info.metrics().begin(), info.metrics().end());
  out.pinned = info.pinned();
  out.kept_by.assign(info.kept_by().begin(), info.kept_by().end());
  out.prefix_uri = info.prefix_uri();
  for (const auto& f : info.files()) out.files.push_back({f.path(), f.size(), f.crc32c(), f.sha256()});
  return out;
}

// A failed RPC to `peer` ("coordinator HOST:PORT") as "CONTEXT: PEER ...:
// MESSAGE", keeping the gRPC code.
absl::Status RpcError(const grpc::Status& s, const std::string& peer, absl::string_view context) {
  const absl::Status status = rpc::FromGrpc(s, peer);
  const bool names_peer = s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                          s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
  std::string message(status.message());
  if (s.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    // E.g. a coordinator older than the call (gRPC's message is often empty).
    message = absl::StrCat("does not support this call", message.empty() ? "" : ": ", message);
  } else if (message.empty()) {
    message = absl::StatusCodeToString(status.code());
  }
  return absl::Status(status.code(), names_peer ? absl::StrCat(context, ": ", message)
                                                : absl::StrCat(context, ": ", peer, ": ", message));
}

// One tensor (or slice) to restore, with a rough cost for scheduling.
struct RestoreItem {
  BundleEntry entry;
  std::optional<TensorSlice> slice;
  uint64_t cost = 0;
};

// Restores one item into caller memory of exactly item.cost bytes: whole
// stored tensors straight from the file (checksummed), anything assembled
// from slices or cut from a tensor through a temporary.
absl::StatusOr<Tensor> ReadInto(const BundleReader& reader, const RestoreItem& item,
                                absl::Span<char> dst) {
  Tensor t;
  t.dtype = item.entry.data_type();
  if (!item.slice.has_value() && !item.entry.is_sliced()) {
    RETURN_IF_ERROR(reader.ReadEntryInto(item.entry, dst.data()));
    t.shape = item.entry.shape;
  } else {
    ASSIGN_OR_RETURN(Tensor read, item.slice.has_value() ? reader.ReadSlice(item.entry.key, *item.slice)
                                                         : reader.ReadTensor(item.entry.key));
    if (read.data.size() != dst.size()) {
      return absl::InternalError(absl::StrCat("tensor \"", item.entry.key, "\": read ",
                                              read.data.size(), " bytes for a ", dst.size(),
                                              "-byte destination"));
    }
    std::memcpy(dst.data(), read.data.data(), dst.size());
    t.shape = std::move(read.shape);
  }
  // A view of the caller's memory: nothing to free.
  t.data = Buffer(std::shared_ptr<char>(dst.data(), [](char*) {}), dst.size());
  return t;
}

}  // namespace

struct SaveHandle::Rep {
  mutable std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  bool waited = false;
  absl::StatusOr<SaveShardResult> result = absl::UnknownError("save still running");
  int64_t durable_after_micros = 0;
  std::string what;
  // The snapshot the background save streams from.
  std::vector<Buffer> buffers;
  std::vector<SaveTensor> tensors;
};

SaveHandle::SaveHandle(std::shared_ptr<Rep> rep) : rep_(std::move(rep)) {}
SaveHandle::~SaveHandle() = default;

absl::StatusOr<SaveShardResult> SaveHandle::Wait() {
  std::unique_lock<std::mutex> lock(rep_->mu);
  rep_->cv.wait(lock, [this] { return rep_->done; });
  rep_->waited = true;
  return rep_->result;
}

bool SaveHandle::Done() const {
  std::lock_guard<std::mutex> lock(rep_->mu);
  return rep_->done;
}

int64_t SaveHandle::durable_after_micros() const {
  std::lock_guard<std::mutex> lock(rep_->mu);
  return rep_->durable_after_micros;
}

struct Client::Rep {
  ClientOptions options;
  std::unique_ptr<v1::Coordinator::Stub> coordinator;

  // The async save in flight (at most one), and its thread.
  std::mutex async_mu;
  std::shared_ptr<SaveHandle::Rep> async_save;
  std::thread async_thread;
  // The previous snapshot's buffers, reused when the next save has the same
  // tensor sizes (as training's usually does): no allocation and no page
  // faults while the training thread waits.
  std::mutex spare_mu;
  std::vector<Buffer> spare_buffers;

  // Channels to shard writers, by address (gRPC channels are thread-safe and
  // reconnect by themselves, so one per writer serves every save).
  std::mutex mu;
  std::map<std::string, std::shared_ptr<grpc::Channel>> writer_channels;

  absl::StatusOr<std::shared_ptr<grpc::Channel>> WriterChannel(const std::string& address) {
    std::lock_guard<std::mutex> lock(mu);
    auto& channel = writer_channels[address];
    if (!channel) {
      ASSIGN_OR_RETURN(channel, rpc::NewChannel(address, options.tls));
    }
    return channel;
  }

  // Every call carries the authorization token, if any.
  std::unique_ptr<grpc::ClientContext> NewContext(std::chrono::milliseconds timeout) const {
    auto ctx = rpc::Context(timeout);
    rpc::SetBearerToken(ctx.get(), options.token);
    return ctx;
  }

  std::unique_ptr<grpc::ClientContext> UnaryContext() const {
    return NewContext(std::chrono::milliseconds(options.rpc_timeout_ms));
  }

  std::string CoordinatorName() const { return absl::StrCat("coordinator ", options.coordinator); }
};

Client::Client(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
Client::~Client() {
  // A running async save finishes (its result stays with its handle).
  std::lock_guard<std::mutex> lock(rep_->async_mu);
  if (rep_->async_thread.joinable()) rep_->async_thread.join();
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  if (options.coordinator.empty()) {
    return absl::InvalidArgumentError("no coordinator address given (HOST:PORT)");
  }
  if (options.rpc_timeout_ms <= 0 || options.save_timeout_ms <= 0) {
    return absl::InvalidArgumentError("client timeouts must be positive");
  }
  auto rep = std::make_unique<Rep>();
  rep->options = options;
  if (rep->options.restore_threads < 1) rep->options.restore_threads = 1;
  ASSIGN_OR_RETURN(auto channel, rpc::NewChannel(options.coordinator, options.tls));
  rep->coordinator = v1::Coordinator::NewStub(channel);
  return std::unique_ptr<Client>(new Client(std::move(rep)));
}

absl::StatusOr<SaveShardResult> Client::SaveShard(const SaveShardOptions& options,
                                                  const std::vector<SaveTensor>& tensors) {
  RETURN_IF_ERROR(internal::ValidateSaveShard(options, tensors));
  const std::string what = absl::StrCat("saving shard ", options.shard_index, "/",
                                        options.num_shards, " of ", options.job, "/",
                                        options.step);

  // A writer that cannot be reached (it died, or is cut off) costs one more
  // attempt, not the save: the shard is begun again on another writer, and
  // the coordinator is told which ones failed so it skips them until they
  // heartbeat again.
  constexpr int kMaxWriterAttempts = 4;
  std::vector<std::string> unreachable;
  v1::SaveShardResponse response;
  for (int attempt = 1;; ++attempt) {
    // 1. The coordinator assigns a writer and an attempt.
    v1::BeginShardRequest begin;
    begin.set_job(options.job);
    begin.set_step(options.step);
    begin.set_shard_index(options.shard_index);
    begin.set_num_shards(options.num_shards);
    begin.mutable_metrics()->insert(options.metrics.begin(), options.metrics.end());
    for (const std::string& w : unreachable) begin.add_unreachable_writers(w);
    v1::BeginShardResponse assigned;
    {
      auto ctx = rep_->UnaryContext();
      grpc::Status s = rep_->coordinator->BeginShard(ctx.get(), begin, &assigned);
      if (!s.ok()) {
        absl::Status error = RpcError(s, rep_->CoordinatorName(), what);
        if (unreachable.empty()) return error;
        return absl::Status(error.code(), absl::StrCat(error.message(), " (after shard writer ",
                                                       unreachable.back(), " was unreachable)"));
      }
    }
    if (assigned.writer_address().empty()) {
      return absl::InternalError(absl::StrCat(what, ": ", rep_->CoordinatorName(),
                                              " assigned no shard writer"));
    }
    const std::string writer_name = absl::StrCat("shard writer ", assigned.writer_address());

    // 2. Stream the shard to that writer.
    ASSIGN_OR_RETURN(auto writer_channel, rep_->WriterChannel(assigned.writer_address()));
    auto ctx = rep_->NewContext(std::chrono::milliseconds(rep_->options.save_timeout_ms));
    auto stream = std::make_unique<internal::ShardStream>(writer_channel, ctx.get(), &response);

    uint64_t data_bytes = 0;
    for (const SaveTensor& t : tensors) data_bytes += t.data.size();
    internal::ProgressCounter progress(options.progress, data_bytes);
    bool sent = [&] {
      progress.Begin();
      v1::SaveShardMessage msg;
      v1::SaveShardHeader* header = msg.mutable_header();
      header->set_job(options.job);
      header->set_step(options.step);
      header->set_shard_index(options.shard_index);
      header->set_num_shards(options.num_shards);
      header->set_token(assigned.token());
      header->set_staging_prefix(assigned.staging_prefix());
      if (!stream->Write(msg)) return false;

      // Data chunks go out straight from the tensors' memory (ShardStream).
      for (const SaveTensor& t : tensors) {
        v1::SaveShardMessage tensor_msg;
        v1::TensorHeader* th = tensor_msg.mutable_tensor();
        th->set_name(t.name);
        th->set_dtype(static_cast<int32_t>(t.dtype));
        th->mutable_shape()->Add(t.shape.begin(), t.shape.end());
        if (t.slice.has_value()) th->set_slice(t.slice->ToString());
        for (const std::string& value : t.strings) th->add_string_values(value);
        if (!stream->Write(tensor_msg)) return false;
        for (size_t pos = 0; pos < t.data.size(); pos += rpc::kChunkBytes) {
          const size_t n = std::min(rpc::kChunkBytes, t.data.size() - pos);
          if (!stream->WriteData(t.data.data() + pos, n)) return false;
          progress.Add(n);
        }
      }
      progress.Finish();
      return stream->WritesDone();
    }();
    grpc::Status finished = stream->Finish();
    if (finished.error_code() == grpc::StatusCode::UNAVAILABLE && attempt < kMaxWriterAttempts) {
      unreachable.push_back(assigned.writer_address());
      continue;
    }
    if (!finished.ok()) {
      return RpcError(finished, writer_name, what);
    }
    if (!sent) {
      // The stream broke but the server reported success: should not happen.
      return absl::UnavailableError(
          absl::StrCat(what, ": the stream to ", writer_name, " broke off"));
    }
    break;
  }
  SaveShardResult result;
  result.committed = response.committed();
  result.bytes = response.bytes();
  result.num_tensors = response.num_tensors();
  return result;
}

namespace {

// Copies [src, src+n) to dst with two threads when it is large: the snapshot
// of an async save is the only time the training thread waits.
void ParallelCopy(char* dst, const char* src, size_t n) {
  constexpr size_t kParallelAbove = 32 << 20;
  if (n < kParallelAbove) {
    std::memcpy(dst, src, n);
    return;
  }
  const size_t half = n / 2 / 4096 * 4096;
  std::thread helper([=] { std::memcpy(dst + half, src + half, n - half); });
  std::memcpy(dst, src, half);
  helper.join();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SaveHandle>> Client::SaveShardAsync(
    const SaveShardOptions& options, const std::vector<SaveTensor>& tensors) {
  RETURN_IF_ERROR(internal::ValidateSaveShard(options, tensors));
  std::lock_guard<std::mutex> lock(rep_->async_mu);
  // One async save at a time: wait for the previous one, and refuse to go on
  // silently past a failure nobody looked at.
  if (rep_->async_thread.joinable()) rep_->async_thread.join();
  if (rep_->async_save) {
    std::lock_guard<std::mutex> prev_lock(rep_->async_save->mu);
    const auto& prev = rep_->async_save->result;
    if (!prev.ok() && !rep_->async_save->waited) {
      const std::string msg = absl::StrCat("the previous async save (", rep_->async_save->what,
                                           ") failed and was never waited for: ",
                                           prev.status().message());
      rep_->async_save->waited = true;  // reported now, once
      return absl::FailedPreconditionError(msg);
    }
  }
  const auto start = std::chrono::steady_clock::now();
  auto save = std::make_shared<SaveHandle::Rep>();
  save->what = absl::StrCat("shard ", options.shard_index, "/", options.num_shards, " of ",
                            options.job, "/", options.step);
  save->buffers.reserve(tensors.size());
  save->tensors.reserve(tensors.size());
  std::vector<Buffer> spare;
  {
    std::lock_guard<std::mutex> spare_lock(rep_->spare_mu);
    spare.swap(rep_->spare_buffers);
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const SaveTensor& t = tensors[i];
    Buffer copy = i < spare.size() && spare[i].size() == t.data.size() ? std::move(spare[i])
                                                                      : Buffer(t.data.size());
    if (!t.data.empty()) ParallelCopy(copy.data(), t.data.data(), t.data.size());
    SaveTensor staged = t;
    staged.data = copy.view();
    save->buffers.push_back(std::move(copy));
    save->tensors.push_back(std::move(staged));
  }
  rep_->async_save = save;
  rep_->async_thread = std::thread([this, save, options, start] {
    auto result = SaveShard(options, save->tensors);
    const int64_t micros = std::chrono::duration_cast<std::chrono::microseconds>(
                               std::chrono::steady_clock::now() - start)
                               .count();
    if (!result.ok()) {
      std::cerr << "cairn: async save of " << save->what << " failed: " << result.status().message()
                << std::endl;
    }
    std::lock_guard<std::mutex> done_lock(save->mu);
    save->result = std::move(result);
    save->durable_after_micros = micros;
    save->tensors.clear();
    {
      std::lock_guard<std::mutex> spare_lock(rep_->spare_mu);
      rep_->spare_buffers = std::move(save->buffers);  // kept for the next snapshot
    }
    save->buffers.clear();
    save->done = true;
    save->cv.notify_all();
  });
  return std::unique_ptr<SaveHandle>(new SaveHandle(save));
}

absl::StatusOr<std::vector<CheckpointSummary>> Client::List(const std::string& job) {
  RETURN_IF_ERROR(ValidateJobName(job));
  v1::ListRequest request;
  request.set_job(job);
  request.set_include_uncommitted(false);
  v1::ListResponse response;
  auto ctx = rep_->UnaryContext();
  grpc::Status s = rep_->coordinator->List(ctx.get(), request, &response);
  if (!s.ok()) {
    return RpcError(s, rep_->CoordinatorName(), absl::StrCat("listing job ", job));
  }
  std::vector<CheckpointSummary> out;
  out.reserve(static_cast<size_t>(response.checkpoints_size()));
  for (const v1::CheckpointInfo& info : response.checkpoints()) out.push_back(ToSummary(info));
  std::stable_sort(out.begin(), out.end(), [](const CheckpointSummary& a,
                                              const CheckpointSummary& b) { return a.step < b.step; });
  return out;
}

absl::StatusOr<CheckpointSummary> Client::Get(const std::string& job,
                                              std::optional<int64_t> step) {
  RETURN_IF_ERROR(ValidateJobName(job));
  if (step.has_value()) RETURN_IF_ERROR(ValidateStep(*step));
  v1::GetRequest request;
  request.set_job(job);
  request.set_latest(!step.has_value());
  if (step.has_value()) request.set_step(*step);
  v1::GetResponse response;
  auto ctx = rep_->UnaryContext();
  grpc::Status s = rep_->coordinator->Get(ctx.get(), request, &response);
  const std::string which =
      step.has_value() ? absl::StrCat(job, "/", *step) : absl::StrCat("the newest checkpoint of ", job);
  if (!s.ok()) {
    return RpcError(s, rep_->CoordinatorName(), absl::StrCat("getting ", which));
  }
  return ToSummary(response.checkpoint());
}

absl::StatusOr<RestoredTensors> Client::Restore(const std::string& job,
                                                std::optional<int64_t> step,
                                                const RestoreRequest& request,
                                                const ProgressFn& progress,
                                                CheckpointSummary* restored_from) {
  ASSIGN_OR_RETURN(CheckpointSummary ckpt, Get(job, step));
  if (ckpt.state != "committed") {
    return absl::FailedPreconditionError(absl::StrCat("checkpoint ", job, "/", ckpt.step, " is ",
                                                      ckpt.state, ", not committed"));
  }
  if (ckpt.prefix_uri.empty()) {
    return absl::InternalError(absl::StrCat(rep_->CoordinatorName(), " gave no prefix for ", job,
                                            "/", ckpt.step));
  }
  // Hold a lease on the resolved step while reading, so retention cannot
  // delete the files under us (released, best effort, on every path below),
  // and check the files are the committed ones.
  ASSIGN_OR_RETURN(internal::ScopedLease lease, internal::LeaseForRestore(this, ckpt, rep_->options.storage));
  absl::StatusOr<RestoredTensors> restored =
      RestoreFromPrefix(ckpt.prefix_uri, request, rep_->options.restore_threads, progress,
                        rep_->options.storage);
  lease.Release();
  if (restored.ok() && restored_from != nullptr) *restored_from = std::move(ckpt);
  return restored;
}

absl::Status Client::SetPolicy(const std::string& job, const RetentionPolicy& policy) {
  RETURN_IF_ERROR(ValidateJobName(job));
  RETURN_IF_ERROR(ValidateRetentionPolicy(job, policy));
  v1::SetPolicyRequest request;
  request.set_job(job);
  v1::RetentionPolicy* p = request.mutable_policy();
  p->set_keep_last(policy.keep_last);
  p->set_keep_every_steps(policy.keep_every_steps);
  p->set_keep_every_hours(policy.keep_every_hours);
  p->set_keep_best(policy.keep_best);
  p->set_metric(policy.metric);
  p->set_maximize(policy.maximize);
  v1::SetPolicyResponse response;
  auto ctx = rep_->UnaryContext();
  grpc::Status s = rep_->coordinator->SetPolicy(ctx.get(), request, &response);
  if (!s.ok()) {
    return RpcError(s, rep_->CoordinatorName(),
                    absl::StrCat("setting the retention policy of job ", job));
  }
  return absl::OkStatus();
}

absl::StatusOr<RollbackResult> Client::Rollback(const std::string& job, int64_t to_step,
                                                bool dry_run) {
  RETURN_IF_ERROR(ValidateJobName(job));
  RETURN_IF_ERROR(ValidateStep(to_step));
  v1::RollbackRequest request;
  request.set_job(job);
  request.set_to_step(to_step);
  request.set_dry_run(dry_run);
  v1::RollbackResponse response;
  auto ctx = rep_->UnaryContext();
  grpc::Status s = rep_->coordinator->Rollback(ctx.get(), request, &response);
  if (!s.ok()) {
    return RpcError(s, rep_->CoordinatorName(),
                    absl::StrCat("rolling job ", job, " back to step ", to_step));
  }
  RollbackResult out;
  out.deleted_steps.assign(response.deleted_steps().begin(), response.deleted_steps().end());
  out.aborted_steps.assign(response.aborted_steps().begin(), response.aborted_steps().end());
  return out;
}

absl::StatusOr<RetentionPolicy> Client::GetPolicy(const std::string& job) {
  RETURN_IF_ERROR(ValidateJobName(job));
  v1::GetPolicyRequest request;
  request.set_job(job);
  v1::GetPolicyResponse response;
  auto ctx = rep_->UnaryContext();
  grpc::Status s = rep_->coordinator->GetPolicy(ctx.get(), request, &response);
  if (!s.ok()) {
    return RpcError(s, rep_->CoordinatorName(),
                    absl::StrCat("getting the retention policy of job ", job));
  }
  const v1::RetentionPolicy& p = response.policy();
  RetentionPolicy out;
  out.keep_last = p.keep_last();
  out.keep_every_steps = p.keep_every_steps();
  out.keep_every_hours = p.keep_every_hours();
  out.keep_best = p.keep_best();
  out.metric = p.metric();
  out.maximize = p.maximize();
  return out;
}

absl::Status Client::Pin(const std::string& job, int64_t step, bool pinned) {
  RETURN_IF_ERROR(ValidateJobName(job));
  RETURN_IF_ERROR(ValidateStep(step));
  v1::PinRequest request;
  request.set_job(job);
  request.set_step(step);
  request.set_pinned(pinned);
  v1::PinResponse response;
  auto ctx = rep_->UnaryContext();
  grpc::Status s = rep_->coordinator->Pin(ctx.get(), request, &response);
  if (!s.ok()) {
    return RpcError(s, rep_->CoordinatorName(),
                    absl::StrCat(pinned ? "pinning " : "unpinning ", job, "/", step));
  }
  return absl::OkStatus();
}

absl::StatusOr<GcResult> Client::Gc(const std::string& job, bool dry_run) {
  RETURN_IF_ERROR(ValidateJobName(job));
  v1::GcRequest request;
  request.set_job(job);
  request.set_dry_run(dry_run);
  v1::GcResponse response;
  auto ctx = rep_->UnaryContext();
  grpc::Status s = rep_->coordinator->Gc(ctx.get(), request, &response);
  if (!s.ok()) {
    return RpcError(s, rep_->CoordinatorName(),
                    absl::StrCat(dry_run ? "dry-running retention of job " : "applying retention to job ",
                                 job));
  }
  GcResult out;
  out.deleted = response.deleted();
  out.decisions.reserve(static_cast<size_t>(response.decisions_size()));
  for (const v1::RetentionDecision& d : response.decisions()) {
    RetentionDecision decision;
    decision.step = d.step();
    decision.keep = d.keep();
    decision.kept_by.assign(d.kept_by().begin(), d.kept_by().end());
    decision.reason = d.reason();
    out.decisions.push_back(std::move(decision));
  }
  std::stable_sort(out.decisions.begin(), out.decisions.end(),
                   [](const RetentionDecision& a, const RetentionDecision& b) {
                     return a.step < b.step;
                   });
  return out;
}

absl::StatusOr<std::string> Client::AcquireLease(const std::string& job, int64_t step,
                                                 int64_t ttl_ms) {
  RETURN_IF_ERROR(ValidateJobName(job));
  RETURN_IF_ERROR(ValidateStep(step));
  if (ttl_ms <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("lease on ", job, "/", step, ": ttl ", ttl_ms, " ms must be positive"));
  }
  v1::AcquireLeaseRequest request;
  request.set_job(job);
  request.set_step(step);
  request.set_ttl_ms(ttl_ms);
  v1::AcquireLeaseResponse response;
  auto ctx = rep_->UnaryContext();
  grpc::Status s = rep_->coordinator->AcquireLease(ctx.get(), request, &response);
  const std::string what = absl::StrCat("leasing ", job, "/", step);
  if (!s.ok()) return RpcError(s, rep_->CoordinatorName(), what);
  if (response.lease_id().empty()) {
    return absl::InternalError(
        absl::StrCat(what, ": ", rep_->CoordinatorName(), " returned no lease id"));
  }
  return response.lease_id();
}

absl::Status Client::ReleaseLease(const std::string& lease_id) {
  if (lease_id.empty()) return absl::InvalidArgumentError("releasing a lease: empty lease id");
  v1::ReleaseLeaseRequest request;
  request.set_lease_id(lease_id);
  v1::ReleaseLeaseResponse response;
  auto ctx = rep_->UnaryContext();
  grpc::Status s = rep_->coordinator->ReleaseLease(ctx.get(), request, &response);
  if (!s.ok()) {
    return RpcError(s, rep_->CoordinatorName(), absl::StrCat("releasing lease ", lease_id));
  }
  return absl::OkStatus();
}

// Selection: with `request.tensors` empty, every tensor of the checkpoint;
// otherwise the named tensors plus those named in `request.slices`. Every
// name asked for must exist (NotFound naming tensor and prefix). Slices are
// checked against each tensor's shape before any data is read.
absl::StatusOr<RestoredTensors> RestoreFromPrefix(absl::string_view prefix_uri,
                                                  const RestoreRequest& request, int threads,
                                                  const ProgressFn& progress_fn,
                                                  const StorageOptions& storage_options) {
  ASSIGN_OR_RETURN(SplitPrefix split, SplitPrefixUri(prefix_uri));
  ASSIGN_OR_RETURN(std::unique_ptr<Storage> storage, OpenStorage(split.root_uri, storage_options));
  BundleReaderOptions reader_options;
  reader_options.map_files = request.map_files;
  ASSIGN_OR_RETURN(std::unique_ptr<BundleReader> reader,
                   BundleReader::Open(storage.get(), split.prefix, reader_options));

  auto not_found = [&](const std::string& name) {
    return absl::NotFoundError(
        absl::StrCat("tensor \"", name, "\" not found in checkpoint ", prefix_uri));
  };
  std::vector<BundleEntry> entries;
  if (request.tensors.empty()) {
    ASSIGN_OR_RETURN(entries, reader->ListTensors());
    std::set<std::string> present;
    for (const BundleEntry& e : entries) present.insert(e.key);
    for (const auto& wanted : request.slices) {
      if (!present.count(wanted.first)) return not_found(wanted.first);
    }
  } else {
    std::set<std::string> names(request.tensors.begin(), request.tensors.end());
    for (const auto& wanted : request.slices) names.insert(wanted.first);
    for (const std::string& name : names) {
      absl::StatusOr<BundleEntry> e = reader->Lookup(name);
      if (absl::IsNotFound(e.status())) return not_found(name);
      if (!e.ok()) return e.status();
      entries.push_back(*std::move(e));
    }
  }

  for (const auto& [name, shape] : request.full_shapes) {
    auto e = std::find_if(entries.begin(), entries.end(),
                          [&name = name](const BundleEntry& b) { return b.key == name; });
    if (e == entries.end()) return not_found(name);
    if (e->shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", name, "\" was asked for with the full shape ", ShapeString(shape),
          " but its shape is ", ShapeString(e->shape), " in checkpoint ", prefix_uri));
    }
  }

  std::vector<RestoreItem> items;
  items.reserve(entries.size());
  for (BundleEntry& e : entries) {
    RestoreItem item;
    auto wanted = request.slices.find(e.key);
    std::vector<int64_t> out_shape = e.shape;
    if (wanted != request.slices.end()) {
      const TensorSlice& slice = wanted->second;
      absl::Status fits = slice.CheckFits(e.shape);
      if (!fits.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "slice \"", slice.ToString(), "\" of tensor \"", e.key, "\" does not fit its shape ",
            ShapeString(e.shape), " in checkpoint ", prefix_uri, ": ", fits.message()));
      }
      if (e.data_type() == DataType::kString && !slice.CoversAll(e.shape)) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor \"", e.key, "\" holds strings, which are restored whole; the slice \"",
                         slice.ToString(), "\" cannot be cut from it"));
      }
      item.slice = slice;
      out_shape = slice.SliceShape(e.shape);
    }
    int64_t n = 0;
    NumElements(out_shape, &n);
    item.cost = static_cast<uint64_t>(n) * std::max<size_t>(DataTypeSize(e.data_type()), 1);
    item.entry = std::move(e);
    items.push_back(std::move(item));
  }
  // Destinations in the caller's memory: every name selected, every size
  // right, before anything is read or written. `items` is still in key order
  // here (the index's, or the set of names asked for): binary search.
  for (const auto& [name, dst] : request.into) {
    auto item = std::lower_bound(items.begin(), items.end(), name,
                                 [](const RestoreItem& i, const std::string& key) { return i.entry.key < key; });
    if (item == items.end() || item->entry.key != name) {
      if (request.tensors.empty()) return not_found(name);
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", name, "\" has a destination but is not among the tensors requested"));
    }
    if (DataTypeSize(item->entry.data_type()) == 0) {  // strings, unknown dtypes
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", name, "\" has dtype ", DataTypeName(item->entry.data_type()),
          ", which cannot be restored into caller memory"));
    }
    if (dst.size() != item->cost) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" takes ", item->cost,
                                                     " bytes but its destination holds ", dst.size()));
    }
  }
  // Largest first, so the pool finishes together.
  std::stable_sort(items.begin(), items.end(),
                   [](const RestoreItem& a, const RestoreItem& b) { return a.cost > b.cost; });

  uint64_t total_cost = 0;
  for (const RestoreItem& item : items) total_cost += item.cost;
  internal::ProgressCounter progress(progress_fn, total_cost);
  progress.Begin();

  // Each worker takes the next item; the first error stops the others
  // before their next item and is the one reported.
  std::vector<Tensor> results(items.size());
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex error_mu;
  absl::Status first_error;
  auto work = [&] {
    while (!failed.load(std::memory_order_relaxed)) {
      const size_t i = next.fetch_add(1);
      if (i >= items.size()) return;
      const RestoreItem& item = items[i];
      auto dst = request.into.find(item.entry.key);
      absl::StatusOr<Tensor> t =
          dst != request.into.end() ? ReadInto(*reader, item, dst->second)
          : item.slice.has_value() && item.entry.data_type() != DataType::kString
              ? reader->ReadSlice(item.entry.key, *item.slice)
              : reader->ReadTensor(item.entry.key);
      if (!t.ok()) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (first_error.ok()) first_error = t.status();
        failed.store(true);
        return;
      }
      results[i] = *std::move(t);
      progress.Add(item.cost);
    }
  };
  const size_t num_threads =
      std::min<size_t>(static_cast<size_t>(std::max(threads, 1)), items.size());
  if (num_threads <= 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    pool.reserve(num_threads - 1);
    for (size_t i = 1; i < num_threads; ++i) pool.emplace_back(work);
    work();
    for (std::thread& t : pool) t.join();
  }
  RETURN_IF_ERROR(first_error);
  progress.Finish();

  RestoredTensors out;
  for (size_t i = 0; i < items.size(); ++i) {
    RestoredTensor& r = out[items[i].entry.key];
    r.tensor = std::move(results[i]);
    r.full_shape = std::move(items[i].entry.shape);
    r.slice = std::move(items[i].slice);
  }
  return out;
}

}  // namespace cairn
