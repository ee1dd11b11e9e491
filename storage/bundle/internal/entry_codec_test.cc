#include "storage/bundle/internal/entry_codec.h"

#include <random>

#include "gtest/gtest.h"
#include "proto/tensor_bundle.pb.h"
#include "storage/bundle/tensor_slice.h"

namespace cairn {
namespace internal {
namespace {

// What protobuf's serializer writes for `entry`: the reference EncodeEntry
// must match byte for byte (TensorFlow writes its index with it).
std::string EncodeEntryProto(const BundleEntry& entry) {
  tf::BundleEntryProto proto;
  proto.set_dtype(entry.dtype);
  auto* shape = proto.mutable_shape();
  for (int64_t d : entry.shape) shape->add_dim()->set_size(d);
  proto.set_shard_id(entry.shard_id);
  proto.set_offset(entry.offset);
  proto.set_size(entry.size);
  proto.set_crc32c(entry.masked_crc32c);
  for (const TensorSlice& slice : entry.slices) {
    auto* sp = proto.add_slices();
    for (const Extent& e : slice.extents()) {
      auto* ep = sp->add_extent();
      if (!e.full()) {
        ep->set_start(e.start);
        ep->set_length(e.length);
      }
    }
  }
  return proto.SerializeAsString();
}

int64_t Pick(std::mt19937_64& rng, std::initializer_list<int64_t> special) {
  std::vector<int64_t> values(special);
  switch (rng() % 4) {
    case 0: return values[rng() % values.size()];
    case 1: return static_cast<int64_t>(rng() % 200);
    case 2: return static_cast<int64_t>(rng() >> (rng() % 64));
    default: return -static_cast<int64_t>(rng() % 1000);
  }
}

TEST(EntryCodecTest, EntriesAreEncodedAsProtobufWouldByteForByte) {
  std::mt19937_64 rng(15);
  const std::initializer_list<int64_t> special = {0, 1, 127, 128, 16383, 16384, -1, INT32_MAX,
                                                  INT32_MIN, INT64_MAX, INT64_MIN};
  for (int i = 0; i < 20000; ++i) {
    BundleEntry e;
    e.dtype = static_cast<int32_t>(Pick(rng, special));
    e.shard_id = static_cast<int32_t>(Pick(rng, special));
    e.offset = Pick(rng, special);
    e.size = Pick(rng, special);
    e.masked_crc32c = rng() % 3 == 0 ? 0 : static_cast<uint32_t>(rng());
    const int rank = static_cast<int>(rng() % 5);
    for (int d = 0; d < rank; ++d) e.shape.push_back(Pick(rng, special));
    const int slices = rng() % 3 == 0 ? static_cast<int>(rng() % 3) : 0;
    for (int s = 0; s < slices; ++s) {
      std::vector<Extent> extents;
      for (int d = 0; d < rank; ++d) {
        Extent x;
        if (rng() % 3 != 0) {
          x.start = Pick(rng, special);
          x.length = Pick(rng, {0, 1, 300});
          if (x.length == Extent::kFullLength) x.length = 0;
        }
        extents.push_back(x);
      }
      e.slices.push_back(TensorSlice(std::move(extents)));
    }
    ASSERT_EQ(EncodeEntry(e), EncodeEntryProto(e)) << "case " << i;
  }
}

TEST(EntryCodecTest, AnEncodedEntryDecodesToItself) {
  BundleEntry e;
  e.key = "layer/kernel";
  e.dtype = 14;  // bfloat16
  e.shape = {0, 3, 1 << 20};
  e.offset = 1 << 30;
  e.size = 0;
  e.masked_crc32c = 0x12345678;
  e.slices.push_back(TensorSlice({Extent{}, Extent{0, 2}, Extent{5, 100}}));
  BundleEntry back;
  ASSERT_TRUE(DecodeEntry(e.key, EncodeEntry(e), 1, &back).ok());
  EXPECT_EQ(back.key, e.key);
  EXPECT_EQ(back.dtype, e.dtype);
  EXPECT_EQ(back.shape, e.shape);
  EXPECT_EQ(back.offset, e.offset);
  EXPECT_EQ(back.size, e.size);
  EXPECT_EQ(back.masked_crc32c, e.masked_crc32c);
  ASSERT_EQ(back.slices.size(), 1u);
  EXPECT_EQ(back.slices[0].extents(), e.slices[0].extents());
}

}  // namespace
}  // namespace internal
}  // namespace cairn
