// Authorization tokens: minting, verification, expiry, tampering, scopes.
#include "proto/rpc/auth.h"

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace cairn {
namespace auth {
namespace {

const std::string kKey = "0123456789abcdef-test-key";
constexpr int64_t kNow = 1700000000;

TEST(AuthTest, RoundTrip) {
  const std::string t = MintToken(kKey, "job-a", Scope::kWrite, kNow + 60);
  auto claims = VerifyToken(kKey, t, kNow);
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(claims->job, "job-a");
  EXPECT_EQ(claims->scope, Scope::kWrite);
  EXPECT_EQ(claims->expires_unix_seconds, kNow + 60);
  // Nonces make every token distinct.
  EXPECT_NE(t, MintToken(kKey, "job-a", Scope::kWrite, kNow + 60));
}

TEST(AuthTest, Expired) {
  const std::string t = MintToken(kKey, "job-a", Scope::kRead, kNow);
  auto claims = VerifyToken(kKey, t, kNow);
  EXPECT_TRUE(absl::IsUnauthenticated(claims.status())) << claims.status();
  EXPECT_NE(claims.status().message().find("expired"), absl::string_view::npos);
  EXPECT_TRUE(VerifyToken(kKey, t, kNow - 1).ok());
}

TEST(AuthTest, WrongKey) {
  const std::string t = MintToken("another-key-0123456789", "job-a", Scope::kRead, kNow + 60);
  EXPECT_TRUE(absl::IsUnauthenticated(VerifyToken(kKey, t, kNow).status()));
}

TEST(AuthTest, Tampered) {
  const std::string t = MintToken(kKey, "job-a", Scope::kRead, kNow + 60);
  const size_t dot = t.find('.');
  // Change the payload to job-b / write, keeping the signature.
  std::string payload;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(t.substr(0, dot), &payload));
  for (const std::string& forged :
       {std::string("job-b") + payload.substr(5), std::string("job-a|write") + payload.substr(10)}) {
    const std::string token = absl::WebSafeBase64Escape(forged) + t.substr(dot);
    EXPECT_TRUE(absl::IsUnauthenticated(VerifyToken(kKey, token, kNow).status())) << forged;
  }
  // A flipped signature character, truncations and garbage.
  // (A middle character: the last one of the base64 signature also carries
  // two padding bits, which decoders ignore, so changing it may not change
  // the signature.)
  std::string flipped = t;
  char& c = flipped[dot + 5];
  c = c == 'A' ? 'B' : 'A';
  for (const std::string& bad : {flipped, t.substr(0, dot), t.substr(0, t.size() - 4),
                                 std::string("."), std::string("a.b.c"), std::string("")}) {
    EXPECT_TRUE(absl::IsUnauthenticated(VerifyToken(kKey, bad, kNow).status())) << bad;
  }
}

TEST(AuthTest, Scopes) {
  const std::string read = MintToken(kKey, "job-a", Scope::kRead, kNow + 60);
  const std::string write = MintToken(kKey, "job-a", Scope::kWrite, kNow + 60);
  const std::string admin = MintToken(kKey, kAnyJob, Scope::kRead, kNow + 60);
  const std::string cluster = MintToken(kKey, kAnyJob, Scope::kCluster, kNow + 60);
  EXPECT_TRUE(Authorize(kKey, read, "job-a", Scope::kRead, kNow).ok());
  EXPECT_TRUE(absl::IsPermissionDenied(Authorize(kKey, read, "job-a", Scope::kWrite, kNow)));
  EXPECT_TRUE(Authorize(kKey, write, "job-a", Scope::kRead, kNow).ok());
  EXPECT_TRUE(Authorize(kKey, write, "job-a", Scope::kWrite, kNow).ok());
  // Job A's tokens give nothing on job B, nor on every job.
  absl::Status s = Authorize(kKey, write, "job-b", Scope::kRead, kNow);
  EXPECT_TRUE(absl::IsPermissionDenied(s)) << s;
  EXPECT_NE(s.message().find("job-b"), absl::string_view::npos) << s;
  EXPECT_TRUE(absl::IsPermissionDenied(Authorize(kKey, write, kAnyJob, Scope::kRead, kNow)));
  // Admin tokens cover every job, in their scope.
  EXPECT_TRUE(Authorize(kKey, admin, "job-b", Scope::kRead, kNow).ok());
  EXPECT_TRUE(absl::IsPermissionDenied(Authorize(kKey, admin, "job-b", Scope::kWrite, kNow)));
  // Cluster tokens only for cluster calls, and only cluster tokens there.
  EXPECT_TRUE(Authorize(kKey, cluster, kAnyJob, Scope::kCluster, kNow).ok());
  EXPECT_TRUE(absl::IsPermissionDenied(Authorize(kKey, cluster, "job-a", Scope::kRead, kNow)));
  EXPECT_TRUE(absl::IsPermissionDenied(Authorize(kKey, write, kAnyJob, Scope::kCluster, kNow)));
  EXPECT_TRUE(absl::IsUnauthenticated(Authorize(kKey, "", "job-a", Scope::kRead, kNow)));
}

TEST(AuthTest, ParseScope) {
  EXPECT_EQ(*ParseScope("read"), Scope::kRead);
  EXPECT_EQ(*ParseScope("write"), Scope::kWrite);
  EXPECT_FALSE(ParseScope("admin").ok());
}

}  // namespace
}  // namespace auth
}  // namespace cairn
