// Small in-process fakes of the Coordinator and ShardWriter services that
// record what the client sends (the fake writer writes a real bundle), and
// the FakeService fixture that serves both on 127.0.0.1:0 with a Client
// connected to them. They pin the client's half of the protocol; end-to-end
// tests with the real servers live with the servers (tests/service/).
#ifndef CAIRN_TESTS_CLIENT_FAKE_SERVICE_H_
#define CAIRN_TESTS_CLIENT_FAKE_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "client/client.h"
#include "gtest/gtest.h"
#include "proto/cairn.grpc.pb.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace client_test {

// A ShardWriter that records every message and writes the shard as a real
// single-file bundle at the staging prefix under `root`.
class FakeWriter final : public v1::ShardWriter::Service {
 public:
  struct Received {
    v1::TensorHeader header;
    std::string data;
    std::vector<size_t> chunks;
  };

  explicit FakeWriter(std::string root) : root_(std::move(root)) {}

  grpc::Status SaveShard(grpc::ServerContext*, grpc::ServerReader<v1::SaveShardMessage>* reader,
                         v1::SaveShardResponse* response) override;

  std::vector<v1::SaveShardHeader> headers() {
    std::lock_guard<std::mutex> lock(mu_);
    return headers_;
  }
  std::vector<std::vector<Received>> tensors() {
    std::lock_guard<std::mutex> lock(mu_);
    return tensors_;
  }

 private:
  const std::string root_;
  std::mutex mu_;
  std::vector<v1::SaveShardHeader> headers_;
  std::vector<std::vector<Received>> tensors_;
};

// A Coordinator that assigns `writer_address` for every shard and answers
// List/Get from the checkpoints a test adds. The retention RPCs record their
// requests: SetPolicy stores the policy GetPolicy returns, Pin needs a known
// checkpoint, Gc answers with a canned response, leases are numbered
// "lease-N". `calls()` lists the Get/AcquireLease/ReleaseLease calls in
// order; hooks run when a lease is acquired or released.
class FakeCoordinator final : public v1::Coordinator::Service {
 public:
  grpc::Status BeginShard(grpc::ServerContext*, const v1::BeginShardRequest* request,
                          v1::BeginShardResponse* response) override;
  grpc::Status List(grpc::ServerContext*, const v1::ListRequest* request,
                    v1::ListResponse* response) override;
  grpc::Status Get(grpc::ServerContext*, const v1::GetRequest* request,
                   v1::GetResponse* response) override;
  grpc::Status SetPolicy(grpc::ServerContext*, const v1::SetPolicyRequest* request,
                         v1::SetPolicyResponse*) override;
  grpc::Status GetPolicy(grpc::ServerContext*, const v1::GetPolicyRequest* request,
                         v1::GetPolicyResponse* response) override;
  grpc::Status Pin(grpc::ServerContext*, const v1::PinRequest* request,
                   v1::PinResponse*) override;
  grpc::Status Gc(grpc::ServerContext*, const v1::GcRequest* request,
                  v1::GcResponse* response) override;
  grpc::Status AcquireLease(grpc::ServerContext*, const v1::AcquireLeaseRequest* request,
                            v1::AcquireLeaseResponse* response) override;
  grpc::Status ReleaseLease(grpc::ServerContext*, const v1::ReleaseLeaseRequest* request,
                            v1::ReleaseLeaseResponse*) override;

  void set_gc_response(const v1::GcResponse& r) {
    std::lock_guard<std::mutex> lock(mu_);
    gc_response_ = r;
  }
  void set_acquire_error(const grpc::Status& s) {
    std::lock_guard<std::mutex> lock(mu_);
    acquire_error_ = s;
  }
  void set_release_error(const grpc::Status& s) {
    std::lock_guard<std::mutex> lock(mu_);
    release_error_ = s;
  }
  void set_lease_hooks(std::function<void()> on_acquire, std::function<void()> on_release) {
    std::lock_guard<std::mutex> lock(mu_);
    on_acquire_ = std::move(on_acquire);
    on_release_ = std::move(on_release);
  }
  std::vector<v1::SetPolicyRequest> set_policies() {
    std::lock_guard<std::mutex> lock(mu_);
    return set_policies_;
  }
  std::vector<v1::GetPolicyRequest> get_policies() {
    std::lock_guard<std::mutex> lock(mu_);
    return get_policies_;
  }
  std::vector<v1::PinRequest> pins() {
    std::lock_guard<std::mutex> lock(mu_);
    return pins_;
  }
  std::vector<v1::GcRequest> gcs() {
    std::lock_guard<std::mutex> lock(mu_);
    return gcs_;
  }
  std::vector<v1::AcquireLeaseRequest> acquires() {
    std::lock_guard<std::mutex> lock(mu_);
    return acquires_;
  }
  std::vector<std::string> releases() {
    std::lock_guard<std::mutex> lock(mu_);
    return releases_;
  }
  std::vector<std::string> calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  void clear_calls() {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.clear();
  }

  void set_writer_address(const std::string& a) {
    std::lock_guard<std::mutex> lock(mu_);
    writer_address_ = a;
  }
  void AddCheckpoint(const v1::CheckpointInfo& info) {
    std::lock_guard<std::mutex> lock(mu_);
    checkpoints_[{info.job(), info.step()}] = info;
  }
  std::vector<v1::BeginShardRequest> begins() {
    std::lock_guard<std::mutex> lock(mu_);
    return begins_;
  }

 private:
  std::mutex mu_;
  std::string writer_address_;
  std::vector<v1::BeginShardRequest> begins_;
  std::map<std::pair<std::string, int64_t>, v1::CheckpointInfo> checkpoints_;
  std::map<std::string, v1::RetentionPolicy> policies_;
  std::vector<v1::SetPolicyRequest> set_policies_;
  std::vector<v1::GetPolicyRequest> get_policies_;
  std::vector<v1::PinRequest> pins_;
  std::vector<v1::GcRequest> gcs_;
  v1::GcResponse gc_response_;
  std::vector<v1::AcquireLeaseRequest> acquires_;
  std::vector<std::string> releases_;
  std::vector<std::string> calls_;
  grpc::Status acquire_error_, release_error_;
  std::function<void()> on_acquire_, on_release_;
};

// One retention decision in a canned GcResponse.
void AddDecision(v1::GcResponse* response, int64_t step, bool keep,
                 const std::vector<std::string>& kept_by, const std::string& reason);

grpc::Status GrpcError(grpc::StatusCode code, const std::string& msg);

// Serves a FakeWriter (writing under root_) and a FakeCoordinator on
// 127.0.0.1:0, with client_ connected to the coordinator.
class FakeService : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  static std::unique_ptr<grpc::Server> Start(grpc::Service* service, std::string* address);

  // Registers JOB/STEP (written by the fake writer) as committed.
  v1::CheckpointInfo Commit(const std::string& job, int64_t step);

  testing::TempDir root_;
  std::unique_ptr<FakeWriter> writer_;
  FakeCoordinator coordinator_;
  std::unique_ptr<grpc::Server> writer_server_, coordinator_server_;
  std::string writer_address_, coordinator_address_;
  std::unique_ptr<Client> client_;
};

}  // namespace client_test
}  // namespace cairn

#endif  // CAIRN_TESTS_CLIENT_FAKE_SERVICE_H_
