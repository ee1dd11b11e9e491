// The fake S3's side of AWS Signature V4 (fake_s3_server.h): a request is
// accepted only if the signature recomputed from the request as it arrived
// (method, host, the URL's encoded path and decoded query, the headers it
// says it signed, x-amz-date, x-amz-content-sha256) is the one it carries.
// So a client whose URL or headers differ from what it signed is refused,
// as S3 refuses it. The signing itself is storage/backends/sigv4.h's, whose
// own test pins it to AWS's documented example.
#ifndef CAIRN_STORAGE_BACKENDS_TESTING_SIGV4_CHECK_H_
#define CAIRN_STORAGE_BACKENDS_TESTING_SIGV4_CHECK_H_

#include <optional>
#include <string>

#include "storage/backends/http_transport.h"
#include "storage/backends/testing/fake_http_server.h"

namespace cairn {
namespace testing {

// Why a request was refused, as S3 would say it.
struct AuthFailure {
  long status;       // 400 or 403
  std::string code;  // e.g. "SignatureDoesNotMatch"
  std::string message;
};

// nullopt if `request` (whose URL is `url`) is signed by `access_key` /
// `secret_key` for `region` and service s3, its x-amz-content-sha256 matches
// its body (or is UNSIGNED-PAYLOAD), and every x-amz-* and Content-MD5
// header it carries is signed.
std::optional<AuthFailure> CheckSigV4(const internal::HttpRequest& request, const FakeUrl& url,
                                      const std::string& access_key, const std::string& secret_key,
                                      const std::string& region);

}  // namespace testing
}  // namespace cairn

#endif  // CAIRN_STORAGE_BACKENDS_TESTING_SIGV4_CHECK_H_
