#include "proto/cmdline/flags.h"

#include <gtest/gtest.h>

namespace cairn {
namespace cmdline {
namespace {

using Args = std::vector<std::string>;

TEST(FlagsTest, AValueMayFollowItsFlagAfterASpace) {
  auto flags = Flags::Parse({"--step", "7", "--job=a", "pos"}, {"step", "job"});
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_EQ(flags->Get("step"), "7");
  EXPECT_EQ(flags->Get("job"), "a");
  EXPECT_EQ(flags->positional(), Args({"pos"}));
}

TEST(FlagsTest, BooleanFlagsNeverTakeTheNextArgument) {
  auto flags = Flags::Parse({"--json", "PREFIX", "--force=false"}, {"json", "force"});
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_TRUE(flags->GetBool("json"));
  EXPECT_FALSE(flags->GetBool("force"));
  EXPECT_EQ(flags->positional(), Args({"PREFIX"}));
  auto bad = Flags::Parse({"--json=yes"}, {"json"});
  EXPECT_EQ(bad.status().message(), "--json takes no value (or true/false); got \"yes\"");
}

TEST(FlagsTest, AValueFlagWithoutAValueIsAUsageError) {
  for (const Args& args : {Args{"--step"}, Args{"--step", "--job=a"}}) {
    auto flags = Flags::Parse(args, {"step", "job"});
    ASSERT_FALSE(flags.ok());
    EXPECT_EQ(flags.status().message(), "--step needs a value: --step=VALUE or --step VALUE");
  }
}

TEST(FlagsTest, AnUnknownFlagSuggestsTheNearestKnownOne) {
  auto typo = Flags::Parse({"--setp=3"}, {"step", "job", "coordinator", "help"});
  EXPECT_EQ(typo.status().message(), "unknown option --setp (did you mean --step?)");
  auto prefix = Flags::Parse({"--coord=x"}, {"step", "job", "coordinator"});
  EXPECT_EQ(prefix.status().message(), "unknown option --coord (did you mean --coordinator?)");
  auto far = Flags::Parse({"--banana=1"}, {"step", "job"});
  EXPECT_EQ(far.status().message(), "unknown option --banana");
}

TEST(FlagsTest, DoubleDashEndsTheFlags) {
  auto flags = Flags::Parse({"--", "--step", "--"}, {"step"});
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_FALSE(flags->Has("step"));
  EXPECT_EQ(flags->positional(), Args({"--step", "--"}));
}

TEST(DidYouMeanTest, ShortWordsNeedACloserMatch) {
  EXPECT_EQ(DidYouMean("lst", {"list", "gc"}), "list");
  EXPECT_EQ(DidYouMean("xy", {"gc"}), "");
  EXPECT_EQ(DidYouMean("restroe", {"restore", "save"}), "restore");
  EXPECT_EQ(DidYouMean("setp", {"help", "json"}), "");
}

}  // namespace
}  // namespace cmdline
}  // namespace cairn
