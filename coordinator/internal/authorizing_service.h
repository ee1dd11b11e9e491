// Per-job authorization in front of the Coordinator service: checks each
// call's bearer token (proto/auth.h), then forwards to the real service.
// Client calls need a read or write token for the request's job; the calls
// writers make (RegisterWriter, Heartbeat, ShardDurable) need a cluster
// token; ListWriters needs a token for every job ("*").
#ifndef CAIRN_COORDINATOR_INTERNAL_AUTHORIZING_SERVICE_H_
#define CAIRN_COORDINATOR_INTERNAL_AUTHORIZING_SERVICE_H_

#include <string>

#include "coordinator/internal/service.h"
#include "proto/rpc/auth.h"
#include "proto/cairn.grpc.pb.h"

namespace cairn {
namespace internal {

class AuthorizingCoordinatorService final : public v1::Coordinator::Service {
 public:
  // `inner` is not owned and must outlive this; `key` is the HMAC key.
  AuthorizingCoordinatorService(CoordinatorService* inner, std::string key)
      : inner_(inner), key_(std::move(key)) {}

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
  grpc::Status Rollback(grpc::ServerContext*, const v1::RollbackRequest*,
                        v1::RollbackResponse*) override;
  grpc::Status Delete(grpc::ServerContext*, const v1::DeleteRequest*,
                      v1::DeleteResponse*) override;
  grpc::Status ListJobs(grpc::ServerContext*, const v1::ListJobsRequest*,
                        v1::ListJobsResponse*) override;

 private:
  absl::Status Check(const grpc::ServerContext& ctx, const std::string& job, auth::Scope scope);

  CoordinatorService* const inner_;
  const std::string key_;
};

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_COORDINATOR_INTERNAL_AUTHORIZING_SERVICE_H_
