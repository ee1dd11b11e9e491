// Address lists for several coordinators (or etcd members): one gRPC target.
#include "proto/rpc/rpc_util.h"

#include <unistd.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace cairn {
namespace rpc {
namespace {

TEST(ChannelTargetTest, OneAddressIsLeftToGrpc) {
  EXPECT_EQ(*ChannelTarget("coordinator.example:7070"), "coordinator.example:7070");
  EXPECT_EQ(*ChannelTarget("10.0.0.5:7070"), "10.0.0.5:7070");
}

TEST(ChannelTargetTest, IpLiteralsMakeOneStaticTarget) {
  EXPECT_EQ(*ChannelTarget("10.0.0.5:7070,10.0.0.6:7071"), "ipv4:10.0.0.5:7070,10.0.0.6:7071");
  EXPECT_EQ(*ChannelTarget("[::1]:7070,[fe80::1]:7071"), "ipv6:[::1]:7070,[fe80::1]:7071");
  EXPECT_EQ(*ChannelTarget("localhost:7070,127.0.0.1:7071"), "ipv4:127.0.0.1:7070,127.0.0.1:7071");
}

// Names in a list used to be passed through as "ipv4:NAME:PORT", which gRPC
// cannot use: a list of coordinators by host name never connected.
TEST(ChannelTargetTest, HostNamesInAListAreResolved) {
  char name[256] = {};
  ASSERT_EQ(::gethostname(name, sizeof(name) - 1), 0);
  auto target = ChannelTarget(absl::StrCat(name, ":7070,127.0.0.1:7071"));
  if (!target.ok() && absl::StrContains(target.status().message(), "cannot resolve")) {
    GTEST_SKIP() << "this machine's name (" << name << ") does not resolve: " << target.status();
  }
  ASSERT_TRUE(target.ok()) << target.status();
  EXPECT_TRUE(absl::StartsWith(*target, "ipv4:") || absl::StartsWith(*target, "ipv6:")) << *target;
  EXPECT_FALSE(absl::StrContains(*target, name)) << *target;
  EXPECT_TRUE(absl::EndsWith(*target, ":7071")) << *target;
}

TEST(ChannelTargetTest, UnusableListsAreRefusedClearly) {
  auto no_port = ChannelTarget("10.0.0.5,10.0.0.6:7070");
  EXPECT_TRUE(absl::IsInvalidArgument(no_port.status()));
  EXPECT_TRUE(absl::StrContains(no_port.status().message(), "\"10.0.0.5\" is not HOST:PORT"));
  auto bad_port = ChannelTarget("10.0.0.5:http,10.0.0.6:7070");
  EXPECT_TRUE(absl::IsInvalidArgument(bad_port.status())) << bad_port.status();
  auto mixed = ChannelTarget("[::1]:7070,10.0.0.6:7070");
  EXPECT_TRUE(absl::IsInvalidArgument(mixed.status())) << mixed.status();
  EXPECT_TRUE(absl::StrContains(mixed.status().message(), "one family")) << mixed.status();
  // A channel to such a list fails its calls; NewChannel with options says why.
  EXPECT_FALSE(NewChannel("10.0.0.5,x", TlsOptions()).ok());
}

}  // namespace
}  // namespace rpc
}  // namespace cairn
