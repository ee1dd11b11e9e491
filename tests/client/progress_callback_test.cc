// Progress callbacks (client/progress.h) of restore, verify and convert.
// The save's progress is in save_and_list_test.cc.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/tools.h"
#include "gtest/gtest.h"
#include "tests/client/client_fixture.h"
#include "tests/testing/safetensors_util.h"

namespace cairn {
namespace client_test {
namespace {

// emb 100x6 floats, w_0..w_3 of 3..6 floats, the int64 step, and the three
// strings of "names" at one byte per element.
constexpr uint64_t kFourPartRestoreBytes = 100 * 6 * 4 + (3 + 4 + 5 + 6) * 4 + 8 + 3;

TEST(Progress, RestoreFromPrefixCountsEachTensorAsItIsRead) {
  FourPartCheckpoint ckpt;
  for (int threads : {1, 4}) {
    SCOPED_TRACE(threads);
    ProgressLog log;
    auto r = RestoreFromPrefix(ckpt.prefix(), {}, threads, log.Fn());
    ASSERT_TRUE(r.ok()) << r.status();
    log.ExpectComplete(kFourPartRestoreBytes);
    EXPECT_EQ(log.calls().size(), 8u) << "the start, then one call per tensor";
  }
  // A slice counts the bytes of the slice.
  ProgressLog log;
  RestoreRequest request;
  request.tensors = {"emb"};
  request.slices["emb"] = Slice("0,10:-");
  auto r = RestoreFromPrefix(ckpt.prefix(), request, 2, log.Fn());
  ASSERT_TRUE(r.ok()) << r.status();
  log.ExpectComplete(10 * 6 * 4);
}

TEST(Progress, AFailedRestoreNeverReportsTheTotal) {
  FourPartCheckpoint ckpt;
  ASSERT_TRUE(ckpt.FlipFirstByteOf("w_2"));
  ProgressLog log;
  ASSERT_FALSE(RestoreFromPrefix(ckpt.prefix(), {}, 1, log.Fn()).ok());
  ASSERT_FALSE(log.calls().empty());
  EXPECT_EQ(log.calls().front(), std::make_pair(uint64_t{0}, kFourPartRestoreBytes));
  EXPECT_LT(log.calls().back().first, kFourPartRestoreBytes);
}

TEST(Progress, VerifyCountsTensorsAndDeepVerifyCountsFiles) {
  FourPartCheckpoint ckpt;
  ProgressLog log;
  auto report = VerifyCheckpoint(ckpt.uri(), log.Fn());
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(report->ok());
  log.ExpectComplete(report->bytes);
  EXPECT_GT(report->bytes, 2400u);
  EXPECT_GE(log.calls().size(), 8u) << "the start, then one call per tensor or slice";

  // Every file of the checkpoint, plus one that is missing: it counts as
  // done (and is a problem), so the bar still ends at the total.
  std::vector<ExpectedFile> files;
  uint64_t total = 0;
  for (const std::string& name :
       {std::string("job/ckpt-5/variables.index"),
        absl::StrCat("job/ckpt-5/variables.data-00000-of-00004"),
        absl::StrCat("job/ckpt-5/variables.data-00003-of-00004")}) {
    const uint64_t size = testing::ReadFile(ckpt.dir().Join(name)).size();
    files.push_back({name, size, 0, ""});
    total += size;
  }
  files.push_back({"job/ckpt-5/absent", 1000, 0, ""});
  total += 1000;
  ProgressLog files_log;
  auto deep = VerifyFiles("file://" + ckpt.dir().path(), files, files_log.Fn());
  ASSERT_TRUE(deep.ok()) << deep.status();
  EXPECT_EQ(deep->problems.size(), 1u);
  files_log.ExpectComplete(total);
}

TEST(Progress, ConvertCountsEveryChunkBothWays) {
  testing::TempDir dir;
  const std::string big = testing::PatternBytes((9 << 20) + 12, 3);  // two 8 MiB reads
  const std::string small = Floats(5, 1);
  const std::string src = dir.Join("in.safetensors");
  WriteSafetensors(src,
                   {{"big", DataType::kUint8, {static_cast<int64_t>(big.size())}},
                    {"small", DataType::kFloat, {5}}},
                   {{"big", big}, {"small", small}}, {});
  const uint64_t total = big.size() + small.size();
  for (int shards : {1, 2}) {
    SCOPED_TRACE(shards);
    ConvertOptions options;
    options.shards = shards;
    ProgressLog log;
    options.progress = log.Fn();
    const std::string prefix = dir.Join(absl::StrCat("out", shards, "/variables"));
    ASSERT_TRUE(ConvertSafetensorsToBundle(src, prefix, options).ok());
    log.ExpectComplete(total);
    EXPECT_EQ(log.calls().size(), 4u) << "the start, 8 MiB, the rest of big, small";

    ConvertOptions back_options;
    ProgressLog back_log;
    back_options.progress = back_log.Fn();
    const std::string back = dir.Join(absl::StrCat("back", shards, ".safetensors"));
    ASSERT_TRUE(ConvertBundleToSafetensors(prefix, back, back_options).ok());
    back_log.ExpectComplete(total);
    EXPECT_EQ(back_log.calls().size(), 3u) << "the start, then one call per tensor";
    EXPECT_EQ(testing::ReadFile(back), testing::ReadFile(src));
  }
}

}  // namespace
}  // namespace client_test
}  // namespace cairn
