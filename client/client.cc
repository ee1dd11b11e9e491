// The Cairn client library's connection to the coordinator: queries,
// retention, rollback and leases. Saving is in save.cc, restoring in
// restore.cc.
#include "client/client.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/internal/client_rep.h"
#include "client/internal/lease.h"
#include "client/internal/validate.h"
#include "proto/cairn.grpc.pb.h"
#include "proto/layout.h"
#include "proto/rpc/rpc_util.h"
#include "storage/status_macros.h"

namespace cairn {

using internal::RpcError;

namespace {

namespace v1 = ::cairn::v1;

CheckpointState FromProto(v1::CheckpointState state) {
  switch (state) {
    case v1::PENDING:
      return CheckpointState::kPending;
    case v1::MERGING:
      return CheckpointState::kMerging;
    case v1::COMMITTING:
      return CheckpointState::kCommitting;
    case v1::COMMITTED:
      return CheckpointState::kCommitted;
    case v1::ABORTING:
      return CheckpointState::kAborting;
    case v1::ABORTED:
      return CheckpointState::kAborted;
    case v1::DELETING:
      return CheckpointState::kDeleting;
    default:
      return CheckpointState::kUnspecified;
  }
}

CheckpointSummary ToSummary(const v1::CheckpointInfo& info) {
  CheckpointSummary out;
  out.job = info.job();
  out.step = info.step();
  out.state = FromProto(info.state());
  out.num_shards = info.num_shards();
  out.created_at_micros = info.created_at_micros();
  out.committed_at_micros = info.committed_at_micros();
  out.bytes = info.bytes();
  out.metrics.insert(info.metrics().begin(), info.metrics().end());
  out.pinned = info.pinned();
  out.kept_by.assign(info.kept_by().begin(), info.kept_by().end());
  out.prefix_uri = info.prefix_uri();
  for (const auto& f : info.files()) out.files.push_back({f.path(), f.size(), f.crc32c(), f.sha256()});
  out.shards_durable = info.shards_durable();
  out.abort_reason = info.abort_reason();
  return out;
}


}  // namespace

namespace internal {

// A failed RPC to `peer` ("coordinator HOST:PORT") as "CONTEXT: PEER ...:
// MESSAGE", keeping the gRPC code.
absl::Status RpcError(const grpc::Status& s, const std::string& peer, absl::string_view context) {
  const absl::Status status = rpc::FromGrpc(s, peer);
  // A server's own answer is its message, which names what is at fault; a
  // transport failure (FromGrpc) names the peer it could not reach.
  const bool names_peer = !rpc::FromServer(s) &&
                          (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                           s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
  std::string message(status.message());
  if (s.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    // E.g. a coordinator older than the call (gRPC's message is often empty).
    message = absl::StrCat("does not support this call", message.empty() ? "" : ": ", message);
  } else if (message.empty()) {
    message = absl::StatusCodeToString(status.code());
  }
  if (names_peer || rpc::FromServer(s)) {
    return absl::Status(status.code(), absl::StrCat(context, ": ", message));
  }
  return absl::Status(status.code(), absl::StrCat(context, ": ", peer, ": ", message));
}


}  // namespace internal

absl::string_view CheckpointStateName(CheckpointState state) {
  switch (state) {
    case CheckpointState::kPending:
      return "pending";
    case CheckpointState::kMerging:
      return "merging";
    case CheckpointState::kCommitting:
      return "committing";
    case CheckpointState::kCommitted:
      return "committed";
    case CheckpointState::kAborting:
      return "aborting";
    case CheckpointState::kAborted:
      return "aborted";
    case CheckpointState::kDeleting:
      return "deleting";
    case CheckpointState::kUnspecified:
      break;
  }
  return "unspecified";
}

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
  rep->coordinator_channel = std::move(channel);
  return std::unique_ptr<Client>(new Client(std::move(rep)));
}


absl::StatusOr<std::vector<CheckpointSummary>> Client::List(const std::string& job,
                                                            const ListOptions& options) {
  RETURN_IF_ERROR(ValidateJobName(job));
  v1::ListRequest request;
  request.set_job(job);
  request.set_include_uncommitted(options.include_uncommitted);
  v1::ListResponse response;
  grpc::Status s = rep_->UnaryRetryingFailover([&](grpc::ClientContext* ctx) {
    return rep_->coordinator->List(ctx, request, &response);
  });
  if (!s.ok()) {
    return RpcError(s, rep_->CoordinatorName(), absl::StrCat("listing job ", job));
  }
  if (options.require_job && !response.job_exists()) {
    return absl::NotFoundError(absl::StrCat("no job named ", job));
  }
  std::vector<CheckpointSummary> out;
  out.reserve(static_cast<size_t>(response.checkpoints_size()));
  for (const v1::CheckpointInfo& info : response.checkpoints()) out.push_back(ToSummary(info));
  std::stable_sort(out.begin(), out.end(), [](const CheckpointSummary& a,
                                              const CheckpointSummary& b) { return a.step < b.step; });
  return out;
}

absl::StatusOr<std::vector<JobSummary>> Client::ListJobs() {
  v1::ListJobsRequest request;
  v1::ListJobsResponse response;
  grpc::Status s = rep_->UnaryRetryingFailover([&](grpc::ClientContext* ctx) {
    return rep_->coordinator->ListJobs(ctx, request, &response);
  });
  if (!s.ok()) return RpcError(s, rep_->CoordinatorName(), "listing jobs");
  std::vector<JobSummary> out;
  for (const v1::JobSummary& j : response.jobs()) {
    JobSummary summary;
    summary.job = j.job();
    if (j.newest_step() >= 0) summary.newest_step = j.newest_step();
    summary.newest_committed_at_micros = j.newest_committed_at_micros();
    summary.committed = j.committed();
    summary.pending = j.pending();
    summary.aborted = j.aborted();
    summary.bytes = j.bytes();
    out.push_back(std::move(summary));
  }
  return out;
}

absl::StatusOr<CheckpointSummary> Client::WaitUntilDecided(const std::string& job, int64_t step,
                                                           int64_t timeout_ms) {
  RETURN_IF_ERROR(ValidateJobName(job));
  RETURN_IF_ERROR(ValidateStep(step));
  v1::GetRequest request;
  request.set_job(job);
  request.set_step(step);
  request.set_any_state(true);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  // Polls, backing off to once a second: many waiting workers must not
  // become a load on the coordinator while a step is pending.
  std::chrono::milliseconds pause(100);
  while (true) {
    v1::GetResponse response;
    grpc::Status s = rep_->UnaryRetryingFailover([&](grpc::ClientContext* ctx) {
      return rep_->coordinator->Get(ctx, request, &response);
    });
    if (!s.ok()) {
      return RpcError(s, rep_->CoordinatorName(), absl::StrCat("waiting for ", job, "/", step));
    }
    CheckpointSummary summary = ToSummary(response.checkpoint());
    switch (summary.state) {
      case CheckpointState::kCommitted:
      case CheckpointState::kDeleting:  // committed, then deleted already
        return summary;
      case CheckpointState::kAborting:
      case CheckpointState::kAborted:
        return absl::FailedPreconditionError(absl::StrCat(
            "step ", step, " of job ", job, " was aborted: ", summary.abort_reason));
      default:
        break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "step ", step, " of job ", job, " is still ", CheckpointStateName(summary.state),
          " after ", timeout_ms / 1000, " s (", summary.shards_durable, " of ",
          summary.num_shards, " shards durable)"));
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(1000));
  }
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
  grpc::Status s = rep_->UnaryRetryingFailover([&](grpc::ClientContext* ctx) {
    return rep_->coordinator->Get(ctx, request, &response);
  });
  const std::string which =
      step.has_value() ? absl::StrCat(job, "/", *step) : absl::StrCat("the newest checkpoint of ", job);
  if (!s.ok()) {
    return RpcError(s, rep_->CoordinatorName(), absl::StrCat("getting ", which));
  }
  return ToSummary(response.checkpoint());
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
  grpc::Status s = rep_->UnaryRetryingFailover([&](grpc::ClientContext* ctx) {
    return rep_->coordinator->SetPolicy(ctx, request, &response);
  });
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

