#include "storage/bundle/crc32c.h"

#include <random>
#include <vector>
#include <string>

#include "gtest/gtest.h"

namespace cairn {
namespace {

TEST(Crc32c, StandardCheckValue) {
  EXPECT_EQ(crc32c::Value("123456789", 9), 0xe3069283u);
  EXPECT_EQ(crc32c::Value("", 0), 0u);
}

TEST(Crc32c, ExtendEqualsWhole) {
  const std::string s = "hello, checkpoint world";
  uint32_t c = crc32c::Value(s.data(), 5);
  c = crc32c::Extend(c, s.data() + 5, s.size() - 5);
  EXPECT_EQ(c, crc32c::Value(s.data(), s.size()));
}

TEST(Crc32c, HardwareMatchesPortableAtEveryLengthAndAlignment) {
  if (!crc32c::HardwareAvailable()) GTEST_SKIP() << "no SSE4.2 on this CPU";
  std::mt19937 rng(7);
  std::string data(40000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  for (size_t n : {0, 1, 7, 8, 9, 63, 4095, 4096, 12287, 12288, 12289, 24577, 39990}) {
    for (size_t off : {0, 1, 5}) {
      if (off + n > data.size()) continue;
      EXPECT_EQ(crc32c::ExtendHardware(0x1234, data.data() + off, n),
                crc32c::ExtendPortable(0x1234, data.data() + off, n))
          << "n=" << n << " off=" << off;
    }
  }
}

TEST(Crc32c, MaskRoundTripsAndMatchesTensorFlow) {
  EXPECT_EQ(crc32c::Mask(0), 0xa282ead8u);  // spec §2
  for (uint32_t v : {0u, 1u, 0xe3069283u, 0xffffffffu}) {
    EXPECT_EQ(crc32c::Unmask(crc32c::Mask(v)), v);
    EXPECT_NE(crc32c::Mask(v), v);
  }
}

}  // namespace
}  // namespace cairn

namespace cairn {
namespace {

TEST(Crc32c, CombineEqualsConcatenation) {
  std::mt19937 rng(11);
  std::string data(100000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  for (size_t split : {0, 1, 17, 4096, 50000, 99999, 100000}) {
    const uint32_t a = crc32c::Value(data.data(), split);
    const uint32_t b = crc32c::Value(data.data() + split, data.size() - split);
    EXPECT_EQ(crc32c::Combine(a, b, data.size() - split), crc32c::Value(data.data(), data.size()))
        << split;
  }
}

// Combine remembers the shift operators of recent lengths: repeated and
// colliding lengths (more than it keeps) give the same answers as new ones.
TEST(Crc32c, CombineIsRightForRepeatedAndEvictedLengths) {
  std::mt19937 rng(12);
  std::string data(70000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  std::vector<size_t> tails;
  for (int i = 0; i < 300; ++i) tails.push_back(rng() % data.size());
  for (int round = 0; round < 3; ++round) {
    for (size_t tail : tails) {
      const size_t split = data.size() - tail;
      const uint32_t a = crc32c::Value(data.data(), split);
      const uint32_t b = crc32c::Value(data.data() + split, tail);
      ASSERT_EQ(crc32c::Combine(a, b, tail), crc32c::Value(data.data(), data.size()))
          << "round " << round << ", tail " << tail;
    }
  }
}

}  // namespace
}  // namespace cairn
