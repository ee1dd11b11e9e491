// Client::SaveShard, List and Get against the fake services: what goes on
// the wire (header, tensors, chunks), save progress, the catalog's mapping,
// and ShardStream's framing.
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/internal/shard_stream.h"
#include "gtest/gtest.h"
#include "proto/cairn.pb.h"
#include "proto/rpc/rpc_util.h"
#include "tests/client/client_fixture.h"
#include "tests/client/fake_service.h"
#include "tests/testing/safetensors_util.h"

namespace cairn {
namespace client_test {
namespace {

TEST_F(FakeService, SaveShardStreamsHeaderTensorsAndChunks) {
  // 9 MiB + 4 bytes: chunks of 4 MiB, 4 MiB, 1 MiB + 4.
  const std::string big = testing::PatternBytes(9 * (1 << 20) + 4, 1);
  const std::string rows = Floats(2 * 3, 7);
  std::vector<SaveTensor> tensors = {
      {"big", DataType::kUint8, {static_cast<int64_t>(big.size())}, std::nullopt, big, {}},
      {"emb", DataType::kFloat, {10, 3}, Slice("4,2:-"), rows, {}},
      {"vocab", DataType::kString, {2}, std::nullopt, "", {"hello", std::string("\0x", 2)}},
      {"empty", DataType::kFloat, {0, 4}, std::nullopt, "", {}},
  };
  SaveShardOptions options{"run-1", 42, 0, 1, {{"loss", 0.5}, {"acc", 0.9}}};
  auto result = client_->SaveShard(options, tensors);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->committed);
  EXPECT_EQ(result->num_tensors, 4);
  EXPECT_GE(result->bytes, big.size() + rows.size());

  auto begins = coordinator_.begins();
  ASSERT_EQ(begins.size(), 1u);
  EXPECT_EQ(begins[0].job(), "run-1");
  EXPECT_EQ(begins[0].step(), 42);
  EXPECT_EQ(begins[0].shard_index(), 0);
  EXPECT_EQ(begins[0].num_shards(), 1);
  EXPECT_EQ(begins[0].metrics().at("loss"), 0.5);
  EXPECT_EQ(begins[0].metrics().at("acc"), 0.9);

  auto headers = writer_->headers();
  ASSERT_EQ(headers.size(), 1u);
  EXPECT_EQ(headers[0].job(), "run-1");
  EXPECT_EQ(headers[0].step(), 42);
  EXPECT_EQ(headers[0].token(), "token-1");
  EXPECT_EQ(headers[0].staging_prefix(), "run-1/ckpt-42/variables");
  auto received = writer_->tensors();
  ASSERT_EQ(received.size(), 1u);
  ASSERT_EQ(received[0].size(), 4u);
  const auto& r_big = received[0][0];
  EXPECT_EQ(r_big.header.name(), "big");
  EXPECT_EQ(r_big.header.dtype(), static_cast<int>(DataType::kUint8));
  EXPECT_EQ(r_big.header.slice(), "");
  EXPECT_EQ(r_big.chunks, (std::vector<size_t>{rpc::kChunkBytes, rpc::kChunkBytes, (1 << 20) + 4}));
  EXPECT_TRUE(r_big.data == big);
  const auto& r_emb = received[0][1];
  EXPECT_EQ(r_emb.header.slice(), "4,2:-");
  EXPECT_EQ(std::vector<int64_t>(r_emb.header.shape().begin(), r_emb.header.shape().end()),
            (std::vector<int64_t>{10, 3}));
  EXPECT_EQ(r_emb.data, rows);
  const auto& r_vocab = received[0][2];
  EXPECT_EQ(r_vocab.header.dtype(), static_cast<int>(DataType::kString));
  ASSERT_EQ(r_vocab.header.string_values_size(), 2);
  EXPECT_EQ(r_vocab.header.string_values(1), std::string("\0x", 2));
  EXPECT_TRUE(r_vocab.chunks.empty());
  EXPECT_TRUE(received[0][3].chunks.empty());

