#include "tests/client/fake_service.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "proto/rpc/rpc_util.h"
#include "storage/bundle/bundle_writer.h"
#include "storage/bundle/tensor_slice.h"
#include "storage/storage.h"

namespace cairn {
namespace client_test {

grpc::Status FakeWriter::SaveShard(grpc::ServerContext*,
                                   grpc::ServerReader<v1::SaveShardMessage>* reader,
                                   v1::SaveShardResponse* response) {
  v1::SaveShardMessage msg;
  if (!reader->Read(&msg) || !msg.has_header()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no header first");
  }
  v1::SaveShardHeader header = msg.header();
  auto storage = OpenStorage(root_, {});
  if (!storage.ok()) return rpc::ToGrpc(storage.status());
  auto writer = BundleWriter::Create(storage->get(), header.staging_prefix());
  if (!writer.ok()) return rpc::ToGrpc(writer.status());
  std::vector<Received> received;
  bool in_tensor = false;
  absl::Status s;
  while (s.ok() && reader->Read(&msg)) {
    if (msg.has_header()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "2nd header");
    if (msg.has_tensor()) {
      if (in_tensor) s = (*writer)->EndTensor();
      in_tensor = false;
      received.push_back({msg.tensor(), "", {}});
      const v1::TensorHeader& th = msg.tensor();
      std::vector<int64_t> shape(th.shape().begin(), th.shape().end());
      const DataType dtype = static_cast<DataType>(th.dtype());
      if (!s.ok()) break;
      if (dtype == DataType::kString) {
        s = (*writer)->AddString(th.name(), shape, {th.string_values().begin(),
                                                    th.string_values().end()});
      } else if (!th.slice().empty()) {
        auto slice = TensorSlice::Parse(th.slice());
        s = slice.ok() ? (*writer)->BeginSlice(th.name(), shape, *slice, dtype) : slice.status();
        in_tensor = true;
      } else {
        s = (*writer)->BeginTensor(th.name(), dtype, shape);
        in_tensor = true;
      }
    } else {
      if (received.empty() || !in_tensor) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "data outside a tensor");
      }
      received.back().data += msg.data();
      received.back().chunks.push_back(msg.data().size());
      s = (*writer)->AppendData(msg.data());
    }
  }
  if (s.ok() && in_tensor) s = (*writer)->EndTensor();
  if (s.ok()) s = (*writer)->Finish();
  if (!s.ok()) return rpc::ToGrpc(s);
  response->set_committed(header.shard_index() == header.num_shards() - 1);
  response->set_bytes((*writer)->data_bytes());
  response->set_num_tensors(static_cast<int64_t>(received.size()));
  std::lock_guard<std::mutex> lock(mu_);
  headers_.push_back(header);
  tensors_.push_back(std::move(received));
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::BeginShard(grpc::ServerContext*, const v1::BeginShardRequest* request,
                                         v1::BeginShardResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  begins_.push_back(*request);
  response->set_writer_address(writer_address_);
  response->set_token(absl::StrCat("token-", begins_.size()));
  response->set_staging_prefix(
      request->num_shards() == 1
          ? absl::StrCat(request->job(), "/ckpt-", request->step(), "/variables")
          : absl::StrCat(request->job(), "/ckpt-", request->step(), "/variables_temp/part-",
                         request->shard_index()));
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::List(grpc::ServerContext*, const v1::ListRequest* request,
                                   v1::ListResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (request->include_uncommitted()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the client asks for committed only");
  }
  for (const auto& [key, info] : checkpoints_) {
    if (key.first == request->job()) *response->add_checkpoints() = info;
  }
  response->set_job_exists(response->checkpoints_size() > 0);
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::Get(grpc::ServerContext*, const v1::GetRequest* request,
                                  v1::GetResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  calls_.push_back(request->latest() ? "Get(latest)" : absl::StrCat("Get(", request->step(), ")"));
  const v1::CheckpointInfo* found = nullptr;
  for (const auto& [key, info] : checkpoints_) {
    if (key.first == request->job() && (request->latest() || key.second == request->step())) {
      found = &info;
    }
  }
  if (found == nullptr) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("no committed checkpoint of job ", request->job(),
                                     request->latest() ? "" : absl::StrCat(" at step ",
                                                                           request->step())));
  }
  *response->mutable_checkpoint() = *found;
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::SetPolicy(grpc::ServerContext*, const v1::SetPolicyRequest* request,
                                        v1::SetPolicyResponse*) {
  std::lock_guard<std::mutex> lock(mu_);
  set_policies_.push_back(*request);
  policies_[request->job()] = request->policy();
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::GetPolicy(grpc::ServerContext*, const v1::GetPolicyRequest* request,
                                        v1::GetPolicyResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  get_policies_.push_back(*request);
  auto it = policies_.find(request->job());
  if (it != policies_.end()) *response->mutable_policy() = it->second;
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::Pin(grpc::ServerContext*, const v1::PinRequest* request,
                                  v1::PinResponse*) {
  std::lock_guard<std::mutex> lock(mu_);
  pins_.push_back(*request);
  auto it = checkpoints_.find({request->job(), request->step()});
  if (it == checkpoints_.end()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("no committed checkpoint of job ", request->job(),
                                     " at step ", request->step()));
  }
  it->second.set_pinned(request->pinned());
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::Gc(grpc::ServerContext*, const v1::GcRequest* request,
                                 v1::GcResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  gcs_.push_back(*request);
  *response = gc_response_;
  if (request->dry_run()) response->set_deleted(0);  // nothing is deleted
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::AcquireLease(grpc::ServerContext*,
                                           const v1::AcquireLeaseRequest* request,
                                           v1::AcquireLeaseResponse* response) {
  std::function<void()> hook;
  {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.push_back(absl::StrCat("AcquireLease(", request->step(), ")"));
    acquires_.push_back(*request);
    if (!acquire_error_.ok()) return acquire_error_;
    if (!checkpoints_.count({request->job(), request->step()})) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("no committed checkpoint of job ", request->job(),
                                       " at step ", request->step()));
    }
    response->set_lease_id(absl::StrCat("lease-", acquires_.size()));
    response->set_expires_at_micros(1700000000000000 + request->ttl_ms() * 1000);
    hook = on_acquire_;
  }
  if (hook) hook();
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::ReleaseLease(grpc::ServerContext*,
                                           const v1::ReleaseLeaseRequest* request,
                                           v1::ReleaseLeaseResponse*) {
  std::function<void()> hook;
  {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.push_back(absl::StrCat("ReleaseLease(", request->lease_id(), ")"));
    releases_.push_back(request->lease_id());
    hook = on_release_;
    if (!release_error_.ok()) return release_error_;
  }
  if (hook) hook();
  return grpc::Status::OK;
}

void AddDecision(v1::GcResponse* response, int64_t step, bool keep,
                 const std::vector<std::string>& kept_by, const std::string& reason) {
  v1::RetentionDecision* d = response->add_decisions();
  d->set_step(step);
  d->set_keep(keep);
  for (const std::string& rule : kept_by) d->add_kept_by(rule);
  d->set_reason(reason);
}

grpc::Status GrpcError(grpc::StatusCode code, const std::string& msg) {
  return grpc::Status(code, msg);
}

void FakeService::SetUp() {
  writer_ = std::make_unique<FakeWriter>(root_.path());
  writer_server_ = Start(writer_.get(), &writer_address_);
  coordinator_.set_writer_address(writer_address_);
  coordinator_server_ = Start(&coordinator_, &coordinator_address_);
  ASSERT_TRUE(writer_server_ && coordinator_server_);
  ClientOptions options;
  options.coordinator = coordinator_address_;
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status();
  client_ = std::move(client).value();
}

void FakeService::TearDown() {
  if (coordinator_server_) coordinator_server_->Shutdown();
  if (writer_server_) writer_server_->Shutdown();
}

std::unique_ptr<grpc::Server> FakeService::Start(grpc::Service* service, std::string* address) {
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", rpc::ServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(rpc::kMaxMessageBytes);
  builder.RegisterService(service);
  auto server = builder.BuildAndStart();
  *address = absl::StrCat("127.0.0.1:", port);
  return server;
}

v1::CheckpointInfo FakeService::Commit(const std::string& job, int64_t step) {
  v1::CheckpointInfo info;
  info.set_job(job);
  info.set_step(step);
  info.set_state(v1::COMMITTED);
  info.set_num_shards(1);
  info.set_committed_at_micros(1700000000123456 + step);
  info.set_bytes(3 * 1024 * 1024 + 300 * 1024);
  (*info.mutable_metrics())["loss"] = 0.25;
  info.set_pinned(step % 2 == 0);
  info.add_kept_by("keep-last");
  info.set_prefix_uri(absl::StrCat("file://", root_.path(), "/", job, "/ckpt-", step, "/variables"));
  coordinator_.AddCheckpoint(info);
  return info;
}

}  // namespace client_test
}  // namespace cairn
