#include "coordinator/internal/authorizing_service.h"

#include "proto/rpc/rpc_util.h"

namespace cairn {
namespace internal {

absl::Status AuthorizingCoordinatorService::Check(const grpc::ServerContext& ctx,
                                                  const std::string& job, auth::Scope scope) {
  return auth::Authorize(key_, rpc::BearerToken(ctx), job, scope, auth::NowUnixSeconds());
}

// Checks, then forwards to the real service.
#define CAIRN_AUTHORIZED(METHOD, JOB, SCOPE)                                     \
  do {                                                                           \
    if (absl::Status s = Check(*ctx, (JOB), (SCOPE)); !s.ok()) return rpc::ToGrpc(s); \
    return inner_->METHOD(ctx, req, resp);                                       \
  } while (0)

grpc::Status AuthorizingCoordinatorService::RegisterWriter(grpc::ServerContext* ctx,
                                                           const v1::RegisterWriterRequest* req,
                                                           v1::RegisterWriterResponse* resp) {
  CAIRN_AUTHORIZED(RegisterWriter, auth::kAnyJob, auth::Scope::kCluster);
}

grpc::Status AuthorizingCoordinatorService::Heartbeat(grpc::ServerContext* ctx,
                                                      const v1::HeartbeatRequest* req,
                                                      v1::HeartbeatResponse* resp) {
  CAIRN_AUTHORIZED(Heartbeat, auth::kAnyJob, auth::Scope::kCluster);
}

grpc::Status AuthorizingCoordinatorService::BeginShard(grpc::ServerContext* ctx,
                                                       const v1::BeginShardRequest* req,
                                                       v1::BeginShardResponse* resp) {
  CAIRN_AUTHORIZED(BeginShard, req->job(), auth::Scope::kWrite);
}

grpc::Status AuthorizingCoordinatorService::ShardDurable(grpc::ServerContext* ctx,
                                                         const v1::ShardDurableRequest* req,
                                                         v1::ShardDurableResponse* resp) {
  CAIRN_AUTHORIZED(ShardDurable, req->job(), auth::Scope::kCluster);
}

grpc::Status AuthorizingCoordinatorService::List(grpc::ServerContext* ctx,
                                                 const v1::ListRequest* req,
                                                 v1::ListResponse* resp) {
  CAIRN_AUTHORIZED(List, req->job(), auth::Scope::kRead);
}

grpc::Status AuthorizingCoordinatorService::Get(grpc::ServerContext* ctx, const v1::GetRequest* req,
                                                v1::GetResponse* resp) {
  CAIRN_AUTHORIZED(Get, req->job(), auth::Scope::kRead);
}

grpc::Status AuthorizingCoordinatorService::ListWriters(grpc::ServerContext* ctx,
                                                        const v1::ListWritersRequest* req,
                                                        v1::ListWritersResponse* resp) {
  CAIRN_AUTHORIZED(ListWriters, auth::kAnyJob, auth::Scope::kRead);
}

grpc::Status AuthorizingCoordinatorService::SetPolicy(grpc::ServerContext* ctx,
                                                      const v1::SetPolicyRequest* req,
                                                      v1::SetPolicyResponse* resp) {
  CAIRN_AUTHORIZED(SetPolicy, req->job(), auth::Scope::kWrite);
}

grpc::Status AuthorizingCoordinatorService::GetPolicy(grpc::ServerContext* ctx,
                                                      const v1::GetPolicyRequest* req,
                                                      v1::GetPolicyResponse* resp) {
  CAIRN_AUTHORIZED(GetPolicy, req->job(), auth::Scope::kRead);
}

grpc::Status AuthorizingCoordinatorService::Pin(grpc::ServerContext* ctx, const v1::PinRequest* req,
                                                v1::PinResponse* resp) {
  CAIRN_AUTHORIZED(Pin, req->job(), auth::Scope::kWrite);
}

grpc::Status AuthorizingCoordinatorService::Gc(grpc::ServerContext* ctx, const v1::GcRequest* req,
                                               v1::GcResponse* resp) {
  CAIRN_AUTHORIZED(Gc, req->job(), auth::Scope::kWrite);
}

grpc::Status AuthorizingCoordinatorService::AcquireLease(grpc::ServerContext* ctx,
                                                         const v1::AcquireLeaseRequest* req,
                                                         v1::AcquireLeaseResponse* resp) {
  CAIRN_AUTHORIZED(AcquireLease, req->job(), auth::Scope::kRead);
}

grpc::Status AuthorizingCoordinatorService::ReleaseLease(grpc::ServerContext* ctx,
                                                         const v1::ReleaseLeaseRequest* req,
                                                         v1::ReleaseLeaseResponse* resp) {
  // Lease ids are not job-scoped: the lease's own job decides. An unknown
  // lease still needs a valid token before the service says NotFound.
  std::string job = inner_->LeaseJob(req->lease_id()).value_or("");
  if (job.empty()) {
    auto claims = auth::VerifyToken(key_, rpc::BearerToken(*ctx), auth::NowUnixSeconds());
    if (!claims.ok()) return rpc::ToGrpc(claims.status());
    if (claims->scope == auth::Scope::kCluster) {
      return rpc::ToGrpc(absl::PermissionDeniedError("a cluster token cannot release leases"));
    }
    return inner_->ReleaseLease(ctx, req, resp);
  }
  CAIRN_AUTHORIZED(ReleaseLease, job, auth::Scope::kRead);
}

grpc::Status AuthorizingCoordinatorService::Rollback(grpc::ServerContext* ctx,
                                                     const v1::RollbackRequest* req,
                                                     v1::RollbackResponse* resp) {
  CAIRN_AUTHORIZED(Rollback, req->job(), auth::Scope::kWrite);
}

grpc::Status AuthorizingCoordinatorService::Delete(grpc::ServerContext* ctx,
                                                   const v1::DeleteRequest* req,
                                                   v1::DeleteResponse* resp) {
  CAIRN_AUTHORIZED(Delete, req->job(), auth::Scope::kWrite);
}

grpc::Status AuthorizingCoordinatorService::ListJobs(grpc::ServerContext* ctx,
                                                     const v1::ListJobsRequest* req,
                                                     v1::ListJobsResponse* resp) {
  CAIRN_AUTHORIZED(ListJobs, auth::kAnyJob, auth::Scope::kRead);
}

#undef CAIRN_AUTHORIZED

}  // namespace internal
}  // namespace cairn
