// Client::SaveShard and the retention calls refuse bad input before any RPC
// (no coordinator listens), and name the unreachable coordinator.
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/client/client_fixture.h"

namespace cairn {
namespace client_test {
namespace {

class SaveShardValidation : public ::testing::Test {
 protected:
  void SetUp() override {
    ClientOptions options;
    options.coordinator = "127.0.0.1:1";  // nothing listens: no RPC may be needed
    options.rpc_timeout_ms = 5000;
    auto client = Client::Connect(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(client).value();
  }

  // Expects InvalidArgument mentioning `needle`.
  void ExpectInvalid(const SaveShardOptions& options, const std::vector<SaveTensor>& tensors,
                     const std::string& needle) {
    auto r = client_->SaveShard(options, tensors);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << needle << ": " << r.status();
    EXPECT_TRUE(Contains(r.status().message(), needle)) << needle << ": " << r.status();
  }

  std::unique_ptr<Client> client_;
  std::string floats6_ = Floats(6, 0);
};

TEST_F(SaveShardValidation, ConnectNeedsAnAddress) {
  EXPECT_EQ(Client::Connect({}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SaveShardValidation, BadJobStepOrShard) {
  std::vector<SaveTensor> ok = {{"w", DataType::kFloat, {2, 3}, std::nullopt, floats6_, {}}};
  ExpectInvalid({"", 1, 0, 1, {}}, ok, "job name");
  ExpectInvalid({".hidden", 1, 0, 1, {}}, ok, ".hidden");
  ExpectInvalid({"a/b", 1, 0, 1, {}}, ok, "a/b");
  ExpectInvalid({"bad job", 1, 0, 1, {}}, ok, "bad job");
  ExpectInvalid({std::string(129, 'j'), 1, 0, 1, {}}, ok, "129");
  ExpectInvalid({"job", -1, 0, 1, {}}, ok, "step -1");
  ExpectInvalid({"job", 1, 0, 0, {}}, ok, "num_shards");
  ExpectInvalid({"job", 1, 4, 4, {}}, ok, "shard index 4");
  ExpectInvalid({"job", 1, -1, 4, {}}, ok, "shard index -1");
  ExpectInvalid({"job", 1, 0, 1, {{"", 1.0}}}, ok, "metric");
  ExpectInvalid({"job", 1, 0, 1, {{"loss", std::nan("")}}}, ok, "\"loss\"");
}

TEST_F(SaveShardValidation, BadTensors) {
  const SaveShardOptions o{"job", 1, 0, 1, {}};
  ExpectInvalid(o, {{"", DataType::kFloat, {6}, std::nullopt, floats6_, {}}}, "tensor #0");
  ExpectInvalid(o, {{"w", DataType::kInvalid, {6}, std::nullopt, floats6_, {}}}, "\"w\"");
  ExpectInvalid(o, {{"w", DataType::kResource, {6}, std::nullopt, floats6_, {}}}, "resource");
  ExpectInvalid(o, {{"w", DataType::kFloat, {-1, 6}, std::nullopt, floats6_, {}}}, "\"w\"");
  ExpectInvalid(o, {{"w", DataType::kFloat, {1LL << 40, 1LL << 40}, std::nullopt, "", {}}},
                "\"w\"");
  // 2^61 elements of 8 bytes overflow a byte count.
  ExpectInvalid(o, {{"w", DataType::kDouble, {1LL << 61}, std::nullopt, "", {}}}, "overflow");
  ExpectInvalid(o, {{"w", DataType::kFloat, {7}, std::nullopt, floats6_, {}}}, "needs 28 bytes");
  ExpectInvalid(o, {{"w", DataType::kFloat, {6}, std::nullopt, floats6_.substr(1), {}}},
                "but 23 were given");
  // Slices: must have the shape's rank and fit it; data is the slice's.
  ExpectInvalid(o, {{"emb", DataType::kFloat, {10, 3}, Slice("0,2"), floats6_, {}}}, "rank");
  ExpectInvalid(o, {{"emb", DataType::kFloat, {10, 3}, Slice("9,2:-"), floats6_, {}}},
                "does not fit");
  ExpectInvalid(o, {{"emb", DataType::kFloat, {10, 3}, Slice("0,3:-"), floats6_, {}}},
                "needs 36 bytes");
  // Strings: values in `strings`, whole only.
  ExpectInvalid(o, {{"s", DataType::kString, {3}, std::nullopt, "", {"a", "b"}}}, "needs 3 strings");
  ExpectInvalid(o, {{"s", DataType::kString, {2}, std::nullopt, "xx", {"a", "b"}}}, "\"s\"");
  ExpectInvalid(o, {{"s", DataType::kString, {4}, Slice("0,2"), "", {"a", "b"}}}, "slices");
  ExpectInvalid(o, {{"w", DataType::kFloat, {6}, std::nullopt, floats6_, {"x"}}}, "\"w\"");
  // Duplicates.
  ExpectInvalid(o,
                {{"w", DataType::kFloat, {6}, std::nullopt, floats6_, {}},
                 {"w", DataType::kFloat, {6}, std::nullopt, floats6_, {}}},
                "more than once");
  ExpectInvalid(o,
                {{"e", DataType::kFloat, {4, 3}, Slice("0,2:-"), floats6_, {}},
                 {"e", DataType::kFloat, {4, 3}, Slice("0,2:-"), floats6_, {}}},
                "more than once");
  ExpectInvalid(o,
                {{"e", DataType::kFloat, {4, 3}, Slice("0,2:-"), floats6_, {}},
                 {"e", DataType::kFloat, {6, 3}, Slice("2,2:-"), floats6_, {}}},
                "earlier slice");
  ExpectInvalid(o,
                {{"e", DataType::kFloat, {4, 3}, Slice("0,2:-"), floats6_, {}},
                 {"e", DataType::kFloat, {2, 3}, std::nullopt, floats6_, {}}},
                "more than once");
}

// Valid input gets as far as the coordinator, which is not there.
TEST_F(SaveShardValidation, UnreachableCoordinatorIsNamed) {
  std::vector<SaveTensor> ok = {{"w", DataType::kFloat, {2, 3}, std::nullopt, floats6_, {}},
                                {"e", DataType::kFloat, {4, 3}, Slice("2,2:-"), floats6_, {}},
                                {"s", DataType::kString, {}, std::nullopt, "", {"x"}},
                                {"z", DataType::kFloat, {0, 5}, std::nullopt, "", {}}};
  auto r = client_->SaveShard({"job", 1, 0, 1, {}}, ok);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_TRUE(Contains(r.status().message(), "coordinator 127.0.0.1:1")) << r.status();
  auto l = client_->List("job");
  EXPECT_EQ(l.status().code(), absl::StatusCode::kUnavailable) << l.status();
  EXPECT_EQ(client_->List("../x").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Get("job", -3).status().code(), absl::StatusCode::kInvalidArgument);
}

// Bad retention input is refused before any RPC: the coordinator is not
// there, so anything that reaches it would be Unavailable instead.
TEST_F(SaveShardValidation, RetentionInputIsCheckedClientSide) {
  auto expect_invalid = [this](const RetentionPolicy& p, const std::string& needle) {
    absl::Status s = client_->SetPolicy("j", p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << needle << ": " << s;
    EXPECT_TRUE(Contains(s.message(), needle)) << needle << ": " << s;
    EXPECT_TRUE(Contains(s.message(), "job j")) << s;
  };
  RetentionPolicy p;
  p.keep_last = -1;
  expect_invalid(p, "keep-last");
  p = {};
  p.keep_every_steps = -5;
  expect_invalid(p, "keep-every-steps");
  p = {};
  p.keep_every_hours = -1;
  expect_invalid(p, "keep-every-hours");
  p.keep_every_hours = std::nan("");
  expect_invalid(p, "keep-every-hours");
  p.keep_every_hours = std::numeric_limits<double>::infinity();
  expect_invalid(p, "keep-every-hours");
  p = {};
  p.keep_best = -1;
  p.metric = "loss";
  expect_invalid(p, "keep-best");
  p.keep_best = 2;
  p.metric = "";
  expect_invalid(p, "metric");
  p.keep_best = 0;
  p.metric = "loss";
  expect_invalid(p, "\"loss\"");

  const auto invalid = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(client_->SetPolicy("bad job", {}).code(), invalid);
  EXPECT_EQ(client_->GetPolicy(".x").status().code(), invalid);
  EXPECT_EQ(client_->Gc("", true).status().code(), invalid);
  EXPECT_EQ(client_->Pin("a/b", 1, true).code(), invalid);
  EXPECT_EQ(client_->Pin("j", -1, true).code(), invalid);
  EXPECT_EQ(client_->AcquireLease("j", -1, 1000).status().code(), invalid);
  EXPECT_EQ(client_->AcquireLease("j", 1, 0).status().code(), invalid);
  EXPECT_EQ(client_->ReleaseLease("").code(), invalid);

  // Valid input gets as far as the (absent) coordinator, which is named.
  p = {};
  p.keep_best = 1;
  p.metric = "loss";
  p.keep_every_hours = 0.25;
  absl::Status s = client_->SetPolicy("j", p);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_TRUE(Contains(s.message(), "coordinator 127.0.0.1:1")) << s;
  EXPECT_EQ(client_->SetPolicy("j", {}).code(), absl::StatusCode::kUnavailable);
  s = client_->Pin("j", 3, true);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_TRUE(Contains(s.message(), "j/3")) << s;
  EXPECT_EQ(client_->Gc("j", true).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace client_test
}  // namespace cairn
