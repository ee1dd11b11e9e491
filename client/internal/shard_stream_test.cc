// What decides which tensors go in batches, and how full a batch gets.
#include "client/internal/shard_stream.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace cairn {
namespace internal {
namespace {

// BatchedBytes bounds what a tensor adds to a batch's messages: its header
// as sent (bar a few bytes of dtype and shape) and its data. Otherwise many
// empty strings would cost nothing toward kBatchBytes, and 4096 such
// headers could make one message past the writer's limit.
TEST(ShardStream, BatchedBytesBoundsATensorsShareOfABatch) {
  std::vector<SaveTensor> cases;
  cases.push_back({"w", DataType::kFloat, {4}, std::nullopt, std::string(16, 'x'), {}});
  cases.push_back({"empty", DataType::kFloat, {0}, std::nullopt, {}, {}});
  cases.push_back({"s", DataType::kString, {10000}, std::nullopt, {}, std::vector<std::string>(10000)});
  cases.push_back({"t", DataType::kString, {3}, std::nullopt, {}, {"a", std::string(300, 'b'), ""}});
  cases.push_back({std::string(200, 'n'), DataType::kInt8, {2}, std::nullopt, "ab", {}});
  for (const SaveTensor& t : cases) {
    v1::TensorHeader header;
    FillTensorHeader(t, &header);
    constexpr size_t kDtypeAndShape = 16;
    EXPECT_LE(header.ByteSizeLong() + t.data.size(), BatchedBytes(t) + kDtypeAndShape) << t.name;
  }
  EXPECT_FALSE(Batchable(cases[2])) << "ten thousand empty strings";
  EXPECT_TRUE(Batchable(cases[0]));
}

}  // namespace
}  // namespace internal
}  // namespace cairn
