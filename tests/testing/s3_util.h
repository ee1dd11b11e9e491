// S3 checks for tests against a real gateway (tests/servers/ceph_rgw.sh):
// requests the storage library never makes, sent with tests/servers/s3req.py
// (SigV4, credentials and endpoint from the AWS_* environment variables).
#ifndef CAIRN_TESTS_TESTING_S3_UTIL_H_
#define CAIRN_TESTS_TESTING_S3_UTIL_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace cairn {
namespace testing {

// Keys of the multipart uploads open (initiated, neither completed nor
// aborted) in `bucket` under `prefix`: S3 ListMultipartUploads
// (GET /bucket?uploads&prefix=...), not a listing of objects (an open upload
// is no object). An error if the request fails or the answer is not a whole
// ListMultipartUploadsResult.
absl::StatusOr<std::vector<std::string>> OpenMultipartUploads(const std::string& bucket,
                                                              const std::string& prefix);

// Opens a multipart upload of `key` by hand (CreateMultipartUpload) and
// returns its upload id; AbortMultipartUpload ends it. To prove checks on
// open uploads can fail.
absl::StatusOr<std::string> CreateMultipartUpload(const std::string& bucket, const std::string& key);
absl::Status AbortMultipartUpload(const std::string& bucket, const std::string& key,
                                  const std::string& upload_id);

}  // namespace testing
}  // namespace cairn

#endif  // CAIRN_TESTS_TESTING_S3_UTIL_H_
