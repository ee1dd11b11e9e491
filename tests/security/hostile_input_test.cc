// Hostile input on every path a client controls: malformed SaveShard streams
// to a real writer process and malformed requests to a real coordinator. Each
// is refused with InvalidArgument (or gRPC's size limit), and the servers keep
// serving: a valid save works afterwards.
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "proto/cairn.grpc.pb.h"
#include "proto/rpc/rpc_util.h"
#include "storage/bundle/safetensors.h"
#include "tests/testing/process.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

using testing::Cluster;

// A real attempt (job "job", step 1, shard 0 of 1) from the coordinator:
// streams with its token get past the writer's attempt check, so what they
// test is the writer's parsing of the rest.
v1::BeginShardResponse BeginAttempt(const std::string& coordinator) {
  auto stub = v1::Coordinator::NewStub(rpc::NewChannel(coordinator));
  auto ctx = rpc::Context(std::chrono::seconds(10));
  v1::BeginShardRequest req;
  req.set_job("job");
  req.set_step(1);
  req.set_shard_index(0);
  req.set_num_shards(1);
  v1::BeginShardResponse resp;
  grpc::Status s = stub->BeginShard(ctx.get(), req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return resp;
}

v1::SaveShardMessage Header(const std::string& job, const std::string& staging,
                            const std::string& token = "t") {
  v1::SaveShardMessage m;
  auto* h = m.mutable_header();
  h->set_job(job);
  h->set_step(1);
  h->set_shard_index(0);
  h->set_num_shards(1);
  h->set_token(token);
  h->set_staging_prefix(staging);
  return m;
}

v1::SaveShardMessage Tensor(const std::string& name, int dtype, std::vector<int64_t> shape,
                            const std::string& slice = "") {
  v1::SaveShardMessage m;
  auto* t = m.mutable_tensor();
  t->set_name(name);
  t->set_dtype(dtype);
  for (int64_t d : shape) t->add_shape(d);
  t->set_slice(slice);
  return m;
}

// A TensorBatch of float tensors, each {name, element count}.
v1::SaveShardMessage Batch(std::vector<std::pair<std::string, int64_t>> tensors, int dtype = 1) {
  v1::SaveShardMessage m;
  for (const auto& [name, n] : tensors) {
    auto* t = m.mutable_batch()->add_tensors();
    t->set_name(name);
    t->set_dtype(dtype);
    t->add_shape(n);
  }
  return m;
}

v1::SaveShardMessage Data(std::string bytes) {
  v1::SaveShardMessage m;
  m.set_data(std::move(bytes));
  return m;
}

// Sends a stream to the writer; returns the final status.
grpc::Status Send(const std::string& writer, const std::vector<v1::SaveShardMessage>& messages) {
  auto stub = v1::ShardWriter::NewStub(rpc::NewChannel(writer));
  auto ctx = rpc::Context(std::chrono::seconds(20));
  v1::SaveShardResponse resp;
  auto stream = stub->SaveShard(ctx.get(), &resp);
  for (const auto& m : messages) {
    if (!stream->Write(m)) break;
  }
  stream->WritesDone();
  return stream->Finish();
}

TEST(HostileInput, MalformedSaveStreamsAreRefusedAndTheWriterKeepsServing) {
  testing::TempDir dir;
  Cluster cluster(dir.path(), 1);
  ASSERT_TRUE(cluster.ok());
  const std::string writer = cluster.writer_process(0).address();
  const v1::BeginShardResponse attempt = BeginAttempt(cluster.coordinator());
  const std::string ok_staging = attempt.staging_prefix();
  const auto OkHeader = [&](const std::string& job, const std::string& staging) {
    return Header(job, staging, attempt.token());
  };
  // Without a token the coordinator issued for exactly this shard, nothing
  // is written: forged, for another staging prefix, or for another shard.
  for (const auto& forged : {Header("job", ok_staging, "t"),
                             Header("job", ok_staging, attempt.token() + "x"),
                             Header("job", ok_staging + "2", attempt.token())}) {
    grpc::Status s = Send(writer, {forged, Tensor("w", 1, {1}), Data("abcd")});
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  }
  auto other_shard = Header("job", ok_staging, attempt.token());
  other_shard.mutable_header()->set_step(2);
  other_shard.mutable_header()->set_staging_prefix("job/.cairn-staging/ckpt-2/shard-00000-x/part");
  EXPECT_EQ(Send(writer, {other_shard}).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  struct Case {
    const char* what;
    std::vector<v1::SaveShardMessage> messages;
  };
  std::vector<Case> cases = {
      {"no header", {Tensor("w", 1, {1}), Data("abcd")}},
      {"bad job name", {Header("../etc", "../etc/.cairn-staging/ckpt-1/x/part")}},
      {"staging prefix at final names", {Header("job", "job/ckpt-1/variables")}},
      {"staging prefix escaping", {Header("job", "job/.cairn-staging/ckpt-1/../../../../x")}},
      {"another job's staging", {Header("job", "other/.cairn-staging/ckpt-1/x/part")}},
      {"rank 100", {OkHeader("job", ok_staging), Tensor("w", 1, std::vector<int64_t>(100, 1))}},
      {"unknown dtype", {OkHeader("job", ok_staging), Tensor("w", 999, {1})}},
      {"variant dtype", {OkHeader("job", ok_staging), Tensor("w", 21, {1})}},
      {"overflowing shape", {OkHeader("job", ok_staging), Tensor("w", 1, {1LL << 40, 1LL << 40})}},
      {"negative dimension", {OkHeader("job", ok_staging), Tensor("w", 1, {-5})}},
      {"more data than the shape", {OkHeader("job", ok_staging), Tensor("w", 1, {1}), Data("abcdefgh")}},
      {"less data than the shape", {OkHeader("job", ok_staging), Tensor("w", 1, {4}), Data("abcd")}},
      {"bad slice spec", {OkHeader("job", ok_staging), Tensor("w", 1, {10}, "0,5:x")}},
      {"slice out of bounds", {OkHeader("job", ok_staging), Tensor("w", 1, {10}, "8,5")}},
      {"empty name", {OkHeader("job", ok_staging), Tensor("", 1, {1})}},
      {"NUL-led name", {OkHeader("job", ok_staging), Tensor(std::string("\0x", 2), 1, {1})}},
      {"data before a tensor", {OkHeader("job", ok_staging), Data("abcd")}},
      {"duplicate tensor", {OkHeader("job", ok_staging), Tensor("w", 1, {1}), Data("abcd"),
                            Tensor("w", 1, {1}), Data("abcd")}},
      {"batch: more data than its tensors", {OkHeader("job", ok_staging), Batch({{"a", 1}, {"b", 1}}),
                                             Data("abcdefghijkl")}},
      {"batch: the stream ends inside it", {OkHeader("job", ok_staging), Batch({{"a", 1}, {"b", 1}}),
                                            Data("abcd")}},
      {"batch: a header before its data ended", {OkHeader("job", ok_staging), Batch({{"a", 1}, {"b", 1}}),
                                                 Data("abcd"), Tensor("c", 1, {1}), Data("abcd")}},
      {"batch: a batch before its data ended", {OkHeader("job", ok_staging), Batch({{"a", 1}, {"b", 1}}),
                                                Batch({{"c", 1}}), Data("abcdefgh")}},
      {"batch: a duplicate name", {OkHeader("job", ok_staging), Batch({{"a", 1}, {"a", 1}}),
                                   Data("abcdefgh")}},
      {"batch: an unknown dtype", {OkHeader("job", ok_staging), Batch({{"a", 1}}, 999), Data("abcd")}},
      {"batch: a negative dimension", {OkHeader("job", ok_staging), Batch({{"a", -1}})}},
      {"batch: more tensors than a batch may hold", {OkHeader("job", ok_staging), [] {
         std::vector<std::pair<std::string, int64_t>> many;
         for (int i = 0; i <= rpc::kMaxBatchTensors; ++i) many.emplace_back(absl::StrCat("t", i), 0);
         return Batch(many);
       }()}},
  };
  for (const Case& c : cases) {
    grpc::Status s = Send(writer, c.messages);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.what << ": " << s.error_message();
    EXPECT_FALSE(s.error_message().empty()) << c.what;
  }
  // A message beyond gRPC's limit is refused by the transport.
  grpc::Status big = Send(writer, {OkHeader("job", ok_staging), Tensor("w", 4, {80 << 20}),
                                   Data(std::string(80 << 20, 'x'))});
  EXPECT_EQ(big.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << big.error_message();
  EXPECT_TRUE(cluster.writer_process(0).running());
  // Nothing was written by any of them.
  // (Only the root's marker naming its catalog.)
  auto leftovers = testing::Run({"/usr/bin/find", cluster.storage_dir(), "-type", "f", "!", "-name",
                                 ".cairn-catalog"});
  EXPECT_EQ(leftovers.out, "");

  // Still serving: a valid save.
  const std::string file = dir.Join("ok.safetensors");
  std::vector<SafetensorsTensor> infos = {{"w", DataType::kFloat, {1}}};
  testing::WriteFile(file, *BuildSafetensorsPrefix(&infos, {}) + "abcd");
  auto r = testing::Run({testing::BinPath("cairn"), "save", "--coordinator=" + cluster.coordinator(),
                         "--job=job", "--step=1", "--from=" + file});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(HostileInput, MalformedCoordinatorRequestsAreRefused) {
  testing::TempDir dir;
  Cluster cluster(dir.path(), 1);
  ASSERT_TRUE(cluster.ok());
  auto stub = v1::Coordinator::NewStub(rpc::NewChannel(cluster.coordinator()));
  auto begin = [&](const std::string& job, int64_t step, int index, int n,
                   const std::string& metric = "loss") {
    v1::BeginShardRequest req;
    req.set_job(job);
    req.set_step(step);
    req.set_shard_index(index);
    req.set_num_shards(n);
    (*req.mutable_metrics())[metric] = 1;
    v1::BeginShardResponse resp;
    auto ctx = rpc::Context(std::chrono::seconds(10));
    return stub->BeginShard(ctx.get(), req, &resp).error_code();
  };
  EXPECT_EQ(begin("", 1, 0, 1), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(begin(".hidden", 1, 0, 1), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(begin("a/b", 1, 0, 1), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(begin(std::string(129, 'a'), 1, 0, 1), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(begin("job", -1, 0, 1), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(begin("job", 1, -1, 1), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(begin("job", 1, 1, 1), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(begin("job", 1, 0, 0), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(begin("job", 1, 0, 1 << 30), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(begin("job", 1, 0, 1, ""), grpc::StatusCode::INVALID_ARGUMENT);
  v1::SetPolicyRequest policy;
  policy.set_job("job");
  policy.mutable_policy()->set_keep_last(-3);
  v1::SetPolicyResponse presp;
  auto ctx = rpc::Context(std::chrono::seconds(10));
  EXPECT_EQ(stub->SetPolicy(ctx.get(), policy, &presp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::AcquireLeaseRequest lease;
  lease.set_job("job");
  lease.set_step(1);
  lease.set_ttl_ms(-1);
  v1::AcquireLeaseResponse lresp;
  auto ctx2 = rpc::Context(std::chrono::seconds(10));
  EXPECT_EQ(stub->AcquireLease(ctx2.get(), lease, &lresp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(cluster.coordinator_process().running());
  EXPECT_EQ(begin("job", 1, 0, 1), grpc::StatusCode::OK);
}

}  // namespace
}  // namespace cairn
