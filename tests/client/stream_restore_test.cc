// The streaming restore to a local .safetensors file
// (client/internal/stream_restore.h): byte-identical to the in-memory
// restore's output for every kind of request, every checksum still checked.
#include "client/internal/stream_restore.h"

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli/safetensors_io.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "storage/bundle/bundle_merge.h"
#include "storage/bundle/bundle_writer.h"
#include "tests/client/client_fixture.h"
#include "tests/testing/safetensors_util.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace client_test {
namespace {

// What `cairn restore` wrote before streaming: restore into memory, then
// write the tensors out.
std::string InMemory(const std::string& prefix, const RestoreRequest& request, const std::string& dst) {
  auto tensors = RestoreFromPrefix(prefix, request, 2);
  EXPECT_TRUE(tensors.ok()) << tensors.status();
  cli::RestoreOutputOptions options;
  auto summary = cli::WriteRestoredTensors(*tensors, dst, options);
  EXPECT_TRUE(summary.ok()) << summary.status();
  return testing::ReadFile(dst);
}

std::string Streamed(const std::string& prefix, const RestoreRequest& request, const std::string& dst,
                     internal::StreamRestoreSummary* summary = nullptr) {
  internal::StreamRestoreOptions options;
  auto s = internal::StreamRestoreToSafetensors(prefix, request, dst, options);
  EXPECT_TRUE(s.ok()) << s.status();
  if (s.ok() && summary != nullptr) *summary = *s;
  return testing::ReadFile(dst);
}

// Nothing but `keep` in the directory (no temporary files left).
void ExpectOnly(const testing::TempDir& dir, const std::vector<std::string>& keep) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, keep);
}

TEST(StreamRestore, OutputIsByteIdenticalToTheInMemoryRestore) {
  FourPartCheckpoint ckpt;
  testing::TempDir out;
  std::vector<RestoreRequest> requests(4);
  requests[1].tensors = {"w_2", "step"};
  requests[2].slices["emb"] = Slice("10,30:1,2");   // cut across stored slices
  requests[3].tensors = {"emb", "w_0"};             // reassembled from 4 slices
  requests[3].slices["w_0"] = Slice("-");           // a slice covering the whole tensor
  for (size_t i = 0; i < requests.size(); ++i) {
    SCOPED_TRACE(i);
    const std::string want = InMemory(ckpt.prefix(), requests[i], out.Join("a.safetensors"));
    internal::StreamRestoreSummary summary;
    EXPECT_EQ(Streamed(ckpt.prefix(), requests[i], out.Join("b.safetensors"), &summary), want);
    if (i == 0) {
      EXPECT_EQ(summary.skipped, 1) << "the string tensor";
    }
  }
  ExpectOnly(out, {"a.safetensors", "b.safetensors"});
}

TEST(StreamRestore, StringsFailWithStrict) {
  FourPartCheckpoint ckpt;
  testing::TempDir out;
  internal::StreamRestoreOptions options;
  options.strict = true;
  auto s = internal::StreamRestoreToSafetensors(ckpt.prefix(), {}, out.Join("x.safetensors"), options);
  EXPECT_TRUE(absl::IsFailedPrecondition(s.status())) << s.status();
  ExpectOnly(out, {});
}

// Tensors of several 8 MiB windows, in two data files.
class BigCheckpoint {
 public:
  // In a temporary directory, or under `root_uri` (say, memory://NAME).
  explicit BigCheckpoint(const std::string& root_uri = "") : root_(root_uri.empty() ? dir_.path() : root_uri) {
    // A memory:// store is one name: the one the restore's prefix opens.
    const bool memory = !root_uri.empty();
    auto storage = OpenStorage(memory ? root_ + "/ckpt" : root_, {});
    EXPECT_TRUE(storage.ok());
    for (int k = 0; k < 2; ++k) {
      auto w = BundleWriter::Create(storage->get(), absl::StrCat("p", k));
      EXPECT_TRUE(w.ok());
      big_[k] = testing::PatternBytes((20 << 20) + 4 * (k + 1), 40 + k);
      EXPECT_TRUE((*w)->Add(absl::StrCat("big", k), DataType::kFloat,
                            {static_cast<int64_t>(big_[k].size() / 4)}, big_[k]).ok());
      EXPECT_TRUE((*w)->Add(absl::StrCat("small", k), DataType::kInt32, {2}, std::string(8, 'a' + k)).ok());
      EXPECT_TRUE((*w)->Finish().ok());
    }
    auto merged = MergeBundles(storage->get(), {"p0", "p1"}, memory ? "variables" : "ckpt/variables");
    EXPECT_TRUE(merged.ok()) << merged.status();
  }
  std::string prefix() const { return root_ + "/ckpt/variables"; }
  std::string data_file(int k) const { return dir_.Join(absl::StrCat("ckpt/variables.data-0000", k, "-of-00002")); }
  const std::string& big(int k) const { return big_[k]; }

 private:
  testing::TempDir dir_;
  std::string root_;
  std::string big_[2];
};

TEST(StreamRestore, RemoteSourcesAreReadWindowByWindow) {
  BigCheckpoint ckpt("memory://stream-restore-test");
  testing::TempDir out;
  const std::string want = InMemory(ckpt.prefix(), {}, out.Join("a.safetensors"));
  EXPECT_EQ(Streamed(ckpt.prefix(), {}, out.Join("b.safetensors")), want);
  EXPECT_GT(want.size(), ckpt.big(0).size() + ckpt.big(1).size());
}

