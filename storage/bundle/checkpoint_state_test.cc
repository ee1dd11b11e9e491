#include "storage/bundle/checkpoint_state.h"

#include "gtest/gtest.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace {

TEST(StateFile, FormatsLikeTensorFlow) {
  CheckpointStateFile s;
  s.model_checkpoint_path = "ckpt-6";
  s.all_model_checkpoint_paths = {"ckpt-5", "ckpt-6"};
  s.all_model_checkpoint_timestamps = {1610001331.9641876, 1610001531.2664149};
  EXPECT_EQ(FormatStateFile(s),
            "model_checkpoint_path: \"ckpt-6\"\n"
            "all_model_checkpoint_paths: \"ckpt-5\"\n"
            "all_model_checkpoint_paths: \"ckpt-6\"\n"
            "all_model_checkpoint_timestamps: 1610001331.9641876\n"
            "all_model_checkpoint_timestamps: 1610001531.2664149\n");
}

TEST(StateFile, RealTensorFlowFilesRoundTripByteForByte) {
  if (testing::SharedDir().empty()) GTEST_SKIP() << "missing dependency: ../shared (the shared test material) not found";
  for (const char* name : {"rl_ckpt_nstep_manager", "tfx_estimator_tf1_ckpt",
                           "onnx_regression_tf1_checkpoint"}) {
    const std::string text =
        testing::ReadFile(testing::SharedDir() + "/testdata/tf/" + name + "/checkpoint");
    auto parsed = ParseStateFile(text);
    ASSERT_TRUE(parsed.ok()) << name << ": " << parsed.status();
    EXPECT_EQ(FormatStateFile(*parsed), text) << name;
  }
}

TEST(StateFile, GarbageIsRejected) {
  EXPECT_FALSE(ParseStateFile("model_checkpoint_path \"x\"\n").ok());
  EXPECT_FALSE(ParseStateFile("bogus_field: \"x\"\n").ok());
  EXPECT_FALSE(ParseStateFile("all_model_checkpoint_timestamps: abc\n").ok());
}

}  // namespace
}  // namespace cairn
