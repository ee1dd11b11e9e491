// The async save API against real servers: the caller may change its tensors
// as soon as SaveShardAsync returns; failures are never dropped.
#include <cstring>

#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"
#include "tests/testing/safetensors_util.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

std::unique_ptr<Client> Connect(const std::string& address) {
  ClientOptions options;
  options.coordinator = address;
  return std::move(Client::Connect(options)).value();
}

TEST(AsyncSave, TheSnapshotIsTakenBeforeReturningAndTheResultArrivesLater) {
  testing::TempDir dir;
  testing::Cluster cluster(dir.path(), 2);
  ASSERT_TRUE(cluster.ok());
  auto client = Connect(cluster.coordinator());
  // Large enough for the two-thread snapshot copy (client.cc ParallelCopy),
  // and different at every position (seeded random bytes), so a chunk copied
  // to the wrong offset, copied twice or not copied at all changes the bytes
  // restored. One repeated byte could not tell any of those apart.
  std::string weights = testing::PatternBytes(48 << 20, 1);
  std::string bias = testing::PatternBytes(1000, 2);
  const std::string original = weights;
  auto handle = client->SaveShardAsync(
      {"async", 1, 0, 1, {}},
      {{"w", DataType::kUint8, {static_cast<int64_t>(weights.size())}, std::nullopt, weights, {}},
       {"b", DataType::kUint8, {1000}, std::nullopt, bias, {}}});
  ASSERT_TRUE(handle.ok()) << handle.status();
  // Training goes on and overwrites its tensors at once.
  std::memset(weights.data(), 'z', weights.size());
  auto result = (*handle)->Wait();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->committed);
  EXPECT_TRUE((*handle)->Done());
  EXPECT_GT((*handle)->durable_after_micros(), 0);
  auto restored = client->Restore("async", 1, {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_TRUE(restored->at("w").tensor.data.view() == original);
  EXPECT_EQ(restored->at("b").tensor.data.view(), bias);

  // Back-to-back async saves: the second waits for the first. The second
  // snapshots new weights of the same size (into the first save's buffers,
  // reused): its checkpoint must hold the new bytes, none of the old.
  const std::string weights2 = testing::PatternBytes(48 << 20, 3);
  auto h2 = client->SaveShardAsync(
      {"async", 2, 0, 1, {}},
      {{"w", DataType::kUint8, {static_cast<int64_t>(weights2.size())}, std::nullopt, weights2, {}},
       {"b", DataType::kUint8, {1000}, std::nullopt, bias, {}}});
  auto h3 = client->SaveShardAsync({"async", 3, 0, 1, {}},
                                   {{"b", DataType::kUint8, {1000}, std::nullopt, bias, {}}});
  ASSERT_TRUE(h2.ok() && h3.ok());
  EXPECT_TRUE((*h2)->Done()) << "the previous save finished before the next began";
  EXPECT_TRUE((*h3)->Wait().ok());
  auto restored2 = client->Restore("async", 2, {});
  ASSERT_TRUE(restored2.ok()) << restored2.status();
  EXPECT_TRUE(restored2->at("w").tensor.data.view() == weights2);
}

TEST(AsyncSave, AFailureNobodyWaitedForStopsTheNextSave) {
  testing::TempDir dir;
  testing::Cluster cluster(dir.path(), 1);
  ASSERT_TRUE(cluster.ok());
  auto client = Connect(cluster.coordinator());
  const std::string bias(16, 'b');
  // Step 5 is begun with 2 shards; an async save claiming 3 fails in the background.
  ASSERT_TRUE(client->SaveShard({"bad", 5, 0, 2, {}},
                                {{"x", DataType::kUint8, {16}, std::nullopt, bias, {}}}).ok());
  auto failing = client->SaveShardAsync({"bad", 5, 1, 3, {}},
                                        {{"y", DataType::kUint8, {16}, std::nullopt, bias, {}}});
  ASSERT_TRUE(failing.ok());
  failing->reset();  // dropped without Wait()
  auto next = client->SaveShardAsync({"bad", 6, 0, 1, {}},
                                     {{"z", DataType::kUint8, {16}, std::nullopt, bias, {}}});
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(next.status().message().find("never waited"), std::string::npos) << next.status();
  EXPECT_NE(next.status().message().find("2 shards"), std::string::npos) << next.status();
  // Reported once; the save after that goes through.
  auto after = client->SaveShardAsync({"bad", 6, 0, 1, {}},
                                      {{"z", DataType::kUint8, {16}, std::nullopt, bias, {}}});
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE((*after)->Wait().ok());
}

}  // namespace
}  // namespace cairn
