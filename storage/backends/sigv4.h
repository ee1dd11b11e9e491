// AWS Signature Version 4 for S3 requests, on OpenSSL (HMAC-SHA256,
// SHA-256). Written by the project rather than taken from libcurl, whose
// 7.88 implementation mis-signs some query strings (curl issue 9717).
#ifndef CAIRN_STORAGE_BACKENDS_SIGV4_H_
#define CAIRN_STORAGE_BACKENDS_SIGV4_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace cairn {
namespace internal {

struct AwsCredentials {
  std::string access_key;
  std::string secret_key;
  std::string session_token;  // optional
};

// Hex of SHA-256 / raw MD5 / base64.
std::string Sha256Hex(absl::string_view data);
std::string Md5Base64(absl::string_view data);
std::string HmacSha256(absl::string_view key, absl::string_view data);  // raw bytes
std::string HexEncode(absl::string_view raw);
std::string Base64(absl::string_view raw);

// RFC 3986 percent-encoding as SigV4 wants it: unreserved characters kept,
// everything else %XX (upper case); '/' kept unless encode_slash.
std::string UriEncode(absl::string_view s, bool encode_slash);

struct SigningInput {
  std::string method;
  std::string host;            // Host header value (host[:port])
  std::string canonical_uri;   // the encoded path, e.g. "/bucket/a%20b"
  std::vector<std::pair<std::string, std::string>> query;  // decoded
  // Headers to sign (besides host, x-amz-date, x-amz-content-sha256, which
  // are added); names any case.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string payload_hash;    // hex SHA-256, or "UNSIGNED-PAYLOAD"
  std::string amz_date;        // YYYYMMDD'T'HHMMSS'Z'
  std::string region;
  std::string service = "s3";
};

struct Signature {
  std::string canonical_request;
  std::string string_to_sign;
  std::string authorization;  // the Authorization header value
  // Every header the request must carry (host excluded: the transport
  // sends it), including x-amz-date, x-amz-content-sha256, the signed
  // extra headers and, if any, x-amz-security-token.
  std::vector<std::pair<std::string, std::string>> headers;
};

Signature SignV4(const AwsCredentials& credentials, const SigningInput& input);

// The encoded canonical query string ("a=1&b=x%2Fy"), also usable in a URL.
std::string CanonicalQuery(const std::vector<std::pair<std::string, std::string>>& query);

// Current UTC time as YYYYMMDD'T'HHMMSS'Z'.
std::string AmzDateNow();

}  // namespace internal
}  // namespace cairn

#endif  // CAIRN_STORAGE_BACKENDS_SIGV4_H_
