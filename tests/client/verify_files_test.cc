// `cairn verify --deep` (VerifyFiles) against inventories as writers record
// them now (whole-file CRC32C, no SHA-256) and as older writers did (CRC32C
// and SHA-256): any flipped byte is found either way.
#include <openssl/sha.h>

#include <string>
#include <vector>

#include "client/tools.h"
#include "gtest/gtest.h"
#include "storage/bundle/crc32c.h"
#include "tests/testing/safetensors_util.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

std::string Sha256(const std::string& bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return std::string(reinterpret_cast<char*>(digest), sizeof(digest));
}

class VerifyFilesTest : public ::testing::Test {
 protected:
  // 9 MiB + 5 bytes: more than one 8 MiB read.
  const std::string bytes_ = testing::PatternBytes((9 << 20) + 5, 7);
  testing::TempDir dir_;

  // Writes the file with byte `flip` (if any) changed.
  void Write(long flip = -1) {
    std::string b = bytes_;
    if (flip >= 0) b[static_cast<size_t>(flip)] ^= 0x10;
    testing::WriteFile(dir_.Join("f.data"), b);
  }
  std::vector<std::string> Problems(const ExpectedFile& f) {
    auto report = VerifyFiles("file://" + dir_.path(), {f});
    EXPECT_TRUE(report.ok()) << report.status();
    return report.ok() ? report->problems : std::vector<std::string>{"(failed)"};
  }
};

TEST_F(VerifyFilesTest, WholeFileCrcAloneFindsAFlippedByteAnywhere) {
  const ExpectedFile f{"f.data", bytes_.size(), crc32c::Value(bytes_.data(), bytes_.size()), ""};
  Write();
  EXPECT_TRUE(Problems(f).empty());
  for (long at : {0L, 4096L, static_cast<long>(8 << 20) + 1, static_cast<long>(bytes_.size()) - 1}) {
    SCOPED_TRACE(at);
    Write(at);
    const std::vector<std::string> problems = Problems(f);
    ASSERT_EQ(problems.size(), 1u);
    EXPECT_NE(problems[0].find("f.data"), std::string::npos) << problems[0];
    EXPECT_NE(problems[0].find("CRC32C"), std::string::npos) << problems[0];
  }
}

TEST_F(VerifyFilesTest, OlderInventoriesWithSha256StillVerify) {
  const uint32_t crc = crc32c::Value(bytes_.data(), bytes_.size());
  Write();
  EXPECT_TRUE(Problems({"f.data", bytes_.size(), crc, Sha256(bytes_)}).empty());
  // The recorded SHA-256 is checked, not only the CRC.
  std::string wrong = Sha256(bytes_);
  wrong[0] ^= 1;
  std::vector<std::string> problems = Problems({"f.data", bytes_.size(), crc, wrong});
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("SHA-256"), std::string::npos) << problems[0];
  // A SHA-256 alone (no CRC recorded) finds a flipped byte.
  Write(12345);
  problems = Problems({"f.data", bytes_.size(), 0, Sha256(bytes_)});
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("SHA-256"), std::string::npos) << problems[0];
}

}  // namespace
}  // namespace cairn
