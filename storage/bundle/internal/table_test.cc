#include "storage/bundle/internal/table.h"

#include <map>
#include <random>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "storage/storage.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace internal {
namespace {

class TableTest : public ::testing::Test {
 protected:
  void SetUp() override { storage_ = std::move(NewLocalStorage(dir_.path())).value(); }

  void Build(const std::map<std::string, std::string>& kv, TableBuilder::Options options = {}) {
    auto file = std::move(storage_->NewWritableFile("t.index")).value();
    TableBuilder b(options, file.get());
    for (const auto& [k, v] : kv) ASSERT_TRUE(b.Add(k, v).ok());
    ASSERT_TRUE(b.Finish().ok());
    ASSERT_TRUE(file->Close().ok());
  }

  std::unique_ptr<ReadableFile> file_;
  // Block by block (read_whole_below = 0), so lookups show their reads.
  std::unique_ptr<Table> Open(uint64_t read_whole_below = 0) {
    file_ = std::move(storage_->NewReadableFile("t.index")).value();
    auto t = Table::Open(file_.get(), read_whole_below);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? std::move(t).value() : nullptr;
  }

  testing::TempDir dir_;
  std::unique_ptr<Storage> storage_;
};

TEST(TableKeys, SeparatorAndSuccessorFollowLevelDb) {
  std::string s = "abcd";
  FindShortestSeparator(&s, "abzz");
  EXPECT_EQ(s, "abd");
  s = "abc";
  FindShortestSeparator(&s, "abcd");  // prefix: unchanged
  EXPECT_EQ(s, "abc");
  s = "ab";
  FindShortestSeparator(&s, "ac");  // b+1 == c: unchanged
  EXPECT_EQ(s, "ab");
  s = "w/.ATTRIBUTES/VARIABLE_VALUE";
  FindShortSuccessor(&s);
  EXPECT_EQ(s, "x");  // spec §3.5 examples
  s = "_CHECKPOINTABLE_OBJECT_GRAPH";
  FindShortSuccessor(&s);
  EXPECT_EQ(s, "`");
  s = "\xff\xff";
  FindShortSuccessor(&s);
  EXPECT_EQ(s, "\xff\xff");
}

TEST_F(TableTest, ManyBlocksRoundTripAndPointLookups) {
  std::map<std::string, std::string> kv;
  std::mt19937 rng(3);
  for (int i = 0; i < 20000; ++i) {
    kv[absl::StrFormat("tensor/%06d/weights", i)] = std::string(rng() % 100, 'v');
  }
  Build(kv);
  auto table = Open();
  ASSERT_TRUE(table);
  auto it = table->NewIterator();
  ASSERT_TRUE(it->SeekToFirst().ok());
  auto expect = kv.begin();
  for (; it->Valid(); ++expect) {
    ASSERT_NE(expect, kv.end());
    EXPECT_EQ(it->key(), expect->first);
    EXPECT_EQ(it->value(), expect->second);
    ASSERT_TRUE(it->Next().ok());
  }
  EXPECT_EQ(expect, kv.end());
  const uint64_t scan_bytes = table->bytes_read();

  auto fresh = Open();
  std::string value;
  bool found;
  ASSERT_TRUE(fresh->Get("tensor/012345/weights", &value, &found).ok());
  EXPECT_TRUE(found);
  EXPECT_EQ(value, kv["tensor/012345/weights"]);
  ASSERT_TRUE(fresh->Get("tensor/012345/weightz", &value, &found).ok());
  EXPECT_FALSE(found);
  // A point lookup reads the index block and one data block, not the table.
  EXPECT_LT(fresh->bytes_read(), scan_bytes / 2);
}

TEST_F(TableTest, HugeEntryGetsItsOwnBlock) {
  std::map<std::string, std::string> kv;
  kv["a"] = "small";
  kv["b"] = std::string(2 * kTableBlockSize, 'x');
  kv["c"] = "small";
  Build(kv);
  auto table = Open();
  std::string v;
  bool found;
  ASSERT_TRUE(table->Get("b", &v, &found).ok());
  EXPECT_TRUE(found);
  EXPECT_EQ(v.size(), 2 * kTableBlockSize);
  ASSERT_TRUE(table->Get("c", &v, &found).ok());
  EXPECT_EQ(v, "small");
}

TEST_F(TableTest, SnappyBlocksRoundTrip) {
  std::map<std::string, std::string> kv;
  for (int i = 0; i < 1000; ++i) kv[absl::StrFormat("k%04d", i)] = std::string(50, 'z');
  TableBuilder::Options options;
  options.snappy = true;
  Build(kv, options);
  auto table = Open();
  std::string v;
  bool found;
  ASSERT_TRUE(table->Get("k0500", &v, &found).ok());
  EXPECT_TRUE(found);
  EXPECT_EQ(v, std::string(50, 'z'));
}

TEST_F(TableTest, OutOfOrderKeysAreRejected) {
  auto file = std::move(storage_->NewWritableFile("t.index")).value();
  TableBuilder b(TableBuilder::Options(), file.get());
  ASSERT_TRUE(b.Add("b", "1").ok());
  EXPECT_EQ(b.Add("a", "2").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(b.Finish().ok());  // sticky
}

TEST_F(TableTest, EveryCorruptionIsDataLossNotACrash) {
  std::map<std::string, std::string> kv;
  for (int i = 0; i < 40; ++i) kv[absl::StrFormat("key%03d", i)] = "value";
  Build(kv);
  const std::string good = testing::ReadFile(dir_.Join("t.index"));
  for (size_t pos = 0; pos < good.size(); ++pos) {
    std::string bad = good;
    bad[pos] ^= 0x5a;
    testing::WriteFile(dir_.Join("t.index"), bad);
    auto file = std::move(storage_->NewReadableFile("t.index")).value();
    auto t = Table::Open(file.get());
    absl::Status s = t.status();
    if (t.ok()) {
      auto it = (*t)->NewIterator();
      s = it->SeekToFirst();
      while (s.ok() && it->Valid()) s = it->Next();
    }
    // Footer padding is not covered by a checksum; every other byte is.
    if (pos < good.size() - 48 || pos >= good.size() - 8) {
      EXPECT_FALSE(s.ok()) << "flip at " << pos << " went unnoticed";
    }
  }
  for (size_t len : {0ul, 10ul, 47ul, good.size() - 1}) {
    testing::WriteFile(dir_.Join("t.index"), good.substr(0, len));
    auto file = std::move(storage_->NewReadableFile("t.index")).value();
    auto t = Table::Open(file.get());
    EXPECT_EQ(t.status().code(), absl::StatusCode::kDataLoss) << len;
  }
}

}  // namespace
}  // namespace internal
}  // namespace cairn