absl::Status Client::Delete(const std::string& job, int64_t step, bool force) {
  RETURN_IF_ERROR(ValidateJobName(job));
  RETURN_IF_ERROR(ValidateStep(step));
  v1::DeleteRequest request;
  request.set_job(job);
  request.set_step(step);
  request.set_force(force);
  v1::DeleteResponse response;
  // Not retried across a failover: a repeat after a lost reply would say
  // NotFound for what the first call did.
  auto ctx = rep_->UnaryContext();
  grpc::Status s = rep_->coordinator->Delete(ctx.get(), request, &response);
  if (!s.ok()) {
    return RpcError(s, rep_->CoordinatorName(), absl::StrCat("deleting ", job, "/", step));
  }
  return absl::OkStatus();
}

absl::StatusOr<RetentionPolicy> Client::GetPolicy(const std::string& job) {
  RETURN_IF_ERROR(ValidateJobName(job));
  v1::GetPolicyRequest request;
  request.set_job(job);
  v1::GetPolicyResponse response;
  grpc::Status s = rep_->UnaryRetryingFailover([&](grpc::ClientContext* ctx) {
    return rep_->coordinator->GetPolicy(ctx, request, &response);
  });
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
  grpc::Status s = rep_->UnaryRetryingFailover([&](grpc::ClientContext* ctx) {
    return rep_->coordinator->Pin(ctx, request, &response);
  });
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
  grpc::Status s = rep_->UnaryRetryingFailover([&](grpc::ClientContext* ctx) {
    return rep_->coordinator->Gc(ctx, request, &response);
  });
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
  grpc::Status s = rep_->UnaryRetryingFailover([&](grpc::ClientContext* ctx) {
    return rep_->coordinator->AcquireLease(ctx, request, &response);
  });
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
}  // namespace cairn
