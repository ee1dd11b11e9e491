// How a shard's tensors travel. Small tensors go in batches
// (SaveShardMessage.batch) to writers that announce
// WRITER_FEATURE_TENSOR_BATCHES, and one at a time to writers that do not (a
// cluster upgraded one writer at a time); a SaveStream sends them while its
// caller is still adding more. Every way commits the same checkpoint, byte
// for byte, and a stream that fails or is abandoned commits nothing.
// In-process coordinator and writers (the batch counter is the writers'
// metric), real sockets and files.
#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "coordinator/coordinator.h"
#include "gtest/gtest.h"
#include "observability/metrics.h"
#include "shard_writer/shard_writer.h"
#include "tests/testing/safetensors_util.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

struct Servers {
  std::unique_ptr<CoordinatorServer> coordinator;
  std::unique_ptr<WriterServer> writer;
  std::unique_ptr<Client> client;
  std::string storage;
};

Servers Start(const testing::TempDir& dir, const std::string& name, bool writer_takes_batches) {
  Servers s;
  s.storage = dir.Join(name + "-storage");
  CoordinatorOptions copts;
  copts.db_path = dir.Join(name + "-db");
  copts.storage_uri = s.storage;
  auto coordinator = CoordinatorServer::Start(copts);
  EXPECT_TRUE(coordinator.ok()) << coordinator.status();
  if (!coordinator.ok()) return s;
  s.coordinator = *std::move(coordinator);
  WriterOptions wopts;
  wopts.coordinator = s.coordinator->address();
  wopts.accept_tensor_batches = writer_takes_batches;
  auto writer = WriterServer::Start(wopts);
  EXPECT_TRUE(writer.ok()) << writer.status();
  if (!writer.ok()) return s;
  s.writer = *std::move(writer);
  ClientOptions options;
  options.coordinator = s.coordinator->address();
  auto client = Client::Connect(options);
  EXPECT_TRUE(client.ok()) << client.status();
  if (client.ok()) s.client = *std::move(client);
  return s;
}

double BatchedSoFar() {
  return metrics::Counter("cairn_writer_batched_tensors_total", "").value();
}

