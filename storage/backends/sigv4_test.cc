#include "storage/backends/sigv4.h"

#include "gtest/gtest.h"

namespace cairn {
namespace internal {
namespace {

// The worked example of AWS's "Signature Version 4 signing process"
// documentation (IAM ListUsers, 2015-08-30).
TEST(SigV4, AwsDocumentationExample) {
  AwsCredentials creds{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
  SigningInput in;
  in.method = "GET";
  in.host = "iam.amazonaws.com";
  in.canonical_uri = "/";
  in.query = {{"Action", "ListUsers"}, {"Version", "2010-05-08"}};
  in.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
  in.payload_hash = Sha256Hex("");
  in.amz_date = "20150830T123600Z";
  in.region = "us-east-1";
  in.service = "iam";
  Signature sig = SignV4(creds, in);
  // The documented request signs content-type;host;x-amz-date only; ours
  // always adds x-amz-content-sha256 (S3 requires it), so check the parts
  // the example pins down: the key derivation via a request without it.
  EXPECT_NE(sig.authorization.find("Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request"),
            std::string::npos);
  EXPECT_NE(sig.authorization.find(
                "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date"),
            std::string::npos);
  // Signing key derivation from the same documentation.
  std::string key = HmacSha256("AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830");
  key = HmacSha256(key, "us-east-1");
  key = HmacSha256(key, "iam");
  key = HmacSha256(key, "aws4_request");
  EXPECT_EQ(HexEncode(key), "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
  // And the documented signature of the documented string to sign.
  const std::string string_to_sign =
      "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n"
      "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59";
  EXPECT_EQ(HexEncode(HmacSha256(key, string_to_sign)),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
}

TEST(SigV4, CanonicalRequestOfTheDocumentationExample) {
  // Without x-amz-content-sha256 the canonical request must hash to the
  // documented value; reproduce it by hand from the documented pieces.
  const std::string canonical =
      "GET\n/\nAction=ListUsers&Version=2010-05-08\n"
      "content-type:application/x-www-form-urlencoded; charset=utf-8\n"
      "host:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
      "content-type;host;x-amz-date\n"
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
  EXPECT_EQ(Sha256Hex(canonical), "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59");
  EXPECT_EQ(CanonicalQuery({{"Version", "2010-05-08"}, {"Action", "ListUsers"}}),
            "Action=ListUsers&Version=2010-05-08");
}

TEST(SigV4, EncodingFollowsRfc3986) {
  EXPECT_EQ(UriEncode("a b/c~d_e.f-g", false), "a%20b/c~d_e.f-g");
  EXPECT_EQ(UriEncode("a/b+c=", true), "a%2Fb%2Bc%3D");
  EXPECT_EQ(CanonicalQuery({{"prefix", "job/ckpt-1/"}, {"list-type", "2"}, {"uploads", ""}}),
            "list-type=2&prefix=job%2Fckpt-1%2F&uploads=");
  EXPECT_EQ(Md5Base64(""), "1B2M2Y8AsgTpgAmY7PhCfg==");  // MD5 d41d8cd9…
}

}  // namespace
}  // namespace internal
}  // namespace cairn
