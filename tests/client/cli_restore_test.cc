// `cairn restore --from=PREFIX` as a real process: to safetensors, to a
// prefix, slices and subsets, errors and usage.
#include <sys/stat.h>

#include <string>
#include <vector>

#include "client/client.h"
#include "gtest/gtest.h"
#include "storage/bundle/bundle_reader.h"
#include "storage/bundle/safetensors.h"
#include "storage/storage.h"
#include "tests/client/client_fixture.h"
#include "tests/testing/safetensors_util.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace client_test {
namespace {

using testing::RunResult;

TEST(CliRestore, FromPrefixToSafetensors) {
  FourPartCheckpoint ckpt;
  testing::TempDir dir;
  const std::string out = dir.Join("all.safetensors");
  RunResult r = Cairn({"restore", "--from=" + ckpt.prefix(), "--to=" + out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "restored 6 tensors")) << r.out;
  EXPECT_TRUE(Contains(r.err, "\"names\"")) << r.err;  // strings skipped, with a warning
  SafetensorsHeader header;
  auto tensors = testing::ReadSafetensorsTensors(out, &header);
  EXPECT_EQ(tensors.size(), 6u);
  EXPECT_EQ(tensors["emb"], ckpt.emb());  // reassembled from 4 data files
  EXPECT_EQ(tensors["w_3"], ckpt.w(3));
  EXPECT_TRUE(header.metadata.empty());
  EXPECT_EQ(Cairn({"restore", "--from=" + ckpt.prefix(), "--to=" + out, "--strict"}).exit_code, 1);

  // A slice and a subset; the slice is marked in the metadata.
  const std::string part = dir.Join("part.safetensors");
  r = Cairn({"restore", "--from=" + ckpt.uri(), "--to=" + part, "--tensor=w_1",
             "--slice=emb=100 6 20,40:2,2", "--threads=2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  tensors = testing::ReadSafetensorsTensors(part, &header);
  ASSERT_EQ(tensors.size(), 2u);
  EXPECT_EQ(tensors["w_1"], ckpt.w(1));
  EXPECT_EQ(tensors["emb"], SubMatrix(ckpt.emb(), 6, 20, 40, 2, 2));
  EXPECT_EQ(header.metadata["cairn.slice.emb"], "100 6 20,40:2,2");
  for (const auto& t : header.tensors) {
    if (t.name == "emb") {
      EXPECT_EQ(t.shape, (std::vector<int64_t>{40, 2}));
    }
  }
  // The restored slice converts back into a bundle holding it as a slice.
  r = Cairn({"convert", part, dir.Join("conv/variables")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(CliRestore, FromPrefixToPrefix) {
  FourPartCheckpoint ckpt;
  testing::TempDir dir;
  const std::string out = dir.Join("copy/variables");
  RunResult r = Cairn({"restore", "--from=" + ckpt.prefix(), "--to=" + out,
                       "--slice=emb=100 6 50,50:-"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "restored 7 tensors")) << r.out;
  auto storage = OpenStorage(dir.path(), {});
  ASSERT_TRUE(storage.ok());
  auto reader = BundleReader::Open(storage->get(), "copy/variables");
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->num_shards(), 1);
  auto names = (*reader)->ReadTensor("names");
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_EQ(names->strings, (std::vector<std::string>{"alpha", "", "gamma"}));
  auto emb = (*reader)->Lookup("emb");
  ASSERT_TRUE(emb.ok());
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{100, 6}));
  ASSERT_EQ(emb->slices.size(), 1u);
  EXPECT_EQ(emb->slices[0].ToString(), "50,50:-");
  auto rows = (*reader)->ReadSlice("emb", Slice("50,50:-"));
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(rows->data.view(), SubMatrix(ckpt.emb(), 6, 50, 50, 0, 6));
  EXPECT_EQ((*reader)->ReadTensor("w_0")->data.view(), ckpt.w(0));
  EXPECT_EQ(Cairn({"verify", out}).exit_code, 0);

  // Whole, then restored again from the copy: identical tensors.
  r = Cairn({"restore", "--from=" + ckpt.prefix(), "--to=" + dir.Join("whole/variables")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto again = RestoreFromPrefix(dir.Join("whole/variables"), {});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->size(), 7u);
  EXPECT_EQ(again->at("emb").tensor.data.view(), ckpt.emb());
}

// A directory as --to (one that exists, or any path ending in '/') gets the
// checkpoint inside it as DIR/variables: not hidden "DIR/.index" files, not
// files beside the directory. So does a chosen subset (restored in memory).
TEST(CliRestore, ADirectoryGetsTheCheckpointInsideIt) {
  FourPartCheckpoint ckpt;
  testing::TempDir dir;
  ASSERT_EQ(::mkdir(dir.Join("out").c_str(), 0755), 0);
  RunResult r = Cairn({"restore", "--from=" + ckpt.prefix(), "--to=" + dir.Join("out")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(dir.Join("out/variables")), std::string::npos) << r.out;
  EXPECT_EQ(Cairn({"verify", dir.Join("out/variables")}).exit_code, 0);
  struct stat st;
  EXPECT_NE(::stat(dir.Join("out.index").c_str(), &st), 0) << "files beside the directory";
  EXPECT_NE(::stat(dir.Join("out/.index").c_str(), &st), 0) << "hidden files in it";
  r = Cairn({"restore", "--from=" + ckpt.prefix(), "--to=" + dir.Join("fresh") + "/", "--tensor=w_1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(RestoreFromPrefix(dir.Join("fresh/variables"), {})->at("w_1").tensor.data.view(), ckpt.w(1));
}

TEST(CliRestore, ErrorsAndUsage) {
  FourPartCheckpoint ckpt;
  testing::TempDir dir;
  const std::string to = "--to=" + dir.Join("x.safetensors");
  const std::string from = "--from=" + ckpt.prefix();
  // Wrong full shape in --slice: exit 1 naming the tensor and both shapes.
  RunResult r = Cairn({"restore", from, to, "--slice=emb=100 7 0,10:-"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "\"emb\"") && Contains(r.err, "[100,6]") && Contains(r.err, "[100,7]"))
      << r.err;
  r = Cairn({"restore", from, to, "--tensor=nope"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "\"nope\"")) << r.err;
  r = Cairn({"restore", from, to, "--slice=ghost=4 0,2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "\"ghost\"")) << r.err;
  r = Cairn({"restore", "--from=" + dir.Join("none/variables"), to});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "none/variables")) << r.err;
  // Usage errors.
  EXPECT_EQ(Cairn({"restore", from, to, "--coordinator=127.0.0.1:1"}).exit_code, 2);
  EXPECT_EQ(Cairn({"restore", to}).exit_code, 2);
  EXPECT_EQ(Cairn({"restore", from}).exit_code, 2);
  EXPECT_EQ(Cairn({"restore", from, to, "--job=j"}).exit_code, 2);
  EXPECT_EQ(Cairn({"restore", from, to, "--slice=emb"}).exit_code, 2);
  EXPECT_EQ(Cairn({"restore", from, to, "--slice=emb=100 6"}).exit_code, 2);
  EXPECT_EQ(Cairn({"restore", from, to, "--slice=emb=100 6 0,200:-"}).exit_code, 2);
  EXPECT_EQ(Cairn({"restore", from, to, "--slice=emb=100 6 0,1:-", "--slice=emb=100 6 1,1:-"})
                .exit_code,
            2);
  EXPECT_EQ(Cairn({"restore", "--coordinator=127.0.0.1:1", to}).exit_code, 2);
  EXPECT_EQ(Cairn({"restore", "--coordinator=127.0.0.1:1", "--job=.x", to}).exit_code, 2);
  EXPECT_EQ(Cairn({"restore", "--help"}).exit_code, 0);
  // Unreachable coordinator: the operation fails, naming it.
  r = Cairn({"restore", "--coordinator=127.0.0.1:1", "--job=j", to});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "127.0.0.1:1")) << r.err;
}

}  // namespace
}  // namespace client_test
}  // namespace cairn