  // And back, through the coordinator's Get.
  Commit("run-1", 42);
  RestoreRequest whole;
  whole.tensors = {"big", "vocab", "empty"};
  auto restored = client_->Restore("run-1", std::nullopt, whole);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_TRUE(restored->at("big").tensor.data.view() == big);
  EXPECT_EQ(restored->at("vocab").tensor.strings,
            (std::vector<std::string>{"hello", std::string("\0x", 2)}));
  EXPECT_EQ(restored->at("empty").tensor.shape, (std::vector<int64_t>{0, 4}));
  // Only rows 4-5 of emb were saved: that slice restores, the whole does not.
  auto all = client_->Restore("run-1", 42, {});
  EXPECT_EQ(all.status().code(), absl::StatusCode::kFailedPrecondition) << all.status();
  EXPECT_TRUE(Contains(all.status().message(), "\"emb\"")) << all.status();
  RestoreRequest part;
  part.tensors = {"emb"};
  part.slices["emb"] = Slice("4,2:-");
  auto emb = client_->Restore("run-1", 42, part);
  ASSERT_TRUE(emb.ok()) << emb.status();
  EXPECT_EQ(emb->at("emb").tensor.data.view(), rows);
  EXPECT_EQ(client_->Restore("run-1", 41, {}).status().code(), absl::StatusCode::kNotFound);
}

// The save's progress is the tensor data as it goes out, chunk by chunk,
// from the caller's thread or (async) the background one.
TEST_F(FakeService, SaveShardReportsEveryChunkSent) {
  const std::string big = testing::PatternBytes(9 * (1 << 20) + 4, 2);
  const std::string rows = Floats(2 * 3, 7);
  std::vector<SaveTensor> tensors = {
      {"big", DataType::kUint8, {static_cast<int64_t>(big.size())}, std::nullopt, big, {}},
      {"vocab", DataType::kString, {1}, std::nullopt, "", {"not counted"}},
      {"emb", DataType::kFloat, {10, 3}, Slice("4,2:-"), rows, {}},
  };
  const uint64_t total = big.size() + rows.size();
  ProgressLog log;
  SaveShardOptions options{"progress", 1, 0, 1, {}};
  options.progress = log.Fn();
  ASSERT_TRUE(client_->SaveShard(options, tensors).ok());
  log.ExpectComplete(total);
  EXPECT_EQ(log.calls(), (std::vector<std::pair<uint64_t, uint64_t>>{
                             {0, total},
                             {rpc::kChunkBytes, total},
                             {2 * rpc::kChunkBytes, total},
                             {big.size(), total},
                             {total, total}}));

  ProgressLog async_log;
  options.step = 2;
  options.progress = async_log.Fn();
  auto handle = client_->SaveShardAsync(options, tensors);
  ASSERT_TRUE(handle.ok()) << handle.status();
  ASSERT_TRUE((*handle)->Wait().ok());
  async_log.ExpectComplete(total);
  EXPECT_EQ(async_log.calls().size(), 5u);
}

TEST_F(FakeService, ListAndGetMapTheCatalog) {
  Commit("j", 200);
  Commit("j", 100);
  Commit("other", 5);
  auto list = client_->List("j");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].step, 100);
  EXPECT_EQ((*list)[1].step, 200);
  const CheckpointSummary& c = (*list)[0];
  EXPECT_EQ(c.job, "j");
  EXPECT_EQ(c.state, CheckpointState::kCommitted);
  EXPECT_EQ(c.num_shards, 1);
  EXPECT_EQ(c.committed_at_micros, 1700000000123456 + 100);
  EXPECT_EQ(c.metrics.at("loss"), 0.25);
  EXPECT_TRUE(c.pinned);
  EXPECT_EQ(c.kept_by, std::vector<std::string>{"keep-last"});
  EXPECT_TRUE(Contains(c.prefix_uri, "j/ckpt-100/variables"));
  auto latest = client_->Get("j", std::nullopt);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(latest->step, 200);
  auto missing = client_->Get("j", 7);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(client_->List("nobody").ok());
}

// Every state the coordinator reports has its own name (the string mapping
// before CheckpointState had no MERGING and no ABORTING: both read
// "unspecified"), and a restore refuses an uncommitted step naming it.
TEST_F(FakeService, EveryCheckpointStateHasItsName) {
  const std::vector<std::tuple<v1::CheckpointState, CheckpointState, std::string>> states = {
      {v1::PENDING, CheckpointState::kPending, "pending"},
      {v1::MERGING, CheckpointState::kMerging, "merging"},
      {v1::COMMITTING, CheckpointState::kCommitting, "committing"},
      {v1::COMMITTED, CheckpointState::kCommitted, "committed"},
      {v1::ABORTING, CheckpointState::kAborting, "aborting"},
      {v1::ABORTED, CheckpointState::kAborted, "aborted"},
      {v1::DELETING, CheckpointState::kDeleting, "deleting"}};
  int64_t step = 1;
  for (const auto& [wire, state, name] : states) {
    v1::CheckpointInfo info;
    info.set_job("s");
    info.set_step(step);
    info.set_state(wire);
    info.set_num_shards(1);
    info.set_prefix_uri("/nowhere/s/ckpt-" + std::to_string(step) + "/variables");
    coordinator_.AddCheckpoint(info);
    auto got = client_->Get("s", step);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->state, state) << name;
    EXPECT_EQ(CheckpointStateName(got->state), name);
    if (state != CheckpointState::kCommitted) {
      auto restored = client_->Restore("s", step, {});
      EXPECT_EQ(restored.status().code(), absl::StatusCode::kFailedPrecondition) << name;
      EXPECT_TRUE(Contains(restored.status().message(), "is " + name + ", not committed"))
          << restored.status();
    }
    ++step;
  }
}

// ShardStream frames each data chunk itself; the writer parses it with the
// generated code, so the framing must be protobuf's own.
TEST(ShardStream, DataFramingIsTheProtobufWireForm) {
  for (size_t n : {size_t{1}, size_t{127}, size_t{128}, size_t{300}, size_t{16383}, size_t{16384},
                   size_t{4} << 20, (size_t{4} << 20) + 1}) {
    v1::SaveShardMessage m;
    m.set_data(std::string(n, 'x'));
    EXPECT_EQ(internal::DataFieldFraming(n) + std::string(n, 'x'), m.SerializeAsString()) << n;
  }
}

TEST(ShardStream, ABatchMessageIsTheProtobufWireForm) {
  v1::SaveShardMessage m;
  for (int i = 0; i < 300; ++i) {
    v1::TensorHeader* t = m.mutable_batch()->add_tensors();
    t->set_name(absl::StrCat("layer.", i, ".weight"));
    t->set_dtype(1);
    t->add_shape(i);
    t->add_shape(3);
    EXPECT_EQ(internal::SerializeBatchMessage(m.batch()), m.SerializeAsString()) << i;
  }
}

}  // namespace
}  // namespace client_test
}  // namespace cairn
