// `cairn adopt` on real TensorFlow CheckpointManager output: the checkpoints
// whose files are there are registered (verified, then restorable with the
// exact tensors, strings included); the listed ones that are missing are
// reported; adopting again changes nothing.
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

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

// The step is the last number in the name, however the name is made:
// Keras's "cp-0005.ckpt" (its `checkpoint` file lists only the newest; the
// others beside it are adopted too), Saver's "model.ckpt-1000"; a name whose
// last number is a decimal's fraction fails, naming --step-pattern, which
// then takes the step from its capture group. Each checkpoint is reported.
TEST(Adopt, TakesTheStepFromTheLastNumberOrTheStepPattern) {
  if (testing::SharedDir().empty()) GTEST_SKIP() << "missing dependency: ../shared/testdata/tf not found";
  testing::TempDir dir;
  testing::Cluster cluster(dir.path(), 1);
  ASSERT_TRUE(cluster.ok());
  const std::string src = testing::SharedDir() + "/testdata/tf/rl_ckpt_nstep_manager/ckpt-5";
  auto plant = [&](const std::string& d, const std::string& name) {
    testing::CopyFile(src + ".index", d + "/" + name + ".index");
    testing::CopyFile(src + ".data-00000-of-00001", d + "/" + name + ".data-00000-of-00001");
  };
  const std::string keras = dir.Join("keras");
  std::filesystem::create_directories(keras);
  plant(keras, "cp-0005.ckpt");
  plant(keras, "cp-0010.ckpt");
  plant(keras, "model.ckpt-1000");
  plant(keras, "epoch90-iteration0-loss0,015062285.ckpt");
  testing::WriteFile(keras + "/checkpoint",
                     "model_checkpoint_path: \"cp-0010.ckpt\"\nall_model_checkpoint_paths: \"cp-0010.ckpt\"\n");
  auto adopt = [&](const std::string& job, std::vector<std::string> extra) {
    std::vector<std::string> argv = {testing::BinPath("cairn"), "adopt", "--coordinator=" + cluster.coordinator(),
                                     "--job=" + job, "--from=" + keras, "--json"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return testing::Run(argv);
  };
  auto r = adopt("keras", {});
  EXPECT_EQ(r.exit_code, 1) << r.err;  // the decimal one failed
  auto json = nlohmann::json::parse(r.out);
  EXPECT_EQ(json["adopted"], nlohmann::json({5, 10, 1000})) << r.out;  // ascending: saves move forward
  ASSERT_EQ(json["failed"].size(), 1u) << r.out;
  const std::string failed = json["failed"][0];
  EXPECT_NE(failed.find("epoch90-iteration0-loss0,015062285.ckpt"), std::string::npos) << failed;
  EXPECT_NE(failed.find("--step-pattern"), std::string::npos) << failed;
  std::map<std::string, std::pair<nlohmann::json, std::string>> each;
  for (const auto& c : json["checkpoints"]) {
    each[c["path"].get<std::string>()] = {c["step"], c["outcome"].get<std::string>()};
  }
  EXPECT_EQ(each["cp-0005.ckpt"], std::make_pair(nlohmann::json(5), std::string("adopted")));
  EXPECT_EQ(each["cp-0010.ckpt"], std::make_pair(nlohmann::json(10), std::string("adopted")));
  EXPECT_EQ(each["model.ckpt-1000"], std::make_pair(nlohmann::json(1000), std::string("adopted")));
  EXPECT_EQ(each["epoch90-iteration0-loss0,015062285.ckpt"],
            std::make_pair(nlohmann::json(nullptr), std::string("failed")));
  EXPECT_NE(r.err.find("adopted cp-0005.ckpt as step 5 of keras"), std::string::npos) << r.err;

  // With a pattern: the epoch; names it does not match fail, named.
  auto p = adopt("epochs", {R"(--step-pattern=epoch(\d+))"});
  EXPECT_EQ(p.exit_code, 1) << p.err;
  auto pj = nlohmann::json::parse(p.out);
  EXPECT_EQ(pj["adopted"], nlohmann::json({90})) << p.out;
  EXPECT_EQ(pj["failed"].size(), 3u) << p.out;
  EXPECT_NE(p.out.find("does not match the name \\\"cp-0005.ckpt\\\""), std::string::npos) << p.out;

  // A pattern without exactly one capture group is refused before anything.
  auto bad = adopt("bad", {R"(--step-pattern=epoch\d+)"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("needs exactly one"), std::string::npos) << bad.err;
}

// With no live writer the failure names that, not the network.
TEST(Adopt, WithNoLiveWriterSaysSo) {
  if (testing::SharedDir().empty()) GTEST_SKIP() << "missing dependency: ../shared/testdata/tf not found";
  testing::TempDir dir;
  testing::Cluster cluster(dir.path(), 0);
  ASSERT_TRUE(cluster.ok());
  auto r = testing::Run({testing::BinPath("cairn"), "adopt", "--coordinator=" + cluster.coordinator(), "--job=rl",
                         "--from=" + testing::SharedDir() + "/testdata/tf/rl_ckpt_nstep_manager"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("ckpt-5: not adopted as step 5: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("no live shard writers are registered"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("unreachable"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace cairn
