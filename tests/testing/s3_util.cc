#include "tests/testing/s3_util.h"

#include "absl/strings/str_cat.h"
#include "tests/testing/test_util.h"

namespace cairn {
namespace testing {
namespace {

RunResult S3Request(const std::string& method, const std::string& target) {
  return Run({"/usr/bin/python3", std::string(CAIRN_SOURCE_DIR) + "/tests/servers/s3req.py", method, target});
}

// The text of every <tag>...</tag> in `xml`, in order (S3's answers have no
// nesting of a tag in itself, nor attributes on these tags).
std::vector<std::string> Elements(const std::string& xml, const std::string& tag) {
  std::vector<std::string> out;
  const std::string open = "<" + tag + ">", close = "</" + tag + ">";
  for (size_t at = xml.find(open); at != std::string::npos; at = xml.find(open, at)) {
    at += open.size();
    const size_t end = xml.find(close, at);
    if (end == std::string::npos) break;
    out.push_back(xml.substr(at, end - at));
    at = end + close.size();
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> OpenMultipartUploads(const std::string& bucket,
                                                              const std::string& prefix) {
  RunResult r = S3Request("GET", absl::StrCat("/", bucket, "?uploads&prefix=", prefix));
  if (r.exit_code != 0) {
    return absl::UnavailableError(absl::StrCat("ListMultipartUploads failed: ", r.err, r.out));
  }
  if (r.out.find("<ListMultipartUploadsResult") == std::string::npos ||
      r.out.find("</ListMultipartUploadsResult>") == std::string::npos) {
    return absl::DataLossError(absl::StrCat("not a ListMultipartUploadsResult: ", r.out));
  }
  // One page (1000 uploads) is plenty for a test's prefix; more is an error.
  for (const std::string& t : Elements(r.out, "IsTruncated")) {
    if (t == "true") return absl::OutOfRangeError(absl::StrCat("more than one page of uploads under ", prefix));
  }
  std::vector<std::string> keys;
  for (const std::string& upload : Elements(r.out, "Upload")) {
    std::vector<std::string> key = Elements(upload, "Key");
    keys.push_back(key.empty() ? "(no key)" : key[0]);
  }
  return keys;
}

absl::StatusOr<std::string> CreateMultipartUpload(const std::string& bucket, const std::string& key) {
  RunResult r = S3Request("POST", absl::StrCat("/", bucket, "/", key, "?uploads"));
  std::vector<std::string> id = Elements(r.out, "UploadId");
  if (r.exit_code != 0 || id.empty()) {
    return absl::UnavailableError(absl::StrCat("CreateMultipartUpload failed: ", r.err, r.out));
  }
  return id[0];
}

absl::Status AbortMultipartUpload(const std::string& bucket, const std::string& key,
                                  const std::string& upload_id) {
  RunResult r = S3Request("DELETE", absl::StrCat("/", bucket, "/", key, "?uploadId=", upload_id));
  if (r.exit_code != 0) return absl::UnavailableError(absl::StrCat("AbortMultipartUpload failed: ", r.err));
  return absl::OkStatus();
}

}  // namespace testing
}  // namespace cairn