// Waits (up to 10 s) until the writers received more tensor bytes than
// `before`: a stream's first tensors are on the writer.
bool WritersReceivedMoreThan(double before) {
  auto& received = metrics::Counter("cairn_writer_bytes_received_total", "");
  for (int i = 0; i < 1000 && received.value() <= before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return received.value() > before;
}

// Every kind of tensor a batch can hold or must leave out, in an order that
// starts, interrupts and ends runs of small ones: empty tensors (first and
// last of a batch), strings, slices, bfloat16, one past the batch threshold,
// and enough small ones to fill several batches.
struct Mix {
  std::vector<std::string> bytes;  // owned data
  std::vector<SaveTensor> tensors;

  void Add(std::string name, DataType dtype, std::vector<int64_t> shape, size_t n,
           std::optional<TensorSlice> slice = std::nullopt) {
    bytes.push_back(testing::PatternBytes(n, static_cast<uint32_t>(bytes.size() + 1)));
    tensors.push_back({std::move(name), dtype, std::move(shape), std::move(slice), {}, {}});
  }
  void AddString(std::string name, std::vector<std::string> values) {
    bytes.emplace_back();
    tensors.push_back({std::move(name), DataType::kString,
                       {static_cast<int64_t>(values.size())}, std::nullopt, {}, std::move(values)});
  }
  std::vector<SaveTensor> Bind() {
    for (size_t i = 0; i < tensors.size(); ++i) tensors[i].data = bytes[i];
    return tensors;
  }
};

Mix MakeMix() {
  Mix m;
  m.Add("empty/first", DataType::kFloat, {0}, 0);
  for (int i = 0; i < 5000; ++i) {
    m.Add(absl::StrCat("layers.", i, ".weight"), DataType::kFloat, {1 + i % 97}, 4 * (1 + i % 97));
    if (i == 1234) m.AddString("vocab", {"a", "", std::string(300, 'z')});
    if (i == 2000) m.Add("big", DataType::kUint8, {200000}, 200000);
    if (i == 3000) m.Add("empty/middle", DataType::kInt64, {3, 0}, 0);
  }
  m.Add("bf16", DataType::kBfloat16, {7}, 14);
  m.Add("emb", DataType::kFloat, {10, 4}, 4 * 4 * 4, *TensorSlice::Parse("2,4:-"));
  m.Add("emb", DataType::kFloat, {10, 4}, 4 * 4 * 4, *TensorSlice::Parse("6,4:-"));
  m.Add("emb", DataType::kFloat, {10, 4}, 2 * 4 * 4, *TensorSlice::Parse("0,2:-"));
  m.Add("empty/last", DataType::kFloat, {0, 2}, 0);
  return m;
}

// The committed files of two checkpoints (directories ".../JOB/ckpt-1") are
// the same, byte for byte.
void ExpectSameFiles(const std::string& a, const std::string& b) {
  for (const char* file : {"variables.index", "variables.data-00000-of-00001"}) {
    const std::string x = testing::ReadFile(absl::StrCat(a, "/", file));
    const std::string y = testing::ReadFile(absl::StrCat(b, "/", file));
    EXPECT_FALSE(x.empty()) << file;
    EXPECT_TRUE(x == y) << file << " differs between " << a << " and " << b;
  }
}

TEST(TensorBatch, BatchedAndOneByOneSavesCommitTheSameBytes) {
  testing::TempDir dir;
  Servers batching = Start(dir, "new", /*writer_takes_batches=*/true);
  Servers older = Start(dir, "old", /*writer_takes_batches=*/false);
  ASSERT_TRUE(batching.client && older.client);
  Mix mix = MakeMix();
  const std::vector<SaveTensor> tensors = mix.Bind();

  const double before = BatchedSoFar();
  auto saved = batching.client->SaveShard({"j", 1, 0, 1, {}}, tensors);
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_TRUE(saved->committed);
  const double batched = BatchedSoFar() - before;
  // All but "big" (past the threshold) went in batches.
  EXPECT_EQ(batched, static_cast<double>(tensors.size() - 1));

  // A writer that never announced batches gets none: a batch would fail the
  // save ("unexpected message").
  auto one_by_one = older.client->SaveShard({"j", 1, 0, 1, {}}, tensors);
  ASSERT_TRUE(one_by_one.ok()) << one_by_one.status();
  EXPECT_EQ(BatchedSoFar() - before, batched);

  EXPECT_EQ(saved->num_tensors, one_by_one->num_tensors);
  ExpectSameFiles(batching.storage + "/j/ckpt-1", older.storage + "/j/ckpt-1");
  auto restored = batching.client->Restore("j", 1, {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->at("layers.4999.weight").tensor.data.view(), mix.bytes[mix.bytes.size() - 6]);
  EXPECT_EQ(restored->at("vocab").tensor.strings,
            (std::vector<std::string>{"a", "", std::string(300, 'z')}));
  for (Servers* s : {&batching, &older}) {
    s->writer->Shutdown();
    s->coordinator->Shutdown();
  }
}

TEST(SaveStream, TensorsAddedWhileItSendsCommitWhatSaveShardCommits) {
  testing::TempDir dir;
  Servers s = Start(dir, "s", /*writer_takes_batches=*/true);
  ASSERT_TRUE(s.client);
  Mix mix = MakeMix();
  const std::vector<SaveTensor> tensors = mix.Bind();
  auto whole = s.client->SaveShard({"whole", 1, 0, 1, {}}, tensors);
  ASSERT_TRUE(whole.ok()) << whole.status();

  auto stream = s.client->BeginSaveShard({"streamed", 1, 0, 1, {{"loss", 0.5}}});
  ASSERT_TRUE(stream.ok()) << stream.status();
  for (size_t i = 0; i < tensors.size(); i += 700) {  // chunks, as a flattener gives them
    std::vector<SaveTensor> chunk(tensors.begin() + i,
                                  tensors.begin() + std::min(tensors.size(), i + 700));
    ASSERT_TRUE((*stream)->Add(std::move(chunk)).ok());
  }
  auto streamed = (*stream)->Finish();
  ASSERT_TRUE(streamed.ok()) << streamed.status();
  EXPECT_TRUE(streamed->committed);
  EXPECT_EQ(streamed->num_tensors, whole->num_tensors);
  ExpectSameFiles(s.storage + "/whole/ckpt-1", s.storage + "/streamed/ckpt-1");
  auto summary = s.client->Get("streamed", 1);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->metrics.at("loss"), 0.5);
  s.writer->Shutdown();
  s.coordinator->Shutdown();
}

TEST(SaveStream, AnInvalidOrAbandonedStreamCommitsNothingAndTheStepCanBeSavedAgain) {
  testing::TempDir dir;
  Servers s = Start(dir, "s", /*writer_takes_batches=*/true);
  ASSERT_TRUE(s.client);
  Mix mix = MakeMix();
  const std::vector<SaveTensor> tensors = mix.Bind();
  const std::vector<SaveTensor> first(tensors.begin(), tensors.begin() + 3000);

  auto& received = metrics::Counter("cairn_writer_bytes_received_total", "");
  // Abandoned before its first tensor (its caller's preparation failed):
  // the coordinator never hears of it, no step is left pending.
  {
    auto stream = s.client->BeginSaveShard({"j", 1, 0, 1, {}});
    ASSERT_TRUE(stream.ok()) << stream.status();
    EXPECT_TRUE(absl::IsInvalidArgument((*stream)->Add({SaveTensor{}})));  // no name
  }
  {
    auto stream = s.client->BeginSaveShard({"j", 1, 0, 1, {}});
    ASSERT_TRUE(stream.ok()) << stream.status();
  }
  ListOptions everything;
  everything.include_uncommitted = true;
  auto listed = s.client->List("j", everything);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_TRUE(listed->empty()) << listed->size() << " steps, the first step " << (*listed)[0].step;
  // A duplicate name once the first tensors are on the writer: the save
  // fails, now and at Finish, and the writer never sees the stream end as
  // if complete (it would commit the tensors it has).
  {
    auto stream = s.client->BeginSaveShard({"j", 1, 0, 1, {}});
    ASSERT_TRUE(stream.ok()) << stream.status();
    const double before = received.value();
    ASSERT_TRUE((*stream)->Add(first).ok());
    ASSERT_TRUE(WritersReceivedMoreThan(before));
    absl::Status dup = (*stream)->Add({tensors[10]});
    EXPECT_TRUE(absl::IsInvalidArgument(dup)) << dup;
    EXPECT_NE(dup.message().find("is given more than once"), std::string::npos) << dup;
    EXPECT_EQ((*stream)->Add({tensors[3000]}), dup);
    EXPECT_EQ((*stream)->Finish().status(), dup);
  }
  EXPECT_TRUE(absl::IsNotFound(s.client->Get("j", 1).status()));
  // Destroyed before Finish: abandoned.
  {
    auto stream = s.client->BeginSaveShard({"j", 1, 0, 1, {}});
    ASSERT_TRUE(stream.ok()) << stream.status();
    const double before = received.value();
    ASSERT_TRUE((*stream)->Add(first).ok());
    ASSERT_TRUE(WritersReceivedMoreThan(before));
  }
  EXPECT_TRUE(absl::IsNotFound(s.client->Get("j", 1).status()));
  // Nothing to save.
  {
    auto stream = s.client->BeginSaveShard({"j", 1, 0, 1, {}});
    ASSERT_TRUE(stream.ok()) << stream.status();
    absl::Status empty = (*stream)->Finish().status();
    EXPECT_TRUE(absl::IsInvalidArgument(empty)) << empty;
    EXPECT_NE(empty.message().find("nothing to save"), std::string::npos) << empty;
  }
  EXPECT_TRUE(absl::IsNotFound(s.client->Get("j", 1).status()));
  // Options are checked at once.
  EXPECT_TRUE(absl::IsInvalidArgument(s.client->BeginSaveShard({"bad/../job", 1, 0, 1, {}}).status()));
  SaveShardOptions with_progress{"j", 1, 0, 1, {}};
  with_progress.progress = [](uint64_t, uint64_t) {};
  EXPECT_TRUE(absl::IsInvalidArgument(s.client->BeginSaveShard(with_progress).status()));

  // The step is saved after all, whole.
  auto again = s.client->BeginSaveShard({"j", 1, 0, 1, {}});
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE((*again)->Add(tensors).ok());
  auto saved = (*again)->Finish();
  ASSERT_TRUE(saved.ok()) << saved.status();
  EXPECT_TRUE(saved->committed);
  auto restored = s.client->Restore("j", 1, {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->size(), saved->num_tensors - 2);  // "emb": three slices, one tensor
  s.writer->Shutdown();
  s.coordinator->Shutdown();
}

}  // namespace
}  // namespace cairn
