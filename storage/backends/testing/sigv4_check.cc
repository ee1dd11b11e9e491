#include "storage/backends/testing/sigv4_check.h"

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "storage/backends/sigv4.h"

namespace cairn {
namespace testing {

std::optional<AuthFailure> CheckSigV4(const internal::HttpRequest& req, const FakeUrl& url,
                                      const std::string& access_key, const std::string& secret_key,
                                      const std::string& region) {
  const std::string authorization = HeaderValue(req, "Authorization");
  if (authorization.empty()) return AuthFailure{403, "AccessDenied", "Anonymous access is forbidden"};
  // "AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/s3/aws4_request,
  //  SignedHeaders=a;b;c, Signature=HEX"
  std::map<std::string, std::string> fields;
  absl::string_view auth = authorization;
  if (absl::ConsumePrefix(&auth, "AWS4-HMAC-SHA256 ")) {
    for (absl::string_view f : absl::StrSplit(auth, ", ")) {
      std::pair<std::string, std::string> kv = absl::StrSplit(f, absl::MaxSplits('=', 1));
      fields[kv.first] = kv.second;
    }
  }
  const std::vector<std::string> scope = absl::StrSplit(fields["Credential"], '/');
  const std::string date = HeaderValue(req, "x-amz-date");
  if (scope.size() != 5 || fields["SignedHeaders"].empty() || fields["Signature"].size() != 64 ||
      scope[3] != "s3" || scope[4] != "aws4_request" || date.size() != 16 || !absl::StartsWith(date, scope[1])) {
    return AuthFailure{400, "AuthorizationHeaderMalformed",
                       absl::StrCat("bad Authorization or x-amz-date: ", authorization)};
  }
  if (scope[0] != access_key) {
    return AuthFailure{403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."};
  }
  if (scope[2] != region) {
    return AuthFailure{400, "AuthorizationHeaderMalformed",
                       absl::StrCat("the region '", scope[2], "' is wrong; expecting '", region, "'")};
  }
  const std::string payload_hash = HeaderValue(req, "x-amz-content-sha256");
  if (payload_hash.empty()) {
    return AuthFailure{400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256"};
  }
  if (payload_hash != "UNSIGNED-PAYLOAD" && payload_hash != internal::Sha256Hex(req.body)) {
    return AuthFailure{400, "XAmzContentSHA256Mismatch",
                       "The provided 'x-amz-content-sha256' header does not match what was computed."};
  }
  const std::vector<std::string> signed_names = absl::StrSplit(fields["SignedHeaders"], ';');
  for (const auto& [name, value] : req.headers) {
    const std::string lower = absl::AsciiStrToLower(name);
    if ((absl::StartsWith(lower, "x-amz-") || lower == "content-md5") &&
        std::find(signed_names.begin(), signed_names.end(), lower) == signed_names.end()) {
      return AuthFailure{403, "AccessDenied",
                         absl::StrCat("There were headers present in the request which were not signed: ", lower)};
    }
  }
  internal::SigningInput in;
  in.method = req.method;
  in.host = url.host;
  in.canonical_uri = url.raw_path;
  in.query = url.query;
  for (const std::string& name : signed_names) {
    // SignV4 adds these itself.
    if (name != "host" && name != "x-amz-date" && name != "x-amz-content-sha256" && name != "x-amz-security-token") {
      in.headers.emplace_back(name, HeaderValue(req, name));
    }
  }
  in.payload_hash = payload_hash;
  in.amz_date = date;
  in.region = region;
  const internal::Signature expected =
      internal::SignV4({access_key, secret_key, HeaderValue(req, "x-amz-security-token")}, in);
  if (expected.authorization != authorization) {
    return AuthFailure{403, "SignatureDoesNotMatch",
                       "The request signature we calculated does not match the signature you provided. Check "
                       "your key and signing method."};
  }
  return std::nullopt;
}

}  // namespace testing
}  // namespace cairn
