#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
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

// An open write is visible only under its temporary name, which a sweep
// after a crash recognises, and nothing else is taken for one.
TEST(LocalStorage, AnOpenWriteIsSeenUnderItsTemporaryName) {
  testing::TempDir dir;
  auto s = std::move(NewLocalStorage(dir.path())).value();
  auto w = std::move(s->NewWritableFile("j/checkpoint")).value();
  ASSERT_TRUE(w->Append("x").ok());
  auto listed = *s->List("j");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_TRUE(IsTemporaryNameOf(listed[0], "j/checkpoint")) << listed[0];
  EXPECT_FALSE(IsTemporaryNameOf(listed[0], "j/check"));
  EXPECT_TRUE(IsTemporaryNameOf(TemporaryNameOf("a", 7), "a"));
  for (const char* other : {"j/checkpoint", "j/checkpoint.tmp-", "j/checkpoint.tmp-12x",
                            "j/checkpoint.tmp-1/x", "j/checkpoint2.tmp-1"}) {
    EXPECT_FALSE(IsTemporaryNameOf(other, "j/checkpoint")) << other;
  }
  ASSERT_TRUE(w->Close().ok());
  EXPECT_EQ(*s->List("j"), std::vector<std::string>{"j/checkpoint"});
}

// Pages of `path` in the page cache.
size_t ResidentPages(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return 0;
  const off_t size = ::lseek(fd, 0, SEEK_END);
  size_t resident = 0;
  if (size > 0) {
    void* p = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_SHARED, fd, 0);
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    std::vector<unsigned char> vec((static_cast<size_t>(size) + page - 1) / page);
    if (p != MAP_FAILED && ::mincore(p, static_cast<size_t>(size), vec.data()) == 0) {
      for (unsigned char v : vec) resident += v & 1;
    }
    if (p != MAP_FAILED) ::munmap(p, static_cast<size_t>(size));
  }
  ::close(fd);
  return resident;
}

bool DirectIoWorksIn(const std::string& dir) {
  const std::string probe = dir + "/probe";
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_DIRECT, 0644);
  if (fd >= 0) ::close(fd);
  ::unlink(probe.c_str());
  return fd >= 0;
}

TEST(LocalStorage, DirectIoWritesEveryByteAndBypassesThePageCache) {
  testing::TempDir dir;
  if (!DirectIoWorksIn(dir.path())) GTEST_SKIP() << dir.path() << " has no O_DIRECT (tmpfs?)";
  auto direct = std::move(NewLocalStorage(dir.path(), /*direct_io=*/true)).value();
  auto buffered = std::move(NewLocalStorage(dir.path())).value();
  std::mt19937 rng(7);
  const size_t kMiB = 1 << 20;
  // Around the 4 KiB block and the 8 MiB staging buffer, in odd pieces.
  for (size_t size : {size_t{0}, size_t{1}, size_t{4095}, size_t{4096}, size_t{4097}, 8 * kMiB - 1,
                      8 * kMiB, 8 * kMiB + 1, 20 * kMiB + 123}) {
    std::string data(size, '\0');
    for (char& c : data) c = static_cast<char>(rng());
    for (Storage* s : {direct.get(), buffered.get()}) {
      const std::string name = absl::StrCat(s == direct.get() ? "d" : "b", size);
      auto w = std::move(s->NewWritableFile(name)).value();
      for (size_t pos = 0; pos < size;) {
        const size_t n = std::min<size_t>(size - pos, 1 + rng() % (3 * kMiB));
        ASSERT_TRUE(w->Append(absl::string_view(data).substr(pos, n)).ok());
        pos += n;
      }
      EXPECT_EQ(w->Size(), size);
      ASSERT_TRUE(w->Close().ok()) << name;
      const std::string path = dir.Join(name);
      if (size >= 4 * kMiB) {
        // The control: buffered writes stay cached; direct ones never were.
        if (s == direct.get()) {
          EXPECT_EQ(ResidentPages(path), 0u) << name << " went through the page cache";
        } else {
          EXPECT_GT(ResidentPages(path), 0u) << name;
        }
      }
      EXPECT_EQ(testing::ReadFile(path), data) << name;
    }
  }
  // Nothing but the finished files.
  EXPECT_EQ(direct->List("")->size(), 18u);
}

TEST(LocalStorage, DirectIoAbandonMidStreamLeavesNothing) {
  testing::TempDir dir;
  auto s = std::move(NewLocalStorage(dir.path(), /*direct_io=*/true)).value();
  {
    auto w = std::move(s->NewWritableFile("x")).value();
    ASSERT_TRUE(w->Append(std::string(17 << 20, 'x')).ok());  // writes in flight
  }
  auto w = std::move(s->NewWritableFile("y")).value();
  ASSERT_TRUE(w->Append(std::string(9 << 20, 'y')).ok());
  w->Abandon();
  EXPECT_FALSE(w->Close().ok());
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
  EXPECT_FALSE(OpenStorage("gopher://x", {}).ok());
  EXPECT_FALSE(OpenStorage("file://relative", {}).ok());
}

}  // namespace
}  // namespace cairn