TEST(StreamRestore, LargeTensorsStreamInWindowsAndEveryFlippedByteIsCaught) {
  BigCheckpoint ckpt;
  testing::TempDir out;
  const std::string want = InMemory(ckpt.prefix(), {}, out.Join("a.safetensors"));
  for (int threads : {1, 2, 4}) {
    internal::StreamRestoreOptions options;
    options.threads = threads;
    ProgressLog log;
    auto s = internal::StreamRestoreToSafetensors(ckpt.prefix(), {}, out.Join("b.safetensors"), options,
                                                  log.Fn());
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(testing::ReadFile(out.Join("b.safetensors")), want) << threads;
    log.ExpectComplete(ckpt.big(0).size() + ckpt.big(1).size() + 16);
  }
  // A flipped byte in the first, a middle and the last window of a tensor.
  const std::string original = testing::ReadFile(ckpt.data_file(1));
  for (size_t at : {size_t{0}, size_t{(9 << 20) + 3}, ckpt.big(1).size() - 1}) {
    SCOPED_TRACE(at);
    std::string bytes = original;
    bytes[at] ^= 0x20;  // big1 is the data file's first entry
    testing::WriteFile(ckpt.data_file(1), bytes);
    std::filesystem::remove(out.Join("c.safetensors"));
    auto s = internal::StreamRestoreToSafetensors(ckpt.prefix(), {}, out.Join("c.safetensors"), {});
    EXPECT_TRUE(absl::IsDataLoss(s.status())) << s.status();
    EXPECT_NE(s.status().message().find("tensor \"big1\""), std::string::npos) << s.status();
    EXPECT_NE(s.status().message().find("variables.data-00001-of-00002"), std::string::npos) << s.status();
    EXPECT_NE(s.status().message().find("checksum"), std::string::npos) << s.status();
    ExpectOnly(out, {"a.safetensors", "b.safetensors"});
  }
  testing::WriteFile(ckpt.data_file(1), original);
  // A truncated data file is DataLoss too, before anything is copied.
  testing::WriteFile(ckpt.data_file(1), original.substr(0, original.size() / 2));
  auto s = internal::StreamRestoreToSafetensors(ckpt.prefix(), {}, out.Join("c.safetensors"), {});
  EXPECT_TRUE(absl::IsDataLoss(s.status())) << s.status();
  ExpectOnly(out, {"a.safetensors", "b.safetensors"});
}

}  // namespace
}  // namespace client_test
}  // namespace cairn

namespace cairn {
namespace client_test {
namespace {

TEST(CopyCheckpointFiles, CopiesEveryFileWholeAndChecksEveryEntry) {
  FourPartCheckpoint ckpt;  // slices, strings, four data files
  testing::TempDir out;
  auto s = internal::CopyCheckpointFiles(ckpt.prefix(), out.Join("variables"), 2);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->tensors, 7);  // emb, names, step, w_0..w_3
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(testing::ReadFile(out.Join(DataFileName("variables", k, 4))),
              testing::ReadFile(ckpt.dir().Join(DataFileName("job/ckpt-5/variables", k, 4))));
  }
  EXPECT_EQ(testing::ReadFile(out.Join("variables.index")),
            testing::ReadFile(ckpt.prefix() + ".index"));
  auto copy = RestoreFromPrefix(out.Join("variables"), {});
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ(copy->at("emb").tensor.data.view(), ckpt.emb());

  // A flipped byte in a whole tensor, then in the string tensor: DataLoss
  // naming it, and nothing new at the destination.
  for (const std::string& name : {std::string("w_3"), std::string("names")}) {
    SCOPED_TRACE(name);
    FourPartCheckpoint bad;
    ASSERT_TRUE(bad.FlipFirstByteOf(name));
    testing::TempDir out2;
    auto r = internal::CopyCheckpointFiles(bad.prefix(), out2.Join("variables"), 2);
    EXPECT_TRUE(absl::IsDataLoss(r.status())) << r.status();
    EXPECT_NE(r.status().message().find(name), std::string::npos) << r.status();
    ExpectOnly(out2, {});
  }
}

TEST(CopyCheckpointFiles, LargeFilesInWindowsFromLocalAndRemoteStorage) {
  BigCheckpoint local;
  BigCheckpoint remote("memory://copy-checkpoint-files-test");
  for (const BigCheckpoint* ckpt : {&local, &remote}) {
    testing::TempDir out;
    auto s = internal::CopyCheckpointFiles(ckpt->prefix(), out.Join("v"), 2);
    ASSERT_TRUE(s.ok()) << s.status();
    auto r = RestoreFromPrefix(out.Join("v"), {});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->at("big0").tensor.data.view(), ckpt->big(0));
    EXPECT_EQ(r->at("big1").tensor.data.view(), ckpt->big(1));
  }
  // A flipped byte in a middle window of the second data file.
  testing::TempDir out;
  std::string bytes = testing::ReadFile(local.data_file(1));
  bytes[(17 << 20) + 1] ^= 0x01;
  testing::WriteFile(local.data_file(1), bytes);
  auto s = internal::CopyCheckpointFiles(local.prefix(), out.Join("v"), 2);
  EXPECT_TRUE(absl::IsDataLoss(s.status())) << s.status();
  EXPECT_NE(s.status().message().find("tensor \"big1\""), std::string::npos) << s.status();
  ExpectOnly(out, {});
}

}  // namespace
}  // namespace client_test
}  // namespace cairn
