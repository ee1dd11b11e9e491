// `cairn adopt` on real TensorFlow CheckpointManager output: the checkpoints
// whose files are there are registered (verified, then restorable with the
// exact tensors, strings included); the listed ones that are missing are
// reported; adopting again changes nothing.
#include <nlohmann/json.hpp>

#include "gtest/gtest.h"
#include "tests/testing/process.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

TEST(Adopt, RegistersTheCheckpointsThatExistAndReportsTheMissingOnes) {
  if (testing::SharedDir().empty()) GTEST_SKIP() << "missing dependency: ../shared/testdata/tf not found";
  testing::TempDir dir;
  testing::Cluster cluster(dir.path(), 1);
  ASSERT_TRUE(cluster.ok());
  const std::string from = testing::SharedDir() + "/testdata/tf/rl_ckpt_nstep_manager";
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {testing::BinPath("cairn"), "adopt", "--coordinator=" + cluster.coordinator(),
                                     "--job=rl", "--from=" + from};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return testing::Run(argv);
  };
  auto r = run({"--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto json = nlohmann::json::parse(r.out);
  EXPECT_EQ(json["adopted"], nlohmann::json({5, 6}));
  EXPECT_EQ(json["missing"], nlohmann::json({"ckpt-1", "ckpt-2", "ckpt-3", "ckpt-4"}));
  EXPECT_TRUE(json["failed"].empty());

  auto list = testing::Run({testing::BinPath("cairn"), "list", "--coordinator=" + cluster.coordinator(),
                            "--job=rl", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto listed = nlohmann::json::parse(list.out);
  ASSERT_EQ(listed["checkpoints"].size(), 2u);
  EXPECT_EQ(listed["checkpoints"][0]["step"], 5);
  EXPECT_EQ(listed["checkpoints"][1]["step"], 6);

  // Every tensor, the object graph string included, comes back exactly.
  for (int step : {5, 6}) {
    const std::string out = dir.Join("restored-" + std::to_string(step) + "/variables");
    auto restored = testing::Run({testing::BinPath("cairn"), "restore", "--coordinator=" + cluster.coordinator(),
                                  "--job=rl", "--step=" + std::to_string(step), "--to=" + out});
    ASSERT_EQ(restored.exit_code, 0) << restored.err;
    const std::string tool = testing::SharedDir() + "/tools/tfbundle.py";
    auto expected = testing::Run({"/usr/bin/python3", tool, "sha", from + "/ckpt-" + std::to_string(step)});
    auto got = testing::Run({"/usr/bin/python3", tool, "sha", out});
    ASSERT_EQ(expected.exit_code, 0) << expected.err;
    ASSERT_EQ(got.exit_code, 0) << got.err;
    EXPECT_EQ(nlohmann::json::parse(got.out), nlohmann::json::parse(expected.out)) << step;
  }

  // Again: nothing new, both reported as present.
  auto again = run({});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("0 adopted, 2 already present, 4 missing"), std::string::npos) << again.out;
}

}  // namespace
}  // namespace cairn
