#include "gtest/gtest.h"
#include "storage/storage.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

TEST(LocalStorage, WritesBecomeVisibleOnlyAtClose) {
  testing::TempDir dir;
  auto s = std::move(NewLocalStorage(dir.path())).value();
  auto w = std::move(s->NewWritableFile("a/b/c.bin")).value();
  ASSERT_TRUE(w->Append("hello ").ok());
  ASSERT_TRUE(w->Append(std::string(3 << 20, 'x')).ok());
  EXPECT_FALSE(*s->Exists("a/b/c.bin"));
  ASSERT_TRUE(w->Close().ok());
  EXPECT_TRUE(*s->Exists("a/b/c.bin"));
  EXPECT_EQ(*s->FileSize("a/b/c.bin"), 6u + (3 << 20));
  auto r = std::move(s->NewReadableFile("a/b/c.bin")).value();
  char buf[6];
  ASSERT_TRUE(r->ReadAt(0, 6, buf).ok());
  EXPECT_EQ(std::string(buf, 6), "hello ");
  EXPECT_EQ(r->ReadAt(r->Size() - 2, 3, buf).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(*s->List("a"), std::vector<std::string>{"a/b/c.bin"});
}

TEST(LocalStorage, AbandonLeavesNothing) {
  testing::TempDir dir;
  auto s = std::move(NewLocalStorage(dir.path())).value();
  {
    auto w = std::move(s->NewWritableFile("x")).value();
    ASSERT_TRUE(w->Append("data").ok());
  }
  EXPECT_TRUE(s->List("")->empty());
}

TEST(LocalStorage, RenameDeleteAndErrors) {
  testing::TempDir dir;
  auto s = std::move(NewLocalStorage(dir.path())).value();
  auto w = std::move(s->NewWritableFile("x")).value();
  ASSERT_TRUE(w->Close().ok());
  ASSERT_TRUE(s->Rename("x", "d/y").ok());
  EXPECT_TRUE(*s->Exists("d/y"));
  EXPECT_FALSE(*s->Exists("x"));
  ASSERT_TRUE(s->Delete("d/y").ok());
  EXPECT_TRUE(s->Delete("d/y").ok());  // idempotent
  ASSERT_TRUE(s->RemoveDirIfEmpty("d").ok());
  EXPECT_EQ(s->NewReadableFile("missing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s->NewReadableFile("../etc/passwd").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s->NewWritableFile("/abs").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(StorageUris, PrefixesSplitIntoRootAndName) {
  auto a = SplitPrefixUri("/data/job/ckpt-1/variables");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->root_uri, "/data/job/ckpt-1");
  EXPECT_EQ(a->prefix, "variables");
  auto b = SplitPrefixUri("file:///d/model.ckpt");
  EXPECT_EQ(b->root_uri, "file:///d");
  auto c = SplitPrefixUri("model");
  EXPECT_EQ(c->root_uri, ".");
  EXPECT_FALSE(SplitPrefixUri("/data/").ok());
  EXPECT_FALSE(OpenStorage("gopher://x").ok());
  EXPECT_FALSE(OpenStorage("file://relative").ok());
}

}  // namespace
}  // namespace cairn
