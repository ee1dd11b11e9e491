#include "shard_writer/internal/raw_message.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace cairn {
namespace internal {
namespace {

// `bytes` as a ByteBuffer cut into slices at `cuts` (offsets, ascending).
grpc::ByteBuffer Cut(const std::string& bytes, const std::vector<size_t>& cuts) {
  std::vector<grpc::Slice> slices;
  size_t from = 0;
  for (size_t to : cuts) {
    slices.emplace_back(bytes.data() + from, to - from);
    from = to;
  }
  slices.emplace_back(bytes.data() + from, bytes.size() - from);
  return grpc::ByteBuffer(slices.data(), slices.size());
}

std::string Joined(const ReceivedMessage& m) {
  std::string out;
  for (absl::string_view p : m.data) out.append(p.data(), p.size());
  return out;
}

TEST(ParseReceived, DataMessagesComeBackAsViewsOfEverySlice) {
  std::string payload(300, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7);
  v1::SaveShardMessage msg;
  msg.set_data(payload);
  const std::string wire = msg.SerializeAsString();  // tag, 2-byte varint 300, bytes
  ASSERT_EQ(wire.size(), 303u);
  // Whole; the varint split across slices; many small slices; empty slices.
  for (const std::vector<size_t>& cuts : std::vector<std::vector<size_t>>{
           {}, {1}, {2}, {3}, {1, 2, 3, 50, 51, 302}, {0, 0, 3, 3, 303}}) {
    grpc::ByteBuffer buffer = Cut(wire, cuts);
    ReceivedMessage m;
    ASSERT_TRUE(ParseReceived(&buffer, &m).ok());
    EXPECT_TRUE(m.is_data);
    EXPECT_EQ(m.data_size, payload.size());
    EXPECT_EQ(Joined(m), payload);
  }
  // An empty data message.
  v1::SaveShardMessage empty;
  empty.set_data("");
  grpc::ByteBuffer buffer = Cut(empty.SerializeAsString(), {});
  ReceivedMessage m;
  ASSERT_TRUE(ParseReceived(&buffer, &m).ok());
  EXPECT_TRUE(m.is_data);
  EXPECT_EQ(m.data_size, 0u);
}

TEST(ParseReceived, BatchMessagesParseIntoTheReusedBatch) {
  ReceivedMessage m;
  for (int round = 0; round < 3; ++round) {
    v1::SaveShardMessage msg;
    for (int i = 0; i < 40 - 10 * round; ++i) {
      v1::TensorHeader* t = msg.mutable_batch()->add_tensors();
      t->set_name(absl::StrCat("round", round, "/tensor", i));
      t->set_dtype(1);
      t->add_shape(i);
    }
    const std::string wire = msg.SerializeAsString();
    grpc::ByteBuffer buffer = Cut(wire, {1, 2, wire.size() / 2});
    ASSERT_TRUE(ParseReceived(&buffer, &m).ok());
    EXPECT_TRUE(m.is_batch);
    EXPECT_FALSE(m.is_data);
    EXPECT_FALSE(m.message.has_batch());
    EXPECT_EQ(m.batch.SerializeAsString(), msg.batch().SerializeAsString()) << round;
  }
  // A garbled batch is refused.
  std::string wire = "\x22\x03\x0a\x05x";
  grpc::ByteBuffer buffer = Cut(wire, {});
  EXPECT_TRUE(absl::IsInvalidArgument(ParseReceived(&buffer, &m)));
}

TEST(ParseReceived, OtherMessagesAndOtherEncodingsParseAsProtobufDoes) {
  v1::SaveShardMessage header;
  header.mutable_header()->set_job("j");
  header.mutable_header()->set_step(7);
  grpc::ByteBuffer buffer = Cut(header.SerializeAsString(), {1});
  ReceivedMessage m;
  ASSERT_TRUE(ParseReceived(&buffer, &m).ok());
  EXPECT_FALSE(m.is_data);
  EXPECT_EQ(m.message.header().job(), "j");
  EXPECT_EQ(m.message.header().step(), 7);

  // Two data fields in one message: protobuf keeps the last; so do we.
  v1::SaveShardMessage a, b;
  a.set_data("first");
  b.set_data("second");
  buffer = Cut(a.SerializeAsString() + b.SerializeAsString(), {});
  ASSERT_TRUE(ParseReceived(&buffer, &m).ok());
  EXPECT_FALSE(m.is_data);
  EXPECT_EQ(m.message.data(), "second");

  // A data field followed by a header: the oneof ends as the header.
  buffer = Cut(a.SerializeAsString() + header.SerializeAsString(), {});
  ASSERT_TRUE(ParseReceived(&buffer, &m).ok());
  EXPECT_FALSE(m.is_data);
  EXPECT_EQ(m.message.kind_case(), v1::SaveShardMessage::kHeader);
}

TEST(ParseReceived, TruncatedOrGarbledBytesAreInvalidArgument) {
  v1::SaveShardMessage msg;
  msg.set_data(std::string(300, 'x'));
  const std::string wire = msg.SerializeAsString();
  for (const std::string& bad :
       {wire.substr(0, 2), wire.substr(0, 100), std::string("\x1a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11),
        std::string("\xff\xff\xff", 3)}) {
    grpc::ByteBuffer buffer = Cut(bad, {});
    ReceivedMessage m;
    absl::Status s = ParseReceived(&buffer, &m);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  }
}

}  // namespace
}  // namespace internal
}  // namespace cairn
