// MeteredStorage over the real posix backend: failed operations are counted
// by component and op, answers (a missing file) are not, and the wrapper
// passes every result through unchanged.
#include "storage/metered_storage.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "observability/metrics.h"

namespace cairn {
namespace {

double Errors(const std::string& component, const std::string& op) {
  return metrics::Counter("cairn_storage_errors_total", "", {{"component", component}, {"op", op}}).value();
}

TEST(MeteredStorage, CountsFailuresNotAnswers) {
  char tmpl[] = "/tmp/cairn-metered-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string root = tmpl;
  auto base = OpenStorage(root, StorageOptions());
  ASSERT_TRUE(base.ok()) << base.status();
  std::unique_ptr<Storage> storage = MeteredStorage(*std::move(base), "test");
  // Exported at zero from the start.
  EXPECT_TRUE(absl::StrContains(metrics::Render(),
                                "cairn_storage_errors_total{component=\"test\",op=\"rename\"} 0\n"));

  // Works: nothing counted, results unchanged.
  auto file = storage->NewWritableFile("blocker");
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_TRUE((*file)->Append("0123456789").ok());
  ASSERT_TRUE((*file)->Close().ok());
  auto size = storage->FileSize("blocker");
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, 10u);
  auto read = storage->NewReadableFile("blocker");
  ASSERT_TRUE(read.ok());
  char buf[4];
  ASSERT_TRUE((*read)->ReadAt(2, 4, buf).ok());
  EXPECT_EQ(std::string(buf, 4), "2345");

  // A missing file is an answer, not a failure; nor is a read past the end.
  EXPECT_TRUE(absl::IsNotFound(storage->FileSize("missing").status()));
  EXPECT_FALSE(storage->NewReadableFile("missing").ok());
  EXPECT_FALSE((*read)->ReadAt(8, 4, buf).ok());
  EXPECT_EQ(Errors("test", "size"), 0);
  EXPECT_EQ(Errors("test", "open_read"), 0);
  EXPECT_EQ(Errors("test", "read"), 0);

  // Failures: "blocker" is a file, so nothing can be created under it.
  auto under = storage->NewWritableFile("blocker/x");
  if (under.ok()) {
    EXPECT_FALSE((*under)->Append("x").ok() && (*under)->Close().ok()) << "writing under a file";
  }
  EXPECT_EQ(Errors("test", "open_write") + Errors("test", "append") + Errors("test", "close"), 1);
  EXPECT_FALSE(storage->Rename("blocker", "blocker/y").ok());
  EXPECT_EQ(Errors("test", "rename"), 1);
  EXPECT_EQ(Errors("test", "size"), 0);
  std::system(absl::StrCat("rm -rf ", root).c_str());
}

}  // namespace
}  // namespace cairn
